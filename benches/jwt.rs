//! JWT-SVID validation against the `spiffe` crate 0.19 in the same run:
//! `cargo bench --features ca,ring --bench jwt`. Compare lines within a group (ratios);
//! absolute times drift on shared machines.
//!
//! One token per group, minted by meshid, validated against one bundle (meshid's bundle
//! JSON: parsed by meshid as a `SpiffeBundle`, its `jwt-svid` entries read by the `spiffe`
//! crate as a JWKS), signature and every check included, audience `api`:
//!
//! - `validate_es256`, `validate_es384`: `meshid_ring` is `JwtValidator` with
//!   `ring_algorithms()`; `spiffe_crate` is `spiffe::JwtSvid::parse_and_validate`
//!   (feature `jwt-verify-rust-crypto`: `jsonwebtoken` on RustCrypto's p256/p384 0.13).
//!   Their crypto differs, so two more lines separate the work around the signature from
//!   the signature: `meshid_rustcrypto` is the same meshid validator handed a
//!   verification algorithm built on RustCrypto's p256/p384 (0.14, the versions meshid
//!   depends on; the key decoded per call, as `jsonwebtoken` does), and `bare_ring` /
//!   `bare_rustcrypto` verify the token's signature alone, nothing parsed.
//! - `parse_insecure`: the format checks alone, no signature, no key: meshid
//!   `JwtSvid::parse_insecure` vs `spiffe::JwtSvid::parse_insecure` (which checks fewer
//!   rules: it lets extra JOSE headers and duplicate private claims through).
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::time::{Duration, SystemTime};

use base64ct::{Base64UrlUnpadded, Encoding};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use meshid::jwt::{JwtSvid, JwtValidator};
use meshid::{Authority, JwtKey, JwtSvidRequest, KeyType, SpiffeBundle, SpiffeId, TrustDomain};
use rustls_pki_types::SignatureVerificationAlgorithm;
use rustls_pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature};
use serde_json::Value;

const TD: &str = "example.org";
const AUDIENCE: &str = "api";
const DAY: Duration = Duration::from_secs(86_400);

/// ECDSA verification on RustCrypto, as a `rustls_pki_types` algorithm: the public key is
/// an uncompressed SEC1 point, the signature DER (what meshid hands any algorithm).
#[derive(Debug)]
enum RustCryptoEcdsa {
    P256,
    P384,
}

impl SignatureVerificationAlgorithm for RustCryptoEcdsa {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use p256::ecdsa::signature::Verifier as _;
        match self {
            Self::P256 => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
                key.verify(message, &sig).map_err(|_| InvalidSignature)
            }
            Self::P384 => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let sig =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| InvalidSignature)?;
                key.verify(message, &sig).map_err(|_| InvalidSignature)
            }
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        match self {
            Self::P256 => alg_id::ECDSA_P256,
            Self::P384 => alg_id::ECDSA_P384,
        }
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self {
            Self::P256 => alg_id::ECDSA_SHA256,
            Self::P384 => alg_id::ECDSA_SHA384,
        }
    }
}

static RUSTCRYPTO_P256: RustCryptoEcdsa = RustCryptoEcdsa::P256;
static RUSTCRYPTO_P384: RustCryptoEcdsa = RustCryptoEcdsa::P384;
static RUSTCRYPTO: &[&dyn SignatureVerificationAlgorithm] = &[&RUSTCRYPTO_P256, &RUSTCRYPTO_P384];

/// The `jwt-svid` entries of a SPIFFE bundle document, as a JWKS (what the `spiffe` crate's
/// `JwtBundle::from_jwt_authorities` reads: it refuses entries without `kid`).
fn jwt_jwks(bundle_json: &str) -> String {
    let doc: Value = serde_json::from_str(bundle_json).unwrap();
    let keys: Vec<Value> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "jwt-svid")
        .cloned()
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// The token's uncompressed public point and `R || S` signature, for the bare lines.
fn point_and_signature(bundle: &SpiffeBundle, token: &JwtSvid) -> (Vec<u8>, Vec<u8>) {
    let jwk: Value =
        serde_json::from_str(&bundle.jwt_authority(token.key_id()).unwrap().to_json()).unwrap();
    let coord = |c: &str| Base64UrlUnpadded::decode_vec(jwk[c].as_str().unwrap()).unwrap();
    let mut point = vec![4u8];
    point.extend(coord("x"));
    point.extend(coord("y"));
    let sig = token.token().rsplit('.').next().unwrap();
    (point, Base64UrlUnpadded::decode_vec(sig).unwrap())
}

