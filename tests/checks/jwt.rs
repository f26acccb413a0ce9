//! Invariants of JWT-SVID validation on arbitrary input, shared by the `jwt` fuzz target and
//! the corpus replay (tests/fuzz_corpus.rs):
//!
//! - no input panics;
//! - a token the validator accepts (against the fixed bundle `tests/data/jwt/fuzz-bundle.json`
//!   for example.org, audience `fuzz`, at 2030-01-01) carries a signature that verifies, over
//!   **exactly its first two parts**, with a key of that bundle of the type its `alg` names.
//!   This is checked independently of meshid: the bundle is read with `serde_json`, and the
//!   signature verified with ring's fixed-width `R || S` ECDSA and its RSA verifiers from
//!   the JWK's `n` and `e` (meshid converts to DER and verifies through webpki's algorithms);
//! - what the validator accepts, `JwtSvid::parse_insecure` reads the same way; what
//!   `parse_insecure` refuses, the validator refuses with the same error.

#![allow(dead_code)] // `seeds` and `accepts` serve the corpus tests, not the fuzz target.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use meshid::jwt::{JwtSvid, JwtValidator};
use meshid::{SpiffeBundle, TrustDomain};
use ring::signature as s;
use serde_json::Value;

const BUNDLE: &[u8] = include_bytes!("../data/jwt/fuzz-bundle.json");

/// The audience the validator identifies with.
pub const AUDIENCE: &str = "fuzz";

/// The validation time: 2030-01-01T00:00:00Z.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn bundle() -> &'static SpiffeBundle {
    static B: OnceLock<SpiffeBundle> = OnceLock::new();
    B.get_or_init(|| SpiffeBundle::parse(TrustDomain::new("example.org").unwrap(), BUNDLE).unwrap())
}

/// The validator's verdict, and the invariants checked on it.
pub fn check(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let validator = JwtValidator::new(AUDIENCE, webpki::ALL_VERIFICATION_ALGS);
    let validated = validator.validate(&token, bundle(), now());
    let parsed = JwtSvid::parse_insecure(&token);
    match (&validated, &parsed) {
        (Ok(svid), Ok(read)) => {
            assert_eq!(svid.id(), read.id());
            assert_eq!(svid.claims(), read.claims());
            assert_eq!(svid.token(), token);
            assert!(svid.audience().iter().any(|a| a == AUDIENCE));
            assert!(svid.expiry() > now());
            assert!(
                signed_by_a_published_key(&token),
                "accepted without a valid signature over its first two parts: {token}"
            );
        }
        (Ok(_), Err(e)) => panic!("validated, but parse_insecure refuses: {e}"),
        (Err(v), Err(p)) => assert_eq!(v, p, "validate and parse_insecure disagree"),
        (Err(_), Ok(_)) => {}
    }
}

/// Whether `token` is accepted (for the seed tests).
pub fn accepts(token: &[u8]) -> bool {
    let token = String::from_utf8_lossy(token);
    JwtValidator::new(AUDIENCE, webpki::ALL_VERIFICATION_ALGS)
        .validate(&token, bundle(), now())
        .is_ok()
}

/// The independent check: split at the dots, decode, find the JWK by `kid` in the raw
/// bundle JSON, verify with ring.
pub fn signed_by_a_published_key(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return false;
    };
    let signing_input = format!("{header}.{payload}");
    let (Ok(header), Ok(signature)) = (
        Base64UrlUnpadded::decode_vec(header),
        Base64UrlUnpadded::decode_vec(signature),
    ) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<Value>(&header) else {
        return false;
    };
    let (Some(alg), Some(kid)) = (header["alg"].as_str(), header["kid"].as_str()) else {
        return false;
    };
    let doc: Value = serde_json::from_slice(BUNDLE).unwrap();
    let Some(jwk) = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid && k["use"] == "jwt-svid")
    else {
        return false;
    };
    let member = |name: &str| {
        jwk[name]
            .as_str()
            .and_then(|v| Base64UrlUnpadded::decode_vec(v).ok())
            .unwrap_or_default()
    };
    let message = signing_input.as_bytes();
    match (alg, jwk["kty"].as_str(), jwk["crv"].as_str()) {
        ("ES256", Some("EC"), Some("P-256")) | ("ES384", Some("EC"), Some("P-384")) => {
            let algorithm: &dyn s::VerificationAlgorithm = if alg == "ES256" {
                &s::ECDSA_P256_SHA256_FIXED
            } else {
                &s::ECDSA_P384_SHA384_FIXED
            };
            let point = [&[4u8][..], &member("x"), &member("y")].concat();
            s::UnparsedPublicKey::new(algorithm, point)
                .verify(message, &signature)
                .is_ok()
        }
        (rs_or_ps, Some("RSA"), _) => {
            let params: &s::RsaParameters = match rs_or_ps {
                "RS256" => &s::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &s::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &s::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &s::RSA_PSS_2048_8192_SHA256,
                "PS384" => &s::RSA_PSS_2048_8192_SHA384,
                "PS512" => &s::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            let key = s::RsaPublicKeyComponents {
                n: member("n"),
                e: member("e"),
            };
            key.verify(params, message, &signature).is_ok()
        }
        _ => false,
    }
}

