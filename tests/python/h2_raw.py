"""Raw HTTP/2 gRPC requests to a meshid server over its Unix socket (run by
tests/grpc_python.rs), with a chosen `:authority`.

Usage: h2_raw.py <unix socket> <workload|sds> <authority form>

Forms: localhost, absent (no :authority at all), encoded (the socket path without its
leading slash, percent-encoded as gRPC C-core sends it), encoded-slash (the same with the
leading slash, %2F...), raw-path (the path itself) and garbage (16 KiB of random octets
0x01-0xff, deterministic).

Speaks HTTP/2 with the h2 package, its outbound header checks off so that it sends the
authority as given. Two requests go on one connection: the first with every header
literal Huffman-coded and added to the HPACK dynamic table, the second with Huffman
coding off, so that what repeats comes from the dynamic table and what is new is a plain
literal. Each must get a normal gRPC answer: HTTP 200 and a message with the expected
content, then grpc-status 0 in the trailers (SDS FetchSecrets, unary), or, on the
Workload API's FetchX509SVID (a stream that stays open for updates), no grpc-status before
the first message, after which the client cancels the stream. Prints `ok request <n>`
per answer and `done`; exits non-zero with what went wrong otherwise.
"""

import random
import socket
import struct
import sys
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

WAIT = 10.0
ID = "spiffe://example.org/web"
SDS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def authority(form, path):
    if form == "localhost":
        return b"localhost"
    if form == "absent":
        return None
    if form == "encoded":
        return urllib.parse.quote(path.lstrip("/"), safe="").encode()
    if form == "encoded-slash":
        return urllib.parse.quote(path, safe="").encode()
    if form == "raw-path":
        return path.encode()
    if form == "garbage":
        rng = random.Random(20251206)
        return bytes(rng.randint(1, 255) for _ in range(16 * 1024))
    raise SystemExit(f"unknown authority form {form!r}")


def workload_call():
    """FetchX509SVID: an empty X509SVIDRequest; the answer must carry our SVID."""
    from spiffe._proto import workload_pb2

    def verify(message):
        response = workload_pb2.X509SVIDResponse.FromString(message)
        check(len(response.svids) >= 1, "no SVID in the answer")
        svid = response.svids[0]
        check(svid.spiffe_id == ID, f"SVID for {svid.spiffe_id!r}")
        check(svid.x509_svid and svid.x509_svid_key and svid.bundle, "SVID without chain, key or bundle")

    extra = [(b"workload.spiffe.io", b"true")]
    return b"/SpiffeWorkloadAPI/FetchX509SVID", extra, b"", verify, True


def sds_call():
    """FetchSecrets for `default`: the answer must be that secret, with our certificate."""
    from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

    def verify(message):
        response = DiscoveryResponse.parse(message)
        check(response.type_url == SDS_TYPE, f"type_url {response.type_url!r}")
        check(len(response.resources) == 1, f"{len(response.resources)} resources")
        secret = Secret.parse(response.resources[0].value)
        check(secret.name == "default", f"secret {secret.name!r}")
        chain = secret.tls_certificate.certificate_chain.inline_bytes
        check(b"-----BEGIN CERTIFICATE-----" in chain, "no certificate chain")
        check(b"PRIVATE KEY-----" in secret.tls_certificate.private_key.inline_bytes, "no key")

    request = bytes(DiscoveryRequest(resource_names=["default"], type_url=SDS_TYPE))
    path = b"/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets"
    return path, [], request, verify, False


def grpc_frame(message):
    return struct.pack(">BI", 0, len(message)) + message


def grpc_messages(body, complete=True):
    """The gRPC messages in a body; with complete=False a trailing partial one is ignored."""
    out = []
    while body:
        if not complete and (len(body) < 5 or len(body) < 5 + struct.unpack(">I", body[1:5])[0]):
            break
        check(len(body) >= 5, f"truncated gRPC frame ({len(body)} octets)")
        compressed, size = struct.unpack(">BI", body[:5])
        check(compressed == 0, "compressed gRPC message")
        check(len(body) >= 5 + size, "truncated gRPC message")
        out.append(body[5 : 5 + size])
        body = body[5 + size :]
    return out


