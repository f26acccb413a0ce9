//! JWK helpers: public-key checks (RFC 7518 §6, RFC 8037 §2), the JWK members of a
//! certificate's public key, and a nesting-depth guard for untrusted JSON.

use base64ct::{Base64UrlUnpadded, Encoding};
use der::asn1::{BitString, ObjectIdentifier, UintRef};
use der::{Any, Decode, Encode, Reader, SliceReader};
use serde_json::{Map, Value};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;

use super::BundleError;

/// Key types meshid reads; an entry with any other `kty` is ignored
/// (SPIFFE Trust Domain and Bundle §4.2.1).
pub(super) const KNOWN_KEY_TYPES: [&str; 3] = ["EC", "RSA", "OKP"];

/// Private-key members of RFC 7518 §6.2.2, §6.3.2 and §6.4.1, and RFC 8037 §2.
pub(super) const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The coordinate length in bytes of an EC curve named as in RFC 7518 §6.2.1.1.
fn ec_coordinate_len(crv: &str) -> Option<usize> {
    match crv {
        "P-256" => Some(32),
        "P-384" => Some(48),
        "P-521" => Some(66),
        _ => None,
    }
}

/// The private member `jwk` carries, if any.
pub(super) fn private_member(jwk: &Map<String, Value>) -> Option<&'static str> {
    PRIVATE_MEMBERS
        .into_iter()
        .find(|m| jwk.get(*m).is_some_and(|v| !v.is_null()))
}

/// Checks that `jwk` (of the known key type `kty`) is a well-formed public key.
pub(super) fn check_public(
    index: usize,
    kty: &str,
    jwk: &Map<String, Value>,
) -> Result<(), BundleError> {
    let bad = |param| BundleError::BadJwk { index, param };
    let bytes = |param: &'static str| -> Result<Vec<u8>, BundleError> {
        let text = jwk.get(param).and_then(Value::as_str).ok_or(bad(param))?;
        Base64UrlUnpadded::decode_vec(text).map_err(|_| bad(param))
    };
    let sized = |param: &'static str, len: usize| -> Result<(), BundleError> {
        if bytes(param)?.len() == len {
            Ok(())
        } else {
            Err(bad(param))
        }
    };
    let crv = jwk.get("crv").and_then(Value::as_str);
    match kty {
        "EC" => {
            let len = crv.and_then(ec_coordinate_len).ok_or(bad("crv"))?;
            sized("x", len)?;
            sized("y", len)
        }
        "RSA" => {
            for param in ["n", "e"] {
                if bytes(param)?.is_empty() {
                    return Err(bad(param));
                }
            }
            Ok(())
        }
        "OKP" => {
            if crv != Some("Ed25519") {
                return Err(bad("crv"));
            }
            sized("x", 32)
        }
        _ => Err(bad("kty")),
    }
}

/// Whether every number inside `value` is an integer `serde_json` stores exactly (so that
/// writing the value back and reading it again gives the same value).
pub(super) fn numbers_are_exact(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::Array(items) => items.iter().all(numbers_are_exact),
        Value::Object(members) => members.values().all(numbers_are_exact),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// Whether `json` nests arrays and objects deeper than `limit`, by a scan that skips
/// strings. Run before parsing so that untrusted input never drives deep recursion.
pub(super) fn nests_deeper_than(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The JWK members (`kty` and key parameters) of a certificate's public key, for the
/// `x509-svid` entries meshid writes. `None` for a key type JWK cannot express here
/// (then the entry is written with `x5c` alone).
pub(super) fn members_of_certificate(cert_der: &[u8]) -> Option<Map<String, Value>> {
    let cert = Certificate::from_der(cert_der).ok()?;
    members_of_spki(cert.tbs_certificate().subject_public_key_info())
}

/// The JWK members (`kty` and key parameters) of a DER `SubjectPublicKeyInfo`: EC P-256,
/// P-384 or P-521, RSA, or Ed25519; `None` for anything else.
pub(super) fn members_of_spki_der(spki_der: &[u8]) -> Option<Map<String, Value>> {
    members_of_spki(&SubjectPublicKeyInfoOwned::from_der(spki_der).ok()?)
}

fn members_of_spki(spki: &SubjectPublicKeyInfoOwned) -> Option<Map<String, Value>> {
    let key = spki.subject_public_key.as_bytes()?;
    let b64 = |bytes: &[u8]| Value::String(Base64UrlUnpadded::encode_string(bytes));
    let mut jwk = Map::new();
    let oid = spki.algorithm.oid;
    if oid == EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = spki.algorithm.parameters.as_ref()?.decode_as().ok()?;
        let crv = [(P256, "P-256"), (P384, "P-384"), (P521, "P-521")]
            .into_iter()
            .find(|(o, _)| *o == curve)?
            .1;
        let len = ec_coordinate_len(crv)?;
        // Uncompressed point: 0x04 || x || y (SEC 1 §2.3.3).
        let (tag, xy) = key.split_first()?;
        if *tag != 4 || xy.len() != 2 * len {
            return None;
        }
        let (x, y) = xy.split_at(len);
        jwk.insert("kty".into(), "EC".into());
        jwk.insert("crv".into(), crv.into());
        jwk.insert("x".into(), b64(x));
        jwk.insert("y".into(), b64(y));
    } else if oid == RSA_ENCRYPTION {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017).
        let mut reader = SliceReader::new(key).ok()?;
        let (n, e) = reader
            .sequence(|r| Ok::<_, der::Error>((UintRef::decode(r)?, UintRef::decode(r)?)))
            .ok()?;
        if !reader.is_finished() {
            return None;
        }
        jwk.insert("kty".into(), "RSA".into());
        jwk.insert("n".into(), b64(n.as_bytes()));
        jwk.insert("e".into(), b64(e.as_bytes()));
    } else if oid == ED25519 && key.len() == 32 {
        jwk.insert("kty".into(), "OKP".into());
        jwk.insert("crv".into(), "Ed25519".into());
        jwk.insert("x".into(), b64(key));
    } else {
        return None;
    }
    Some(jwk)
}

