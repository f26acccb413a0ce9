//! The issuing certificate authority of a trust domain.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::Encode;
use rustls_pki_types::CertificateDer;
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::issue::{self, Params, Role, BACKDATE};
use super::jwt::{self, JwtKey, JwtSvidRequest, MIN_JWT_SVID_TTL};
use super::signer::{public_key_info, KeyPair, Signer};
use super::{CaError, Csr};
use crate::svid::profile;
use crate::{JwtSvid, KeyType, SpiffeBundle, SpiffeId, TrustDomain, X509Bundle, X509Svid};

/// The default lifetime of an issued X509-SVID (as SPIRE).
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);

/// What an [`Authority`] decided to issue for a CSR: the ID (or none, to use the CSR's after
/// the authority's checks), the lifetime, and the DNS SANs.
///
/// The certificate carries the DNS names of this request and no others: the DNS names a
/// CSR asks for are never granted by themselves (an X509-SVID's identities come from the
/// CA's authorization decision, not from the request). Wildcard names such as
/// `*.example.org` are refused unless [`allow_wildcard_dns`](Self::allow_wildcard_dns) says
/// otherwise.
///
/// ```
/// use std::time::Duration;
/// use meshid::{Authority, CaError, CertificateInfo, CsrBuilder, KeyPair, KeyType, SpiffeId, SvidRequest, TrustDomain};
///
/// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?;
/// let key = KeyPair::generate(KeyType::P256)?;
/// let csr = CsrBuilder::new(SpiffeId::new("spiffe://example.org/web")?)
///     .dns_name("*.google.com")
///     .build(&key)?;
///
/// // Nothing the CSR asks for is granted unless the request names it.
/// let chain = ca.sign_csr(&csr, &SvidRequest::new())?;
/// assert!(CertificateInfo::from_der(&chain[0])?.dns_names().is_empty());
///
/// let chain = ca.sign_csr(&csr, &SvidRequest::new().dns_name("web.example.org"))?;
/// assert_eq!(CertificateInfo::from_der(&chain[0])?.dns_names(), ["web.example.org"]);
///
/// let wildcard = SvidRequest::new().dns_name("*.example.org");
/// assert!(matches!(ca.sign_csr(&csr, &wildcard), Err(CaError::WildcardDnsName { .. })));
/// assert!(ca.sign_csr(&csr, &wildcard.allow_wildcard_dns(true)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SvidRequest {
    id: Option<SpiffeId>,
    ttl: Duration,
    dns_names: Vec<String>,
    allow_wildcard_dns: bool,
}

impl Default for SvidRequest {
    fn default() -> Self {
        Self {
            id: None,
            ttl: DEFAULT_SVID_TTL,
            dns_names: Vec::new(),
            allow_wildcard_dns: false,
        }
    }
}

