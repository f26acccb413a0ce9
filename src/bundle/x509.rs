//! [`X509Bundle`]: the X.509 authorities of one trust domain.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use der::Decode;
use rustls_pki_types::CertificateDer;
use x509_cert::Certificate;

use super::{BundleError, BundleSource, MAX_INPUT_LEN};
use crate::pem;
use crate::TrustDomain;

/// The X.509 authorities (CA certificates) of one trust domain.
///
/// A cheap-clone handle: cloning shares the certificates. Every authority is a
/// well-formed DER X.509 certificate (checked on the way in), and none appears twice
/// (a repeat is dropped, keeping the first, as go-spiffe does). Two bundles are equal
/// when their trust domains and their authorities, in order, are.
///
/// The trust domain is never read from the certificates: the caller says which trust
/// domain the bundle is for ([SPIFFE Trust Domain and Bundle §3]).
///
/// [SPIFFE Trust Domain and Bundle §3]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#3-spiffe-bundles
#[derive(Clone, PartialEq, Eq)]
pub struct X509Bundle {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unique in the process: no two bundles built here share it, so a verified-chain
    /// cache entry made against this bundle never matches another one, even one with the
    /// same content (see [`crate::VerifiedChainCache`]).
    instance: u64,
    trust_domain: TrustDomain,
    authorities: Vec<CertificateDer<'static>>,
    /// The authorities as trust anchors, built on first use by the verifier.
    anchors: std::sync::OnceLock<crate::verify::Anchors>,
}

impl PartialEq for Inner {
    fn eq(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain && self.authorities == other.authorities
    }
}

impl Eq for Inner {}

impl X509Bundle {
    /// The largest input [`parse_pem`](Self::parse_pem), [`parse_der`](Self::parse_der)
    /// and [`load`](Self::load) read: 16 MiB.
    pub const MAX_INPUT_LEN: usize = MAX_INPUT_LEN;

