//! [`JwtSvid`], and the decoding every token goes through: the structural rules of
//! JWT-SVID, before any key is looked at.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::json::{self, JsonFault};
use super::{JwtAlgorithm, JwtError, MAX_TOKEN_LEN};
use crate::time::Rfc3339;
use crate::SpiffeId;

/// The header members a JWT-SVID may carry (JWT-SVID §2).
const HEADER_MEMBERS: [&str; 3] = ["alg", "kid", "typ"];

/// A JWT-SVID: the compact token and what it says.
///
/// Values come from [`JwtValidator::validate`](super::JwtValidator::validate) (the token
/// was checked by every rule, signature included), from minting (feature `ca`), or from
/// [`JwtSvid::parse_insecure`] (the format was checked, **the signature was not**).
///
/// The token is a bearer credential: `Debug` never shows it, and its bytes are zeroized
/// when the value is dropped. [`token`](Self::token) hands it out for sending.
///
/// ```
/// # #[cfg(feature = "ca")] {
/// use std::time::Duration;
/// use meshid::{Authority, JwtKey, KeyType, SpiffeId, TrustDomain};
///
/// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?
///     .with_jwt_key(JwtKey::generate(KeyType::P256)?);
/// let svid = ca.mint_jwt_svid(&SpiffeId::new("spiffe://example.org/web")?, &["api"], Duration::from_secs(60))?;
/// assert_eq!(svid.audience(), ["api"]);
/// assert_eq!(svid.claims()["sub"], "spiffe://example.org/web");
/// assert!(!format!("{svid:?}").contains(svid.token()));
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JwtSvid {
    token: Zeroizing<String>,
    id: SpiffeId,
    audience: Vec<String>,
    expiry: SystemTime,
    issued_at: Option<SystemTime>,
    not_before: Option<SystemTime>,
    key_id: String,
    algorithm: JwtAlgorithm,
    claims: Map<String, Value>,
}

impl JwtSvid {
    /// Decodes `token` by every format rule of JWT-SVID (size, compact serialization,
    /// base64url, JSON without duplicate names, `alg`, header members, `typ`, `kid`,
    /// `sub`, `aud`, `exp`, `nbf`, `iat`; see the [module documentation](super#how-strict))
    /// **without checking the signature, the key, the time or the audience**.
    ///
    /// For clients that only display a token they were handed by a trusted source (such
    /// as their own Workload API). Nothing read this way authenticates anyone: a relying
    /// party uses [`JwtValidator::validate`](super::JwtValidator::validate).
    pub fn parse_insecure(token: &str) -> Result<Self, JwtError> {
        decode(token).map(|d| d.svid)
    }

    /// The compact token (`header.payload.signature`), to send as a bearer credential.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The SPIFFE ID (`sub`).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The audience values (`aud`), in token order; never empty.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The expiry (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }

    /// The issue time (`iat`), if the token has one.
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
    }

    /// The start of validity (`nbf`), if the token has one.
    pub fn not_before(&self) -> Option<SystemTime> {
        self.not_before
    }

    /// The key ID (`kid`) of the key that signed it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signature algorithm (`alg`).
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Every claim, registered and private, as the token holds them.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

impl fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvid")
            .field("id", &self.id)
            .field("audience", &self.audience)
            .field("expiry", &Rfc3339(self.expiry))
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A token that passed the format rules: what validation still needs.
pub(super) struct Decoded<'t> {
    /// `header.payload`, the JWS signing input (RFC 7515 §5.2 step 8).
    pub(super) signing_input: &'t str,
    /// The decoded signature.
    pub(super) signature: Vec<u8>,
    pub(super) svid: JwtSvid,
}

/// Applies the format rules, in the documented order.
pub(super) fn decode(token: &str) -> Result<Decoded<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    if token.trim_start().starts_with('{') {
        return Err(JwtError::JsonSerialization);
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::PartCount {
            parts: token.split('.').count(),
        });
    };
    let header = base64url(header_b64, "header")?;
    let payload = base64url(payload_b64, "payload")?;
    let signature = base64url(signature_b64, "signature")?;
    let header = object(&header, "header")?;

    // `alg` first: nothing else of the token is looked at before it is known to be one
    // of the nine (JWT-SVID §4).
    let algorithm = match header.get("alg") {
        None => return Err(JwtError::MissingAlgorithm),
        Some(Value::String(alg)) => {
            JwtAlgorithm::from_name(alg).ok_or_else(|| JwtError::UnsupportedAlgorithm {
                alg: Value::String(alg.clone()).to_string(),
            })?
        }
        Some(other) => {
            return Err(JwtError::UnsupportedAlgorithm {
                alg: other.to_string(),
            })
        }
    };
    if let Some(name) = header
        .keys()
        .find(|k| !HEADER_MEMBERS.contains(&k.as_str()))
    {
        return Err(JwtError::ForbiddenHeader { name: name.clone() });
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
        Some(other) => {
            return Err(JwtError::BadType {
                typ: other.to_string(),
            })
        }
    }
    let key_id = match header.get("kid") {
        None => return Err(JwtError::MissingKeyId),
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(_) => return Err(JwtError::BadKeyId),
    };

    let claims = object(&payload, "claims")?;
    let id = match claims.get("sub") {
        None => return Err(JwtError::MissingSubject),
        Some(Value::String(sub)) => {
            SpiffeId::new(sub).map_err(|source| JwtError::BadSubject { source })?
        }
        Some(_) => return Err(JwtError::SubjectNotString),
    };
    if id.is_trust_domain_id() {
        return Err(JwtError::SubjectWithoutPath { id });
    }
    let audience = audience(claims.get("aud"))?;
    let expiry = time(&claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
    let not_before = time(&claims, "nbf")?;
    let issued_at = time(&claims, "iat")?;
    Ok(Decoded {
        signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        signature,
        svid: JwtSvid {
            token: Zeroizing::new(token.to_owned()),
            id,
            audience,
            expiry,
            issued_at,
            not_before,
            key_id,
            algorithm,
            claims,
        },
    })
}

