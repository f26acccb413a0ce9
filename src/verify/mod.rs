//! Verification of a peer's X509-SVID chain by the SPIFFE rules
//! ([X509-SVID §5](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#5-validation)).
//!
//! [`verify_x509_svid`] runs, in order: the leaf profile (one SPIFFE ID with a path, no CA,
//! key usage), the signing-certificate profile of every intermediate, the choice of trust
//! anchors by the **leaf's** trust domain, and RFC 5280 path validation by `rustls-webpki`
//! (signatures, validity, pathLen, critical extensions, name constraints), with the checks
//! on the trust anchor webpki does not make: its profile, its pathLen, and its own validity
//! period (a chain ending at an expired root is refused). No DNS name is checked: SPIFFE
//! authenticates the ID, and an [`Authorizer`](crate::Authorizer) decides.
//!
//! [`validate_path`] is the path-validation layer alone, for callers (and test suites) that
//! bring their own trust anchors.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use thiserror::Error;
use webpki::{EndEntityCert, KeyUsage};

mod cache;

pub(crate) use cache::CacheContext;
pub use cache::{ChainCacheStats, VerifiedChainCache};

use crate::svid::profile::{self, CertView, RootFault};
use crate::time::Rfc3339;
use crate::{BundleSource, SpiffeId, SvidError, TrustDomain};

/// Why a chain was not accepted as an X509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer presented no certificate.
    #[error("no certificate presented")]
    EmptyChain,
    /// A certificate breaks the X509-SVID profile (rules of X509-SVID §4), or is malformed.
    #[error(transparent)]
    Profile(#[from] SvidError),
    /// No bundle is known for the leaf's trust domain (X509-SVID §5.2: roots are chosen by
    /// the trust domain of the SVID being verified).
    #[error("no X.509 bundle for trust domain {trust_domain} (X509-SVID §5.2)")]
    NoBundle {
        /// The leaf's trust domain.
        trust_domain: TrustDomain,
    },
    /// No chain from the leaf to an authority of the bundle could be built.
    #[error("chain does not lead to an authority of the trust domain's bundle (RFC 5280 §6)")]
    UnknownIssuer,
    /// A signature on the chain does not verify.
    #[error("a signature on the chain is invalid (RFC 5280 §6.1.3)")]
    BadSignature,
    /// A certificate signature algorithm is not among the allowed ones.
    #[error("a certificate uses an unsupported signature algorithm")]
    UnsupportedSignatureAlgorithm,
    /// A certificate of the chain had expired at the verification time.
    #[error(
        "certificate expired at {} (verification time {}) (RFC 5280 §6.1.3)",
        Rfc3339(*not_after),
        Rfc3339(*at)
    )]
    Expired {
        /// The verification time.
        at: SystemTime,
        /// The certificate's notAfter.
        not_after: SystemTime,
    },
    /// A certificate of the chain was not valid yet at the verification time.
    #[error(
        "certificate not valid before {} (verification time {}) (RFC 5280 §6.1.3)",
        Rfc3339(*not_before),
        Rfc3339(*at)
    )]
    NotYetValid {
        /// The verification time.
        at: SystemTime,
        /// The certificate's notBefore.
        not_before: SystemTime,
    },
    /// The bundle authority the chain ends at had expired at the verification time.
    ///
    /// X509-SVID §5.1 validates against the CA bundle by RFC 5280 path validation, which
    /// takes the trust anchor as input (RFC 5280 §6.1.1 (d)) and leaves its own validity to
    /// the relying party; `rustls-webpki` keeps none. go-spiffe (through Go's crypto/x509)
    /// refuses a chain whose root has expired, and so does meshid.
    #[error(
        "the bundle authority that anchors the chain expired at {} (verification time {}) \
         (X509-SVID §5.1; RFC 5280 §6.1.1 (d))",
        Rfc3339(*not_after),
        Rfc3339(*at)
    )]
    ExpiredAnchor {
        /// The verification time.
        at: SystemTime,
        /// The anchor's notAfter.
        not_after: SystemTime,
    },
    /// The bundle authority the chain ends at was not valid yet at the verification time
    /// (the same rule as [`VerifyError::ExpiredAnchor`], for notBefore).
    #[error(
        "the bundle authority that anchors the chain is not valid before {} (verification \
         time {}) (X509-SVID §5.1; RFC 5280 §6.1.1 (d))",
        Rfc3339(*not_before),
        Rfc3339(*at)
    )]
    AnchorNotYetValid {
        /// The verification time.
        at: SystemTime,
        /// The anchor's notBefore.
        not_before: SystemTime,
    },
    /// The trust anchor says it is no CA (basicConstraints cA=false).
    #[error("the bundle authority that anchors the chain is not a CA (X509-SVID §4.1)")]
    RootNotCa,
    /// The trust anchor's key usage does not allow certificate signing.
    #[error("the bundle authority that anchors the chain lacks 'keyCertSign' (X509-SVID §4.3)")]
    RootNoKeyCertSign,
    /// The trust anchor carries a SPIFFE ID with a path.
    #[error(
        "the bundle authority that anchors the chain has a SPIFFE ID with a path (X509-SVID §4.1)"
    )]
    RootIdHasPath,
    /// An intermediate's key usage does not allow certificate signing.
    #[error("an intermediate lacks 'keyCertSign' (RFC 5280 §6.1.4)")]
    IntermediateNoKeyCertSign,
    /// A CA's pathLenConstraint is exceeded.
    #[error("a CA's path length constraint is exceeded (RFC 5280 §4.2.1.9)")]
    PathLenExceeded,
    /// A certificate has a critical extension the verifier does not process.
    #[error("a certificate has an unsupported critical extension (RFC 5280 §4.2)")]
    UnsupportedCriticalExtension,
    /// A name constraint forbids the leaf's names, or cannot be evaluated (URI constraints
    /// are refused, never skipped).
    #[error("name constraints are violated or cannot be checked (RFC 5280 §4.2.1.10)")]
    NameConstraints,
    /// A CA certificate was presented as the leaf, or a leaf used as a CA.
    #[error("a certificate is used in the wrong role (CA as leaf or leaf as CA)")]
    WrongRole,
    /// The leaf's extended key usage does not allow the purpose verified.
    #[error("extended key usage does not allow this use (RFC 5280 §4.2.1.12)")]
    ExtendedKeyUsage,
    /// Any other failure of RFC 5280 path validation, as `rustls-webpki` reports it.
    #[error("path validation failed: {0}")]
    Path(webpki::Error),
}

