"""JWT-SVIDs between meshid and an implementation nobody here wrote: PyJWT over
`cryptography` (run by tests/jwt_python.rs with the Python test peer's venv).

Usage:
  jwt_interop.py forge OUTDIR
      Makes keys and writes, into OUTDIR:
      - bundle.json: example.org's SPIFFE bundle (a JWK Set of `jwt-svid` keys, each with
        its `kid`): EC P-256, EC P-384, RSA-2048, RSA-1024 (so that only its size refuses
        the tokens it signs) and Ed25519 (so that only `alg: EdDSA` refuses them);
      - other.json: other.org's bundle (one EC P-256 key);
      - cases.json: a list of {name, token, audience, expect, ...}: `expect` is `accept`
        (then `claims` is the payload meshid must print back) or `refuse` (then `variant`
        is the meshid `JwtError` the token must meet and `rule` words its message must
        contain, from RULES below).
      Every token is built here, by PyJWT (the valid ones) or by hand with `cryptography`
      (the hostile ones, which PyJWT will not make): never by meshid. Each hostile token
      breaks one rule of JWT-SVID.md (or of JWS/JWT under it) and keeps every other one.
  jwt_interop.py validate BUNDLE AUDIENCE TOKEN
      Validates TOKEN (`-`: read from standard input) with PyJWT against the `jwt-svid`
      keys of the SPIFFE bundle BUNDLE (the key picked by the header's `kid`), requiring
      `aud` to contain AUDIENCE, `exp` (not passed, no leeway) and `sub` (a SPIFFE ID with a
      path). Prints the claims as JSON, or exits 1 with the reason on standard error.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time
import warnings

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

# PyJWT warns about the RSA-1024 key it is made to sign with: that key is the point.
warnings.simplefilter("ignore")

TRUST_DOMAIN = "example.org"
OTHER_TRUST_DOMAIN = "other.org"
AUDIENCE = "meshid-interop"
SUB = "spiffe://example.org/web"

# The refusal a hostile token must meet, by the name of meshid's `JwtError` variant, and
# the words of that variant's message (src/jwt/error.rs) the refusal must contain: the one
# table to adjust when meshid's wording moves. Matched case-insensitively as a substring
# of what `meshid jwt validate` prints on standard error.
RULES = {
    # Before anything is decoded.
    "TooLarge": "byte limit",
    "JsonSerialization": "JWS JSON serialization",
    "PartCount": "exactly three parts",
    "BadBase64": "base64url",
    "NotJson": "not UTF-8 JSON",
    "NotAnObject": "not a JSON object",
    "DuplicateMember": "twice",
    # The header: alg first, then the members, typ, kid.
    "MissingAlgorithm": "no `alg`",
    "UnsupportedAlgorithm": "is not allowed: a JWT-SVID is signed with",
    "ForbiddenHeader": "header member",
    "BadType": "`typ`",
    "MissingKeyId": "no `kid`",
    "BadKeyId": "`kid` must be a non-empty string",
    # The claims' forms.
    "MissingSubject": "no `sub`",
    "SubjectNotString": "`sub` must be a string",
    "BadSubject": "not a SPIFFE ID",
    "SubjectWithoutPath": "has no path",
    "MissingAudience": "no `aud`",
    "BadAudience": "`aud` must be a string or an array of strings",
    "EmptyAudience": "one or more values",
    "MissingExpiry": "no `exp`",
    "BadTime": "NumericDate",
    # The key: by kid, in the sub's trust domain only.
    "NoBundle": "no JWT bundle for trust domain",
    "UnknownKeyId": "has the key ID",
    "KeyMismatch": "cannot be used with",
    "RsaKeyTooSmall": "2048 bits",
    # The signature, then time, then audience.
    "SignatureLength": "R || S",
    "BadSignature": "does not verify",
    "Expired": "expired",
    "NotYetValid": "not valid before",
    "IssuedInFuture": "in the future",
    "AudienceMismatch": "not among",
}

# How the hostile tokens' signing algorithms map to `cryptography` (for the ones PyJWT will
# not sign as asked).
ALGS = get_default_algorithms()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value):
    if isinstance(value, (bytes, str)):
        raw = value.encode() if isinstance(value, str) else value
    else:
        raw = json.dumps(value, separators=(",", ":")).encode()
    return b64(raw)


def sign(alg, key, message):
    """The JWS signature of `message` (bytes) with `key` under `alg` (raw r||s for ES*)."""
    return ALGS[alg].sign(message, key)


def token(header, payload, key, alg, signature=None):
    """A compact JWS of `header` and `payload` (dicts, or already-serialized str/bytes for
    hand-made JSON), signed by `key` with `alg` unless `signature` (bytes) is given."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    if signature is None:
        signature = sign(alg, key, signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Keys:
    def __init__(self):
        self.ec256 = ec.generate_private_key(ec.SECP256R1())
        self.ec384 = ec.generate_private_key(ec.SECP384R1())
        self.rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.ed25519 = ed25519.Ed25519PrivateKey.generate()
        self.other = ec.generate_private_key(ec.SECP256R1())
        # Random kids, as a real authority's (>= 128 bits).
        self.kid = {
            name: b64(os.urandom(16))
            for name in ("ec256", "ec384", "rsa2048", "rsa1024", "ed25519", "other")
        }

    def jwk(self, name):
        key = getattr(self, name).public_key()
        if name in ("ec256", "ec384", "other"):
            jwk = ECAlgorithm.to_jwk(key, as_dict=True)
        elif name.startswith("rsa"):
            jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
        # A SPIFFE bundle's JWK: no `key_ops` (PyJWT adds it to RSA keys), `use` and `kid`.
        jwk.pop("key_ops", None)
        jwk.update({"use": "jwt-svid", "kid": self.kid[name]})
        return jwk

    def bundle(self):
        names = ("ec256", "ec384", "rsa2048", "rsa1024", "ed25519")
        return {"keys": [self.jwk(n) for n in names], "spiffe_sequence": 1}

    def other_bundle(self):
        return {"keys": [self.jwk("other")], "spiffe_sequence": 1}


def forge(outdir):
    keys = Keys()
    kid = keys.kid
    now = int(time.time())

    def claims(**changes):
        """Valid claims with `changes` (a value of None removes the claim)."""
        base = {"sub": SUB, "aud": [AUDIENCE], "exp": now + 3600, "iat": now}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def header(alg="ES256", key="ec256", **changes):
        base = {"alg": alg, "kid": kid[key], "typ": "JWT"}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def es256(hdr=None, payload=None, **kwargs):
        """A hand-made token signed by the P-256 key (header and claims valid unless given)."""
        return token(
            header() if hdr is None else hdr,
            claims() if payload is None else payload,
            keys.ec256,
            "ES256",
            **kwargs,
        )

    cases = []

    def accept(name, tok, payload):
        cases.append(
            {"name": name, "token": tok, "audience": AUDIENCE, "expect": "accept", "claims": payload}
        )

    def refuse(name, variant, tok, audience=AUDIENCE):
        assert variant in RULES, variant
        cases.append(
            {
                "name": name,
                "token": tok,
                "audience": audience,
                "expect": "refuse",
                "variant": variant,
                "rule": RULES[variant],
            }
        )

    # --- Valid tokens, minted by PyJWT itself.
    for alg, key in (
        ("ES256", "ec256"),
        ("ES384", "ec384"),
        ("RS256", "rsa2048"),
        ("RS384", "rsa2048"),
        ("RS512", "rsa2048"),
        ("PS256", "rsa2048"),
        ("PS384", "rsa2048"),
        ("PS512", "rsa2048"),
    ):
        payload = claims(sub=f"spiffe://example.org/pyjwt/{alg.lower()}")
        tok = jwt.encode(payload, getattr(keys, key), algorithm=alg, headers={"kid": kid[key]})
        accept(f"pyjwt-{alg.lower()}", tok, payload)
    payload = claims()
    accept(
        "pyjwt-es256-no-typ",
        jwt.encode(payload, keys.ec256, algorithm="ES256", headers={"kid": kid["ec256"], "typ": None}),
        payload,
    )
    accept(
        "pyjwt-es256-typ-jose",
        jwt.encode(payload, keys.ec256, algorithm="ES256", headers={"kid": kid["ec256"], "typ": "JOSE"}),
        payload,
    )
    payload = claims(aud=AUDIENCE)
    accept(
        "pyjwt-es256-aud-string",
        jwt.encode(payload, keys.ec256, algorithm="ES256", headers={"kid": kid["ec256"]}),
        payload,
    )
    payload = claims(aud=["someone-else", AUDIENCE, "a-third"])
    accept(
        "pyjwt-es256-aud-among-several",
        jwt.encode(payload, keys.ec256, algorithm="ES256", headers={"kid": kid["ec256"]}),
        payload,
    )
    payload = claims(
        jti=b64(os.urandom(12)),
        iss="https://issuer.example.org",
        nbf=now - 60,
        extra={"nested": [1, "two", None, True]},
        sub="spiffe://example.org/ns/default/sa/web-1.a_b",
    )
    accept(
        "pyjwt-es256-more-claims",
        jwt.encode(payload, keys.ec256, algorithm="ES256", headers={"kid": kid["ec256"]}),
        payload,
    )
    payload = claims(iat=None)
    accept(
        "pyjwt-es256-no-iat",
        jwt.encode(payload, keys.ec256, algorithm="ES256", headers={"kid": kid["ec256"]}),
        payload,
    )

    # --- alg: checked first; only RS/ES/PS 256/384/512.
    refuse("alg-none", "UnsupportedAlgorithm", es256(header(alg="none"), signature=b""))
    refuse("alg-none-with-signature", "UnsupportedAlgorithm", es256(header(alg="none")))
    refuse("alg-None-capitalised", "UnsupportedAlgorithm", es256(header(alg="None"), signature=b""))
    refuse("alg-missing", "MissingAlgorithm", es256(header(alg=None)))
    refuse("alg-lowercase-es256", "UnsupportedAlgorithm", es256(header(alg="es256")))
    signing_input = f"{b64json(header(alg='HS256'))}.{b64json(claims())}".encode()
    refuse(
        "alg-hs256-secret-ec-public-key-pem",
        "UnsupportedAlgorithm",
        es256(
            header(alg="HS256"),
            signature=hmac.new(public_pem(keys.ec256), signing_input, hashlib.sha256).digest(),
        ),
    )
    hdr = header(alg="HS256", key="rsa2048")
    signing_input = f"{b64json(hdr)}.{b64json(claims())}".encode()
    refuse(
        "alg-hs256-secret-rsa-public-key-pem",
        "UnsupportedAlgorithm",
        es256(hdr, signature=hmac.new(public_pem(keys.rsa2048), signing_input, hashlib.sha256).digest()),
    )
    refuse(
        "alg-eddsa-with-ed25519-key",
        "UnsupportedAlgorithm",
        token(header(alg="EdDSA", key="ed25519"), claims(), keys.ed25519, "EdDSA"),
    )
    refuse(
        "alg-rs256-header-over-ec-signature",
        "KeyMismatch",
        es256(header(alg="RS256")),
    )
    refuse(
        "alg-es384-header-p256-key",
        "KeyMismatch",
        token(header(alg="ES384", key="ec256"), claims(), keys.ec256, "ES384"),
    )
    refuse(
        "alg-es256-header-rsa-kid",
        "KeyMismatch",
        es256(header(key="rsa2048")),
    )
    refuse(
        "alg-rs256-header-p384-kid",
        "KeyMismatch",
        token(header(alg="RS256", key="ec384"), claims(), keys.rsa2048, "RS256"),
    )

    # --- typ: absent, JWT or JOSE.
    refuse("typ-at+jwt", "BadType", es256(header(typ="at+jwt")))
    refuse("typ-number", "BadType", es256(header(typ=1)))

    # --- JOSE headers other than alg, kid, typ.
    for name, value in (
        ("crit", ["exp"]),
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("jwk", keys.jwk("ec256")),
        ("x5c", ["MIIB"]),
        ("x5t", b64(os.urandom(20))),
        ("cty", "JWT"),
        ("zip", "DEF"),
        ("b64", True),
        ("x-unknown", "1"),
    ):
        refuse(f"header-{name}", "ForbiddenHeader", es256(header(**{name: value})))
    refuse("header-not-json", "NotJson", es256("{not json"))
    refuse("header-json-array", "NotAnObject", es256('["ES256"]'))

    # --- Duplicates (RFC 7515 §4: names unique; last-wins parsers would take the second).
    # Both orders: a first-wins and a last-wins parser each see one valid token.
    for first, last in (("none", "ES256"), ("ES256", "none")):
        refuse(
            f"duplicate-header-alg-{first.lower()}-then-{last.lower()}",
            "DuplicateMember",
            es256(f'{{"alg":"{first}","kid":"{kid["ec256"]}","typ":"JWT","alg":"{last}"}}'),
        )
    payload = claims(sub=None)
    dup = json.dumps(payload, separators=(",", ":"))[:-1]
    for first, last in ((SUB, "spiffe://example.org/admin"), ("spiffe://example.org/admin", SUB)):
        refuse(
            f"duplicate-claim-sub-{first.rsplit('/', 1)[1]}-first",
            "DuplicateMember",
            es256(payload=f'{dup},"sub":"{first}","sub":"{last}"}}'),
        )

    # --- kid: required, and in the `sub`'s trust domain's authorities only.
    refuse("kid-missing", "MissingKeyId", es256(header(kid=None)))
    refuse("kid-empty", "BadKeyId", es256(header(kid="")))
    refuse("kid-unknown", "UnknownKeyId", es256(header(kid=b64(os.urandom(16)))))
    refuse(
        "kid-of-other-trust-domain",
        "UnknownKeyId",
        token(header(key="other"), claims(), keys.other, "ES256"),
    )
    refuse(
        "sub-in-other-trust-domain",
        "NoBundle",
        es256(payload=claims(sub="spiffe://other.org/web")),
    )

    # --- Signature.
    good = es256()
    h, p, s = good.split(".")
    refuse(
        "signature-over-other-payload",
        "BadSignature",
        f"{h}.{b64json(claims(sub='spiffe://example.org/admin'))}.{s}",
    )
    refuse(
        "signature-by-other-key-under-known-kid",
        "BadSignature",
        token(header(), claims(), keys.other, "ES256"),
    )
    signing_input = f"{b64json(header())}.{b64json(claims())}".encode()
    der = keys.ec256.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    assert decode_dss_signature(der)  # a well-formed DER signature over exactly that input
    refuse("signature-es256-der-form", "SignatureLength", es256(signature=der))
    refuse("signature-es256-truncated", "SignatureLength", es256(signature=sign("ES256", keys.ec256, signing_input)[:63]))
    refuse("signature-empty", "SignatureLength", es256(signature=b""))
    refuse(
        "signature-ps256-header-over-rs256",
        "BadSignature",
        token(
            header(alg="PS256", key="rsa2048"),
            claims(),
            keys.rsa2048,
            "PS256",
            signature=sign(
                "RS256",
                keys.rsa2048,
                f"{b64json(header(alg='PS256', key='rsa2048'))}.{b64json(claims())}".encode(),
            ),
        ),
    )
    refuse(
        "rsa-1024-bit-key",
        "RsaKeyTooSmall",
        token(header(alg="RS256", key="rsa1024"), claims(), keys.rsa1024, "RS256"),
    )

    # --- sub: a SPIFFE ID with a path.
    refuse("sub-missing", "MissingSubject", es256(payload=claims(sub=None)))
    refuse("sub-not-spiffe", "BadSubject", es256(payload=claims(sub="https://example.org/web")))
    refuse("sub-number", "SubjectNotString", es256(payload=claims(sub=42)))
    refuse("sub-trailing-slash", "BadSubject", es256(payload=claims(sub="spiffe://example.org/web/")))
    refuse("sub-dot-segment", "BadSubject", es256(payload=claims(sub="spiffe://example.org/a/../web")))
    refuse("sub-trust-domain-id", "SubjectWithoutPath", es256(payload=claims(sub="spiffe://example.org")))

    # --- aud: present, containing the validator's audience.
    refuse("aud-missing", "MissingAudience", es256(payload=claims(aud=None)))
    refuse("aud-mismatch", "AudienceMismatch", es256(payload=claims(aud=["someone-else"])))
    refuse("aud-mismatch-string", "AudienceMismatch", es256(payload=claims(aud="someone-else")))
    refuse("aud-empty-array", "EmptyAudience", es256(payload=claims(aud=[])))
    refuse("aud-number", "BadAudience", es256(payload=claims(aud=7)))
    refuse("aud-array-with-number", "BadAudience", es256(payload=claims(aud=[AUDIENCE, 7])))
    refuse("aud-empty-string-value", "EmptyAudience", es256(payload=claims(aud=[AUDIENCE, ""])))
    refuse("aud-prefix-only", "AudienceMismatch", es256(payload=claims(aud=[AUDIENCE + "x"])))

    # --- exp, nbf, iat (leeway 0).
    refuse("exp-missing", "MissingExpiry", es256(payload=claims(exp=None)))
    refuse("exp-string", "BadTime", es256(payload=claims(exp=str(now + 3600))))
    refuse("expired-by-1s", "Expired", es256(payload=claims(exp=now - 1)))
    refuse("nbf-in-future", "NotYetValid", es256(payload=claims(nbf=now + 300)))
    refuse("iat-in-future", "IssuedInFuture", es256(payload=claims(iat=now + 300)))
    refuse("iat-string", "BadTime", es256(payload=claims(iat=str(now))))

    refuse("claims-not-json", "NotJson", es256(payload="not json"))
    refuse("claims-json-array", "NotAnObject", es256(payload='["sub"]'))

    # --- Compact serialization only.
    h, p, s = es256().split(".")
    refuse(
        "jws-json-general",
        "JsonSerialization",
        json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]}),
    )
    refuse(
        "jws-json-flattened",
        "JsonSerialization",
        json.dumps({"payload": p, "protected": h, "signature": s}),
    )
    refuse("two-parts", "PartCount", f"{h}.{p}")
    refuse("four-parts", "PartCount", f"{h}.{p}.{s}.{s}")
    refuse("five-parts-jwe-shape", "PartCount", f"{h}.{p}.{s}.{s}.{s}")
    refuse("three-empty-parts", "NotJson", "..")

    # --- base64url without padding; nothing else.
    for _ in range(200):
        h, p, s = es256().split(".")
        if "-" in s or "_" in s:
            break
    else:
        raise SystemExit("no signature with a '-' or '_' in 200 tries")
    refuse("base64-standard-alphabet", "BadBase64", f"{h}.{p}.{s.replace('-', '+').replace('_', '/')}")
    for _ in range(200):
        payload = claims(jti=b64(os.urandom(int.from_bytes(os.urandom(1), "big") % 7 + 1)))
        p = b64json(payload)
        if len(p) % 4:
            break
    padded = p + "=" * (-len(p) % 4)
    hdr = b64json(header())
    refuse(
        "base64-padding",
        "BadBase64",
        f"{hdr}.{padded}.{b64(sign('ES256', keys.ec256, f'{hdr}.{padded}'.encode()))}",
    )
    hdr, p, s = es256().split(".")
    refuse("base64-space-inside", "BadBase64", f"{hdr}.{p[:10]} {p[10:]}.{s}")

    # --- Size bounded before decoding. A token over 128 KiB cannot be one argument
    # (Linux's MAX_ARG_STRLEN): tests/jwt_python.rs gives those on standard input.
    refuse("oversized-70-kib-claim", "TooLarge", es256(payload=claims(pad="A" * (70 * 1024))))
    refuse("oversized-100-kib-claim", "TooLarge", es256(payload=claims(pad="A" * (100 * 1024))))
    refuse("oversized-1-mib-claim", "TooLarge", es256(payload=claims(pad="A" * (1024 * 1024))))

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "bundle.json"), "w") as f:
        json.dump(keys.bundle(), f, indent=2)
    with open(os.path.join(outdir, "other.json"), "w") as f:
        json.dump(keys.other_bundle(), f, indent=2)
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    unused = set(RULES) - {c["variant"] for c in cases if c["expect"] == "refuse"}
    assert not unused, f"RULES without a case: {sorted(unused)}"
    # The valid tokens are valid to PyJWT too (against the bundle just written).
    for case in cases:
        if case["expect"] == "accept":
            got = validate(os.path.join(outdir, "bundle.json"), case["audience"], case["token"])
            assert got == case["claims"], (case["name"], got)
    refusals = sum(1 for c in cases if c["expect"] == "refuse")
    print(f"{len(cases) - refusals} accept, {refusals} refuse")