    /// An empty bundle for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self::from_checked(trust_domain, Vec::new())
    }

    /// A bundle of the given DER certificates. Each must be exactly one well-formed X.509
    /// certificate, with no trailing bytes; repeats are dropped.
    pub fn from_authorities(
        trust_domain: TrustDomain,
        authorities: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let mut checked: Vec<CertificateDer<'static>> = Vec::new();
        for (index, der) in authorities.into_iter().enumerate() {
            Certificate::from_der(der.as_ref())
                .map_err(|source| BundleError::BadCertificate { index, source })?;
            checked.push(der);
        }
        dedup(&mut checked);
        Ok(Self::from_checked(trust_domain, checked))
    }

    /// Reads `CERTIFICATE` PEM blocks (text between blocks is ignored).
    ///
    /// Refused: no certificate at all ([`BundleError::NoCertificates`]), input that holds no
    /// PEM block or a broken one ([`BundleError::Pem`]), any block with another label such
    /// as a private key ([`BundleError::UnexpectedPemBlock`]), and a block that is not a
    /// well-formed certificate ([`BundleError::BadCertificate`]).
    ///
    /// ```
    /// use meshid::{BundleError, TrustDomain, X509Bundle};
    ///
    /// let td = TrustDomain::new("example.org")?;
    /// let pem = include_bytes!("../../tests/data/go-spiffe/x509bundle/certs.pem");
    /// let bundle = X509Bundle::parse_pem(td.clone(), pem)?;
    /// assert_eq!(bundle.authorities().len(), 2);
    /// assert_eq!(bundle.to_pem().as_bytes(), pem); // 64-column PEM, as OpenSSL writes it
    ///
    /// let key = include_bytes!("../../tests/data/go-spiffe/x509bundle/key.pem");
    /// assert!(matches!(
    ///     X509Bundle::parse_pem(td, key),
    ///     Err(BundleError::UnexpectedPemBlock { index: 0, .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        check_len(pem)?;
        if pem.iter().all(u8::is_ascii_whitespace) {
            return Err(BundleError::NoCertificates);
        }
        let blocks = pem::parse(pem)?;
        let mut authorities: Vec<CertificateDer<'static>> = Vec::new();
        for (index, block) in blocks.iter().enumerate() {
            if block.label != "CERTIFICATE" {
                return Err(BundleError::UnexpectedPemBlock {
                    index,
                    label: block.label.clone(),
                });
            }
            Certificate::from_der(&block.der)
                .map_err(|source| BundleError::BadCertificate { index, source })?;
            authorities.push(CertificateDer::from(block.der.to_vec()));
        }
        if authorities.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        dedup(&mut authorities);
        Ok(Self::from_checked(trust_domain, authorities))
    }

    /// Reads one or more concatenated DER certificates. Empty input is
    /// [`BundleError::NoCertificates`]; bytes that do not form whole certificates are
    /// [`BundleError::BadCertificate`] naming the first one that fails.
    pub fn parse_der(trust_domain: TrustDomain, der: &[u8]) -> Result<Self, BundleError> {
        check_len(der)?;
        if der.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        let mut authorities = split_der(der)
            .map_err(|(index, source)| BundleError::BadCertificate { index, source })?;
        dedup(&mut authorities);
        Ok(Self::from_checked(trust_domain, authorities))
    }

    /// Reads DER or PEM, whichever the input is.
    ///
    /// Input that parses whole as DER certificates is DER (DER bytes may happen to hold a
    /// PEM `BEGIN` line, say inside a signature); otherwise input holding a `BEGIN` line is
    /// PEM. Anything else is refused with the DER error if it starts as a DER `SEQUENCE`
    /// does, [`BundleError::NoCertificates`] if empty, and
    /// [`PemError::NoBlocks`](crate::PemError::NoBlocks) otherwise, since it was most
    /// likely meant as PEM.
    pub fn load(trust_domain: TrustDomain, input: &[u8]) -> Result<Self, BundleError> {
        check_len(input)?;
        let der_like = input.first() == Some(&0x30);
        if der_like {
            let der = Self::parse_der(trust_domain.clone(), input);
            if der.is_ok() || !pem::is_pem(input) {
                return der;
            }
        }
        if pem::is_pem(input) {
            Self::parse_pem(trust_domain, input)
        } else if input.is_empty() {
            Err(BundleError::NoCertificates)
        } else {
            Err(crate::PemError::NoBlocks.into())
        }
    }

    /// The trust domain this bundle is for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.inner.trust_domain
    }

    /// The X.509 authorities, DER-encoded, in the order they were given.
    pub fn authorities(&self) -> &[CertificateDer<'static>] {
        &self.inner.authorities
    }

    /// Whether `cert` is one of the authorities (byte-for-byte).
    pub fn contains(&self, cert: &CertificateDer<'_>) -> bool {
        self.inner
            .authorities
            .iter()
            .any(|a| a.as_ref() == cert.as_ref())
    }

    /// Whether the bundle has no authority.
    pub fn is_empty(&self) -> bool {
        self.inner.authorities.is_empty()
    }

    /// The authorities as `CERTIFICATE` PEM blocks with 64-column lines; empty for an
    /// empty bundle.
    pub fn to_pem(&self) -> String {
        pem::certificates_to_pem(&self.inner.authorities)
    }

    /// A bundle of certificates already checked to parse and be unique.
    pub(crate) fn from_checked(
        trust_domain: TrustDomain,
        authorities: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                instance: next_instance(),
                trust_domain,
                authorities,
                anchors: std::sync::OnceLock::new(),
            }),
        }
    }

    /// This bundle's identity in the process: equal for clones, different for every bundle
    /// built (parsed, loaded or assembled), whatever its content.
    pub(crate) fn instance(&self) -> u64 {
        self.inner.instance
    }

    /// The authorities as trust anchors for path validation, built once per bundle so no
    /// handshake rebuilds them.
    pub(crate) fn anchors(&self) -> &crate::verify::Anchors {
        self.inner
            .anchors
            .get_or_init(|| crate::verify::anchors_of(&self.inner.authorities))
    }
}

impl BundleSource for X509Bundle {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        (self.trust_domain() == trust_domain).then(|| self.clone())
    }
}

impl fmt::Debug for X509Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Bundle")
            .field("trust_domain", &self.inner.trust_domain)
            .field("authorities", &self.inner.authorities.len())
            .finish()
    }
}

/// A fresh bundle identity. 2^64 bundles are never built in one process.
fn next_instance() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn check_len(input: &[u8]) -> Result<(), BundleError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(BundleError::TooLarge { len: input.len() });
    }
    Ok(())
}

/// Drops repeated certificates, keeping the first of each, in one pass (a bundle may hold
/// tens of thousands of entries, so no pairwise comparison).
pub(crate) fn dedup(list: &mut Vec<CertificateDer<'static>>) {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(list.len());
        list.iter().map(|cert| seen.insert(cert.as_ref())).collect()
    };
    let mut keep = keep.into_iter();
    list.retain(|_| keep.next().unwrap_or(true));
}

/// Splits concatenated DER certificates (as the Workload API carries chains and bundles);
/// on failure, the index of the first certificate that does not decode, and why.
pub(crate) fn split_der(der: &[u8]) -> Result<Vec<CertificateDer<'static>>, (usize, der::Error)> {
    let mut certs = Vec::new();
    for_each_der(der, |cert, _| certs.push(cert))?;
    Ok(certs)
}