impl SvidRequest {
    /// A request with the default TTL (1 h) and the CSR's ID.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues for `id`, whatever the CSR asks (the authority's own decision).
    #[must_use]
    pub fn id(mut self, id: SpiffeId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the lifetime: at least [`Authority::MIN_SVID_TTL`] (shorter is refused), capped
    /// at the authority's own NotAfter, and NotAfter is truncated to whole seconds.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Adds a DNS SAN: the authority's decision, whatever the CSR asks. A wildcard
    /// (`*.example.org`) is refused at signing unless allowed by
    /// [`allow_wildcard_dns`](Self::allow_wildcard_dns).
    #[must_use]
    pub fn dns_name(mut self, name: impl Into<String>) -> Self {
        self.dns_names.push(name.into());
        self
    }

    /// Whether wildcard DNS SANs (`*.example.org`) may be issued; they are refused by
    /// default, since one certificate would then answer for every host of the domain.
    #[must_use]
    pub fn allow_wildcard_dns(mut self, allow: bool) -> Self {
        self.allow_wildcard_dns = allow;
        self
    }
}

/// A CA for one trust domain: a self-signed root, or an intermediate below another
/// authority. It issues X509-SVIDs by the SPIFFE profile and signs through a [`Signer`].
///
/// ```
/// use std::time::Duration;
/// use meshid::{Authority, KeyType, SpiffeId, TrustDomain};
///
/// let root = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(86400), KeyType::P256)?;
/// let svid = root.issue(&SpiffeId::new("spiffe://example.org/web")?, Duration::from_secs(600))?;
/// assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
/// assert_eq!(svid.chain().len(), 1); // the root is not sent
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Authority {
    trust_domain: TrustDomain,
    /// This CA's certificate.
    cert: CertificateDer<'static>,
    /// The CAs between this one and the root (root excluded), nearest first.
    issuers: Vec<CertificateDer<'static>>,
    /// The self-signed root, when known (it is this CA's own certificate for a root).
    root: Option<CertificateDer<'static>>,
    /// This CA's subject `Name`, DER: the issuer of what it signs.
    subject: Vec<u8>,
    /// The authorityKeyIdentifier extension (DER) of what it signs.
    aki: Vec<u8>,
    not_after: SystemTime,
    signer: Arc<dyn Signer>,
    /// The JWT-SVID signing keys, oldest first; the last one mints by default.
    jwt_keys: Vec<JwtKey>,
    /// What it issued and refused (shared by clones), for metrics.
    counts: Arc<super::counts::IssueCounts>,
}

impl Authority {
    /// The shortest X509-SVID lifetime issued: 5 s. Shorter TTLs are refused with
    /// [`CaError::TtlTooShort`].
    ///
    /// NotAfter is truncated to whole seconds (X.509 times have no fraction, RFC 5280
    /// §4.1.2.5), so an SVID issued for `ttl` lives between `ttl − 1 s` and `ttl` from
    /// issuance: a 1 s TTL can leave a few milliseconds. A rotator renews at about half of
    /// that, and needs time to issue, verify and publish the next SVID before the current
    /// one expires, while peers finish handshakes with it; 5 s leaves at least 4 s of
    /// lifetime, so renewal at 40-60 % keeps more than 1.6 s of margin.
    pub const MIN_SVID_TTL: Duration = Duration::from_secs(5);

    /// A new self-signed root with a fresh key of `key_type`, valid for `ttl`.
    pub fn new_root(
        trust_domain: TrustDomain,
        ttl: Duration,
        key_type: KeyType,
    ) -> Result<Self, CaError> {
        Self::new_root_with_signer(trust_domain, ttl, Arc::new(KeyPair::generate(key_type)?))
    }

    /// A new self-signed root whose key is `signer` (a KMS or HSM key, say).
    pub fn new_root_with_signer(
        trust_domain: TrustDomain,
        ttl: Duration,
        signer: Arc<dyn Signer>,
    ) -> Result<Self, CaError> {
        let id = trust_domain.id();
        let subject = ca_subject(&trust_domain, "root")?;
        let spki = signer.public_key_der();
        let now = SystemTime::now();
        let not_after = now.checked_add(ttl).ok_or(CaError::TtlOutOfRange)?;
        let cert = issue::issue(
            &Params {
                role: Role::Ca {
                    id: &id,
                    path_len: None,
                },
                subject: &subject,
                subject_key: &spki,
                issuer: &subject,
                aki: None,
                not_before: now - BACKDATE,
                not_after,
            },
            signer.as_ref(),
        )?;
        Ok(Self {
            trust_domain,
            root: Some(cert.clone()),
            cert,
            issuers: Vec::new(),
            subject,
            aki: issue::aki_extension(&issue::key_id(&spki)?)?,
            not_after,
            signer,
            jwt_keys: Vec::new(),
            counts: Arc::default(),
        })
    }

    /// A new intermediate CA signed by this one, with a fresh key of `key_type`. Its lifetime
    /// is capped at this authority's.
    pub fn new_intermediate(&self, ttl: Duration, key_type: KeyType) -> Result<Self, CaError> {
        self.new_intermediate_with_signer(ttl, Arc::new(KeyPair::generate(key_type)?))
    }

    /// A new intermediate CA signed by this one, whose key is `signer`.
    pub fn new_intermediate_with_signer(
        &self,
        ttl: Duration,
        signer: Arc<dyn Signer>,
    ) -> Result<Self, CaError> {
        let id = self.trust_domain.id();
        let subject = ca_subject(&self.trust_domain, "intermediate")?;
        let spki = signer.public_key_der();
        let (not_before, not_after) = self.validity(ttl)?;
        let cert = issue::issue(
            &Params {
                role: Role::Ca {
                    id: &id,
                    path_len: None,
                },
                subject: &subject,
                subject_key: &spki,
                issuer: &self.subject,
                aki: Some(&self.aki),
                not_before,
                not_after,
            },
            self.signer.as_ref(),
        )?;
        let mut issuers = Vec::with_capacity(self.issuers.len() + 1);
        if self.root.as_ref() != Some(&self.cert) {
            issuers.push(self.cert.clone());
        }
        issuers.extend(self.issuers.iter().cloned());
        Ok(Self {
            trust_domain: self.trust_domain.clone(),
            cert,
            issuers,
            root: self.root.clone(),
            subject,
            aki: issue::aki_extension(&issue::key_id(&spki)?)?,
            not_after,
            signer,
            jwt_keys: Vec::new(),
            counts: Arc::default(),
        })
    }

