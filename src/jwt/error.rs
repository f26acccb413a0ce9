//! [`JwtError`]: why a token was refused.

use std::time::SystemTime;

use thiserror::Error;

use super::JwtAlgorithm;
use crate::time::Rfc3339;
use crate::{IdError, SpiffeId, TrustDomain};

/// Why a token was not accepted as a JWT-SVID.
///
/// Each variant is one rule, and its message cites where the rule is written:
/// [JWT-SVID] (§ numbers of the SPIFFE standard), RFC 7515 (JWS), RFC 7518 (JWA) or
/// RFC 7519 (JWT). The variants are listed in the order the validator checks them.
///
/// [JWT-SVID]: https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN); refused before
    /// anything is decoded.
    #[error("token of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is a JWS JSON serialization (a JSON object), not a compact one.
    #[error(
        "JWS JSON serialization MUST NOT be used; a JWT-SVID is a JWS compact serialization \
         (JWT-SVID §1, §5.1; RFC 7515 §3.1)"
    )]
    JsonSerialization,
    /// The token does not have exactly three `.`-separated parts (five is a JWE, which
    /// JWT-SVID does not allow either).
    #[error(
        "a JWS compact serialization has exactly three parts separated by '.', found {parts} \
         (JWT-SVID §5.1; RFC 7515 §7.1)"
    )]
    PartCount {
        /// How many parts the token has.
        parts: usize,
    },
    /// A part is not unpadded base64url: another alphabet, `=` padding, whitespace, a
    /// length no encoding has, or stray bits in the last character.
    #[error("the {part} is not unpadded base64url (RFC 7515 §2, §7.1)")]
    BadBase64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
    },
    /// The header or the claims are not a JSON text (or not UTF-8).
    #[error("the {part} is not UTF-8 JSON (RFC 7515 §7.2 step 3; RFC 7519 §7.2 step 10)")]
    NotJson {
        /// `header` or `claims`.
        part: &'static str,
    },
    /// The header or the claims are JSON, but not an object.
    #[error("the {part} is not a JSON object (RFC 7515 §4; RFC 7519 §4)")]
    NotAnObject {
        /// `header` or `claims`.
        part: &'static str,
    },
    /// A member name appears twice, at any depth, in the header or the claims. (RFC 7515
    /// allows parsers to keep the last one instead; a validator and a library behind it
    /// that chose differently would read two different tokens.)
    #[error(
        "the {part} has the member {name:?} twice: names MUST be unique \
         (RFC 7515 §4; RFC 7519 §4)"
    )]
    DuplicateMember {
        /// `header` or `claims`.
        part: &'static str,
        /// The repeated name.
        name: String,
    },
    /// The header has no `alg`.
    #[error("the header has no `alg` (JWT-SVID §2.1; RFC 7515 §4.1.1)")]
    MissingAlgorithm,
    /// `alg` is not one of RS256/384/512, ES256/384/512, PS256/384/512 (so `none` and
    /// `HS256` are refused here, before any key is looked at).
    #[error(
        "`alg` {alg} is not allowed: a JWT-SVID is signed with RS256, RS384, RS512, ES256, \
         ES384, ES512, PS256, PS384 or PS512 (JWT-SVID §2.1, §4)"
    )]
    UnsupportedAlgorithm {
        /// The `alg` value, as JSON.
        alg: String,
    },
    /// The header has a member other than `alg`, `kid` and `typ` (such as `crit`, `jku`,
    /// `jwk`, `x5u`, `x5c`, `cty`, or a private one).
    #[error(
        "the header member {name:?} is not allowed: a JWT-SVID header holds only `alg`, \
         `kid` and `typ` (JWT-SVID §2)"
    )]
    ForbiddenHeader {
        /// The member's name.
        name: String,
    },
    /// `typ` is present and is not `JWT` or `JOSE`.
    #[error("`typ` {typ} is not allowed: if set it MUST be JWT or JOSE (JWT-SVID §2.3)")]
    BadType {
        /// The `typ` value, as JSON.
        typ: String,
    },
    /// The header has no `kid`. JWT-SVID §2.2 makes it optional, but every JWT authority
    /// of a bundle has one (§6.1) and meshid looks the key up by it, as go-spiffe does;
    /// trying every key of the trust domain in turn is not done.
    #[error(
        "the header has no `kid`: keys are looked up by key ID, which every JWT authority \
         has (JWT-SVID §2.2, §6.1)"
    )]
    MissingKeyId,
    /// `kid` is not a non-empty string.
    #[error("`kid` must be a non-empty string (RFC 7515 §4.1.4; JWT-SVID §6.1)")]
    BadKeyId,
    /// The claims have no `sub`.
    #[error("the claims have no `sub`: it MUST be the SPIFFE ID of the workload (JWT-SVID §3.1)")]
    MissingSubject,
    /// `sub` is not a string.
    #[error(
        "`sub` must be a string, the SPIFFE ID of the workload (JWT-SVID §3.1; RFC 7519 §4.1.2)"
    )]
    SubjectNotString,
    /// `sub` is not a valid SPIFFE ID.
    #[error("`sub` is not a SPIFFE ID (JWT-SVID §3.1): {source}")]
    BadSubject {
        /// What the SPIFFE ID parser found.
        source: IdError,
    },
    /// `sub` is a trust domain's own ID, which names no workload.
    #[error(
        "`sub` {id} has no path: it MUST name a workload, not a trust domain \
         (JWT-SVID §3.1; SPIFFE-ID §2.2)"
    )]
    SubjectWithoutPath {
        /// The ID found.
        id: SpiffeId,
    },
    /// The claims have no `aud`.
    #[error("the claims have no `aud`: it MUST be present (JWT-SVID §3.2, §4)")]
    MissingAudience,
    /// `aud` is neither a string nor an array of strings.
    #[error("`aud` must be a string or an array of strings (RFC 7519 §4.1.3)")]
    BadAudience,
    /// `aud` is an empty array, or one of its values is the empty string.
    #[error("`aud` MUST contain one or more values, none of them empty (JWT-SVID §3.2)")]
    EmptyAudience,
    /// The claims have no `exp`.
    #[error("the claims have no `exp`: it MUST be set (JWT-SVID §3.3, §4)")]
    MissingExpiry,
    /// `exp`, `nbf` or `iat` is not an integer number of seconds, or is out of range.
    #[error(
        "`{claim}` must be an integer NumericDate (JWT-SVID.schema; RFC 7519 §2, §4.1.4-4.1.6)"
    )]
    BadTime {
        /// `exp`, `nbf` or `iat`.
        claim: &'static str,
    },
    /// The bundle source has no bundle for the trust domain of `sub`.
    #[error(
        "no JWT bundle for trust domain {trust_domain}: keys are chosen by the trust domain \
         of `sub` (JWT-SVID §6.2)"
    )]
    NoBundle {
        /// The trust domain of `sub`.
        trust_domain: TrustDomain,
    },
    /// The bundle of the trust domain of `sub` has no JWT authority: that trust domain
    /// does not support JWT-SVIDs.
    #[error(
        "the bundle of trust domain {trust_domain} has no `jwt-svid` key: it does not support \
         JWT-SVIDs (JWT-SVID §6.2)"
    )]
    NoJwtAuthorities {
        /// The trust domain of `sub`.
        trust_domain: TrustDomain,
    },
    /// No JWT authority of the trust domain of `sub` has the token's `kid`.
    #[error(
        "no JWT authority of trust domain {trust_domain} has the key ID {key_id:?} \
         (JWT-SVID §6.2; RFC 7515 §4.1.4)"
    )]
    UnknownKeyId {
        /// The token's `kid`.
        key_id: String,
        /// The trust domain of `sub`.
        trust_domain: TrustDomain,
    },
    /// The key named by `kid` is not of the type (or curve) `alg` needs: an RS or PS
    /// `alg` needs an RSA key; ES256 a P-256 key, ES384 P-384, ES512 P-521.
    #[error("`alg` {alg} cannot be used with the {key} key {key_id:?} (RFC 7518 §3.1, §3.3-3.5)")]
    KeyMismatch {
        /// The token's `alg`.
        alg: JwtAlgorithm,
        /// The key's type and curve or size.
        key: String,
        /// The key's ID.
        key_id: String,
    },
    /// The RSA key named by `kid` is shorter than 2,048 bits.
    #[error(
        "the RSA key {key_id:?} has {bits} bits: a key of size 2048 bits or larger MUST be used \
         (RFC 7518 §3.3, §3.5)"
    )]
    RsaKeyTooSmall {
        /// The modulus size.
        bits: usize,
        /// The key's ID.
        key_id: String,
    },
    /// None of the signature verification algorithms given implements `alg` (ring has no
    /// P-521, so ES512 ends here with `ring_algorithms()`).
    #[error(
        "no verification algorithm for {alg} among those given (the crypto provider lacks it)"
    )]
    AlgorithmUnavailable {
        /// The token's `alg`.
        alg: JwtAlgorithm,
    },
    /// An ECDSA signature is not the two fixed-width integers `R || S` of the curve.
    #[error(
        "the {alg} signature is {len} bytes; it MUST be R || S, {expected} bytes (RFC 7518 §3.4)"
    )]
    SignatureLength {
        /// The token's `alg`.
        alg: JwtAlgorithm,
        /// The signature's length.
        len: usize,
        /// The length `alg` has.
        expected: usize,
    },
    /// The signature does not verify over the token's first two parts with the key.
    #[error("the signature does not verify with key {key_id:?} (RFC 7515 §5.2 step 8)")]
    BadSignature {
        /// The key's ID.
        key_id: String,
    },
    /// The current time is at or after `exp` (plus the leeway).
    #[error(
        "the token expired at {} (now {}) (JWT-SVID §3.3; RFC 7519 §4.1.4)",
        Rfc3339(*expiry),
        Rfc3339(*now)
    )]
    Expired {
        /// `exp`.
        expiry: SystemTime,
        /// The validation time.
        now: SystemTime,
    },
    /// The current time is before `nbf` (minus the leeway).
    #[error(
        "the token is not valid before {} (now {}) (RFC 7519 §4.1.5)",
        Rfc3339(*not_before),
        Rfc3339(*now)
    )]
    NotYetValid {
        /// `nbf`.
        not_before: SystemTime,
        /// The validation time.
        now: SystemTime,
    },
    /// `iat` is in the future (beyond the leeway): the token claims to be issued later
    /// than now.
    #[error(
        "the token claims to be issued at {}, in the future (now {}) (RFC 7519 §4.1.6)",
        Rfc3339(*issued_at),
        Rfc3339(*now)
    )]
    IssuedInFuture {
        /// `iat`.
        issued_at: SystemTime,
        /// The validation time.
        now: SystemTime,
    },
    /// The validator's audience is not among the `aud` values.
    #[error("the audience {expected:?} is not among the token's `aud` values (JWT-SVID §3.2)")]
    AudienceMismatch {
        /// The validator's audience.
        expected: String,
    },
}