/// The seed corpus: valid tokens of every key of the bundle, and hostile ones around them.
/// ECDSA signatures are randomized, so each call gives new bytes; the corpus holds one run.
#[allow(clippy::too_many_lines)] // one table of cases
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use meshid::{KeyPair, Signer};

    let b64 = |bytes: &[u8]| Base64UrlUnpadded::encode_string(bytes);
    let p256 = KeyPair::from_pkcs8_pem(include_bytes!("../data/jwt/fuzz-p256.key")).unwrap();
    let p384 = KeyPair::from_pkcs8_pem(include_bytes!("../data/jwt/fuzz-p384.key")).unwrap();
    let rsa_pem = std::str::from_utf8(include_bytes!("../data/jwt/rsa2048.key")).unwrap();
    let rsa_der = Base64Pem::decode(rsa_pem);
    let rsa = s::RsaKeyPair::from_pkcs8(&rsa_der).unwrap();
    let es = |key: &KeyPair, width: usize, input: &[u8]| {
        let der = key.sign(input).unwrap();
        ecdsa_der_to_raw(&der, width)
    };
    let rs = |padding: &'static dyn s::RsaEncoding, input: &[u8]| {
        let mut sig = vec![0; rsa.public().modulus_len()];
        rsa.sign(padding, &ring::rand::SystemRandom::new(), input, &mut sig)
            .unwrap();
        sig
    };
    let sign = |alg: &str, input: &[u8]| -> Vec<u8> {
        match alg {
            "ES256" => es(&p256, 32, input),
            "ES384" => es(&p384, 48, input),
            "RS256" => rs(&s::RSA_PKCS1_SHA256, input),
            "RS512" => rs(&s::RSA_PKCS1_SHA512, input),
            "PS256" => rs(&s::RSA_PSS_SHA256, input),
            "PS384" => rs(&s::RSA_PSS_SHA384, input),
            _ => Vec::new(),
        }
    };
    // (name, alg used to sign, header, claims)
    let exp = 4_102_444_800u64; // 2100-01-01
    let good =
        format!(r#"{{"aud":"fuzz","exp":{exp},"iat":1893455000,"sub":"spiffe://example.org/w"}}"#);
    let with = |extra: &str| {
        format!(r#"{{"aud":"fuzz","exp":{exp},"sub":"spiffe://example.org/w"{extra}}}"#)
    };
    let h = |alg: &str, kid: &str| format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"JWT"}}"#);
    let cases: Vec<(&str, &str, String, String)> = vec![
        (
            "valid-es256",
            "ES256",
            h("ES256", "fuzz-p256"),
            good.clone(),
        ),
        (
            "valid-es384",
            "ES384",
            h("ES384", "fuzz-p384"),
            good.clone(),
        ),
        ("valid-rs256", "RS256", h("RS256", "rsa2048"), good.clone()),
        ("valid-rs512", "RS512", h("RS512", "rsa2048"), good.clone()),
        ("valid-ps256", "PS256", h("PS256", "rsa2048"), good.clone()),
        ("valid-ps384", "PS384", h("PS384", "rsa2048"), good.clone()),
        (
            "valid-jose-aud-array",
            "ES256",
            r#"{"alg":"ES256","kid":"fuzz-p256","typ":"JOSE"}"#.into(),
            with(r#","aud":["x","fuzz"],"nbf":1"#).replace(r#""aud":"fuzz","#, ""),
        ),
        ("alg-none", "", r#"{"alg":"none"}"#.into(), good.clone()),
        ("alg-hs256", "", h("HS256", "fuzz-p256"), good.clone()),
        (
            "alg-rs256-over-ec",
            "ES256",
            h("RS256", "fuzz-p256"),
            good.clone(),
        ),
        (
            "alg-es384-over-p256",
            "ES256",
            h("ES384", "fuzz-p256"),
            good.clone(),
        ),
        (
            "header-crit",
            "ES256",
            r#"{"alg":"ES256","crit":["exp"],"kid":"fuzz-p256"}"#.into(),
            good.clone(),
        ),
        (
            "header-jwk",
            "ES256",
            r#"{"alg":"ES256","jwk":{"kty":"EC"},"kid":"fuzz-p256"}"#.into(),
            good.clone(),
        ),
        (
            "header-dup-alg",
            "ES256",
            r#"{"alg":"ES256","kid":"fuzz-p256","alg":"none"}"#.into(),
            good.clone(),
        ),
        (
            "claims-dup-sub",
            "ES256",
            h("ES256", "fuzz-p256"),
            with(r#","sub":"spiffe://example.org/admin""#),
        ),
        ("kid-unknown", "ES256", h("ES256", "nope"), good.clone()),
        (
            "sub-other-td",
            "ES256",
            h("ES256", "fuzz-p256"),
            good.replace("example.org", "other.org"),
        ),
        (
            "aud-mismatch",
            "ES256",
            h("ES256", "fuzz-p256"),
            good.replace("\"fuzz\"", "\"other\""),
        ),
        (
            "expired",
            "ES256",
            h("ES256", "fuzz-p256"),
            good.replace(&exp.to_string(), "1893455999"),
        ),
        (
            "nbf-future",
            "ES256",
            h("ES256", "fuzz-p256"),
            with(r#","nbf":1893456001"#),
        ),
        (
            "iat-future",
            "ES256",
            h("ES256", "fuzz-p256"),
            with(r#","iat":1893456001"#),
        ),
        (
            "missing-exp",
            "ES256",
            h("ES256", "fuzz-p256"),
            r#"{"aud":"fuzz","sub":"spiffe://example.org/w"}"#.into(),
        ),
        (
            "exp-float",
            "ES256",
            h("ES256", "fuzz-p256"),
            with("").replace(&exp.to_string(), "4102444800.5"),
        ),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = cases
        .into_iter()
        .map(|(name, alg, header, claims)| {
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let signature = sign(alg, input.as_bytes());
            (
                format!("seed-{name}"),
                format!("{input}.{}", b64(&signature)).into_bytes(),
            )
        })
        .collect();
    // Shapes around a valid token.
    let valid = String::from_utf8(seeds[0].1.clone()).unwrap();
    let parts: Vec<&str> = valid.split('.').collect();
    let json = format!(
        r#"{{"payload":"{}","protected":"{}","signature":"{}"}}"#,
        parts[1], parts[0], parts[2]
    );
    for (name, text) in [
        ("two-parts", format!("{}.{}", parts[0], parts[1])),
        ("four-parts", format!("{valid}.{}", parts[2])),
        ("padded", format!("{valid}=")),
        ("json-serialization", json),
        ("der-signature", {
            let input = format!("{}.{}", parts[0], parts[1]);
            format!("{input}.{}", b64(&p256.sign(input.as_bytes()).unwrap()))
        }),
    ] {
        seeds.push((format!("seed-{name}"), text.into_bytes()));
    }
    seeds
}

/// PEM to DER, for the one RSA key (meshid's PEM reader is crate-private).
struct Base64Pem;

impl Base64Pem {
    fn decode(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64ct::Base64::decode_vec(&body).unwrap()
    }
}

/// A DER `Ecdsa-Sig-Value` as `R || S` (for signing seeds with meshid's DER signers).
fn ecdsa_der_to_raw(der: &[u8], width: usize) -> Vec<u8> {
    // SEQUENCE { INTEGER r, INTEGER s }; lengths here are short-form.
    let mut out = Vec::with_capacity(2 * width);
    let mut rest = &der[2..];
    for _ in 0..2 {
        let len = usize::from(rest[1]);
        let value = &rest[2..2 + len];
        let value = &value[value.iter().position(|&b| b != 0).unwrap_or(value.len())..];
        out.extend(std::iter::repeat_n(0, width - value.len()));
        out.extend_from_slice(value);
        rest = &rest[2 + len..];
    }
    out
}
