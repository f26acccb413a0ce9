//! [`JwtValidator`]: a relying party's check of a JWT-SVID.

use std::time::{Duration, SystemTime};

use rustls_pki_types::SignatureVerificationAlgorithm;

use super::ecdsa::raw_to_der;
use super::token::{decode, JwtSvid};
use super::{JwtAlgorithm, JwtBundleSource, JwtError};
use crate::bundle::KeyKind;

/// The smallest RSA modulus accepted (RFC 7518 §3.3, §3.5).
const MIN_RSA_BITS: usize = 2048;

/// Validates JWT-SVIDs for one audience, with the signature algorithms of the caller's
/// crypto provider.
///
/// Every rule of the [module documentation](super#how-strict) is applied, each refusal a
/// [`JwtError`] variant. The validator holds no keys: each call takes the bundles (so a
/// live source answers with its current keys) and the time (so tests need no clock).
///
/// ```
/// # #[cfg(all(feature = "ca", feature = "ring"))] {
/// use std::time::{Duration, SystemTime};
/// use meshid::jwt::{JwtError, JwtValidator};
/// use meshid::{Authority, JwtKey, KeyType, SpiffeId, TrustDomain};
///
/// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?
///     .with_jwt_key(JwtKey::generate(KeyType::P384)?);
/// let svid = ca.mint_jwt_svid(&SpiffeId::new("spiffe://example.org/web")?, &["api"], Duration::from_secs(60))?;
///
/// let validator = JwtValidator::new("api", meshid::ring_algorithms());
/// let bundle = ca.spiffe_bundle();
/// let now = SystemTime::now();
/// assert_eq!(validator.validate(svid.token(), &bundle, now)?.id(), svid.id());
///
/// // A minute later it has expired, unless the leeway covers it.
/// let later = now + Duration::from_secs(61);
/// assert!(matches!(validator.validate(svid.token(), &bundle, later), Err(JwtError::Expired { .. })));
/// let lenient = validator.clone().with_leeway(Duration::from_secs(5));
/// assert!(lenient.validate(svid.token(), &bundle, later).is_ok());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwtValidator<'a> {
    audience: String,
    algorithms: &'a [&'a dyn SignatureVerificationAlgorithm],
    leeway: Duration,
}

impl<'a> JwtValidator<'a> {
    /// A validator accepting tokens whose `aud` contains `audience`, verifying signatures
    /// with `algorithms` (such as [`ring_algorithms()`](crate::ring_algorithms), or a rustls
    /// `CryptoProvider`'s `signature_verification_algorithms.all`), with no clock leeway.
    pub fn new(
        audience: impl Into<String>,
        algorithms: &'a [&'a dyn SignatureVerificationAlgorithm],
    ) -> Self {
        Self {
            audience: audience.into(),
            algorithms,
            leeway: Duration::ZERO,
        }
    }

    /// Sets the clock leeway: `exp` may be up to `leeway` in the past, `nbf` and `iat` up
    /// to `leeway` in the future. Zero by default (see the [module
    /// documentation](super#how-strict) for why).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The audience this validator accepts.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The clock leeway.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Validates `token` at time `now` against the JWT authorities `bundles` holds for the
    /// trust domain of its `sub`.
    pub fn validate(
        &self,
        token: &str,
        bundles: &dyn JwtBundleSource,
        now: SystemTime,
    ) -> Result<JwtSvid, JwtError> {
        let decoded = decode(token)?;
        let svid = decoded.svid;
        let alg = svid.algorithm();

        // The key: by `kid`, among the authorities of the trust domain of `sub` only.
        let trust_domain = svid.id().trust_domain();
        let authorities =
            bundles
                .jwt_authorities_of(&trust_domain)
                .ok_or_else(|| JwtError::NoBundle {
                    trust_domain: trust_domain.clone(),
                })?;
        if authorities.is_empty() {
            return Err(JwtError::NoJwtAuthorities { trust_domain });
        }
        let authority = authorities
            .iter()
            .find(|a| a.key_id() == svid.key_id())
            .ok_or_else(|| JwtError::UnknownKeyId {
                key_id: svid.key_id().to_owned(),
                trust_domain,
            })?;
        let key = authority.public_key();
        if !alg.fits(key.kind) {
            return Err(JwtError::KeyMismatch {
                alg,
                key: key.kind.to_string(),
                key_id: svid.key_id().to_owned(),
            });
        }
        if let KeyKind::Rsa { bits } = key.kind {
            if bits < MIN_RSA_BITS {
                return Err(JwtError::RsaKeyTooSmall {
                    bits,
                    key_id: svid.key_id().to_owned(),
                });
            }
        }

        // The signature, by the caller's crypto provider.
        let verifier = self
            .algorithm_for(alg)
            .ok_or(JwtError::AlgorithmUnavailable { alg })?;
        let signature = match alg.ecdsa_width() {
            Some(width) => {
                raw_to_der(&decoded.signature, width).ok_or(JwtError::SignatureLength {
                    alg,
                    len: decoded.signature.len(),
                    expected: 2 * width,
                })?
            }
            None => decoded.signature,
        };
        verifier
            .verify_signature(&key.key, decoded.signing_input.as_bytes(), &signature)
            .map_err(|_| JwtError::BadSignature {
                key_id: svid.key_id().to_owned(),
            })?;

        // Time, then audience.
        let expired = svid
            .expiry()
            .checked_add(self.leeway)
            .is_some_and(|limit| now >= limit);
        if expired {
            return Err(JwtError::Expired {
                expiry: svid.expiry(),
                now,
            });
        }
        let latest = now.checked_add(self.leeway);
        let in_future = |t: SystemTime| latest.is_some_and(|latest| t > latest);
        if let Some(not_before) = svid.not_before().filter(|&t| in_future(t)) {
            return Err(JwtError::NotYetValid { not_before, now });
        }
        if let Some(issued_at) = svid.issued_at().filter(|&t| in_future(t)) {
            return Err(JwtError::IssuedInFuture { issued_at, now });
        }
        if !svid.audience().iter().any(|a| *a == self.audience) {
            return Err(JwtError::AudienceMismatch {
                expected: self.audience.clone(),
            });
        }
        Ok(svid)
    }

    /// The first of the algorithms given that implements `alg`: the same key algorithm
    /// and the same signature algorithm identifier.
    fn algorithm_for(&self, alg: JwtAlgorithm) -> Option<&'a dyn SignatureVerificationAlgorithm> {
        let (key_id, sig_id) = (alg.public_key_alg_id(), alg.signature_alg_id());
        self.algorithms
            .iter()
            .copied()
            .find(|a| a.public_key_alg_id() == key_id && a.signature_alg_id() == sig_id)
    }
}