fn validate(c: &mut Criterion) {
    let td = TrustDomain::new(TD).unwrap();
    let id = SpiffeId::new("spiffe://example.org/ns/default/sa/web").unwrap();
    let es256 = JwtKey::generate(KeyType::P256).unwrap();
    let es384 = JwtKey::generate(KeyType::P384).unwrap();
    let keys = [
        ("validate_es256", es256.key_id().to_owned(), false),
        ("validate_es384", es384.key_id().to_owned(), true),
    ];
    let ca = Authority::new_root(td.clone(), DAY, KeyType::P256)
        .unwrap()
        .with_jwt_key(es256)
        .with_jwt_key(es384);
    let json = ca.spiffe_bundle().to_json();
    let ours = SpiffeBundle::parse(td, json.as_bytes()).unwrap();
    let theirs: spiffe::JwtBundleSet = [spiffe::JwtBundle::from_jwt_authorities(
        spiffe::TrustDomain::new(TD).unwrap(),
        jwt_jwks(&json).as_bytes(),
    )
    .unwrap()]
    .into_iter()
    .collect();
    let meshid_ring = JwtValidator::new(AUDIENCE, meshid::ring_algorithms());
    let meshid_rustcrypto = JwtValidator::new(AUDIENCE, RUSTCRYPTO);

    for (group, kid, p384) in keys {
        // An hour: longer than any run, so every call validates a live token.
        let request = JwtSvidRequest::new(id.clone(), [AUDIENCE])
            .key_id(kid)
            .ttl(Duration::from_secs(3600));
        let svid = ca.mint_jwt_svid_for(&request).unwrap();
        let token = svid.token();
        // Both accept it, before anything is timed.
        meshid_ring
            .validate(token, &ours, SystemTime::now())
            .unwrap();
        meshid_rustcrypto
            .validate(token, &ours, SystemTime::now())
            .unwrap();
        spiffe::JwtSvid::parse_and_validate(token, &theirs, &[AUDIENCE]).unwrap();

        let (point, raw_sig) = point_and_signature(&ours, &svid);
        let signing_input = &token[..token.rfind('.').unwrap()];
        let ring_alg = if p384 {
            &ring::signature::ECDSA_P384_SHA384_FIXED
        } else {
            &ring::signature::ECDSA_P256_SHA256_FIXED
        };
        let ring_key = ring::signature::UnparsedPublicKey::new(ring_alg, &point);

        let mut g = c.benchmark_group(group);
        g.bench_function("meshid_ring", |b| {
            b.iter(|| {
                meshid_ring
                    .validate(black_box(token), &ours, SystemTime::now())
                    .unwrap()
            });
        });
        g.bench_function("spiffe_crate", |b| {
            b.iter(|| {
                spiffe::JwtSvid::parse_and_validate(black_box(token), &theirs, &[AUDIENCE]).unwrap()
            });
        });
        g.bench_function("meshid_rustcrypto", |b| {
            b.iter(|| {
                meshid_rustcrypto
                    .validate(black_box(token), &ours, SystemTime::now())
                    .unwrap()
            });
        });
        g.bench_function("bare_ring", |b| {
            b.iter(|| {
                ring_key
                    .verify(black_box(signing_input.as_bytes()), &raw_sig)
                    .unwrap();
            });
        });
        g.bench_function("bare_rustcrypto", |b| {
            use p256::ecdsa::signature::Verifier as _;
            let message = signing_input.as_bytes();
            if p384 {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                let sig = p384::ecdsa::Signature::from_slice(&raw_sig).unwrap();
                b.iter(|| key.verify(black_box(message), &sig).unwrap());
            } else {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                let sig = p256::ecdsa::Signature::from_slice(&raw_sig).unwrap();
                b.iter(|| key.verify(black_box(message), &sig).unwrap());
            }
        });
        g.finish();
    }
}

fn parse(c: &mut Criterion) {
    let id = SpiffeId::new("spiffe://example.org/ns/default/sa/web").unwrap();
    let ca = Authority::new_root(TrustDomain::new(TD).unwrap(), DAY, KeyType::P256)
        .unwrap()
        .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap());
    let svid = ca
        .mint_jwt_svid(&id, &[AUDIENCE], Duration::from_secs(3600))
        .unwrap();
    let token = svid.token();
    let mut g = c.benchmark_group("parse_insecure");
    g.bench_function("meshid", |b| {
        b.iter(|| JwtSvid::parse_insecure(black_box(token)).unwrap());
    });
    g.bench_function("spiffe_crate", |b| {
        b.iter(|| spiffe::JwtSvid::parse_insecure(black_box(token)).unwrap());
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = validate, parse
}
criterion_main!(benches);