/// Which bytes are characters of the base64url alphabet (RFC 4648 §5).
const URL_SAFE: [bool; 256] = {
    let mut table = [false; 256];
    let mut c: u8 = 0;
    loop {
        table[c as usize] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        if c == u8::MAX {
            break table;
        }
        c += 1;
    }
};

/// Strict unpadded base64url (RFC 7515 §2): the URL-safe alphabet only, no padding, no
/// whitespace, no length of 1 mod 4, and no set bits left over in the last character (so
/// every byte string has exactly one encoding).
fn base64url(text: &str, part: &'static str) -> Result<Vec<u8>, JwtError> {
    let bad = || JwtError::BadBase64 { part };
    // base64ct is strict already; what follows proves it, whatever its version, as
    // re-encoding the whole part would, without building a second copy of it.
    // (A table and a fold, with no early exit: branch-free, so the scan vectorizes.)
    let outside = text
        .bytes()
        .fold(0u8, |acc, b| acc | u8::from(!URL_SAFE[usize::from(b)]));
    if outside != 0 {
        return Err(bad());
    }
    let bytes = Base64UrlUnpadded::decode_vec(text).map_err(|_| bad())?;
    // Every character is one of the 64, so each full group of 4 is the one encoding of its
    // 3 bytes; the length must be the canonical one, and the last, partial group must
    // re-encode to the characters it was read from (no stray bits).
    let mut last = [0u8; 4];
    let last =
        Base64UrlUnpadded::encode(&bytes[bytes.len() / 3 * 3..], &mut last).map_err(|_| bad())?;
    if Base64UrlUnpadded::encoded_len(&bytes) != text.len() || !text.ends_with(last) {
        return Err(bad());
    }
    Ok(bytes)
}

/// A part as a JSON object with unique member names.
fn object(bytes: &[u8], part: &'static str) -> Result<Map<String, Value>, JwtError> {
    json::parse_object(bytes).map_err(|fault| match fault {
        JsonFault::Syntax => JwtError::NotJson { part },
        JsonFault::NotAnObject => JwtError::NotAnObject { part },
        JsonFault::Duplicate(name) => JwtError::DuplicateMember { part, name },
    })
}

/// `aud`: a non-empty string, or a non-empty array of non-empty strings.
fn audience(aud: Option<&Value>) -> Result<Vec<String>, JwtError> {
    let values = match aud {
        None => return Err(JwtError::MissingAudience),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(JwtError::BadAudience))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(JwtError::BadAudience),
    };
    if values.is_empty() || values.iter().any(String::is_empty) {
        return Err(JwtError::EmptyAudience);
    }
    Ok(values)
}

/// A NumericDate claim: absent, or an integer number of seconds since the epoch that
/// `SystemTime` can hold.
fn time(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<SystemTime>, JwtError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    let bad = JwtError::BadTime { claim };
    let secs = value.as_i64().ok_or(bad.clone())?;
    let offset = Duration::from_secs(secs.unsigned_abs());
    let at = if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    at.map(Some).ok_or(bad)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition `base64url` implements: what decodes, and re-encodes to itself.
    fn reference(text: &str) -> Option<Vec<u8>> {
        let bytes = Base64UrlUnpadded::decode_vec(text).ok()?;
        (Base64UrlUnpadded::encode_string(&bytes) == text).then_some(bytes)
    }

    proptest! {
        #[test]
        fn base64url_is_the_round_trip_definition(text in "[A-Za-z0-9_+/=. -]{0,12}") {
            prop_assert_eq!(base64url(&text, "header").ok(), reference(&text));
        }

        #[test]
        fn every_encoding_is_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let text = Base64UrlUnpadded::encode_string(&bytes);
            prop_assert_eq!(base64url(&text, "header").ok(), Some(bytes));
        }
    }

    #[test]
    fn stray_bits_and_lengths() {
        for (text, ok) in [
            ("", true),
            ("AA", true),
            ("AB", false),
            ("AAA", true),
            ("AAB", false),
            ("AAAA", true),
            ("A", false),
            ("AAAAA", false),
            ("AA==", false),
            ("+/8", false),
            ("-_8", true),
        ] {
            assert_eq!(base64url(text, "header").is_ok(), ok, "{text:?}");
        }
    }
}
