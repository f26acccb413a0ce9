"""An SDS client on grpcio (the gRPC C-core stack, as in Envoy's `google_grpc`) against
`meshid serve sds` (run by tests/grpc_python.rs).

Usage: sds_grpcio.py <unix socket> <spiffe id> [authority]

Messages are PyPI envoy-data-plane's (betterproto2), sent as raw bytes over grpcio's
generic calls on `unix:///<socket>`. Checks, in order: FetchSecrets for `default` and
`ROOTCA`; a StreamSecrets stream asking for both; an ACK (version_info + response_nonce)
that brings no push; a push for a new name, NACKed (error_detail) and not resent; the stream
still open, answering a change of names; and ending with OK when the client half-closes.
With an authority, the channel sends it as `:authority` instead of what C-core derives from
the socket path. Prints `ok <check>` per passed check and `done`; exits non-zero at the
first failure.
"""

import base64
import queue
import re
import sys
import threading

import grpc
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.rpc import Status

SERVICE = "/envoy.service.secret.v3.SecretDiscoveryService/"
TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
QUIET = 1.5  # how long "no push" is watched for
WAIT = 10.0  # how long an expected answer may take


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def secrets(response, what):
    """The response's secrets, by name, in order."""
    check(response.type_url == TYPE_URL, f"{what}: type_url {response.type_url!r}")
    out = {}
    for any_ in response.resources:
        check(any_.type_url == TYPE_URL, f"{what}: resource type_url {any_.type_url!r}")
        secret = Secret.parse(any_.value)
        out[secret.name] = secret
    return out


def pem_ders(data):
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", data, re.S)
    return [base64.b64decode(b"".join(b.split())) for b in blocks]


def check_secrets(got, names, spiffe_id, what):
    check(sorted(got) == sorted(names), f"{what}: names {list(got)}, want {names}")
    for name, secret in got.items():
        if name == "ROOTCA":
            vc = secret.validation_context
            check(vc is not None and secret.tls_certificate is None, f"{what}: ROOTCA is no validation context")
            check(len(pem_ders(vc.trusted_ca.inline_bytes or b"")) == 1, f"{what}: ROOTCA trusted CAs")
        else:
            tls = secret.tls_certificate
            check(tls is not None, f"{what}: {name} is no tls_certificate")
            ders = pem_ders(tls.certificate_chain.inline_bytes or b"")
            # The URI SAN is an IA5String: the ID appears verbatim in the leaf's DER.
            check(ders and spiffe_id.encode() in ders[0], f"{what}: {name}'s leaf does not name {spiffe_id}")
            check(b"PRIVATE KEY-----" in (tls.private_key.inline_bytes or b""), f"{what}: {name} has no key")


class Stream:
    """One StreamSecrets call: requests queued to grpcio, responses pumped into an inbox."""

    def __init__(self, channel):
        self.out, self.inbox = queue.Queue(), queue.Queue()
        self.call = channel.stream_stream(SERVICE + "StreamSecrets")(iter(self.out.get, None))
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        try:
            for message in self.call:
                self.inbox.put(DiscoveryResponse.parse(message))
            self.inbox.put("end")
        except grpc.RpcError as e:  # surfaced by recv()
            self.inbox.put(e)

    def send(self, names, version="", nonce="", nack=None):
        error = Status(code=3, message=nack) if nack else None
        self.out.put(bytes(DiscoveryRequest(
            version_info=version, resource_names=list(names), type_url=TYPE_URL,
            response_nonce=nonce, error_detail=error)))

    def recv(self, what):
        try:
            response = self.inbox.get(timeout=WAIT)
        except queue.Empty:
            raise Failed(f"{what}: no push within {WAIT}s") from None
        if isinstance(response, grpc.RpcError):
            raise Failed(f"{what}: stream failed: {response.code()} {response.details()!r}")
        check(response != "end", f"{what}: the server ended the stream")
        return response

    def quiet(self, what):
        try:
            response = self.inbox.get(timeout=QUIET)
        except queue.Empty:
            return
        raise Failed(f"{what}: unexpected {response!r}")

    def close(self, what):
        self.out.put(None)
        self.pump.join(WAIT)
        check(not self.pump.is_alive(), f"{what}: the stream did not end within {WAIT}s")
        end = self.inbox.get_nowait()
        check(end == "end", f"{what}: {end!r}")
        check(self.call.code() == grpc.StatusCode.OK, f"{what}: {self.call.code()}")


def ok(what):
    print(f"ok {what}", flush=True)


def run(socket, spiffe_id, authority=None):
    options = [("grpc.default_authority", authority)] if authority else []
    with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
        # 1. FetchSecrets.
        names = ["default", "ROOTCA"]
        fetch = channel.unary_unary(SERVICE + "FetchSecrets")
        try:
            answer = fetch(bytes(DiscoveryRequest(resource_names=names, type_url=TYPE_URL)), timeout=WAIT)
        except grpc.RpcError as e:
            raise Failed(f"fetch: {e.code()} {e.details()!r}") from None
        fetched = DiscoveryResponse.parse(answer)
        check_secrets(secrets(fetched, "fetch"), names, spiffe_id, "fetch")
        check(fetched.version_info != "", "fetch: no version_info")
        ok("fetch-secrets")

        # 2. StreamSecrets: the first request is answered with both secrets.
        s = Stream(channel)
        s.send(names)
        r1 = s.recv("first push")
        check_secrets(secrets(r1, "first push"), names, spiffe_id, "first push")
        check(r1.version_info != "" and r1.nonce != "", f"first push: version {r1.version_info!r} nonce {r1.nonce!r}")
        ok("stream-first-push")

        # 3. The ACK brings nothing.
        s.send(names, version=r1.version_info, nonce=r1.nonce)
        s.quiet("after the ACK")
        ok("ack-is-quiet")

        # 4. A new name is pushed; its NACK is not answered with the same secrets again.
        more = names + [spiffe_id]
        s.send(more, version=r1.version_info, nonce=r1.nonce)
        r2 = s.recv("push for a new name")
        check_secrets(secrets(r2, "push for a new name"), more, spiffe_id, "push for a new name")
        check(r2.nonce != r1.nonce, f"push for a new name: nonce {r2.nonce} reused")
        s.send(more, version=r1.version_info, nonce=r2.nonce, nack="rejected by the test")
        s.quiet("after the NACK")
        ok("nack-not-resent")

        # 5. The stream is still open: a change of names is answered.
        check(not s.call.done(), "the stream ended after the NACK")
        s.send(names, version=r1.version_info, nonce=r2.nonce)
        r3 = s.recv("push after the NACK")
        check_secrets(secrets(r3, "push after the NACK"), names, spiffe_id, "push after the NACK")
        check(r3.nonce not in (r1.nonce, r2.nonce), f"push after the NACK: nonce {r3.nonce} reused")
        s.send(names, version=r3.version_info, nonce=r3.nonce)
        s.quiet("after the last ACK")
        ok("open-after-nack")

        # 6. Half-closing ends the stream with OK.
        s.close("half-close")
        ok("half-close-ends-ok")


def main():
    try:
        run(*sys.argv[1:4])
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
