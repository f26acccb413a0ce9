//! X509-SVIDs: a certificate chain that proves a SPIFFE ID, and its private key
//! ([X509-SVID](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md)).

mod certs;
#[cfg(unix)]
mod dir;
mod inspect;
pub(crate) mod profile;
mod view;

pub use certs::parse_certificates;
#[cfg(unix)]
pub use dir::{create_private_dir, DirError, SvidDir};
pub use inspect::CertificateInfo;

use std::fmt;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::key::{KeyError, PrivateKey};
use crate::{IdError, PemError, SpiffeId};

/// Why an X509-SVID (or one certificate of it) was refused. Profile variants name the rule
/// of the X509-SVID standard that the certificate breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The PEM input could not be read.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The private key could not be read or does not match the leaf.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No certificate in the input.
    #[error("no certificates found")]
    NoCertificates,
    /// A certificate is not valid DER X.509.
    #[error("certificate {index} of the chain is malformed (not DER X.509)")]
    MalformedCertificate {
        /// Position in the chain, the leaf being 0.
        index: usize,
    },
    /// An extension of a certificate cannot be decoded, or appears twice.
    #[error("certificate {index}: malformed or repeated {extension} extension")]
    MalformedExtension {
        /// Position in the chain, the leaf being 0.
        index: usize,
        /// The extension's name.
        extension: &'static str,
    },
    /// The leaf has no URI SAN.
    #[error("certificate contains no URI SAN (X509-SVID §2: exactly one SPIFFE ID)")]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("certificate contains {count} URI SANs (X509-SVID §2: exactly one SPIFFE ID)")]
    MultipleUriSans {
        /// How many there are.
        count: usize,
    },
    /// The leaf's URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    BadSpiffeId(IdError),
    /// The leaf's SPIFFE ID is a trust domain's own ID.
    #[error("leaf SPIFFE ID {id} has no path (X509-SVID §2: a workload ID has a path)")]
    LeafIdHasNoPath {
        /// The ID found.
        id: SpiffeId,
    },
    /// The leaf is a CA.
    #[error("leaf certificate must not have CA flag set to true (X509-SVID §4.1)")]
    LeafIsCa,
    /// The leaf has no key usage extension.
    #[error("leaf certificate must have a key usage extension (X509-SVID §4.3)")]
    LeafNoKeyUsage,
    /// The leaf's key usage lacks digitalSignature.
    #[error("leaf certificate must have 'digitalSignature' set as key usage (X509-SVID §4.3)")]
    LeafNoDigitalSignature,
    /// The leaf's key usage has keyCertSign.
    #[error("leaf certificate must not have 'keyCertSign' set as key usage (X509-SVID §4.3)")]
    LeafKeyCertSign,
    /// The leaf's key usage has cRLSign.
    #[error("leaf certificate must not have 'cRLSign' set as key usage (X509-SVID §4.3)")]
    LeafCrlSign,
    /// The leaf's extended key usage lacks serverAuth or clientAuth.
    #[error("leaf extended key usage lacks {purpose} (X509-SVID §4.4)")]
    LeafEkuMissing {
        /// The purpose missing: `serverAuth` or `clientAuth`.
        purpose: &'static str,
    },
    /// A signing certificate is not a CA.
    #[error("signing certificate {index} must have CA flag set to true (X509-SVID §4.1)")]
    SigningNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// A signing certificate's key usage lacks keyCertSign.
    #[error(
        "signing certificate {index} must have 'keyCertSign' set as key usage (X509-SVID §4.3)"
    )]
    SigningNoKeyCertSign {
        /// Position in the chain.
        index: usize,
    },
    /// A signing certificate carries a SPIFFE ID with a path.
    #[error("signing certificate {index} has SPIFFE ID {id} with a path (X509-SVID §4.1)")]
    SigningIdHasPath {
        /// Position in the chain.
        index: usize,
        /// The ID found.
        id: SpiffeId,
    },
}

/// An X509-SVID: the chain leaf → intermediates (root excluded), the SPIFFE ID it proves,
/// and the leaf's private key.
///
/// Loading checks the SPIFFE profile of every certificate and that the key matches the
/// leaf; it does not check signatures or validity against a trust bundle: that is
/// the verifier's job, done by whoever relies on the SVID.
#[derive(Clone)]
pub struct X509Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKey,
    not_before: SystemTime,
    not_after: SystemTime,
    /// The leaf's serial number, as its DER INTEGER's content bytes.
    #[cfg_attr(not(feature = "workload-api"), allow(dead_code))]
    serial: Box<[u8]>,
}