/// The curve of an EC JWT authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    /// NIST P-256 (`crv` `P-256`).
    P256,
    /// NIST P-384 (`crv` `P-384`).
    P384,
    /// NIST P-521 (`crv` `P-521`).
    P521,
}

/// What kind of key a JWT authority holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// An EC key on the curve.
    Ec(Curve),
    /// An RSA key with a modulus of `bits` bits.
    Rsa {
        /// The modulus size, leading zero bits not counted.
        bits: usize,
    },
    /// An Ed25519 key (no JWT-SVID algorithm uses it).
    Ed25519,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ec(Curve::P256) => f.write_str("EC P-256"),
            Self::Ec(Curve::P384) => f.write_str("EC P-384"),
            Self::Ec(Curve::P521) => f.write_str("EC P-521"),
            Self::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            Self::Ed25519 => f.write_str("OKP Ed25519"),
        }
    }
}

/// The public key of a JWT authority, decoded once when the bundle is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublicKey {
    /// Its kind, curve or size.
    pub(crate) kind: KeyKind,
    /// The DER `SubjectPublicKeyInfo`.
    pub(crate) spki_der: Vec<u8>,
    /// The `subjectPublicKey` BIT STRING's contents: what a `rustls_pki_types`
    /// `SignatureVerificationAlgorithm` takes (an uncompressed EC point, a DER
    /// `RSAPublicKey`, or the raw Ed25519 key).
    pub(crate) key: Vec<u8>,
}

/// The public key of a JWK that [`check_public`] accepted (of the known key type `kty`).
/// `None` only if it cannot be encoded, which a checked JWK never is.
pub(super) fn public_key(kty: &str, jwk: &Map<String, Value>) -> Option<PublicKey> {
    let bytes = |param: &str| {
        jwk.get(param)
            .and_then(Value::as_str)
            .and_then(|text| Base64UrlUnpadded::decode_vec(text).ok())
    };
    let crv = jwk.get("crv").and_then(Value::as_str);
    let (kind, algorithm, key) = match kty {
        "EC" => {
            let (curve, oid) = match crv? {
                "P-256" => (Curve::P256, P256),
                "P-384" => (Curve::P384, P384),
                "P-521" => (Curve::P521, P521),
                _ => return None,
            };
            let mut point = vec![4u8];
            point.extend(bytes("x")?);
            point.extend(bytes("y")?);
            let algorithm = AlgorithmIdentifierOwned {
                oid: EC_PUBLIC_KEY,
                parameters: Some(Any::from(&oid)),
            };
            (KeyKind::Ec(curve), algorithm, point)
        }
        "RSA" => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            let rsa = crate::key::RsaPublicKey {
                modulus: UintRef::new(&n).ok()?,
                public_exponent: UintRef::new(&e).ok()?,
            };
            let bits = crate::key::bit_len(&n);
            let algorithm = AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(Any::null()),
            };
            (KeyKind::Rsa { bits }, algorithm, rsa.to_der().ok()?)
        }
        "OKP" if crv == Some("Ed25519") => {
            let algorithm = AlgorithmIdentifierOwned {
                oid: ED25519,
                parameters: None,
            };
            (KeyKind::Ed25519, algorithm, bytes("x")?)
        }
        _ => return None,
    };
    let spki = SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: BitString::from_bytes(&key).ok()?,
    };
    Some(PublicKey {
        kind,
        spki_der: spki.to_der().ok()?,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_skips_strings() {
        assert!(!nests_deeper_than(br#"{"a":[[1]]}"#, 3));
        assert!(nests_deeper_than(br#"{"a":[[[1]]]}"#, 3));
        assert!(!nests_deeper_than(br#"{"a":"[[[[[\"[[[["}"#, 1));
        assert!(nests_deeper_than(&[b'['; 100], 64));
    }

    #[test]
    fn exact_numbers() {
        let v: Value = serde_json::from_str(r#"{"a":[1,-2,18446744073709551615]}"#).unwrap();
        assert!(numbers_are_exact(&v));
        for bad in ["1.5", "1e3", "18446744073709551616", "-0.0"] {
            assert!(
                !numbers_are_exact(&serde_json::from_str(bad).unwrap()),
                "{bad}"
            );
        }
    }

    #[test]
    fn certificate_keys_become_jwk_members() {
        let pem = include_str!("../../tests/data/go-spiffe/x509bundle/cert.pem");
        let der = &crate::pem::parse(pem.as_bytes()).unwrap()[0].der;
        let jwk = members_of_certificate(der).unwrap();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        // A 768-bit modulus, leading zero stripped.
        let n = Base64UrlUnpadded::decode_vec(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 96);
        assert!(check_public(0, "RSA", &jwk).is_ok());
        assert_eq!(members_of_certificate(b"junk"), None);
    }
}