/// What a successful verification established.
#[derive(Debug, Clone)]
pub struct VerifiedSvid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    not_after: SystemTime,
}

impl VerifiedSvid {
    fn new(verified: Verified, chain: &[CertificateDer<'_>]) -> Self {
        Self {
            id: verified.id,
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            not_after: verified.not_after,
        }
    }

    /// The peer's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificates presented, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// When this verification stops holding: the earliest notAfter of the verified path,
    /// that is the leaf, the intermediates the path goes through, and the bundle authority
    /// it ends at. A presented certificate on no path does not count.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

/// Which use of the leaf certificate is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// TLS server authentication (`id-kp-serverAuth`, required if EKU is present).
    ServerAuth,
    /// TLS client authentication (`id-kp-clientAuth`, required if EKU is present).
    ClientAuth,
}

impl Usage {
    fn key_usage(self) -> KeyUsage {
        match self {
            Self::ServerAuth => KeyUsage::server_auth(),
            Self::ClientAuth => KeyUsage::client_auth(),
        }
    }
}

/// Verifies `chain` (leaf first) as an X509-SVID at time `at`, against the bundle of the
/// leaf's trust domain from `bundles`, with the signature `algorithms` allowed (for example
/// a rustls `CryptoProvider`'s `signature_verification_algorithms.all`).
///
/// ```no_run
/// # fn demo(chain: &[rustls_pki_types::CertificateDer<'static>], bundles: &meshid::BundleSet,
/// #         algorithms: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm]) {
/// match meshid::verify_x509_svid(chain, bundles, std::time::SystemTime::now(), algorithms) {
///     Ok(verified) => println!("peer is {}", verified.id()),
///     Err(e) => println!("refused: {e}"),
/// }
/// # }
/// ```
pub fn verify_x509_svid(
    chain: &[CertificateDer<'_>],
    bundles: &(impl BundleSource + ?Sized),
    at: SystemTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<VerifiedSvid, VerifyError> {
    verify_x509_svid_for(chain, bundles, at, algorithms, Usage::ServerAuth)
}

/// [`verify_x509_svid`] for a stated [`Usage`]: a TLS server verifying its clients passes
/// [`Usage::ClientAuth`], and path validation then checks the leaf (and any EKU-constrained
/// intermediate) for that purpose. The leaf profile is the same for both uses: a leaf whose
/// extended key usage lacks either `id-kp-serverAuth` or `id-kp-clientAuth` is refused
/// first (X509-SVID §4.4), so `usage` never accepts more than [`verify_x509_svid`] does.
pub fn verify_x509_svid_for(
    chain: &[CertificateDer<'_>],
    bundles: &(impl BundleSource + ?Sized),
    at: SystemTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    usage: Usage,
) -> Result<VerifiedSvid, VerifyError> {
    let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::EmptyChain)?;
    let verified = verify_parts(leaf, intermediates, bundles, at, algorithms, usage)?;
    Ok(VerifiedSvid::new(verified, chain))
}

/// What the checks of [`verify_parts`] established: the peer's ID and the validity window
/// of the verified path (leaf, the intermediates it goes through, anchor), within which
/// the same verification at another time gives the same verdict.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) id: SpiffeId,
    /// The latest notBefore of the path.
    pub(crate) not_before: SystemTime,
    /// The earliest notAfter of the path.
    pub(crate) not_after: SystemTime,
    /// The instance of the bundle the path was validated against.
    pub(crate) bundle: u64,
}

/// The checks of [`verify_x509_svid_for`] on a leaf and its intermediates as rustls hands
/// them over, copying nothing.
pub(crate) fn verify_parts(
    leaf_der: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundles: &(impl BundleSource + ?Sized),
    at: SystemTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    usage: Usage,
) -> Result<Verified, VerifyError> {
    let leaf = CertView::parse(leaf_der, 0)?;
    let id = profile::check_leaf(&leaf)?;
    let mut presented = Vec::with_capacity(intermediates.len());
    for (i, der) in intermediates.iter().enumerate() {
        let cert = CertView::parse(der, i + 1)?;
        profile::check_signing(&cert)?;
        presented.push((cert.not_before(), cert.not_after()));
    }
    let trust_domain = id.trust_domain();
    let bundle = bundles
        .x509_bundle(&trust_domain)
        .ok_or(VerifyError::NoBundle { trust_domain })?;
    let (not_before, not_after) = validate_with_anchors(
        leaf_der,
        intermediates,
        bundle.anchors(),
        at,
        algorithms,
        usage,
        // The profile step above already checked every presented intermediate.
        Some(&presented),
    )?;
    Ok(Verified {
        id,
        not_before: leaf.not_before().max(not_before),
        not_after: leaf.not_after().min(not_after),
        bundle: bundle.instance(),
    })
}

/// RFC 5280 path validation alone: from `leaf` through any of `intermediates` to one of
/// `roots`, at time `at`, for `usage`, with `algorithms`. No SPIFFE leaf rule and no name
/// check is applied here; on top of `rustls-webpki`, the constraints it leaves unchecked
/// are: the root's validity period ([`VerifyError::ExpiredAnchor`],
/// [`VerifyError::AnchorNotYetValid`]), basicConstraints, keyUsage and pathLenConstraint,
/// and keyCertSign on intermediates.
pub fn validate_path(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    at: SystemTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    usage: Usage,
) -> Result<(), VerifyError> {
    let anchors = anchors_of(roots);
    validate_with_anchors(leaf, intermediates, &anchors, at, algorithms, usage, None).map(|_| ())
}

/// Bundle authorities prepared for path validation: webpki's trust anchors, and for each
/// what webpki does not keep on anchors (checked in [`validate_with_anchors`]).
pub(crate) struct Anchors {
    trust: Vec<TrustAnchor<'static>>,
    /// Per anchor, what webpki does not keep of it.
    facts: Vec<AnchorFacts>,
}

/// What path validation needs of a bundle authority besides its name and key.
#[derive(Debug, Clone, Copy)]
struct AnchorFacts {
    /// Its profile fault, if any.
    fault: Option<RootFault>,
    /// Its pathLenConstraint.
    path_len: Option<u8>,
    /// Its validity period.
    not_before: SystemTime,
    not_after: SystemTime,
}

/// The position of `anchor` among `anchors`: by identity first, since webpki hands back a
/// reference into the slice it was given, so that two authorities making the same trust
/// anchor (a root renewed with the same key and name) keep their own facts.
fn anchor_index(anchors: &Anchors, anchor: &TrustAnchor<'_>) -> Option<usize> {
    let trust = &anchors.trust;
    trust
        .iter()
        .position(|a| std::ptr::addr_eq(a, anchor))
        .or_else(|| trust.iter().position(|a| a == anchor))
}

/// Prepares authorities as anchors. An authority that is no usable trust anchor is left
/// out: that only narrows what is trusted.
pub(crate) fn anchors_of(roots: &[CertificateDer<'_>]) -> Anchors {
    let mut anchors = Anchors {
        trust: Vec::with_capacity(roots.len()),
        facts: Vec::with_capacity(roots.len()),
    };
    for root in roots {
        let (Ok(anchor), Ok(view)) = (
            webpki::anchor_from_trusted_cert(root),
            CertView::parse(root, 0),
        ) else {
            continue;
        };
        let (fault, path_len) = profile::root_facts(&view);
        anchors.trust.push(anchor.to_owned());
        anchors.facts.push(AnchorFacts {
            fault,
            path_len,
            not_before: view.not_before(),
            not_after: view.not_after(),
        });
    }
    anchors
}

/// Path validation with meshid's checks on top of webpki's; returns the latest notBefore
/// and the earliest notAfter of the path's intermediates and anchor. `presented` holds the
/// validity of each presented intermediate when the caller has already checked them
/// against the profile; with `None`, the path's intermediates are checked here for
/// keyCertSign.
fn validate_with_anchors(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &Anchors,
    at: SystemTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    usage: Usage,
    presented: Option<&[(SystemTime, SystemTime)]>,
) -> Result<(SystemTime, SystemTime), VerifyError> {
    let end_entity = EndEntityCert::try_from(leaf).map_err(map_webpki)?;
    let time = unix_time(at);
    // webpki compares validity in whole seconds; the anchor is judged the same way.
    let at_whole = to_system_time(time);
    // webpki's hook can only return webpki errors; our own finding is kept aside and
    // reported when no other path succeeds.
    let finding: Cell<Option<VerifyError>> = Cell::new(None);
    let extra_checks = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let refuse = |e: VerifyError| {
            finding.set(Some(e));
            Err(webpki::Error::UnknownIssuer)
        };
        let index = anchor_index(anchors, path.anchor()).ok_or(webpki::Error::UnknownIssuer)?;
        let facts = anchors.facts[index];
        match facts.fault {
            Some(RootFault::NotCa) => return refuse(VerifyError::RootNotCa),
            Some(RootFault::NoKeyCertSign) => return refuse(VerifyError::RootNoKeyCertSign),
            Some(RootFault::IdHasPath) => return refuse(VerifyError::RootIdHasPath),
            None => {}
        }
        // The anchor's own validity, as webpki checks every other certificate's (RFC 5280
        // §4.1.2.5 semantics: both bounds inclusive).
        if at_whole < facts.not_before {
            return refuse(VerifyError::AnchorNotYetValid {
                at: at_whole,
                not_before: facts.not_before,
            });
        }
        if at_whole > facts.not_after {
            return refuse(VerifyError::ExpiredAnchor {
                at: at_whole,
                not_after: facts.not_after,
            });
        }
        let below = path.intermediate_certificates().count();
        if facts.path_len.is_some_and(|max| below > usize::from(max)) {
            return refuse(VerifyError::PathLenExceeded);
        }
        if presented.is_none() {
            for cert in path.intermediate_certificates() {
                let der = cert.der();
                let signs =
                    CertView::parse(&der, 1).is_ok_and(|v| profile::may_sign_certificates(&v));
                if !signs {
                    return refuse(VerifyError::IntermediateNoKeyCertSign);
                }
            }
        }
        Ok(())
    };
    let result = end_entity.verify_for_usage(
        algorithms,
        &anchors.trust,
        intermediates,
        time,
        usage.key_usage(),
        None,
        Some(&extra_checks),
    );
    let path = match (result, finding.take()) {
        (Ok(path), _) => path,
        (Err(_), Some(ours)) => return Err(ours),
        (Err(e), None) => return Err(map_webpki(e)),
    };
    let index = anchor_index(anchors, path.anchor()).ok_or(VerifyError::UnknownIssuer)?;
    let mut not_before = anchors.facts[index].not_before;
    let mut not_after = anchors.facts[index].not_after;
    for cert in path.intermediate_certificates() {
        let der = cert.der();
        // webpki's path borrows the presented certificates: find each by address.
        let known = presented.and_then(|known| {
            intermediates
                .iter()
                .position(|p| p.as_ref().as_ptr() == der.as_ref().as_ptr())
                .and_then(|i| known.get(i).copied())
        });
        let (cert_not_before, cert_not_after) = if let Some(validity) = known {
            validity
        } else {
            let view = CertView::parse(&der, 1)?;
            (view.not_before(), view.not_after())
        };
        not_before = not_before.max(cert_not_before);
        not_after = not_after.min(cert_not_after);
    }
    Ok((not_before, not_after))
}

/// The signature algorithms of the crypto backend built in: `ring`'s, else `aws-lc-rs`'s,
/// else none (every verification then fails, so whoever uses this default says which
/// algorithms to use instead when neither feature is on).
pub(crate) fn default_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    #[cfg(feature = "ring")]
    return ring_algorithms();
    #[cfg(all(not(feature = "ring"), feature = "aws-lc-rs"))]
    return aws_lc_rs_algorithms();
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    return &[];
}

/// The signature algorithms of `rustls-webpki`'s `ring` backend (feature `ring`): ECDSA
/// P-256/P-384 with SHA-256/384, Ed25519, RSA PKCS#1 and PSS (2048 to 8192 bits).
#[cfg(feature = "ring")]
pub fn ring_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    use webpki::ring as r;
    static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
        r::ECDSA_P256_SHA256,
        r::ECDSA_P256_SHA384,
        r::ECDSA_P384_SHA256,
        r::ECDSA_P384_SHA384,
        r::ED25519,
        r::RSA_PKCS1_2048_8192_SHA256,
        r::RSA_PKCS1_2048_8192_SHA384,
        r::RSA_PKCS1_2048_8192_SHA512,
        r::RSA_PKCS1_3072_8192_SHA384,
        r::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        r::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        r::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    ];
    ALGS
}