impl X509Svid {
    /// Builds an SVID from DER certificates (leaf first) and its PKCS#8 DER key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key_pkcs8: &[u8],
    ) -> Result<Self, SvidError> {
        let key = PrivateKey::from_pkcs8_der(key_pkcs8)?;
        Self::new(chain, key)
    }

    /// Reads the certificates from the `CERTIFICATE` blocks of `certs` (leaf first) and the
    /// key from the first `PRIVATE KEY` block of `key`. Both may be the same document, with
    /// key and certificates in any order.
    ///
    /// ```
    /// # use meshid::X509Svid;
    /// let both = include_bytes!("../../tests/data/go-spiffe/x509svid/good-cert-and-key.pem");
    /// let svid = X509Svid::parse_pem(both, both)?;
    /// assert_eq!(svid.id().as_str(), "spiffe://example.org/workload-1");
    /// # Ok::<(), meshid::SvidError>(())
    /// ```
    pub fn parse_pem(certs: &[u8], key: &[u8]) -> Result<Self, SvidError> {
        let chain: Vec<CertificateDer<'static>> = crate::pem::parse(certs)?
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| CertificateDer::from(b.der.to_vec()))
            .collect();
        if chain.is_empty() {
            return Err(SvidError::NoCertificates);
        }
        let key = PrivateKey::from_pkcs8_pem(key)?;
        Self::new(chain, key)
    }

    /// Checks the chain's profile and the key, and builds the SVID.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKey) -> Result<Self, SvidError> {
        let (leaf_der, rest) = chain.split_first().ok_or(SvidError::NoCertificates)?;
        let leaf = profile::parse_certificate(leaf_der, 0)?;
        let id = profile::check_leaf(&profile::CertView::of(&leaf, 0))?;
        for (i, der) in rest.iter().enumerate() {
            let cert = profile::parse_certificate(der, i + 1)?;
            profile::check_signing(&profile::CertView::of(&cert, i + 1))?;
        }
        Self::checked(chain, &leaf, id, key)
    }

    /// [`new`](Self::new) for a chain already parsed: each certificate's DER with its parse
    /// (as [`split_der_parsed`](crate::bundle::split_der_parsed) gives them), so that no
    /// certificate is parsed twice. The same checks, in the same order.
    #[cfg(feature = "workload-api")]
    pub(crate) fn from_parsed(
        certs: Vec<(CertificateDer<'static>, x509_cert::Certificate)>,
        key: PrivateKey,
    ) -> Result<Self, SvidError> {
        let (chain, parsed): (Vec<_>, Vec<_>) = certs.into_iter().unzip();
        let (leaf, rest) = parsed.split_first().ok_or(SvidError::NoCertificates)?;
        let id = profile::check_leaf(&profile::CertView::of(leaf, 0))?;
        for (i, cert) in rest.iter().enumerate() {
            profile::check_signing(&profile::CertView::of(cert, i + 1))?;
        }
        Self::checked(chain, leaf, id, key)
    }

    /// The last step of [`new`](Self::new): the key must match the leaf.
    fn checked(
        chain: Vec<CertificateDer<'static>>,
        leaf: &x509_cert::Certificate,
        id: SpiffeId,
        key: PrivateKey,
    ) -> Result<Self, SvidError> {
        let tbs = leaf.tbs_certificate();
        key.check_matches(tbs.subject_public_key_info())?;
        let validity = tbs.validity();
        Ok(Self {
            id,
            not_before: validity.not_before.to_system_time(),
            not_after: validity.not_after.to_system_time(),
            serial: tbs.serial_number().as_bytes().into(),
            chain,
            key,
        })
    }

    /// The SPIFFE ID the SVID proves.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The chain, leaf first, root excluded.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The leaf's private key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }

    /// The start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The end of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's serial number in hexadecimal, as
    /// [`CertificateInfo::serial_hex`](crate::CertificateInfo::serial_hex) shows it (for
    /// logs, without parsing the leaf again).
    #[cfg_attr(not(feature = "workload-api"), allow(dead_code))]
    pub(crate) fn serial_hex(&self) -> String {
        inspect::hex(&self.serial)
    }

    /// The chain as PEM `CERTIFICATE` blocks, leaf first.
    pub fn chain_pem(&self) -> String {
        crate::pem::certificates_to_pem(&self.chain)
    }

    /// The private key as PKCS#8 PEM, in a string wiped on drop.
    pub fn key_pem(&self) -> Zeroizing<String> {
        self.key.to_pkcs8_pem()
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("id", &self.id)
            .field("chain_len", &self.chain.len())
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
