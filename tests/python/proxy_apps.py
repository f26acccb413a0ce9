"""Applications and a client for `meshid proxy` (run by tests/proxy_cli.rs); standard library
only.

Usage:
  proxy_apps.py http             an HTTP server (http.server) that answers every GET with
                                 the request's headers as JSON (a list of [name, value]),
                                 every POST with its body's length and SHA-256, and prints
                                 `request <path> <JSON headers>` per request
  proxy_apps.py pp2              a TCP server that reads a PROXY protocol v2 header (HAProxy's
                                 spec, section 2.2) before the caller's bytes, and answers
                                 the caller's first line with what the header said, as JSON
  proxy_apps.py tls-client HOST PORT CERT KEY CAFILE [tls1.2]
                                 an mTLS client (Python's ssl, OpenSSL): the chain of the
                                 server verified against CAFILE (no host name: an SVID has
                                 only a URI SAN), TLS 1.2 at most if asked, sends `hello\\n`,
                                 prints `local <port>` (its own source port) and then the
                                 answer's first line

The servers listen on 127.0.0.1 at a port the system picks and print `listening on <port>`
first. Every line is flushed at once.
"""

import hashlib
import http.server
import json
import socket
import socketserver
import ssl
import struct
import sys

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_TYPE_SPIFFE_ID = 0xE0


def say(line):
    print(line, flush=True)


class Headers(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # Every header as sent, repeated ones kept (a forged one left beside ours would show).
        headers = [[k.lower(), v] for k, v in self.headers.items()]
        body = json.dumps(headers).encode()
        say(f"request {self.path} {body.decode()}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        # The body's length and SHA-256, to tell it arrived whole.
        length = int(self.headers.get("Content-Length", "0"))
        digest = hashlib.sha256(self.rfile.read(length)).hexdigest()
        body = json.dumps({"length": length, "sha256": digest}).encode()
        say(f"request {self.path} {json.dumps([['content-length', str(length)]])}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def tlvs(data):
    out = []
    while data:
        if len(data) < 3:
            raise ValueError(f"a truncated TLV: {data!r}")
        kind, length = data[0], struct.unpack("!H", data[1:3])[0]
        if len(data) < 3 + length:
            raise ValueError(f"TLV 0x{kind:02x} longer than the header")
        out.append((kind, data[3 : 3 + length]))
        data = data[3 + length :]
    return out


def parse_pp2(conn):
    head = read_exactly(conn, 16)
    if head[:12] != SIGNATURE:
        raise ValueError(f"no PROXY v2 signature: {head!r}")
    if head[12] != 0x21:
        raise ValueError(f"version/command 0x{head[12]:02x}, not 0x21 (v2 PROXY)")
    family = head[13]
    length = struct.unpack("!H", head[14:16])[0]
    body = read_exactly(conn, length)
    found = {"family": family}
    if family == 0x11:  # TCP over IPv4
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        found["src"] = f"{socket.inet_ntop(socket.AF_INET, src)}:{sport}"
        found["dst"] = f"{socket.inet_ntop(socket.AF_INET, dst)}:{dport}"
        rest = body[12:]
    elif family == 0x21:  # TCP over IPv6
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        found["src"] = f"[{socket.inet_ntop(socket.AF_INET6, src)}]:{sport}"
        found["dst"] = f"[{socket.inet_ntop(socket.AF_INET6, dst)}]:{dport}"
        rest = body[36:]
    else:
        rest = body
    for kind, value in tlvs(rest):
        if kind == PP2_TYPE_SPIFFE_ID:
            found["id"] = value.decode()
        elif kind == PP2_TYPE_SSL:
            found["ssl_client"] = value[0]
            found["ssl_verify"] = struct.unpack("!I", value[1:5])[0]
            for sub, subvalue in tlvs(value[5:]):
                if sub == PP2_SUBTYPE_SSL_VERSION:
                    found["ssl_version"] = subvalue.decode()
    return found


class Pp2(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        conn.settimeout(10)
        try:
            found = parse_pp2(conn)
        except Exception as e:  # told to the caller and the test, then closed
            found = {"error": str(e)}
        if "error" not in found:
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(1)
                if not chunk:
                    break
                line += chunk
            found["payload"] = line.decode(errors="replace").strip()
        answer = json.dumps(found)
        say(f"pp2 {answer}")
        conn.sendall(answer.encode() + b"\n")


class Threading(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def tls_client(host, port, cert, key, cafile, version="any"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if version == "tls1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile)
    context.load_cert_chain(cert, key)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        local = raw.getsockname()[1]
        with context.wrap_socket(raw) as tls:
            say(f"local {local}")
            tls.sendall(b"hello\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
            say(answer.decode().strip())


def main():
    mode = sys.argv[1]
    if mode == "tls-client":
        tls_client(*sys.argv[2:])
        return
    if mode == "http":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Headers)
    elif mode == "pp2":
        server = Threading(("127.0.0.1", 0), Pp2)
    else:
        sys.exit(f"unknown mode {mode}")
    say(f"listening on {server.server_address[1]}")
    server.serve_forever()


if __name__ == "__main__":
    main()
