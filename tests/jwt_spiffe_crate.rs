//! The `spiffe` crate 0.19 (feature `jwt-verify-rust-crypto`: `jsonwebtoken` on RustCrypto)
//! as an independent JWT-SVID validator, both ways.
//!
//! 1. It validates meshid's ES256 and ES384 tokens against meshid's bundle, reporting the
//!    same SPIFFE ID, audience, expiry and key ID as meshid, and refuses a wrong audience,
//!    a key ID the bundle does not publish and a token signed by another key under a
//!    published key ID.
//! 2. The converse, on tokens crafted here (signed with `ring` directly, not by meshid's
//!    encoder): every token the `spiffe` crate accepts, meshid accepts with the same
//!    reading, except the rows marked [`Verdict::MeshidStricter`], where meshid refuses
//!    by a rule the `spiffe` crate does not apply and the test names the variant.
//!
//! Found on the way, asserted in [`spiffe_crate_reads_meshid_bundle_as_jwks`]: the
//! `spiffe` crate's `JwtBundle::from_jwt_authorities` reads a JWKS whose every key has a
//! `kid`, so it refuses a whole SPIFFE bundle document (its `x509-svid` entries carry no
//! `kid`). It is handed the bundle's `jwt-svid` entries as a JWKS, as the Workload API's
//! `FetchJWTBundles` hands them out.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use meshid::jwt::{JwtError, JwtValidator};
use meshid::{
    Authority, JwtKey, JwtSvidRequest, KeyPair, KeyType, SpiffeBundle, SpiffeId, TrustDomain,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::Value;
use spiffe::{JwtBundle, JwtBundleError, JwtBundleSet, JwtSvidError, JwtVerificationErrorKind};

const DAY: Duration = Duration::from_secs(86_400);
const TD: &str = "example.org";
const ID: &str = "spiffe://example.org/ns/default/sa/web";
const CRAFTED_KID: &str = "crafted-p256";

/// A trust domain with three JWT keys (meshid's ES256 and ES384, and one whose private key
/// the test also holds in ring, to sign tokens meshid's encoder would never write), its
/// bundle as meshid parses it, and the same bundle as the `spiffe` crate reads it.
struct Fixture {
    ca: Authority,
    es256: String,
    es384: String,
    crafter: EcdsaKeyPair,
    ours: SpiffeBundle,
    theirs: JwtBundleSet,
}

fn td() -> TrustDomain {
    TrustDomain::new(TD).unwrap()
}

fn id() -> SpiffeId {
    SpiffeId::new(ID).unwrap()
}

/// The `jwt-svid` entries of a SPIFFE bundle document, as a JWKS.
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

fn their_bundles(bundle_json: &str) -> JwtBundleSet {
    let trust_domain = spiffe::TrustDomain::new(TD).unwrap();
    let bundle = JwtBundle::from_jwt_authorities(trust_domain, jwt_jwks(bundle_json).as_bytes())
        .expect("the spiffe crate reads the jwt-svid entries of meshid's bundle");
    [bundle].into_iter().collect()
}

fn fixture() -> Fixture {
    let es256 = JwtKey::generate(KeyType::P256).unwrap();
    let es384 = JwtKey::generate(KeyType::P384).unwrap();
    let pair = KeyPair::generate(KeyType::P256).unwrap();
    let crafter = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &pair.to_pkcs8_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    let (es256_kid, es384_kid) = (es256.key_id().to_owned(), es384.key_id().to_owned());
    let ca = Authority::new_root(td(), DAY, KeyType::P256)
        .unwrap()
        .with_jwt_key(es256)
        .with_jwt_key(es384)
        .with_jwt_key(JwtKey::new(CRAFTED_KID, Arc::new(pair)).unwrap());
    let json = ca.spiffe_bundle().to_json();
    Fixture {
        ours: SpiffeBundle::parse(td(), json.as_bytes()).unwrap(),
        theirs: their_bundles(&json),
        ca,
        es256: es256_kid,
        es384: es384_kid,
        crafter,
    }
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn meshid_validate(
    token: &str,
    bundle: &SpiffeBundle,
    audience: &str,
) -> Result<meshid::JwtSvid, JwtError> {
    JwtValidator::new(audience, meshid::ring_algorithms()).validate(
        token,
        bundle,
        SystemTime::now(),
    )
}

fn spiffe_validate(
    token: &str,
    bundles: &JwtBundleSet,
    audience: &str,
) -> Result<spiffe::JwtSvid, JwtSvidError> {
    spiffe::JwtSvid::parse_and_validate(token, bundles, &[audience])
}

/// Both libraries accept `token` for `audience` and read it alike.
fn assert_both_accept(token: &str, f: &Fixture, audience: &str) {
    let ours =
        meshid_validate(token, &f.ours, audience).unwrap_or_else(|e| panic!("meshid refused: {e}"));
    let theirs = spiffe_validate(token, &f.theirs, audience)
        .unwrap_or_else(|e| panic!("spiffe crate refused: {e:?}"));
    assert_eq!(theirs.spiffe_id().to_string(), ours.id().as_str());
    assert_eq!(theirs.audience(), ours.audience());
    assert_eq!(theirs.expiry().unix_timestamp(), unix(ours.expiry()));
    assert_eq!(theirs.key_id(), ours.key_id());
}

#[test]
fn spiffe_crate_reads_meshid_bundle_as_jwks() {
    let f = fixture();
    let json = f.ca.spiffe_bundle().to_json();
    // The whole SPIFFE bundle document: its x509-svid entry has no `kid`.
    let whole =
        JwtBundle::from_jwt_authorities(spiffe::TrustDomain::new(TD).unwrap(), json.as_bytes());
    assert!(
        matches!(whole, Err(JwtBundleError::MissingKeyId)),
        "{whole:?}"
    );
    // Its jwt-svid entries: every key, under meshid's key IDs.
    let bundle = f
        .theirs
        .get(&spiffe::TrustDomain::new(TD).unwrap())
        .unwrap();
    for kid in [&f.es256, &f.es384, CRAFTED_KID] {
        assert!(bundle.find_jwt_authority(kid).is_some(), "{kid}");
    }
    assert_eq!(bundle.jwt_authorities().count(), 3);
}

#[test]
fn spiffe_crate_validates_meshid_tokens() {
    let f = fixture();
    for (kid, alg) in [(&f.es256, "ES256"), (&f.es384, "ES384")] {
        let request = JwtSvidRequest::new(id(), ["api"])
            .key_id(kid.as_str())
            .ttl(Duration::from_secs(300));
        let svid = f.ca.mint_jwt_svid_for(&request).unwrap();
        assert_eq!(svid.algorithm().name(), alg);
        assert_both_accept(svid.token(), &f, "api");
        let theirs = spiffe_validate(svid.token(), &f.theirs, "api").unwrap();
        assert_eq!(theirs.spiffe_id().to_string(), ID);
        assert_eq!(theirs.audience(), ["api"]);
        assert_eq!(theirs.expiry().unix_timestamp(), unix(svid.expiry()));
        assert_eq!(theirs.key_id(), kid.as_str());

        // Every claim meshid mints, several audiences: still the same reading.
        let request = JwtSvidRequest::new(id(), ["billing", "api", "reports"])
            .key_id(kid.as_str())
            .jti("4f1c0d2e")
            .issuer("https://oidc.example.org");
        let svid = f.ca.mint_jwt_svid_for(&request).unwrap();
        assert_both_accept(svid.token(), &f, "api");
        assert_both_accept(svid.token(), &f, "reports");

        // Negative control: the wrong audience.
        let wrong = spiffe_validate(svid.token(), &f.theirs, "payments");
        assert!(
            matches!(&wrong, Err(JwtSvidError::InvalidToken(e)) if e.kind() == JwtVerificationErrorKind::AudienceMismatch),
            "{alg}: {wrong:?}"
        );
        assert!(matches!(
            meshid_validate(svid.token(), &f.ours, "payments"),
            Err(JwtError::AudienceMismatch { .. })
        ));
    }
}

#[test]
fn spiffe_crate_refuses_keys_not_in_the_bundle() {
    let f = fixture();
    for key_type in [KeyType::P256, KeyType::P384] {
        // A key of the same trust domain that the bundle does not publish.
        let stranger = Authority::new_root(td(), DAY, KeyType::P256)
            .unwrap()
            .with_jwt_key(JwtKey::generate(key_type).unwrap());
        let token = stranger
            .mint_jwt_svid(&id(), &["api"], Duration::from_secs(300))
            .unwrap();
        let theirs = spiffe_validate(token.token(), &f.theirs, "api");
        assert!(
            matches!(&theirs, Err(JwtSvidError::AuthorityNotFound(kid)) if kid == token.key_id()),
            "{theirs:?}"
        );
        assert!(matches!(
            meshid_validate(token.token(), &f.ours, "api"),
            Err(JwtError::UnknownKeyId { .. })
        ));

        // Another key under a published key ID: the signature is what fails.
        let published = if key_type == KeyType::P256 {
            &f.es256
        } else {
            &f.es384
        };
        let signer = Arc::new(KeyPair::generate(key_type).unwrap());
        let forger = Authority::new_root(td(), DAY, KeyType::P256)
            .unwrap()
            .with_jwt_key(JwtKey::new(published.as_str(), signer).unwrap());
        let token = forger
            .mint_jwt_svid(&id(), &["api"], Duration::from_secs(300))
            .unwrap();
        let theirs = spiffe_validate(token.token(), &f.theirs, "api");
        assert!(
            matches!(&theirs, Err(JwtSvidError::InvalidToken(e)) if e.kind() == JwtVerificationErrorKind::InvalidSignature),
            "{theirs:?}"
        );
        assert!(matches!(
            meshid_validate(token.token(), &f.ours, "api"),
            Err(JwtError::BadSignature { .. })
        ));
    }
}

/// What the two validators say of one crafted token.
enum Verdict {
    /// Both accept, with the same reading.
    BothAccept,
    /// The `spiffe` crate accepts; meshid refuses, by the rule this names.
    MeshidStricter(fn(&JwtError) -> bool),
    /// Both refuse.
    BothRefuse,
}

/// Signs `header.claims` (raw JSON, so duplicates and odd forms survive) with the crafted
/// P-256 key.
fn craft(f: &Fixture, header: &str, claims: &str) -> String {
    let mut token = Base64UrlUnpadded::encode_string(header.as_bytes());
    token.push('.');
    token.push_str(&Base64UrlUnpadded::encode_string(claims.as_bytes()));
    let sig = f
        .crafter
        .sign(&SystemRandom::new(), token.as_bytes())
        .unwrap();
    token.push('.');
    token.push_str(&Base64UrlUnpadded::encode_string(sig.as_ref()));
    token
}

#[test]
#[allow(clippy::too_many_lines)] // one table of cases
fn what_the_spiffe_crate_accepts_meshid_accepts() {
    use Verdict::{BothAccept, BothRefuse, MeshidStricter};

    let f = fixture();
    let now = unix_now();
    let exp = now + 600;
    let header = format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}","typ":"JWT"}}"#);
    let claims = |extra: &str| format!(r#"{{"sub":"{ID}","aud":"api","exp":{exp}{extra}}}"#);

    let rows: Vec<(&str, String, String, Verdict)> = vec![
        ("minimal", header.clone(), claims(""), BothAccept),
        (
            "no typ",
            format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}"}}"#),
            claims(""),
            BothAccept,
        ),
        (
            "typ JOSE, members reordered",
            format!(r#"{{"typ":"JOSE","kid":"{CRAFTED_KID}","alg":"ES256"}}"#),
            claims(""),
            BothAccept,
        ),
        (
            "several audiences",
            header.clone(),
            format!(r#"{{"sub":"{ID}","aud":["billing","api","reports"],"exp":{exp}}}"#),
            BothAccept,
        ),
        (
            "one audience in an array",
            header.clone(),
            format!(r#"{{"sub":"{ID}","aud":["api"],"exp":{exp}}}"#),
            BothAccept,
        ),
        (
            "registered and private claims",
            header.clone(),
            claims(&format!(
                r#","iat":{},"nbf":{},"iss":"https://oidc.example.org","jti":"x1","ns":{{"roles":["a","b"],"score":1.5,"ok":true,"none":null}}"#,
                now - 5,
                now - 5
            )),
            BothAccept,
        ),
        (
            "whitespace and escapes in JSON",
            format!("{{ \"alg\" : \"ES256\" ,\n \"kid\":\"{CRAFTED_KID}\" }}"),
            format!(
                r#"{{ "sub" : "{}", "aud" : "\u0061pi", "exp" : {exp} }}"#,
                ID.replace('/', "\\/")
            ),
            BothAccept,
        ),
        // meshid's rules the spiffe crate does not apply.
        (
            "iat in the future",
            header.clone(),
            claims(&format!(r#","iat":{}"#, now + 300)),
            MeshidStricter(|e| matches!(e, JwtError::IssuedInFuture { .. })),
        ),
        (
            "iat not a NumericDate",
            header.clone(),
            claims(r#","iat":"yesterday""#),
            MeshidStricter(|e| matches!(e, JwtError::BadTime { claim: "iat" })),
        ),
        (
            "nbf with a fraction",
            header.clone(),
            claims(&format!(r#","nbf":{}.5"#, now - 10)),
            MeshidStricter(|e| matches!(e, JwtError::BadTime { claim: "nbf" })),
        ),
        (
            "a private claim twice",
            header.clone(),
            claims(r#","ns":1,"ns":2"#),
            MeshidStricter(|e| matches!(e, JwtError::DuplicateMember { .. })),
        ),
        (
            "an empty audience beside the right one",
            header.clone(),
            format!(r#"{{"sub":"{ID}","aud":["","api"],"exp":{exp}}}"#),
            MeshidStricter(|e| matches!(e, JwtError::EmptyAudience)),
        ),
        (
            "sub without a path",
            header.clone(),
            format!(r#"{{"sub":"spiffe://{TD}","aud":"api","exp":{exp}}}"#),
            MeshidStricter(|e| matches!(e, JwtError::SubjectWithoutPath { .. })),
        ),
        // Refused by both.
        (
            "extra JOSE header cty",
            format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}","cty":"JWT"}}"#),
            claims(""),
            BothRefuse,
        ),
        (
            "extra JOSE header jku",
            format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}","jku":"https://evil.test/k"}}"#),
            claims(""),
            BothRefuse,
        ),
        (
            "crit header",
            format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}","crit":["exp"]}}"#),
            claims(""),
            BothRefuse,
        ),
        (
            "alg twice",
            format!(r#"{{"alg":"ES256","alg":"ES256","kid":"{CRAFTED_KID}"}}"#),
            claims(""),
            BothRefuse,
        ),
        (
            "typ null",
            format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}","typ":null}}"#),
            claims(""),
            BothRefuse,
        ),
        (
            "sub twice",
            header.clone(),
            claims(&format!(r#","sub":"{ID}""#)),
            BothRefuse,
        ),
        (
            "alg ES384 over the P-256 key",
            format!(r#"{{"alg":"ES384","kid":"{CRAFTED_KID}"}}"#),
            claims(""),
            BothRefuse,
        ),
        (
            "expired",
            header.clone(),
            format!(r#"{{"sub":"{ID}","aud":"api","exp":{}}}"#, now - 1),
            BothRefuse,
        ),
        (
            "nbf in the future",
            header.clone(),
            claims(&format!(r#","nbf":{}"#, now + 300)),
            BothRefuse,
        ),
        (
            "exp with a fraction",
            header.clone(),
            format!(r#"{{"sub":"{ID}","aud":"api","exp":{exp}.5}}"#),
            BothRefuse,
        ),
        (
            "no aud",
            header.clone(),
            format!(r#"{{"sub":"{ID}","exp":{exp}}}"#),
            BothRefuse,
        ),
        (
            "sub of another trust domain",
            header.clone(),
            format!(r#"{{"sub":"spiffe://other.org/web","aud":"api","exp":{exp}}}"#),
            BothRefuse,
        ),
    ];

    let mut failures = Vec::new();
    for (name, header, claims, verdict) in &rows {
        let token = craft(&f, header, claims);
        let ours = meshid_validate(&token, &f.ours, "api");
        let theirs = spiffe_validate(&token, &f.theirs, "api");
        let ok = match (verdict, &ours, &theirs) {
            (BothAccept, Ok(_), Ok(_)) => {
                assert_both_accept(&token, &f, "api");
                true
            }
            (MeshidStricter(rule), Err(e), Ok(_)) => rule(e),
            (BothRefuse, Err(_), Err(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: meshid {ours:?}, spiffe crate {theirs:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Parsing without validation: the `spiffe` crate's `parse_insecure` lets headers other
/// than `alg`, `kid`, `typ` through (its docs say so: only its offline validation refuses
/// them), meshid's `parse_insecure` applies the header rule too.
#[test]
fn meshid_parse_insecure_refuses_extra_headers() {
    let f = fixture();
    let exp = unix_now() + 600;
    let claims = format!(r#"{{"sub":"{ID}","aud":"api","exp":{exp}}}"#);
    for extra in [
        r#""cty":"JWT""#,
        r#""x5u":"https://evil.test/c""#,
        r#""crit":["exp"]"#,
    ] {
        let header = format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}",{extra}}}"#);
        let token = craft(&f, &header, &claims);
        assert!(spiffe::JwtSvid::parse_insecure(&token).is_ok(), "{extra}");
        assert!(
            matches!(
                meshid::JwtSvid::parse_insecure(&token),
                Err(JwtError::ForbiddenHeader { .. })
            ),
            "{extra}"
        );
        assert!(
            spiffe_validate(&token, &f.theirs, "api").is_err(),
            "{extra}"
        );
    }
}

/// `token` with one part's last character replaced by one that decodes to the same bytes
/// (a set bit among those the last character carries beyond the data): a second encoding
/// of the same token, signature still valid.
fn non_canonical(token: &str, part: usize) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let unused_bits = match parts[part].len() % 4 {
        2 => 4,
        3 => 2,
        _ => return None,
    };
    let last = parts[part].pop()?;
    let value = ALPHABET.iter().position(|&c| char::from(c) == last)?;
    assert_eq!(value % (1 << unused_bits), 0, "canonical to begin with");
    parts[part].push(char::from(ALPHABET[value | 1]));
    Some(parts.join("."))
}

#[test]
fn both_refuse_a_second_base64_encoding_of_a_part() {
    let f = fixture();
    let exp = unix_now() + 600;
    let mut tried = 0;
    // Header and claims lengths of every residue mod 3, so each part gets its turn.
    for pad in ["", " ", "  "] {
        let header = format!(r#"{{"alg":"ES256","kid":"{CRAFTED_KID}"{pad}}}"#);
        let claims = format!(r#"{{"sub":"{ID}","aud":"api","exp":{exp}{pad}}}"#);
        let token = craft(&f, &header, &claims);
        assert_both_accept(&token, &f, "api");
        for part in 0..3 {
            let Some(odd) = non_canonical(&token, part) else {
                continue;
            };
            tried += 1;
            assert!(
                matches!(
                    meshid_validate(&odd, &f.ours, "api"),
                    Err(JwtError::BadBase64 { .. })
                ),
                "part {part}"
            );
            let theirs = spiffe_validate(&odd, &f.theirs, "api");
            assert!(theirs.is_err(), "part {part}: {theirs:?}");
        }
    }
    assert!(tried >= 5, "{tried}");
}
