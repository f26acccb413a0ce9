"""Plain grpcio (the gRPC C-core stack) against `meshid serve workload-api` (run by
tests/grpc_python.rs): the Workload API's security header, as any gRPC client meets it.

Usage: workload_grpcio.py <unix socket> <spiffe id> [authority]

Calls /SpiffeWorkloadAPI/FetchX509SVID over `unix:///<socket>` with raw bytes (an empty
X509SVIDRequest is zero octets): without the `workload.spiffe.io: true` metadata it must
fail with INVALID_ARGUMENT; with it, the first message must carry an SVID for the ID.
With an authority, the channel sends it as `:authority` instead of what C-core derives
from the socket path. Prints `ok <check>` per passed check and `done`; exits non-zero at
the first failure.
"""

import sys
import warnings

import grpc

warnings.simplefilter("ignore")  # py-spiffe's protos import cleanly, but quietly

from spiffe._proto import workload_pb2  # noqa: E402

WAIT = 10.0
METHOD = "/SpiffeWorkloadAPI/FetchX509SVID"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def run(socket, spiffe_id, authority=None):
    options = [("grpc.default_authority", authority)] if authority else []
    with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
        fetch = channel.unary_stream(METHOD)  # no (de)serializers: bytes in, bytes out

        call = fetch(b"", timeout=WAIT)
        try:
            first = next(call)
            raise Failed(f"without the security header: a message of {len(first)} octets")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
                  f"without the security header: {e.code()} {e.details()!r}")
        print("ok no-header-invalid-argument", flush=True)

        call = fetch(b"", timeout=WAIT, metadata=[("workload.spiffe.io", "true")])
        try:
            first = next(call)
        except grpc.RpcError as e:
            raise Failed(f"with the security header: {e.code()} {e.details()!r}") from None
        response = workload_pb2.X509SVIDResponse.FromString(first)
        check(len(response.svids) >= 1, "with the security header: no SVID")
        svid = response.svids[0]
        check(svid.spiffe_id == spiffe_id, f"with the security header: SVID for {svid.spiffe_id!r}")
        check(svid.x509_svid and svid.x509_svid_key and svid.bundle, "SVID without chain, key or bundle")
        call.cancel()
        print("ok header-svid", flush=True)


def main():
    try:
        run(*sys.argv[1:4])
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