    /// Loads an existing CA: `chain_pem` holds its certificate first, then any issuers up to
    /// (optionally) the root; `key_pem` its PKCS#8 key. The trust domain comes from the
    /// certificate's SPIFFE URI SAN, or from `trust_domain` when the certificate has none
    /// (as CAs made by `openssl req -x509` may not).
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        trust_domain: Option<&TrustDomain>,
    ) -> Result<Self, CaError> {
        let chain: Vec<CertificateDer<'static>> = crate::pem::parse(chain_pem)?
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| CertificateDer::from(b.der.to_vec()))
            .collect();
        let signer = Arc::new(KeyPair::from_pkcs8_pem(key_pem)?);
        Self::from_parts(&chain, signer, trust_domain)
    }

    /// Builds an authority from its chain (its own certificate first) and signer.
    pub fn from_parts(
        chain: &[CertificateDer<'_>],
        signer: Arc<dyn Signer>,
        trust_domain: Option<&TrustDomain>,
    ) -> Result<Self, CaError> {
        let (cert_der, rest) = chain.split_first().ok_or(CaError::NoCertificate)?;
        let cert = profile::parse_certificate(cert_der, 0)?;
        profile::check_signing(&profile::CertView::of(&cert, 0)).map_err(|_| CaError::NotACa)?;
        let spki = cert.tbs_certificate().subject_public_key_info();
        if public_key_info(signer.as_ref())? != *spki {
            return Err(CaError::CaKeyMismatch);
        }
        let trust_domain = cert_trust_domain(&cert, trust_domain)?;
        let self_issued =
            |c: &Certificate| c.tbs_certificate().issuer() == c.tbs_certificate().subject();
        let mut issuers = Vec::new();
        let mut root = None;
        if self_issued(&cert) {
            // This CA is the root; nothing after it can be its issuer.
            root = Some(cert_der.clone().into_owned());
        } else {
            // Its issuers, nearest first, each a signing certificate by the profile, up to
            // an optional self-issued root.
            for (i, der) in rest.iter().enumerate() {
                let c = profile::parse_certificate(der, i + 1)?;
                profile::check_signing(&profile::CertView::of(&c, i + 1))?;
                if self_issued(&c) {
                    root = Some(der.clone().into_owned());
                    break;
                }
                issuers.push(der.clone().into_owned());
            }
        }
        Ok(Self {
            trust_domain,
            cert: cert_der.clone().into_owned(),
            issuers,
            root,
            subject: profile::CertView::raw_subject(cert_der).ok_or(CaError::Encoding)?,
            aki: issue::aki_extension(&match subject_key_id(&cert) {
                Some(own_key_id) => own_key_id,
                None => issue::key_id(&spki.to_der().map_err(|_| CaError::Encoding)?)?,
            })?,
            not_after: cert.tbs_certificate().validity().not_after.to_system_time(),
            signer,
            jwt_keys: Vec::new(),
            counts: Arc::default(),
        })
    }

    /// Issues an X509-SVID for `id` with a fresh P-256 key, valid for `ttl`: NotBefore is
    /// backdated 10 s for peers whose clocks run behind; NotAfter is `now + ttl` truncated
    /// to whole seconds (so the SVID lives between `ttl − 1 s` and `ttl`), capped at this
    /// authority's NotAfter. A `ttl` under [`Authority::MIN_SVID_TTL`] is refused with
    /// [`CaError::TtlTooShort`].
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<X509Svid, CaError> {
        self.counts.x509(|| {
            self.check_id(id)?;
            let key = KeyPair::generate(KeyType::P256)?;
            let chain = self.sign(id, &[], &key.public_key_der(), ttl)?;
            Ok(X509Svid::new(chain, key.to_private_key()?)?)
        })
    }

    /// What this authority (and its clones) issued and refused so far.
    #[cfg(any(feature = "metrics", test))]
    pub(crate) fn counts(&self) -> &super::counts::IssueCounts {
        &self.counts
    }

    /// Issues an X509-SVID as [`issue`](Self::issue) does, for what `request` says: its ID
    /// (required: [`CaError::NoSpiffeId`] without one), TTL and DNS SANs (a wildcard
    /// only if `request` allows it).
    ///
    /// ```
    /// use std::time::Duration;
    /// use meshid::{Authority, KeyType, SpiffeId, SvidRequest, TrustDomain};
    ///
    /// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?;
    /// let request = SvidRequest::new()
    ///     .id(SpiffeId::new("spiffe://example.org/web")?)
    ///     .ttl(Duration::from_secs(60))
    ///     .dns_name("web.example.org");
    /// let svid = ca.issue_for(&request)?;
    /// assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn issue_for(&self, request: &SvidRequest) -> Result<X509Svid, CaError> {
        self.counts.x509(|| self.issue_for_uncounted(request))
    }

    fn issue_for_uncounted(&self, request: &SvidRequest) -> Result<X509Svid, CaError> {
        let id = request.id.as_ref().ok_or(CaError::NoSpiffeId)?;
        self.check_id(id)?;
        if !request.allow_wildcard_dns {
            if let Some(name) = request.dns_names.iter().find(|n| n.contains('*')) {
                return Err(CaError::WildcardDnsName { name: name.clone() });
            }
        }
        let key = KeyPair::generate(KeyType::P256)?;
        let chain = self.sign(id, &request.dns_names, &key.public_key_der(), request.ttl)?;
        Ok(X509Svid::new(chain, key.to_private_key()?)?)
    }

    /// Signs a CSR. The ID is `request`'s when it names one (the authority's decision),
    /// else the CSR's; either way it must belong to this trust domain and have a path, and a
    /// CSR asking for more than one URI SAN is refused, and so is a TTL under
    /// [`Authority::MIN_SVID_TTL`]. The DNS SANs are `request`'s only: those the CSR asks
    /// for are not granted unless `request` names them, and a wildcard is refused unless
    /// `request` allows it ([`CaError::WildcardDnsName`]). Returns the chain, leaf first,
    /// root excluded.
    pub fn sign_csr(
        &self,
        csr: &Csr,
        request: &SvidRequest,
    ) -> Result<Vec<CertificateDer<'static>>, CaError> {
        self.counts.x509(|| self.sign_csr_uncounted(csr, request))
    }

    fn sign_csr_uncounted(
        &self,
        csr: &Csr,
        request: &SvidRequest,
    ) -> Result<Vec<CertificateDer<'static>>, CaError> {
        if csr.uri_sans().len() > 1 {
            return Err(CaError::CsrMultipleUriSans {
                count: csr.uri_sans().len(),
            });
        }
        let id = request
            .id
            .as_ref()
            .or(csr.spiffe_id())
            .ok_or(CaError::NoSpiffeId)?;
        self.check_id(id)?;
        if !request.allow_wildcard_dns {
            if let Some(name) = request.dns_names.iter().find(|n| n.contains('*')) {
                return Err(CaError::WildcardDnsName { name: name.clone() });
            }
        }
        self.sign(id, &request.dns_names, csr.public_key_der(), request.ttl)
    }

    /// Adds a JWT-SVID signing key, kept beside the X.509 key (see [`JwtKey`] for why).
    /// The key added last mints by default; the others stay published in
    /// [`spiffe_bundle`](Self::spiffe_bundle) (rotation overlap) and can still mint when
    /// named ([`JwtSvidRequest::key_id`]). A key with the ID of one held replaces it.
    ///
    /// Keys belong to this authority value only: an intermediate made with
    /// [`new_intermediate`](Self::new_intermediate) starts with none.
    #[must_use]
    pub fn with_jwt_key(mut self, key: JwtKey) -> Self {
        self.jwt_keys.retain(|k| k.key_id() != key.key_id());
        self.jwt_keys.push(key);
        self
    }

    /// Removes the JWT key with this key ID (a retired key, after the overlap), returning it.
    pub fn remove_jwt_key(&mut self, key_id: &str) -> Option<JwtKey> {
        let index = self.jwt_keys.iter().position(|k| k.key_id() == key_id)?;
        Some(self.jwt_keys.remove(index))
    }

    /// The JWT-SVID signing keys, oldest first; the last mints by default.
    pub fn jwt_keys(&self) -> &[JwtKey] {
        &self.jwt_keys
    }

    /// Mints a JWT-SVID for `id` (in this trust domain, with a path) with the newest JWT
    /// key: header `alg` (ES256 or ES384, by the key), `kid` and `typ` `JWT`; claims `sub`,
    /// `aud` (one value as a string, several as an array), `exp` (`now + ttl` in whole
    /// seconds, capped at this authority's NotAfter) and `iat`. `ttl` is at least
    /// [`MIN_JWT_SVID_TTL`] (1 s); [`DEFAULT_JWT_SVID_TTL`](super::DEFAULT_JWT_SVID_TTL) is
    /// 5 min, as SPIRE's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use meshid::{Authority, JwtKey, KeyType, SpiffeId, TrustDomain};
    ///
    /// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?
    ///     .with_jwt_key(JwtKey::generate(KeyType::P256)?);
    /// let svid = ca.mint_jwt_svid(&SpiffeId::new("spiffe://example.org/web")?, &["api"], Duration::from_secs(300))?;
    /// assert_eq!(svid.key_id(), ca.jwt_keys()[0].key_id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn mint_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[&str],
        ttl: Duration,
    ) -> Result<JwtSvid, CaError> {
        self.mint_jwt_svid_for(&JwtSvidRequest::new(id.clone(), audience.iter().copied()).ttl(ttl))
    }

    /// Mints a JWT-SVID as [`mint_jwt_svid`](Self::mint_jwt_svid) does, for what `request`
    /// says: optional `jti` and `iss` claims, and which key signs.
    pub fn mint_jwt_svid_for(&self, request: &JwtSvidRequest) -> Result<JwtSvid, CaError> {
        self.counts.jwt(|| self.mint_jwt_svid_uncounted(request))
    }

    fn mint_jwt_svid_uncounted(&self, request: &JwtSvidRequest) -> Result<JwtSvid, CaError> {
        self.check_id(&request.id)?;
        if request.audience.is_empty() || request.audience.iter().any(String::is_empty) {
            return Err(CaError::EmptyAudience);
        }
        if request.ttl < MIN_JWT_SVID_TTL {
            return Err(CaError::JwtTtlTooShort {
                ttl: request.ttl,
                min: MIN_JWT_SVID_TTL,
            });
        }
        let key = match &request.key_id {
            None => self.jwt_keys.last().ok_or(CaError::NoJwtKey)?,
            Some(key_id) => self
                .jwt_keys
                .iter()
                .find(|k| k.key_id() == key_id)
                .ok_or_else(|| CaError::UnknownJwtKey {
                    key_id: key_id.clone(),
                })?,
        };
        let now = SystemTime::now();
        if now >= self.not_after {
            return Err(CaError::AuthorityExpired);
        }
        jwt::mint(key, request, now, self.not_after)
    }

    /// The trust domain's SPIFFE bundle as this authority knows it: the root (when known)
    /// as its X.509 authority and every JWT key as a `jwt-svid` authority, oldest first.
    /// `to_json` on it is the document relying parties load.
    pub fn spiffe_bundle(&self) -> SpiffeBundle {
        let x509 = X509Bundle::from_checked(
            self.trust_domain.clone(),
            self.root.iter().cloned().collect(),
        );
        self.jwt_keys
            .iter()
            .fold(SpiffeBundle::from_x509_bundle(&x509), |bundle, key| {
                bundle.with_jwt_authority(key.authority().clone())
            })
    }

    pub(crate) fn check_id(&self, id: &SpiffeId) -> Result<(), CaError> {
        if !id.is_member_of(&self.trust_domain) {
            return Err(CaError::IdOutsideTrustDomain {
                id: id.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        if id.is_trust_domain_id() {
            return Err(CaError::PathlessId { id: id.clone() });
        }
        Ok(())
    }

    fn sign(
        &self,
        id: &SpiffeId,
        dns_names: &[String],
        subject_key: &[u8],
        ttl: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, CaError> {
        // Every X509-SVID (`issue`, `sign_csr`, and so every CLI path and `Rotator` over an
        // `Authority`) comes through here.
        if ttl < Self::MIN_SVID_TTL {
            return Err(CaError::TtlTooShort {
                ttl,
                min: Self::MIN_SVID_TTL,
            });
        }
        let (not_before, not_after) = self.validity(ttl)?;
        let leaf = issue::issue(
            &Params {
                role: Role::Leaf { id, dns_names },
                subject: issue::EMPTY_NAME,
                subject_key,
                issuer: &self.subject,
                aki: Some(&self.aki),
                not_before,
                not_after,
            },
            self.signer.as_ref(),
        )?;
        let mut chain = Vec::with_capacity(self.issuers.len() + 2);
        chain.push(leaf);
        chain.extend(self.chain().iter().cloned());
        Ok(chain)
    }

    /// NotBefore (backdated) and NotAfter (capped at ours) for a new certificate.
    fn validity(&self, ttl: Duration) -> Result<(SystemTime, SystemTime), CaError> {
        let now = SystemTime::now();
        if now >= self.not_after {
            return Err(CaError::AuthorityExpired);
        }
        // A TTL past what time can hold is simply capped, like any TTL past ours.
        let end = now
            .checked_add(ttl)
            .map_or(self.not_after, |t| t.min(self.not_after));
        Ok((now - BACKDATE, end))
    }

    /// The trust domain this authority issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// This CA's certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// What issued leaves carry after the leaf: this CA and its issuers up to, not
    /// including, the root. Empty for a root.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        if self.root.as_ref() == Some(&self.cert) {
            return Vec::new();
        }
        std::iter::once(self.cert.clone())
            .chain(self.issuers.iter().cloned())
            .collect()
    }

    /// The self-signed root of the trust domain, when known: what peers put in the bundle.
    pub fn root(&self) -> Option<&CertificateDer<'static>> {
        self.root.as_ref()
    }

    /// When this CA's certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The signing key's type.
    pub fn key_type(&self) -> KeyType {
        self.signer.key_type()
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .field("is_root", &(self.root.as_ref() == Some(&self.cert)))
            .field("not_after", &self.not_after)
            .field("key_type", &self.signer.key_type())
            .field("jwt_keys", &self.jwt_keys)
            .finish_non_exhaustive()
    }
}

