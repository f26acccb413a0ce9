//! Minting JWT-SVIDs: [`JwtKey`], the signing key an [`Authority`](super::Authority) holds
//! beside its X.509 key, and [`JwtSvidRequest`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};

use super::signer::{KeyPair, Signer};
use super::CaError;
use crate::jwt::{der_to_raw, JwtAlgorithm, JwtSvid};
use crate::{JwtAuthority, KeyType, SpiffeId};

/// The default lifetime of a minted JWT-SVID: 5 minutes, as SPIRE's.
pub const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(300);

/// The shortest JWT-SVID lifetime minted: 1 s. `exp` counts whole seconds, and a
/// shorter token could expire in the second it is minted.
pub const MIN_JWT_SVID_TTL: Duration = Duration::from_secs(1);

/// A JWT-SVID signing key: an ECDSA [`Signer`] (P-256 signs ES256, P-384 signs ES384) and
/// its key ID, published in the trust domain's bundle as a `jwt-svid` JWK
/// ([`authority`](Self::authority)).
///
/// # Why a key of its own
///
/// An [`Authority`](super::Authority) signs JWT-SVIDs with a `JwtKey` it holds **beside**
/// its X.509 key, never with the X.509 key, as SPIRE keeps separate JWT keys:
///
/// - The two are published to different audiences: JWT keys go into JWKS documents that
///   OIDC consumers (cloud federation, Vault, Keycloak) fetch and cache; the X.509 root
///   goes to mTLS peers. Retiring one should not force a change of the other.
/// - They rotate on different clocks: a root lives months or years; a JWT key can roll
///   over in days, with the old and the new key published together for the overlap
///   (an authority holds several, mints with the newest, and a validator accepts any
///   published one).
/// - One key, one protocol: a key that signs only JWS can never be talked into signing
///   something that parses as a certificate, and the other way round.
///
/// ```
/// # #[cfg(feature = "ring")] {
/// use std::sync::Arc;
/// use meshid::{JwtAlgorithm, JwtKey, KeyType, RingKeyPair};
///
/// let key = JwtKey::generate(KeyType::P384)?;
/// assert_eq!(key.algorithm(), JwtAlgorithm::Es384);
/// assert_eq!(key.key_id().len(), 22); // 128 random bits, base64url
///
/// // Any Signer: ring, aws-lc-rs, a KMS.
/// let key = JwtKey::new("2026-11", Arc::new(RingKeyPair::generate(KeyType::P256)?))?;
/// assert_eq!(key.authority().key_id(), "2026-11");
/// # }
/// # Ok::<(), meshid::CaError>(())
/// ```
#[derive(Clone)]
pub struct JwtKey {
    algorithm: JwtAlgorithm,
    signer: Arc<dyn Signer>,
    authority: JwtAuthority,
}

impl JwtKey {
    /// A fresh key of `key_type` (P-256 or P-384, RustCrypto) with a random key ID.
    pub fn generate(key_type: KeyType) -> Result<Self, CaError> {
        Self::with_random_id(Arc::new(KeyPair::generate(key_type)?))
    }

    /// The key `signer` under a random key ID ([`random_key_id`](Self::random_key_id)).
    pub fn with_random_id(signer: Arc<dyn Signer>) -> Result<Self, CaError> {
        Self::new(Self::random_key_id()?, signer)
    }

    /// The key `signer` (P-256 or P-384) under the key ID `key_id`, which must not be
    /// empty; it names the key in tokens (`kid`) and in the bundle.
    pub fn new(key_id: impl Into<String>, signer: Arc<dyn Signer>) -> Result<Self, CaError> {
        let key_id = key_id.into();
        if key_id.is_empty() {
            return Err(CaError::EmptyJwtKeyId);
        }
        let algorithm = match signer.key_type() {
            KeyType::P256 => JwtAlgorithm::Es256,
            KeyType::P384 => JwtAlgorithm::Es384,
            other => return Err(CaError::UnsupportedKeyType(other)),
        };
        let authority = JwtAuthority::new(key_id, &signer.public_key_der())
            .map_err(|_| CaError::UnsupportedKeyType(signer.key_type()))?;
        Ok(Self {
            algorithm,
            signer,
            authority,
        })
    }

