//! JWT-SVIDs: SPIFFE identities as signed tokens
//! ([JWT-SVID](https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md)).
//!
//! A JWT-SVID is what a workload shows where X.509 cannot reach: through an L7 load
//! balancer, to a cloud's workload-identity federation, or as a request credential next to
//! mTLS. [`JwtSvid`] is one token; [`JwtValidator`] decides whether a token is one, against
//! the JWT authorities of a [`JwtBundleSource`] ([`SpiffeBundle`](crate::SpiffeBundle),
//! [`JwtBundles`](crate::JwtBundles)); with feature `ca`, an
//! [`Authority`](crate::Authority) holding a [`JwtKey`](crate::JwtKey) mints them.
//!
//! ```
//! # #[cfg(all(feature = "ca", feature = "ring"))] {
//! use std::time::{Duration, SystemTime};
//! use meshid::jwt::{JwtError, JwtValidator};
//! use meshid::{Authority, JwtKey, KeyType, SpiffeId, TrustDomain};
//!
//! let td = TrustDomain::new("example.org")?;
//! let ca = Authority::new_root(td, Duration::from_secs(86_400), KeyType::P256)?
//!     .with_jwt_key(JwtKey::generate(KeyType::P256)?);
//! let token = ca.mint_jwt_svid(&SpiffeId::new("spiffe://example.org/web")?, &["reports"],
//!                              Duration::from_secs(300))?;
//!
//! // The relying party: its audience, the trust domain's bundle, the crypto provider's
//! // algorithms, and the time.
//! let bundle = ca.spiffe_bundle();
//! let validator = JwtValidator::new("reports", meshid::ring_algorithms());
//! let svid = validator.validate(token.token(), &bundle, SystemTime::now())?;
//! assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
//!
//! let other = JwtValidator::new("billing", meshid::ring_algorithms());
//! assert!(matches!(
//!     other.validate(token.token(), &bundle, SystemTime::now()),
//!     Err(JwtError::AudienceMismatch { .. })
//! ));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How strict
//!
//! [`JwtValidator::validate`] applies every rule of JWT-SVID.md, and a few more, in this
//! order; each refusal is its own [`JwtError`] variant naming the rule:
//!
//! 1. The token is at most [`MAX_TOKEN_LEN`] bytes, checked before anything is decoded.
//! 2. JWS compact serialization only: a JSON serialization, or anything but three
//!    `.`-separated parts, is refused; each part is unpadded base64url, strictly (no `=`,
//!    no whitespace, no stray bits).
//! 3. The header and the claims are JSON objects with no member name repeated at any
//!    depth (`serde_json` alone would keep the last of two `alg`s; meshid reads every
//!    member through a visitor that refuses the second).
//! 4. `alg` is one of RS256/384/512, ES256/384/512, PS256/384/512, **checked before
//!    anything else is looked at**: `none` and `HS256` (the "public key as HMAC secret"
//!    attack) never reach a key.
//! 5. The header holds nothing but `alg`, `kid` and `typ` (the spec's MUST NOT, which
//!    go-spiffe and SPIRE do not enforce): `crit`, `jku`, `jwk`, `x5u`, `x5c` are refused.
//!    No lenient mode exists.
//! 6. `typ` is absent, `JWT` or `JOSE`; `kid` is a non-empty string (required: every
//!    bundle key has one, and keys are looked up by it).
//! 7. `sub` is a SPIFFE ID with a path; `aud` a non-empty string or a non-empty array of
//!    non-empty strings; `exp` an integer; `nbf` and `iat`, when present, integers.
//! 8. The key is looked up by `kid` among the JWT authorities of **the trust domain of
//!    `sub` only**; its type must fit `alg` (RS/PS: RSA of at least 2,048 bits; ES256:
//!    P-256; ES384: P-384; ES512: P-521).
//! 9. The signature over exactly the first two parts verifies, with the algorithm of the
//!    list given (a rustls `CryptoProvider`'s, [`ring_algorithms()`], ...) that implements
//!    `alg`: the crypto library is the one the caller picked. ES signatures must be the
//!    fixed-width `R || S`.
//! 10. `exp` is after now, `nbf` (if any) not after now, `iat` (if any) not after now;
//!     then the validator's audience is among `aud`.
//!
//! **Clock leeway defaults to zero.** JWT-SVIDs live minutes (SPIRE's default is 5 min),
//! so a few seconds of leeway is a large share of a token's life, and an issuer that sets
//! `iat` (or `nbf`) to the moment it signs means a relying party whose clock runs behind
//! would refuse a fresh token only if its clock is off by more than the time the token
//! took to arrive. Machines in a SPIFFE deployment run NTP; a site whose clocks do not
//! can set [`JwtValidator::with_leeway`], which widens all three time checks alike.
//!
//! [`ring_algorithms()`]: crate::ring_algorithms