/// [`split_der`], keeping each certificate's parse as well (the parse `split_der` makes to
/// find where each certificate ends), for callers that read the certificates next.
#[cfg(feature = "workload-api")]
pub(crate) fn split_der_parsed(
    der: &[u8],
) -> Result<Vec<(CertificateDer<'static>, Certificate)>, (usize, der::Error)> {
    let mut certs = Vec::new();
    for_each_der(der, |cert, parsed| certs.push((cert, parsed)))?;
    Ok(certs)
}

/// Decodes each of the concatenated DER certificates of `der` in turn and hands it to `f`,
/// as its bytes and its parse; stops at the first that does not decode (its index, why).
fn for_each_der(
    der: &[u8],
    mut f: impl FnMut(CertificateDer<'static>, Certificate),
) -> Result<(), (usize, der::Error)> {
    let mut rest = der;
    let mut index = 0;
    while !rest.is_empty() {
        let (parsed, after) =
            Certificate::from_der_partial(rest).map_err(|source| (index, source))?;
        // `after` is a suffix of `rest`: what precedes it is the certificate.
        let (cert, _) = rest.split_at(rest.len() - after.len());
        f(CertificateDer::from(cert.to_vec()), parsed);
        rest = after;
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = include_bytes!("../../tests/data/go-spiffe/x509bundle/cert.pem");
    const CERTS: &[u8] = include_bytes!("../../tests/data/go-spiffe/x509bundle/certs.pem");

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    #[test]
    fn pem_der_and_load_agree() {
        let b = X509Bundle::parse_pem(td("a.test"), CERTS).unwrap();
        assert_eq!(b.authorities().len(), 2);
        let der: Vec<u8> = b.authorities().iter().flat_map(|c| c.to_vec()).collect();
        assert_eq!(X509Bundle::parse_der(td("a.test"), &der).unwrap(), b);
        assert_eq!(X509Bundle::load(td("a.test"), &der).unwrap(), b);
        assert_eq!(X509Bundle::load(td("a.test"), CERTS).unwrap(), b);
        assert_eq!(b.to_pem().as_bytes(), CERTS);
    }

    #[test]
    fn repeats_are_dropped_and_equality_needs_the_trust_domain() {
        let one = X509Bundle::parse_pem(td("a.test"), CERT).unwrap();
        let doubled = [CERT, CERT].concat();
        assert_eq!(X509Bundle::parse_pem(td("a.test"), &doubled).unwrap(), one);
        assert_ne!(X509Bundle::parse_pem(td("b.test"), CERT).unwrap(), one);
        let again = X509Bundle::from_authorities(td("a.test"), one.authorities().to_vec());
        assert_eq!(again.unwrap(), one);
        assert!(one.contains(&one.authorities()[0]));
        assert!(!X509Bundle::new(td("a.test")).contains(&one.authorities()[0]));
    }

    #[test]
    fn typed_refusals() {
        let t = || td("a.test");
        assert_eq!(
            X509Bundle::parse_der(t(), b""),
            Err(BundleError::NoCertificates)
        );
        assert_eq!(
            X509Bundle::parse_pem(t(), b" \n"),
            Err(BundleError::NoCertificates)
        );
        assert_eq!(X509Bundle::load(t(), b""), Err(BundleError::NoCertificates));
        assert_eq!(
            X509Bundle::load(t(), b"hello"),
            Err(BundleError::Pem(crate::PemError::NoBlocks))
        );
        let der = X509Bundle::parse_pem(t(), CERT).unwrap().authorities()[0].to_vec();
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(
            X509Bundle::parse_der(t(), &trailing),
            Err(BundleError::BadCertificate { index: 1, .. })
        ));
        assert!(matches!(
            X509Bundle::from_authorities(t(), [CertificateDer::from(trailing)]),
            Err(BundleError::BadCertificate { index: 0, .. })
        ));
        assert!(matches!(
            X509Bundle::parse_der(t(), &der[..der.len() - 1]),
            Err(BundleError::BadCertificate { index: 0, .. })
        ));
        let big = vec![b'A'; MAX_INPUT_LEN + 1];
        assert_eq!(
            X509Bundle::load(t(), &big),
            Err(BundleError::TooLarge {
                len: MAX_INPUT_LEN + 1
            })
        );
    }

    #[test]
    fn source_answers_only_for_its_trust_domain() {
        let b = X509Bundle::parse_pem(td("a.test"), CERT).unwrap();
        assert_eq!(b.x509_bundle(&td("a.test")), Some(b.clone()));
        assert_eq!(b.x509_bundle(&td("b.test")), None);
    }
}