# What each JWK type may verify (PyJWT would otherwise take the header's word for it).
def allowed_algs(jwk):
    if jwk.get("kty") == "EC":
        return {"P-256": ["ES256"], "P-384": ["ES384"], "P-521": ["ES512"]}.get(jwk.get("crv"), [])
    if jwk.get("kty") == "RSA":
        return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    return []


SPIFFE_ID_WITH_PATH = re.compile(r"spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+")


def spiffe_id_with_path(value):
    return (
        isinstance(value, str)
        and SPIFFE_ID_WITH_PATH.fullmatch(value) is not None
        and not any(seg in (".", "..") for seg in value.split("/")[3:])
    )


class Refused(Exception):
    pass


def validate(bundle_path, audience, tok):
    with open(bundle_path) as f:
        doc = json.load(f)
    jwks = [k for k in doc.get("keys", []) if k.get("use") == "jwt-svid"]
    if not jwks:
        raise Refused(f"{bundle_path} has no jwt-svid keys")
    try:
        header = jwt.get_unverified_header(tok)
    except jwt.PyJWTError as e:
        raise Refused(f"malformed token: {e}") from e
    # What meshid mints is held to JWT-SVID.md's header rules too (PyJWT would let these by).
    extra = sorted(set(header) - {"alg", "kid", "typ"})
    if extra:
        raise Refused(f"header parameters other than alg, kid, typ: {extra}")
    if header.get("typ", "JWT") not in ("JWT", "JOSE"):
        raise Refused(f"typ {header.get('typ')!r} is not JWT or JOSE")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Refused("no kid in the header")
    matches = [k for k in jwks if k.get("kid") == kid]
    if len(matches) != 1:
        raise Refused(f"kid {kid!r}: {len(matches)} keys in the bundle")
    jwk = matches[0]
    algs = allowed_algs(jwk)
    if header.get("alg") not in algs:
        raise Refused(f"alg {header.get('alg')!r} is not one of {algs} for this key")
    key = jwt.PyJWKSet.from_dict({"keys": [jwk]})[kid]
    try:
        claims = jwt.decode(
            tok,
            key.key,
            algorithms=[header["alg"]],
            audience=audience,
            leeway=0,
            options={
                "require": ["exp", "sub", "aud"],
                "verify_signature": True,
                "verify_exp": True,
                "verify_aud": True,
                "verify_nbf": True,
                "verify_iat": True,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.PyJWTError as e:
        raise Refused(f"{type(e).__name__}: {e}") from e
    sub = claims.get("sub")
    if not spiffe_id_with_path(sub):
        raise Refused(f"sub {sub!r} is not a SPIFFE ID with a path")
    for claim in ("exp", "iat", "nbf"):
        value = claims.get(claim)
        if claim in claims and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise Refused(f"{claim} {value!r} is not a NumericDate")
    return claims


def main(argv):
    if len(argv) == 3 and argv[1] == "forge":
        forge(argv[2])
        return 0
    if len(argv) == 5 and argv[1] == "validate":
        tok = sys.stdin.read().strip() if argv[4] == "-" else argv[4]
        try:
            claims = validate(argv[2], argv[3], tok)
        except Refused as e:
            print(f"refused: {e}", file=sys.stderr)
            return 1
        print(json.dumps(claims, sort_keys=True))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
