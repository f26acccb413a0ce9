"""py-spiffe (PyPI `spiffe`, over grpcio: the gRPC C-core stack) fetching and validating
JWT-SVIDs from `meshid serve workload-api --ca DIR` (run by tests/grpc_python.rs).

Usage: workload_pyspiffe_jwt.py <unix socket> <spiffe id> <the CA's bundle.json>

Over `unix:///<socket>`, with py-spiffe 0.3.2's `WorkloadApiClient`: `fetch_jwt_svid`
(the SPIFFE ID, the audience set, the header), `fetch_jwt_svids`, a subject the workload does
not hold refused, `fetch_jwt_bundles` (the trust domain's JWT authorities: the token's
`kid` among them, and exactly the `jwt-svid` keys of the bundle.json `meshid ca init`
wrote), the token verified by py-spiffe itself (`JwtSvid.parse_and_validate`, PyJWT over
`cryptography`) against the fetched bundle, `validate_jwt_svid` on the server (accepted
for its audience; a wrong audience and a tampered signature refused with
INVALID_ARGUMENT), and py-spiffe's `JwtSource` over the same client.
Prints `ok <check>` per passed check and `done`; exits non-zero at the first failure.
"""

import json
import sys
import time
import warnings

import jwt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# cryptography 51 deprecates DSA, which py-spiffe 0.3.2 still names at import.
warnings.simplefilter("ignore")

from spiffe.spiffe_id.spiffe_id import SpiffeId, TrustDomain  # noqa: E402
from spiffe.svid.jwt_svid import JwtSvid  # noqa: E402
from spiffe.workloadapi.errors import FetchJwtSvidError, ValidateJwtSvidError  # noqa: E402
from spiffe.workloadapi.jwt_source import JwtSource  # noqa: E402
from spiffe.workloadapi.workload_api_client import WorkloadApiClient  # noqa: E402

WAIT = 10.0
AUDIENCE = {"svc-a", "svc-b"}


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def public(key):
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def jwt_keys_of(bundle_json):
    """The `jwt-svid` keys of a SPIFFE bundle file, by kid, as DER public keys."""
    with open(bundle_json, "rb") as f:
        doc = json.load(f)
    keys = {}
    for jwk in doc["keys"]:
        if jwk.get("use") == "jwt-svid":
            keys[jwk["kid"]] = public(jwt.PyJWK(jwk).key)
    check(keys, f"{bundle_json} has no jwt-svid key")
    return keys


def refused(call, error_cls, code, what):
    try:
        call()
    except error_cls as e:
        check(code in str(e), f"{what}: refused, but not with {code}: {e}")
        return
    raise Failed(f"{what}: accepted")


def run(socket, spiffe_id, bundle_json):
    expected_keys = jwt_keys_of(bundle_json)
    td = TrustDomain("example.org")
    client = WorkloadApiClient(f"unix://{socket}", default_timeout=WAIT)
    try:
        svid = client.fetch_jwt_svid(audience=AUDIENCE)
        check(str(svid.spiffe_id) == spiffe_id, f"fetch_jwt_svid: SVID for {svid.spiffe_id}")
        check(set(svid.audience) == AUDIENCE, f"fetch_jwt_svid: audience {svid.audience}")
        check(svid.expiry > time.time(), f"fetch_jwt_svid: expired ({svid.expiry})")
        header = jwt.get_unverified_header(svid.token)
        check(header.get("alg") == "ES256", f"fetch_jwt_svid: header {header}")
        check(header.get("typ") in (None, "JWT", "JOSE"), f"fetch_jwt_svid: header {header}")
        kid = header.get("kid")
        check(kid in expected_keys, f"fetch_jwt_svid: kid {kid!r} not in {list(expected_keys)}")
        print("ok jwt-svid", flush=True)

        svids = client.fetch_jwt_svids(audience={"svc-a"})
        check(len(svids) == 1, f"fetch_jwt_svids: {len(svids)} SVIDs")
        check(str(svids[0].spiffe_id) == spiffe_id, f"fetch_jwt_svids: {svids[0].spiffe_id}")
        check(set(svids[0].audience) == {"svc-a"}, f"fetch_jwt_svids: {svids[0].audience}")
        print("ok jwt-svids", flush=True)

        refused(
            lambda: client.fetch_jwt_svid(
                audience={"svc-a"}, subject=SpiffeId("spiffe://example.org/not-mine")
            ),
            FetchJwtSvidError, "PERMISSION_DENIED", "fetch_jwt_svid for another subject",
        )
        print("ok other-subject-refused", flush=True)

        bundles = client.fetch_jwt_bundles()
        bundle = bundles.get_bundle_for_trust_domain(td)
        check(bundle is not None, f"fetch_jwt_bundles: no example.org bundle in {bundles.bundles}")
        got = {k: public(v) for k, v in bundle.jwt_authorities.items()}
        check(kid in got, f"fetch_jwt_bundles: the token's kid {kid!r} is not in {list(got)}")
        check(got == expected_keys,
              f"fetch_jwt_bundles: keys {list(got)} differ from bundle.json's {list(expected_keys)}")
        print("ok jwt-bundles", flush=True)

        # py-spiffe's own check (PyJWT over cryptography) against the fetched bundle.
        local = JwtSvid.parse_and_validate(svid.token, bundle, {"svc-a"})
        check(str(local.spiffe_id) == spiffe_id, f"parse_and_validate: {local.spiffe_id}")
        print("ok validated-by-py-spiffe", flush=True)

        validated = client.validate_jwt_svid(svid.token, "svc-b")
        check(str(validated.spiffe_id) == spiffe_id, f"validate_jwt_svid: {validated.spiffe_id}")
        print("ok validate", flush=True)

        refused(lambda: client.validate_jwt_svid(svid.token, "svc-c"),
                ValidateJwtSvidError, "INVALID_ARGUMENT", "validate_jwt_svid, wrong audience")
        print("ok wrong-audience-refused", flush=True)

        head, payload, signature = svid.token.split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        refused(lambda: client.validate_jwt_svid(f"{head}.{payload}.{flipped}", "svc-a"),
                ValidateJwtSvidError, "INVALID_ARGUMENT", "validate_jwt_svid, tampered")
        print("ok tampered-refused", flush=True)

        source = JwtSource(workload_api_client=client, timeout_in_seconds=WAIT)
        try:
            held = source.get_bundle_for_trust_domain(td)
            check(held is not None and kid in held.jwt_authorities,
                  f"JwtSource: bundle {held and list(held.jwt_authorities)}")
            from_source = source.fetch_svid(audience={"svc-a"})
            check(str(from_source.spiffe_id) == spiffe_id, f"JwtSource: {from_source.spiffe_id}")
            JwtSvid.parse_and_validate(from_source.token, held, {"svc-a"})
        finally:
            source.close()
        print("ok jwt-source", flush=True)
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