    /// A fresh key ID: 128 random bits, unpadded base64url (22 characters).
    pub fn random_key_id() -> Result<String, CaError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| CaError::Random)?;
        Ok(Base64UrlUnpadded::encode_string(&bytes))
    }

    /// The key ID (`kid`).
    pub fn key_id(&self) -> &str {
        self.authority.key_id()
    }

    /// The algorithm it signs with: ES256 for P-256, ES384 for P-384.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.signer.key_type()
    }

    /// The public key as the bundle publishes it (`use` `jwt-svid`, `kid`, the JWK).
    pub fn authority(&self) -> &JwtAuthority {
        &self.authority
    }

    /// Signs `header.payload` and returns the compact token.
    fn sign(&self, claims: &Map<String, Value>) -> Result<String, CaError> {
        let mut header = Map::new();
        header.insert("alg".into(), self.algorithm.name().into());
        header.insert("kid".into(), self.key_id().into());
        header.insert("typ".into(), "JWT".into());
        let mut token =
            Base64UrlUnpadded::encode_string(Value::Object(header).to_string().as_bytes());
        token.push('.');
        token.push_str(&Base64UrlUnpadded::encode_string(
            Value::Object(claims.clone()).to_string().as_bytes(),
        ));
        let der = self.signer.sign(token.as_bytes())?;
        let width = self.algorithm.ecdsa_width().ok_or(CaError::Signing)?;
        let raw = der_to_raw(&der, width).ok_or(CaError::Signing)?;
        token.push('.');
        token.push_str(&Base64UrlUnpadded::encode_string(&raw));
        Ok(token)
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("key_id", &self.key_id())
            .field("algorithm", &self.algorithm)
            .field("secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// What to mint: the SPIFFE ID, the audience, the lifetime, optional `jti` and `iss`,
/// and optionally which of the authority's JWT keys signs (else the newest).
///
/// ```
/// use std::time::Duration;
/// use meshid::{Authority, JwtKey, JwtSvidRequest, KeyType, SpiffeId, TrustDomain};
///
/// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?
///     .with_jwt_key(JwtKey::generate(KeyType::P256)?);
/// let request = JwtSvidRequest::new(SpiffeId::new("spiffe://example.org/web")?, ["a", "b"])
///     .ttl(Duration::from_secs(60))
///     .jti("7f3c")
///     .issuer("https://oidc.example.org");
/// let svid = ca.mint_jwt_svid_for(&request)?;
/// assert_eq!(svid.audience(), ["a", "b"]);
/// assert_eq!(svid.claims()["jti"], "7f3c");
/// assert_eq!(svid.claims()["iss"], "https://oidc.example.org");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JwtSvidRequest {
    pub(super) id: SpiffeId,
    pub(super) audience: Vec<String>,
    pub(super) ttl: Duration,
    pub(super) jti: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) key_id: Option<String>,
}

impl JwtSvidRequest {
    /// A request for `id` with `audience` (one value or more; several are written as an
    /// array, one as a string) and the default TTL, 5 min.
    pub fn new(id: SpiffeId, audience: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id,
            audience: audience.into_iter().map(Into::into).collect(),
            ttl: DEFAULT_JWT_SVID_TTL,
            jti: None,
            issuer: None,
            key_id: None,
        }
    }

    /// Sets the lifetime: at least 1 s; `exp` is `now + ttl` in whole seconds, capped at
    /// the authority's NotAfter.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the `jti` claim (a unique token ID; JWT-SVID §7.1).
    #[must_use]
    pub fn jti(mut self, jti: impl Into<String>) -> Self {
        self.jti = Some(jti.into());
        self
    }

    /// Sets the `iss` claim (an OIDC issuer URL, say).
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Signs with the authority's JWT key of this key ID instead of the newest.
    #[must_use]
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }
}

/// Mints `request` with `key` at `now`, expiring at `now + ttl` truncated to whole seconds
/// and capped at `not_after`. The ID, audience and TTL were checked by the authority.
pub(super) fn mint(
    key: &JwtKey,
    request: &JwtSvidRequest,
    now: SystemTime,
    not_after: SystemTime,
) -> Result<JwtSvid, CaError> {
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_err(|_| CaError::TtlOutOfRange)
            .map(|d| d.as_secs())
    };
    let issued_at = secs(now)?;
    let expiry = secs(
        now.checked_add(request.ttl)
            .map_or(not_after, |t| t.min(not_after)),
    )?;
    if expiry <= issued_at {
        return Err(CaError::AuthorityExpired);
    }
    let mut claims = Map::new();
    claims.insert("sub".into(), request.id.as_str().into());
    claims.insert(
        "aud".into(),
        match &request.audience[..] {
            [one] => one.as_str().into(),
            many => many.iter().map(String::as_str).collect::<Vec<_>>().into(),
        },
    );
    claims.insert("exp".into(), expiry.into());
    claims.insert("iat".into(), issued_at.into());
    if let Some(jti) = &request.jti {
        claims.insert("jti".into(), jti.as_str().into());
    }
    if let Some(issuer) = &request.issuer {
        claims.insert("iss".into(), issuer.as_str().into());
    }
    let token = key.sign(&claims)?;
    // Read back by the format rules: what meshid mints, meshid accepts.
    let svid = JwtSvid::parse_insecure(&token).map_err(|_| CaError::Encoding)?;
    // The claims that say whose and until when, never the token (a bearer credential).
    tracing::info!(
        spiffe_id = %request.id,
        audience = ?request.audience,
        key_id = key.key_id(),
        not_after = %crate::time::Rfc3339(UNIX_EPOCH + Duration::from_secs(expiry)),
        "issued JWT-SVID"
    );
    Ok(svid)
}
