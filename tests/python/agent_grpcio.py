"""Plain grpcio (the gRPC C-core stack) as a workload of `meshid serve agent` (run by
tests/agent.rs), under whatever uid, gid and groups the test started it with.

Usage:
  agent_grpcio.py fetch <unix socket>
  agent_grpcio.py stream <unix socket> <seconds>

Both print `who uid=<uid> gid=<gid> groups=<g,...>` first (as the kernel sees this process).

fetch: one FetchX509SVID call with the security header. Prints `svid <id> hint=<hint>` for
each SVID of the first message, in order, then `done`; or `status <CODE> <details>` if
the call fails. Each SVID is checked first: py-spiffe parses its chain and key (the ID is
the leaf's URI SAN), which must name the ID the message gives, and the key must be the
leaf's.

stream: keeps one FetchX509SVID stream open and prints `message <id>,<id>,...` for each
message as it arrives (each SVID checked as above), until the stream ends (`status <CODE>
<details>`; `ended` if it ends OK) or the time is up (`timeout`).

Exits 0 when it could report what happened, 1 when a check failed (`FAILED: ...` on
stderr).
"""

import os
import sys
import threading
import warnings

import grpc
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

warnings.simplefilter("ignore")  # py-spiffe's protos import cleanly, but quietly

from spiffe._proto import workload_pb2  # noqa: E402
from spiffe.svid.x509_svid import X509Svid  # noqa: E402

WAIT = 10.0
METHOD = "/SpiffeWorkloadAPI/FetchX509SVID"
HEADER = [("workload.spiffe.io", "true")]


class Failed(Exception):
    pass


def public(key):
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def ids(message):
    """The SPIFFE IDs and hints of a message, each SVID checked."""
    response = workload_pb2.X509SVIDResponse.FromString(message)
    out = []
    for svid in response.svids:
        parsed = X509Svid.parse_raw(svid.x509_svid, svid.x509_svid_key)
        if str(parsed.spiffe_id) != svid.spiffe_id:
            raise Failed(f"SVID sent as {svid.spiffe_id!r} names {parsed.spiffe_id}")
        if public(parsed.private_key.public_key()) != public(parsed.leaf.public_key()):
            raise Failed(f"{svid.spiffe_id}: the key is not the leaf's")
        if not svid.bundle:
            raise Failed(f"{svid.spiffe_id}: no bundle")
        out.append((svid.spiffe_id, svid.hint))
    return out


def status(e):
    return f"status {e.code().name} {e.details()}"


def fetch(channel):
    call = channel.unary_stream(METHOD)(b"", timeout=WAIT, metadata=HEADER)
    try:
        first = next(call)
    except grpc.RpcError as e:
        print(status(e), flush=True)
        return
    for spiffe_id, hint in ids(first):
        print(f"svid {spiffe_id} hint={hint}", flush=True)
    call.cancel()
    print("done", flush=True)


def stream(channel, seconds):
    call = channel.unary_stream(METHOD)(b"", metadata=HEADER)
    timed_out = threading.Event()

    def time_up():
        timed_out.set()
        call.cancel()

    timer = threading.Timer(seconds, time_up)
    timer.daemon = True
    timer.start()
    try:
        for message in call:
            print("message " + ",".join(i for i, _ in ids(message)), flush=True)
    except grpc.RpcError as e:
        if not timed_out.is_set():
            print(status(e), flush=True)
            return
    print("timeout" if timed_out.is_set() else "ended", flush=True)


def main():
    mode, socket = sys.argv[1:3]
    groups = ",".join(str(g) for g in sorted(os.getgroups()))
    print(f"who uid={os.geteuid()} gid={os.getegid()} groups={groups}", flush=True)
    try:
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            if mode == "fetch":
                fetch(channel)
            elif mode == "stream":
                stream(channel, float(sys.argv[3]))
            else:
                raise Failed(f"unknown mode {mode!r}")
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