mod ecdsa;
mod error;
mod json;
mod token;
mod validate;

#[cfg(feature = "ca")]
pub(crate) use ecdsa::der_to_raw;
pub use error::JwtError;
pub use token::JwtSvid;
pub use validate::JwtValidator;

pub use crate::bundle::{JwtBundleSource, JwtBundles};

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::{alg_id, AlgorithmIdentifier};

use crate::bundle::{Curve, KeyKind};

/// The longest token decoded: 64 KiB. A JWT-SVID is a few hundred bytes; the limit keeps
/// hostile input from costing more than a bounded amount of base64 and JSON work, and is
/// the order of what HTTP servers accept in one header.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// A JWS signature algorithm JWT-SVID allows (JWT-SVID §2.1; RFC 7518 §3.3-3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// ECDSA with P-521 and SHA-512.
    Es512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    Ps512,
}

impl JwtAlgorithm {
    /// Every algorithm JWT-SVID allows.
    pub const ALL: [Self; 9] = [
        Self::Rs256,
        Self::Rs384,
        Self::Rs512,
        Self::Es256,
        Self::Es384,
        Self::Es512,
        Self::Ps256,
        Self::Ps384,
        Self::Ps512,
    ];

    /// The `alg` value, such as `ES256`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
        }
    }

    /// The algorithm an `alg` value names, exactly (case-sensitive, RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The width in bytes of each of `R` and `S` of an ES signature.
    pub(crate) fn ecdsa_width(self) -> Option<usize> {
        match self {
            Self::Es256 => Some(32),
            Self::Es384 => Some(48),
            Self::Es512 => Some(66),
            _ => None,
        }
    }

    /// Whether a key of `kind` may sign with this algorithm (RFC 7518 §3.3-3.5; the size
    /// of an RSA key is checked apart).
    pub(crate) fn fits(self, kind: KeyKind) -> bool {
        matches!(
            (self, kind),
            (Self::Es256, KeyKind::Ec(Curve::P256))
                | (Self::Es384, KeyKind::Ec(Curve::P384))
                | (Self::Es512, KeyKind::Ec(Curve::P521))
                | (
                    Self::Rs256
                        | Self::Rs384
                        | Self::Rs512
                        | Self::Ps256
                        | Self::Ps384
                        | Self::Ps512,
                    KeyKind::Rsa { .. }
                )
        )
    }

    /// The `SubjectPublicKeyInfo` algorithm a verification algorithm for this one takes
    /// keys of (RSA-PSS keys are `rsaEncryption` keys, as JWKs are).
    pub(crate) fn public_key_alg_id(self) -> AlgorithmIdentifier {
        match self {
            Self::Es256 => alg_id::ECDSA_P256,
            Self::Es384 => alg_id::ECDSA_P384,
            Self::Es512 => alg_id::ECDSA_P521,
            _ => alg_id::RSA_ENCRYPTION,
        }
    }

    /// The signature algorithm identifier this one is (RFC 4055 parameters for PSS).
    pub(crate) fn signature_alg_id(self) -> AlgorithmIdentifier {
        match self {
            Self::Rs256 => alg_id::RSA_PKCS1_SHA256,
            Self::Rs384 => alg_id::RSA_PKCS1_SHA384,
            Self::Rs512 => alg_id::RSA_PKCS1_SHA512,
            Self::Es256 => alg_id::ECDSA_SHA256,
            Self::Es384 => alg_id::ECDSA_SHA384,
            Self::Es512 => alg_id::ECDSA_SHA512,
            Self::Ps256 => alg_id::RSA_PSS_SHA256,
            Self::Ps384 => alg_id::RSA_PSS_SHA384,
            Self::Ps512 => alg_id::RSA_PSS_SHA512,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = JwtError;

    /// Reads an `alg` value; anything else is [`JwtError::UnsupportedAlgorithm`].
    fn from_str(s: &str) -> Result<Self, JwtError> {
        Self::from_name(s).ok_or_else(|| JwtError::UnsupportedAlgorithm {
            alg: serde_json::Value::from(s).to_string(),
        })
    }
}

#[cfg(all(test, feature = "ca", feature = "ring"))]
mod tests;
