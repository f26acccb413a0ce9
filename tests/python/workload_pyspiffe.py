"""py-spiffe (PyPI `spiffe`, over grpcio: the gRPC C-core stack) against
`meshid serve workload-api` (run by tests/grpc_python.rs).

Usage: workload_pyspiffe.py <unix socket> <spiffe id> <CA certificate PEM>

Fetches the X509-SVID, the X.509 context and the X.509 bundles over `unix:///<socket>`,
and checks them against the CA: the SVID names the ID, its leaf is issued by the CA, its
private key matches the leaf, and the example.org bundle is exactly the CA certificate.
Prints `ok <check>` per passed check and `done`; exits non-zero at the first failure.
"""

import sys
import warnings

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# cryptography 51 deprecates DSA, which py-spiffe 0.3.2 still names at import.
warnings.simplefilter("ignore")

from spiffe.spiffe_id.spiffe_id import TrustDomain  # noqa: E402
from spiffe.workloadapi.workload_api_client import WorkloadApiClient  # noqa: E402

WAIT = 10.0


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def public(key):
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def check_svid(svid, spiffe_id, ca, what):
    check(str(svid.spiffe_id) == spiffe_id, f"{what}: SVID for {svid.spiffe_id}")
    chain = svid.cert_chain
    check(len(chain) >= 1 and chain[0] == svid.leaf, f"{what}: chain of {len(chain)}")
    svid.leaf.verify_directly_issued_by(ca)  # raises if not
    check(public(svid.private_key.public_key()) == public(svid.leaf.public_key()),
          f"{what}: the private key is not the leaf's")


def run(socket, spiffe_id, ca_pem):
    with open(ca_pem, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    td = TrustDomain("example.org")
    client = WorkloadApiClient(f"unix://{socket}", default_timeout=WAIT)
    try:
        check_svid(client.fetch_x509_svid(), spiffe_id, ca, "fetch_x509_svid")
        print("ok x509-svid", flush=True)

        context = client.fetch_x509_context()
        check(len(context.x509_svids) >= 1, "x509 context: no SVID")
        check_svid(context.default_svid, spiffe_id, ca, "fetch_x509_context")
        bundle = context.x509_bundle_set.get_bundle_for_trust_domain(td)
        check(bundle is not None and bundle.x509_authorities == {ca},
              f"x509 context: example.org bundle {bundle and bundle.x509_authorities}")
        print("ok x509-context", flush=True)

        bundles = client.fetch_x509_bundles()
        check(len(bundles.bundles) == 1, f"{len(bundles.bundles)} bundles")
        bundle = bundles.get_bundle_for_trust_domain(td)
        check(bundle is not None, "no example.org bundle")
        check(bundle.x509_authorities == {ca}, f"example.org authorities {bundle.x509_authorities}")
        print("ok x509-bundles", flush=True)
    finally:
        client.close()


def main():
    try:
        run(*sys.argv[1:4])
    except Exception as e:  # the failure, as py-spiffe or the check reports it
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
