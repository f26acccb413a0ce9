//! Every refusal of the validator, with hostile tokens built here byte by byte, and the
//! round trips mint → validate.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use rustls_pki_types::SignatureVerificationAlgorithm;

use super::ecdsa::der_to_raw;
use super::*;
use crate::{
    Authority, CaError, JwtAuthority, JwtKey, JwtSvidRequest, KeyPair, KeyType, Signer,
    SpiffeBundle, SpiffeId, TrustDomain,
};

/// The validation time of these tests.
const NOW: u64 = 1_900_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn other_td() -> TrustDomain {
    TrustDomain::new("other.org").unwrap()
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// The keys of these tests: ECDSA keys by kid, RSA keys from `tests/data/jwt/`.
struct Keys {
    p256: KeyPair,
    p384: KeyPair,
    other: KeyPair,
    rsa: ring::signature::RsaKeyPair,
    /// example.org: k256, k384, rsa2048, rsa1024 (public only), p521 (public only).
    bundle: SpiffeBundle,
    /// example.org's bundle and other.org's (one key, "o256").
    both: JwtBundles,
}

const RSA2048_KEY: &[u8] = include_bytes!("../../tests/data/jwt/rsa2048.key");
const RSA2048_JWK: &str = include_str!("../../tests/data/jwt/rsa2048.jwk.json");
const RSA1024_JWK: &str = include_str!("../../tests/data/jwt/rsa1024.jwk.json");
const P521_JWK: &str = include_str!("../../tests/data/jwt/p521.jwk.json");

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let p256 = KeyPair::generate(KeyType::P256).unwrap();
        let p384 = KeyPair::generate(KeyType::P384).unwrap();
        let other = KeyPair::generate(KeyType::P256).unwrap();
        let der = &crate::pem::parse(RSA2048_KEY).unwrap()[0].der;
        let rsa = ring::signature::RsaKeyPair::from_pkcs8(der).unwrap();
        let doc = format!(r#"{{"keys":[{RSA2048_JWK},{RSA1024_JWK},{P521_JWK}]}}"#);
        let bundle = SpiffeBundle::parse(td(), doc.as_bytes())
            .unwrap()
            .with_jwt_authority(JwtAuthority::new("k256", &p256.public_key_der()).unwrap())
            .with_jwt_authority(JwtAuthority::new("k384", &p384.public_key_der()).unwrap());
        let other_bundle = SpiffeBundle::new(other_td())
            .with_jwt_authority(JwtAuthority::new("o256", &other.public_key_der()).unwrap());
        let both = [bundle.clone(), other_bundle].into_iter().collect();
        Keys {
            p256,
            p384,
            other,
            rsa,
            bundle,
            both,
        }
    })
}

/// `header.payload.signature` from JSON texts (kept verbatim, so duplicates survive),
/// signed by `sign` over the first two parts.
fn token(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

/// An ES signer: the key's DER signature as JWS's `R || S`.
fn es(key: &KeyPair) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    let width = match key.key_type() {
        KeyType::P256 => 32,
        _ => 48,
    };
    move |m| der_to_raw(&key.sign(m).unwrap(), width).unwrap()
}

fn rsa(padding: &'static dyn ring::signature::RsaEncoding) -> impl Fn(&[u8]) -> Vec<u8> {
    move |m| {
        let key = &keys().rsa;
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(padding, &ring::rand::SystemRandom::new(), m, &mut sig)
            .unwrap();
        sig
    }
}

fn claims_with(extra: &str) -> String {
    format!(
        r#"{{"sub":"spiffe://example.org/web","aud":"api","exp":{},"iat":{NOW}{extra}}}"#,
        NOW + 300
    )
}

fn claims() -> String {
    claims_with("")
}

fn header(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#)
}

fn es256(claims: &str) -> String {
    token(&header("ES256", "k256"), claims, es(&keys().p256))
}

fn algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    crate::ring_algorithms()
}

fn validate(token: &str) -> Result<JwtSvid, JwtError> {
    JwtValidator::new("api", algorithms()).validate(token, &keys().bundle, now())
}