/// The certificate's own SKI, which the AKI of what it issues must repeat (another CA may
/// have computed it another way than we do).
fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    cert.tbs_certificate()
        .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
        .ok()
        .flatten()
        .map(|(_, ski)| ski.0.as_bytes().to_vec())
}

/// A CA's subject: `O=SPIFFE,CN=<td> <role> <random tag>`. The tag keeps two CAs of one
/// trust domain apart by name, so path building never confuses them.
fn ca_subject(trust_domain: &TrustDomain, role: &str) -> Result<Vec<u8>, CaError> {
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(|_| CaError::Random)?;
    // Trust-domain names hold only [a-z0-9._-], so no RFC 4514 escaping is needed. A CN
    // holds at most 64 characters (RFC 5280 ub-common-name); a long trust domain is left
    // to the URI SAN, which names it anyway.
    let tag = u32::from_be_bytes(tag);
    let with_td = format!("{} {role} {tag:08x}", trust_domain.name());
    let cn = if with_td.len() <= 64 {
        with_td
    } else {
        format!("{role} {tag:08x}")
    };
    Name::from_str(&format!("O=SPIFFE,CN={cn}"))
        .map_err(|_| CaError::BadSubject)?
        .to_der()
        .map_err(|_| CaError::Encoding)
}

/// The trust domain of a CA certificate: its SPIFFE trust-domain URI SAN, checked against
/// `given`, or `given` when it has none.
fn cert_trust_domain(
    cert: &Certificate,
    given: Option<&TrustDomain>,
) -> Result<TrustDomain, CaError> {
    let found = profile::CertView::of(cert, 0)
        .uri_sans()?
        .iter()
        .find_map(|uri| SpiffeId::from_bytes(uri).ok())
        .map(|id| id.trust_domain());
    match (found, given) {
        (Some(found), Some(expected)) if found != *expected => Err(CaError::TrustDomainMismatch {
            expected: expected.clone(),
            found,
        }),
        (Some(found), _) => Ok(found),
        (None, Some(given)) => Ok(given.clone()),
        (None, None) => Err(CaError::NoTrustDomain),
    }
}

/// The in-process issuer a [`Rotator`](crate::Rotator) drives: each call signs a fresh SVID.
impl crate::rotate::Issuer for Authority {
    fn issue_svid(
        &self,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<X509Svid, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.issue(id, ttl)?)
    }
}