/// The signature algorithms of `rustls-webpki`'s `aws-lc-rs` backend (feature `aws-lc-rs`):
/// the same set as [`ring_algorithms`].
#[cfg(feature = "aws-lc-rs")]
pub fn aws_lc_rs_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    use webpki::aws_lc_rs as a;
    static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
        a::ECDSA_P256_SHA256,
        a::ECDSA_P256_SHA384,
        a::ECDSA_P384_SHA256,
        a::ECDSA_P384_SHA384,
        a::ED25519,
        a::RSA_PKCS1_2048_8192_SHA256,
        a::RSA_PKCS1_2048_8192_SHA384,
        a::RSA_PKCS1_2048_8192_SHA512,
        a::RSA_PKCS1_3072_8192_SHA384,
        a::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        a::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        a::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    ];
    ALGS
}

/// `at` truncated to whole seconds, as path validation compares times.
pub(crate) fn whole_seconds(at: SystemTime) -> SystemTime {
    to_system_time(unix_time(at))
}

fn unix_time(at: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn to_system_time(t: UnixTime) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs())
}

/// Names the failed check; anything unnamed is kept as webpki reported it. A name error
/// can never become success here: every webpki error is an error.
#[allow(deprecated)] // the context-less variants are still matched in case they are produced
fn map_webpki(e: webpki::Error) -> VerifyError {
    use webpki::Error as W;
    match e {
        W::UnknownIssuer => VerifyError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => VerifyError::BadSignature,
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            VerifyError::UnsupportedSignatureAlgorithm
        }
        W::CertExpired { time, not_after } => VerifyError::Expired {
            at: to_system_time(time),
            not_after: to_system_time(not_after),
        },
        W::CertNotValidYet { time, not_before } => VerifyError::NotYetValid {
            at: to_system_time(time),
            not_before: to_system_time(not_before),
        },
        W::PathLenConstraintViolated => VerifyError::PathLenExceeded,
        W::UnsupportedCriticalExtension => VerifyError::UnsupportedCriticalExtension,
        W::NameConstraintViolation
        | W::MalformedNameConstraint
        | W::UnsupportedNameType
        | W::InvalidNetworkMaskConstraint => VerifyError::NameConstraints,
        W::CaUsedAsEndEntity | W::EndEntityUsedAsCa => VerifyError::WrongRole,
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension => {
            VerifyError::ExtendedKeyUsage
        }
        other => VerifyError::Path(other),
    }
}