#[test]
fn valid_tokens_of_every_ring_algorithm() {
    let k = keys();
    let svid = validate(&es256(&claims())).unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
    assert_eq!(svid.audience(), ["api"]);
    assert_eq!(svid.expiry(), now() + Duration::from_secs(300));
    assert_eq!(svid.issued_at(), Some(now()));
    assert_eq!(svid.not_before(), None);
    assert_eq!(svid.key_id(), "k256");
    assert_eq!(svid.algorithm(), JwtAlgorithm::Es256);
    assert_eq!(svid.claims()["iat"], NOW);

    let es384 = token(&header("ES384", "k384"), &claims(), es(&k.p384));
    assert_eq!(validate(&es384).unwrap().algorithm(), JwtAlgorithm::Es384);

    use ring::signature as s;
    let rsa_cases: [(&str, &'static dyn s::RsaEncoding); 6] = [
        ("RS256", &s::RSA_PKCS1_SHA256),
        ("RS384", &s::RSA_PKCS1_SHA384),
        ("RS512", &s::RSA_PKCS1_SHA512),
        ("PS256", &s::RSA_PSS_SHA256),
        ("PS384", &s::RSA_PSS_SHA384),
        ("PS512", &s::RSA_PSS_SHA512),
    ];
    for (alg, padding) in rsa_cases {
        let t = token(&header(alg, "rsa2048"), &claims(), rsa(padding));
        let svid = validate(&t).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(svid.algorithm().name(), alg);
        // The same signature under the other padding's name does not verify.
        let swapped = if alg.starts_with('R') {
            alg.replace('R', "P")
        } else {
            alg.replace('P', "R")
        };
        let parts: Vec<&str> = t.split('.').collect();
        let forged = token(&header(&swapped, "rsa2048"), &claims(), |_| {
            Base64UrlUnpadded::decode_vec(parts[2]).unwrap()
        });
        assert!(
            matches!(validate(&forged), Err(JwtError::BadSignature { .. })),
            "{alg}"
        );
    }

    // typ may be JOSE or absent; aud may be an array holding the audience.
    for header in [
        r#"{"alg":"ES256","kid":"k256","typ":"JOSE"}"#,
        r#"{"kid":"k256","alg":"ES256"}"#,
    ] {
        assert!(
            validate(&token(header, &claims(), es(&k.p256))).is_ok(),
            "{header}"
        );
    }
    let many = format!(
        r#"{{"sub":"spiffe://example.org/web","aud":["x","api"],"exp":{}}}"#,
        NOW + 1
    );
    assert_eq!(validate(&es256(&many)).unwrap().audience(), ["x", "api"]);
}

#[test]
fn size_is_bounded_before_decoding() {
    let big = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        validate(&big).unwrap_err(),
        JwtError::TooLarge {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        }
    );
    // A valid token padded with a large private claim is refused the same way.
    let pad = format!(r#","x":"{}""#, "y".repeat(MAX_TOKEN_LEN));
    assert!(matches!(
        validate(&es256(&claims_with(&pad))),
        Err(JwtError::TooLarge { .. })
    ));
}

#[test]
fn compact_serialization_only() {
    let good = es256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let json = format!(
        r#"{{"payload":"{}","protected":"{}","signature":"{}"}}"#,
        parts[1], parts[0], parts[2]
    );
    assert_eq!(validate(&json).unwrap_err(), JwtError::JsonSerialization);
    let general = format!(r#" {{"payload":"{}","signatures":[]}}"#, parts[1]);
    assert_eq!(validate(&general).unwrap_err(), JwtError::JsonSerialization);
    for (text, parts) in [
        (String::new(), 1),
        ("abc".to_owned(), 1),
        (format!("{}.{}", parts[0], parts[1]), 2),
        (format!("{good}."), 4),
        (format!("{good}.{}", parts[2]), 4),
        (
            format!("{}.{}.{}.{}.{}", parts[0], parts[1], "a", "b", "c"),
            5,
        ),
    ] {
        assert_eq!(validate(&text).unwrap_err(), JwtError::PartCount { parts });
    }
}

#[test]
fn base64url_is_strict() {
    let good = es256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let with = |i: usize, part: &str| {
        let mut p = parts.clone();
        p[i] = part;
        p.join(".")
    };
    let header_std = parts[0].replace('_', "/").replace('-', "+");
    // A length of 1 mod 4, which no byte string encodes to.
    let mut one_too_many = parts[0].to_owned();
    while one_too_many.len() % 4 != 1 {
        one_too_many.push('A');
    }
    let cases = [
        (with(0, &format!("{}=", parts[0])), "header"),
        (with(0, &format!("{} ", parts[0])), "header"),
        (with(0, &one_too_many), "header"),
        (with(1, &format!("{}==", parts[1])), "payload"),
        (with(1, &format!("\n{}", parts[1])), "payload"),
        (with(2, &format!("{}=", parts[2])), "signature"),
        (with(2, "A"), "signature"),
        // Stray bits: "AB" is one byte with low bits set that no encoder writes.
        (with(2, "AB"), "signature"),
        (with(1, "e30*"), "payload"),
    ];
    for (text, part) in cases {
        assert_eq!(
            validate(&text).unwrap_err(),
            JwtError::BadBase64 { part },
            "{text}"
        );
    }
    if header_std != parts[0] {
        assert_eq!(
            validate(&with(0, &header_std)).unwrap_err(),
            JwtError::BadBase64 { part: "header" }
        );
    }
    // "AA" is the one encoding of a zero byte; "AB" decodes to the same byte in lax decoders.
    assert_eq!(Base64UrlUnpadded::decode_vec("AA").unwrap(), [0]);
}

#[test]
fn header_and_claims_are_json_objects_with_unique_names() {
    let sign = es(&keys().p256);
    let case = |header: &str, claims: &str| validate(&token(header, claims, &sign)).unwrap_err();
    assert_eq!(
        case("not json", &claims()),
        JwtError::NotJson { part: "header" }
    );
    assert_eq!(
        case("[]", &claims()),
        JwtError::NotAnObject { part: "header" }
    );
    assert_eq!(
        case(&header("ES256", "k256"), "{"),
        JwtError::NotJson { part: "claims" }
    );
    assert_eq!(
        case(&header("ES256", "k256"), "\"x\""),
        JwtError::NotAnObject { part: "claims" }
    );
    assert_eq!(
        case(r#"{"alg":"ES256","kid":"k256","alg":"none"}"#, &claims()),
        JwtError::DuplicateMember {
            part: "header",
            name: "alg".into()
        }
    );
    let twice = format!(
        r#"{},"sub":"spiffe://example.org/admin"}}"#,
        &claims()[..claims().len() - 1]
    );
    assert_eq!(
        case(&header("ES256", "k256"), &twice),
        JwtError::DuplicateMember {
            part: "claims",
            name: "sub".into()
        }
    );
    assert_eq!(
        case(
            &header("ES256", "k256"),
            &claims_with(r#","x":{"a":1,"a":2}"#)
        ),
        JwtError::DuplicateMember {
            part: "claims",
            name: "a".into()
        }
    );
}

#[test]
fn alg_is_checked_before_anything_else() {
    let k = keys();
    let spki_pem = crate::pem::encode("PUBLIC KEY", &k.p256.public_key_der());
    let hs256 = |m: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, spki_pem.as_bytes());
        ring::hmac::sign(&key, m).as_ref().to_vec()
    };
    let unsupported = |alg: &str| JwtError::UnsupportedAlgorithm { alg: alg.into() };
    // alg none, with or without a signature; HS256 with the public key as the secret.
    assert_eq!(
        validate(&token(r#"{"alg":"none"}"#, &claims(), |_| Vec::new())).unwrap_err(),
        unsupported("\"none\"")
    );
    assert_eq!(
        validate(&token(&header("none", "k256"), &claims(), es(&k.p256))).unwrap_err(),
        unsupported("\"none\"")
    );
    assert_eq!(
        validate(&token(&header("HS256", "k256"), &claims(), hs256)).unwrap_err(),
        unsupported("\"HS256\"")
    );
    // Even with a forbidden header and broken claims, the alg is what is reported.
    assert_eq!(
        validate(&token(r#"{"alg":"HS256","jwk":{}}"#, "[]", hs256)).unwrap_err(),
        unsupported("\"HS256\"")
    );
    for alg in ["es256", "EdDSA", "ES256K", "RS1", ""] {
        assert_eq!(
            validate(&token(&header(alg, "k256"), &claims(), es(&k.p256))).unwrap_err(),
            unsupported(&format!("{alg:?}"))
        );
    }
    assert_eq!(
        validate(&token(
            r#"{"alg":["ES256"],"kid":"k256"}"#,
            &claims(),
            es(&k.p256)
        ))
        .unwrap_err(),
        unsupported(r#"["ES256"]"#)
    );
    assert_eq!(
        validate(&token(r#"{"kid":"k256"}"#, &claims(), es(&k.p256))).unwrap_err(),
        JwtError::MissingAlgorithm
    );
    assert_eq!(
        "HS256".parse::<JwtAlgorithm>(),
        Err(unsupported("\"HS256\""))
    );
    assert_eq!("PS384".parse::<JwtAlgorithm>(), Ok(JwtAlgorithm::Ps384));
}

#[test]
fn header_holds_alg_kid_typ_only() {
    let sign = es(&keys().p256);
    for (member, value) in [
        ("crit", r#"["exp"]"#),
        ("jku", r#""https://attacker.example/jwks""#),
        ("x5u", r#""https://attacker.example/cert""#),
        ("jwk", r#"{"kty":"EC"}"#),
        ("x5c", r#"["MIIB"]"#),
        ("x5t", r#""abc""#),
        ("cty", r#""JWT""#),
        ("b64", "false"),
        ("zip", r#""DEF""#),
        ("private", "1"),
    ] {
        let h = format!(r#"{{"alg":"ES256","kid":"k256","{member}":{value}}}"#);
        assert_eq!(
            validate(&token(&h, &claims(), &sign)).unwrap_err(),
            JwtError::ForbiddenHeader {
                name: member.into()
            },
            "{member}"
        );
    }
    for typ in [r#""jwt""#, r#""at+jwt""#, r#""""#, "1", "null"] {
        let h = format!(r#"{{"alg":"ES256","kid":"k256","typ":{typ}}}"#);
        assert_eq!(
            validate(&token(&h, &claims(), &sign)).unwrap_err(),
            JwtError::BadType { typ: typ.into() }
        );
    }
    let missing = token(r#"{"alg":"ES256","typ":"JWT"}"#, &claims(), &sign);
    assert_eq!(validate(&missing).unwrap_err(), JwtError::MissingKeyId);
    for kid in [r#""""#, "1", "null", r#"["k256"]"#] {
        let h = format!(r#"{{"alg":"ES256","kid":{kid}}}"#);
        assert_eq!(
            validate(&token(&h, &claims(), &sign)).unwrap_err(),
            JwtError::BadKeyId
        );
    }
}

#[test]
fn subject_rules() {
    let exp = NOW + 300;
    let with_sub = |sub: &str| format!(r#"{{"sub":{sub},"aud":"api","exp":{exp}}}"#);
    assert_eq!(
        validate(&es256(&format!(r#"{{"aud":"api","exp":{exp}}}"#))).unwrap_err(),
        JwtError::MissingSubject
    );
    for sub in ["1", "null", r#"["spiffe://example.org/web"]"#] {
        assert_eq!(
            validate(&es256(&with_sub(sub))).unwrap_err(),
            JwtError::SubjectNotString
        );
    }
    for sub in [
        r#""web""#,
        r#""https://example.org/web""#,
        r#""spiffe://Example.org/web""#,
        r#""spiffe://example.org/a//b""#,
        r#""spiffe://example.org/web/""#,
        r#""""#,
    ] {
        assert!(
            matches!(
                validate(&es256(&with_sub(sub))),
                Err(JwtError::BadSubject { .. })
            ),
            "{sub}"
        );
    }
    assert!(matches!(
        validate(&es256(&with_sub(r#""spiffe://example.org""#))),
        Err(JwtError::SubjectWithoutPath { .. })
    ));
}

#[test]
fn audience_rules() {
    let exp = NOW + 300;
    let with_aud = |aud: &str| {
        es256(&format!(
            r#"{{"sub":"spiffe://example.org/web","aud":{aud},"exp":{exp}}}"#
        ))
    };
    let no_aud = es256(&format!(
        r#"{{"sub":"spiffe://example.org/web","exp":{exp}}}"#
    ));
    assert_eq!(validate(&no_aud).unwrap_err(), JwtError::MissingAudience);
    for aud in ["1", "null", "{}", r#"["api",1]"#, "true"] {
        assert_eq!(
            validate(&with_aud(aud)).unwrap_err(),
            JwtError::BadAudience,
            "{aud}"
        );
    }
    for aud in ["[]", r#""""#, r#"["api",""]"#] {
        assert_eq!(
            validate(&with_aud(aud)).unwrap_err(),
            JwtError::EmptyAudience,
            "{aud}"
        );
    }
    for aud in [
        r#""API""#,
        r#"["billing"]"#,
        r#""api ""#,
        r#""spiffe://example.org/api""#,
    ] {
        assert_eq!(
            validate(&with_aud(aud)).unwrap_err(),
            JwtError::AudienceMismatch {
                expected: "api".into()
            },
            "{aud}"
        );
    }
}

#[test]
fn time_rules() {
    let with = |claims: &str| {
        es256(&format!(
            r#"{{"sub":"spiffe://example.org/web","aud":"api",{claims}}}"#
        ))
    };
    assert_eq!(
        validate(&with(r#""iat":1"#)).unwrap_err(),
        JwtError::MissingExpiry
    );
    for (claims, claim) in [
        (format!(r#""exp":{}.0"#, NOW + 10), "exp"),
        (format!(r#""exp":"{}""#, NOW + 10), "exp"),
        ("\"exp\":null".to_owned(), "exp"),
        ("\"exp\":18446744073709551615".to_owned(), "exp"),
        (format!(r#""exp":{},"nbf":1.5"#, NOW + 10), "nbf"),
        (format!(r#""exp":{},"iat":true"#, NOW + 10), "iat"),
    ] {
        assert_eq!(
            validate(&with(&claims)).unwrap_err(),
            JwtError::BadTime { claim },
            "{claims}"
        );
    }
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    // Expired by 1 s, and at the second of `exp` itself (RFC 7519: now MUST be before exp).
    for exp in [NOW - 1, NOW] {
        assert_eq!(
            validate(&with(&format!(r#""exp":{exp}"#))).unwrap_err(),
            JwtError::Expired {
                expiry: at(exp),
                now: now()
            }
        );
    }
    assert!(validate(&with(&format!(r#""exp":{}"#, NOW + 1))).is_ok());
    // Long expired, before 1970 even.
    assert!(matches!(
        validate(&with(r#""exp":-5"#)),
        Err(JwtError::Expired { .. })
    ));
    // nbf and iat: now is fine, one second later is not.
    let exp = NOW + 300;
    assert!(validate(&with(&format!(r#""exp":{exp},"nbf":{NOW},"iat":{NOW}"#))).is_ok());
    assert_eq!(
        validate(&with(&format!(r#""exp":{exp},"nbf":{}"#, NOW + 1))).unwrap_err(),
        JwtError::NotYetValid {
            not_before: at(NOW + 1),
            now: now()
        }
    );
    assert_eq!(
        validate(&with(&format!(r#""exp":{exp},"iat":{}"#, NOW + 1))).unwrap_err(),
        JwtError::IssuedInFuture {
            issued_at: at(NOW + 1),
            now: now()
        }
    );
    // The leeway widens all three alike.
    let lenient = JwtValidator::new("api", algorithms()).with_leeway(Duration::from_secs(2));
    assert_eq!(lenient.leeway(), Duration::from_secs(2));
    assert_eq!(lenient.audience(), "api");
    let check = |claims: &str| lenient.validate(&with(claims), &keys().bundle, now());
    assert!(check(&format!(r#""exp":{}"#, NOW - 1)).is_ok());
    assert!(check(&format!(r#""exp":{}"#, NOW - 2)).is_err());
    assert!(check(&format!(
        r#""exp":{exp},"nbf":{},"iat":{}"#,
        NOW + 2,
        NOW + 2
    ))
    .is_ok());
    assert!(check(&format!(r#""exp":{exp},"nbf":{}"#, NOW + 3)).is_err());
    // A far-future exp neither overflows nor expires.
    assert!(validate(&with(&format!(r#""exp":{}"#, i64::MAX / 4))).is_ok());
}

#[test]
fn keys_come_from_the_trust_domain_of_sub_only() {
    let k = keys();
    let v = JwtValidator::new("api", algorithms());
    // Unknown kid.
    let t = token(&header("ES256", "nope"), &claims(), es(&k.p256));
    assert_eq!(
        validate(&t).unwrap_err(),
        JwtError::UnknownKeyId {
            key_id: "nope".into(),
            trust_domain: td()
        }
    );
    // A kid (and key) of other.org's bundle, for an example.org identity.
    let t = token(&header("ES256", "o256"), &claims(), es(&k.other));
    assert_eq!(
        v.validate(&t, &k.both, now()).unwrap_err(),
        JwtError::UnknownKeyId {
            key_id: "o256".into(),
            trust_domain: td()
        }
    );
    // An other.org identity signed by example.org's key.
    let other_sub = format!(
        r#"{{"sub":"spiffe://other.org/web","aud":"api","exp":{}}}"#,
        NOW + 9
    );
    let t = token(&header("ES256", "k256"), &other_sub, es(&k.p256));
    assert_eq!(
        v.validate(&t, &k.both, now()).unwrap_err(),
        JwtError::UnknownKeyId {
            key_id: "k256".into(),
            trust_domain: other_td()
        }
    );
    assert_eq!(
        v.validate(&t, &k.bundle, now()).unwrap_err(),
        JwtError::NoBundle {
            trust_domain: other_td()
        }
    );
    // Signed by other.org's own key, it is fine there.
    let t = token(&header("ES256", "o256"), &other_sub, es(&k.other));
    assert_eq!(
        v.validate(&t, &k.both, now()).unwrap().id().trust_domain(),
        other_td()
    );
    // A bundle without JWT authorities: the trust domain does not do JWT-SVIDs.
    let empty = SpiffeBundle::new(td());
    assert_eq!(
        v.validate(&es256(&claims()), &empty, now()).unwrap_err(),
        JwtError::NoJwtAuthorities { trust_domain: td() }
    );
    // Through an Arc'd source too.
    let shared: Arc<dyn JwtBundleSource> = Arc::new(k.both.clone());
    assert!(v.validate(&es256(&claims()), &shared, now()).is_ok());
}

#[test]
fn alg_must_fit_the_key() {
    let k = keys();
    let mismatch = |alg: &str, kid: &str, key: &str| {
        let t = token(&header(alg, kid), &claims(), es(&k.p256));
        assert_eq!(
            validate(&t).unwrap_err(),
            JwtError::KeyMismatch {
                alg: alg.parse().unwrap(),
                key: key.into(),
                key_id: kid.into()
            },
            "{alg} {kid}"
        );
    };
    mismatch("RS256", "k256", "EC P-256");
    mismatch("PS256", "k256", "EC P-256");
    mismatch("ES384", "k256", "EC P-256");
    mismatch("ES256", "k384", "EC P-384");
    mismatch("ES512", "k384", "EC P-384");
    mismatch("ES256", "rsa2048", "RSA 2048-bit");
    // RSA under 2048 bits, whatever the signature.
    let t = token(&header("RS256", "rsa1024"), &claims(), |_| vec![0; 128]);
    assert_eq!(
        validate(&t).unwrap_err(),
        JwtError::RsaKeyTooSmall {
            bits: 1024,
            key_id: "rsa1024".into()
        }
    );
}

#[test]
fn the_crypto_provider_decides_what_it_can_verify() {
    // ring has no P-521: ES512 is refused by name, not as a bad signature.
    let t = token(&header("ES512", "p521"), &claims(), |_| vec![1; 132]);
    assert_eq!(
        validate(&t).unwrap_err(),
        JwtError::AlgorithmUnavailable {
            alg: JwtAlgorithm::Es512
        }
    );
    // A provider list without RSA-PSS refuses PS256 the same way.
    static NO_PSS: &[&dyn SignatureVerificationAlgorithm] = &[
        webpki::ring::ECDSA_P256_SHA256,
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    ];
    let t = token(
        &header("PS256", "rsa2048"),
        &claims(),
        rsa(&ring::signature::RSA_PSS_SHA256),
    );
    assert_eq!(
        JwtValidator::new("api", NO_PSS)
            .validate(&t, &keys().bundle, now())
            .unwrap_err(),
        JwtError::AlgorithmUnavailable {
            alg: JwtAlgorithm::Ps256
        }
    );
    assert!(JwtValidator::new("api", NO_PSS)
        .validate(&es256(&claims()), &keys().bundle, now())
        .is_ok());
}

#[test]
fn signatures() {
    let k = keys();
    let good = es256(&claims());
    // The DER form of an ES256 signature is not the JWS form.
    let der = token(&header("ES256", "k256"), &claims(), |m| {
        k.p256.sign(m).unwrap()
    });
    assert!(matches!(
        validate(&der),
        Err(JwtError::SignatureLength {
            alg: JwtAlgorithm::Es256,
            expected: 64,
            ..
        })
    ));
    let empty = token(&header("ES256", "k256"), &claims(), |_| Vec::new());
    assert!(matches!(
        validate(&empty),
        Err(JwtError::SignatureLength { len: 0, .. })
    ));
    // Another key's signature; a changed claim under the original signature.
    let other = token(&header("ES256", "k256"), &claims(), es(&k.other));
    assert_eq!(
        validate(&other).unwrap_err(),
        JwtError::BadSignature {
            key_id: "k256".into()
        }
    );
    let parts: Vec<&str> = good.split('.').collect();
    let admin = claims().replace("/web", "/admin");
    let forged = format!("{}.{}.{}", parts[0], b64(admin.as_bytes()), parts[2]);
    assert!(matches!(
        validate(&forged),
        Err(JwtError::BadSignature { .. })
    ));
    // The same header and claims re-encoded (whitespace) are other bytes: not signed.
    let spaced = format!(
        "{}.{}.{}",
        b64(header("ES256", "k256").replace(',', ", ").as_bytes()),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        validate(&spaced),
        Err(JwtError::BadSignature { .. })
    ));
}

#[test]
fn parse_insecure_checks_the_format_only() {
    let k = keys();
    let forged = token(&header("ES256", "k256"), &claims(), es(&k.other));
    let svid = JwtSvid::parse_insecure(&forged).unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
    assert_eq!(svid.token(), forged);
    let expired = es256(&format!(
        r#"{{"sub":"spiffe://example.org/web","aud":"x","exp":1}}"#
    ));
    assert!(JwtSvid::parse_insecure(&expired).is_ok());
    assert_eq!(
        JwtSvid::parse_insecure(&token(r#"{"alg":"none"}"#, &claims(), |_| Vec::new()))
            .unwrap_err(),
        JwtError::UnsupportedAlgorithm {
            alg: "\"none\"".into()
        }
    );
    assert_eq!(
        JwtSvid::parse_insecure(&token(&header("ES256", "k"), "{}", |_| vec![0])).unwrap_err(),
        JwtError::MissingSubject
    );
}

#[test]
fn debug_never_shows_the_token() {
    let svid = validate(&es256(&claims())).unwrap();
    let shown = format!("{svid:?}");
    assert!(!shown.contains(svid.token()));
    for part in svid.token().split('.') {
        assert!(!shown.contains(part), "{shown}");
    }
    assert!(shown.contains("spiffe://example.org/web"));
    assert!(shown.contains("[redacted]"));
    let error = validate(&token(
        &header("ES256", "k256"),
        &claims(),
        es(&keys().other),
    ))
    .unwrap_err();
    assert!(!error.to_string().contains(&b64(b"{")), "{error}");
}

#[test]
fn every_message_cites_its_rule() {
    let samples = [
        validate("a").unwrap_err(),
        validate(&"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err(),
        validate("{}").unwrap_err(),
        validate("a.b.c=").unwrap_err(),
        validate(&token(r#"{"alg":"none"}"#, "{}", |_| Vec::new())).unwrap_err(),
        validate(&token(
            r#"{"alg":"ES256","kid":"k256","crit":[]}"#,
            "{}",
            |_| Vec::new(),
        ))
        .unwrap_err(),
        validate(&es256(r#"{"sub":"spiffe://example.org/w","aud":"api"}"#)).unwrap_err(),
        validate(&es256(&format!(
            r#"{{"sub":"spiffe://example.org/w","aud":"api","exp":{NOW}}}"#
        )))
        .unwrap_err(),
    ];
    for e in samples {
        let text = e.to_string();
        assert!(
            text.contains("RFC 75") || text.contains("JWT-SVID") || text.contains("limit"),
            "{text}"
        );
    }
}

// ---- minting ----

fn authority() -> Authority {
    Authority::new_root(td(), Duration::from_secs(3600), KeyType::P256)
        .unwrap()
        .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap())
}

fn web() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/web").unwrap()
}

#[test]
fn mint_then_validate_es256_and_es384() {
    for key_type in [KeyType::P256, KeyType::P384] {
        let ca = Authority::new_root(td(), Duration::from_secs(3600), KeyType::P256)
            .unwrap()
            .with_jwt_key(JwtKey::generate(key_type).unwrap());
        let minted = ca
            .mint_jwt_svid(&web(), &["api"], Duration::from_secs(60))
            .unwrap();
        let bundle = SpiffeBundle::parse(td(), ca.spiffe_bundle().to_json().as_bytes()).unwrap();
        let now = SystemTime::now();
        let svid = JwtValidator::new("api", algorithms())
            .validate(minted.token(), &bundle, now)
            .unwrap();
        assert_eq!(svid.id(), &web());
        assert_eq!(svid.token(), minted.token());
        assert_eq!(svid.key_id(), ca.jwt_keys()[0].key_id());
        let expected = match key_type {
            KeyType::P256 => JwtAlgorithm::Es256,
            _ => JwtAlgorithm::Es384,
        };
        assert_eq!(svid.algorithm(), expected);
        // exp is now + ttl in whole seconds; iat is now.
        let iat = svid.issued_at().unwrap();
        assert_eq!(
            svid.expiry().duration_since(iat).unwrap(),
            Duration::from_secs(60)
        );
        assert!(iat <= now);
    }
}

#[test]
fn minted_tokens_have_exactly_the_documented_shape() {
    let ca = authority();
    let svid = ca
        .mint_jwt_svid(&web(), &["api"], Duration::from_secs(60))
        .unwrap();
    let parts: Vec<&str> = svid.token().split('.').collect();
    let header = Base64UrlUnpadded::decode_vec(parts[0]).unwrap();
    let kid = ca.jwt_keys()[0].key_id();
    assert_eq!(
        String::from_utf8(header).unwrap(),
        format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#)
    );
    assert_eq!(kid.len(), 22);
    assert_eq!(Base64UrlUnpadded::decode_vec(kid).unwrap().len(), 16);
    assert_eq!(Base64UrlUnpadded::decode_vec(parts[2]).unwrap().len(), 64);
    let keys: Vec<&String> = svid.claims().keys().collect();
    assert_eq!(keys, ["aud", "exp", "iat", "sub"]);
    assert_eq!(svid.claims()["aud"], "api");
    let two = ca
        .mint_jwt_svid(&web(), &["a", "b"], Duration::from_secs(60))
        .unwrap();
    assert_eq!(two.claims()["aud"], serde_json::json!(["a", "b"]));
    // The default TTL is SPIRE's 5 minutes.
    let default = ca
        .mint_jwt_svid_for(&JwtSvidRequest::new(web(), ["api"]))
        .unwrap();
    let life = default
        .expiry()
        .duration_since(default.issued_at().unwrap())
        .unwrap();
    assert_eq!(life, crate::DEFAULT_JWT_SVID_TTL);
    assert_eq!(life, Duration::from_secs(300));
}

#[test]
fn minting_refusals() {
    let ca = authority();
    let ttl = Duration::from_secs(60);
    assert!(matches!(
        ca.mint_jwt_svid(
            &SpiffeId::new("spiffe://other.org/web").unwrap(),
            &["api"],
            ttl
        ),
        Err(CaError::IdOutsideTrustDomain { .. })
    ));
    assert!(matches!(
        ca.mint_jwt_svid(&td().id(), &["api"], ttl),
        Err(CaError::PathlessId { .. })
    ));
    assert_eq!(
        ca.mint_jwt_svid(&web(), &[], ttl).unwrap_err(),
        CaError::EmptyAudience
    );
    assert_eq!(
        ca.mint_jwt_svid(&web(), &["a", ""], ttl).unwrap_err(),
        CaError::EmptyAudience
    );
    assert_eq!(
        ca.mint_jwt_svid(&web(), &["api"], Duration::from_millis(999))
            .unwrap_err(),
        CaError::JwtTtlTooShort {
            ttl: Duration::from_millis(999),
            min: Duration::from_secs(1)
        }
    );
    assert!(ca
        .mint_jwt_svid(&web(), &["api"], Duration::from_secs(1))
        .is_ok());
    let bare = Authority::new_root(td(), Duration::from_secs(3600), KeyType::P256).unwrap();
    assert_eq!(
        bare.mint_jwt_svid(&web(), &["api"], ttl).unwrap_err(),
        CaError::NoJwtKey
    );
    assert_eq!(
        ca.mint_jwt_svid_for(&JwtSvidRequest::new(web(), ["api"]).key_id("nope"))
            .unwrap_err(),
        CaError::UnknownJwtKey {
            key_id: "nope".into()
        }
    );
    let signer = Arc::new(KeyPair::generate(KeyType::P256).unwrap());
    assert_eq!(JwtKey::new("", signer).unwrap_err(), CaError::EmptyJwtKeyId);
    // The token's life is capped at the authority's.
    let short = Authority::new_root(td(), Duration::from_secs(30), KeyType::P256)
        .unwrap()
        .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap());
    let svid = short
        .mint_jwt_svid(&web(), &["api"], Duration::from_secs(3600))
        .unwrap();
    assert!(svid.expiry() <= short.not_after());
}

#[test]
fn rotation_overlap_every_published_key_validates() {
    let old = JwtKey::generate(KeyType::P256).unwrap();
    let new = JwtKey::generate(KeyType::P384).unwrap();
    let ca = authority()
        .with_jwt_key(old.clone())
        .with_jwt_key(new.clone());
    assert_eq!(ca.jwt_keys().len(), 3);
    let bundle = ca.spiffe_bundle();
    assert_eq!(bundle.jwt_authorities().len(), 3);
    assert_eq!(bundle.x509_authorities().len(), 1);
    let v = JwtValidator::new("api", algorithms());
    // The newest key mints by default; an older one when named.
    let by_new = ca
        .mint_jwt_svid(&web(), &["api"], Duration::from_secs(60))
        .unwrap();
    assert_eq!(by_new.key_id(), new.key_id());
    let by_old = ca
        .mint_jwt_svid_for(&JwtSvidRequest::new(web(), ["api"]).key_id(old.key_id()))
        .unwrap();
    assert_eq!(by_old.key_id(), old.key_id());
    for svid in [&by_new, &by_old] {
        assert!(v.validate(svid.token(), &bundle, SystemTime::now()).is_ok());
    }
    // Retired: its tokens no longer validate against the new bundle.
    let mut ca = ca;
    assert!(ca.remove_jwt_key(old.key_id()).is_some());
    assert!(matches!(
        v.validate(by_old.token(), &ca.spiffe_bundle(), SystemTime::now()),
        Err(JwtError::UnknownKeyId { .. })
    ));
    // Adding a key with a held ID replaces it.
    let same_id = JwtKey::new(
        new.key_id(),
        Arc::new(KeyPair::generate(KeyType::P256).unwrap()),
    )
    .unwrap();
    let ca = ca.with_jwt_key(same_id);
    assert_eq!(ca.jwt_keys().len(), 2);
}

#[test]
fn jwt_keys_are_never_shown() {
    let key = JwtKey::generate(KeyType::P256).unwrap();
    let shown = format!("{key:?}");
    assert!(shown.contains("[redacted]") && shown.contains(key.key_id()));
    let ca = authority();
    assert!(format!("{ca:?}").contains("jwt_keys"));
}

#[cfg(feature = "aws-lc-rs")]
#[test]
fn es512_with_a_provider_that_has_p521() {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P521_SHA512_FIXED_SIGNING};
    static P521: &[&dyn SignatureVerificationAlgorithm] = &[webpki::aws_lc_rs::ECDSA_P521_SHA512];
    let der = &crate::pem::parse(include_bytes!("../../tests/data/jwt/p521.key")).unwrap()[0].der;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, der).unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let t = token(&header("ES512", "p521"), &claims(), |m| {
        key.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let svid = JwtValidator::new("api", P521)
        .validate(&t, &keys().bundle, now())
        .unwrap();
    assert_eq!(svid.algorithm(), JwtAlgorithm::Es512);
}