class Recorder:
    """Wraps the connection's HPACK encoder: sets Huffman coding and records block sizes."""

    def __init__(self, encoder):
        self.encoder, self.original = encoder, encoder.encode
        self.huffman, self.blocks = True, []
        encoder.encode = self.encode

    def encode(self, headers, huffman=True):
        block = self.original(headers, huffman=self.huffman)
        self.blocks.append(len(block))
        return block


def run(path, service, form):
    rpc, extra, request, verify, streaming = workload_call() if service == "workload" else sds_call()
    auth = authority(form, path)
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        split_outbound_cookies=False,
        validate_inbound_headers=True,
    )
    conn = h2.connection.H2Connection(config=config)
    recorder = Recorder(conn.encoder)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(path)
    closed = []

    def flush():
        # A server that gives up on the connection may close it while requests are being
        # sent: what it said (GOAWAY, RST_STREAM) is still read, and reported.
        data = conn.data_to_send()
        if data and not closed:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError) as e:
                closed.append(e)

    conn.initiate_connection()
    flush()

    streams = {}
    for n, huffman in ((1, True), (2, False)):
        headers = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", rpc)]
        if auth is not None:
            headers.append((b":authority", auth))
        headers += [
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"meshid-h2-raw-test/1"),
            (b"x-meshid-request", str(n).encode()),
        ] + extra
        recorder.huffman = huffman
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers)
        conn.send_data(stream, grpc_frame(request), end_stream=True)
        flush()
        streams[stream] = {"n": n, "headers": None, "body": b"", "trailers": None, "end": None}

    while any(s["end"] is None for s in streams.values()):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise Failed(f"no complete answer within {WAIT}s: {streams}") from None
        except ConnectionResetError:
            data = b""
        if not data:
            raise Failed(f"connection closed by the server ({closed}): {streams}")
        for event in conn.receive_data(data):
            s = streams.get(getattr(event, "stream_id", None))
            if isinstance(event, h2.events.ResponseReceived):
                s["headers"] = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                s["body"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if streaming and s["end"] is None and grpc_messages(s["body"], complete=False):
                    s["end"] = "answered"
                    conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.CANCEL)
            elif isinstance(event, h2.events.TrailersReceived):
                s["trailers"] = dict(event.headers)
            elif isinstance(event, h2.events.StreamEnded) and s["end"] is None:
                s["end"] = "ended"
            elif isinstance(event, h2.events.StreamReset) and s["end"] is None:
                s["end"] = f"RST_STREAM {event.error_code!r}"
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise Failed(f"GOAWAY {event.error_code!r} {event.additional_data!r}")
        flush()

    # Both HPACK paths were taken: the second block mostly indexes the first's entries (not
    # so for an authority too large for the dynamic table).
    check(len(recorder.blocks) == 2, f"header blocks {recorder.blocks}")
    if auth is None or len(auth) < 1024:
        check(recorder.blocks[1] < recorder.blocks[0] // 2, f"dynamic table unused: {recorder.blocks}")

    for stream, s in sorted(streams.items()):
        what = f"request {s['n']} (stream {stream})"
        check(s["end"] == ("answered" if streaming else "ended"), f"{what}: {s['end']}; headers {s['headers']}")
        headers = s["headers"] or {}
        check(headers.get(b":status") == b"200", f"{what}: HTTP status {headers.get(b':status')!r}: {headers}")
        if streaming:
            check(b"grpc-status" not in headers, f"{what}: trailers-only answer {headers}")
            messages = grpc_messages(s["body"], complete=False)[:1]
        else:
            trailers = s["trailers"] or headers  # a trailers-only answer has grpc-status there
            status = trailers.get(b"grpc-status")
            check(status == b"0", f"{what}: grpc-status {status!r}, grpc-message {trailers.get(b'grpc-message')!r}")
            messages = grpc_messages(s["body"])
        check(len(messages) == 1 and messages[0], f"{what}: {len(messages)} messages")
        verify(messages[0])
        print(f"ok request {s['n']}", flush=True)
    sock.close()


def main():
    path, service, form = sys.argv[1:4]
    try:
        run(path, service, form)
    except (Failed, OSError) as e:
        print(f"FAILED ({service}, :authority {form}): {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
