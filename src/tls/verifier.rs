//! The SPIFFE certificate verifiers for both sides of a handshake.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError};
use rustls::{Error as TlsError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;

use crate::verify::{verify_parts, CacheContext};
use crate::{Authorizer, BundleSource, Unauthorized, Usage, VerifiedChainCache, VerifyError};

/// Why a peer's certificate was refused in a handshake. rustls reports it as
/// `Error::InvalidCertificate(CertificateError::Other(..))` (the peer receives a
/// `certificate_unknown` alert); [`rejection`] gets it back out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PeerRejected {
    /// The chain is not a valid X509-SVID of a trust domain we hold a bundle for.
    #[error("peer certificate is not a valid X509-SVID: {0}")]
    Verify(#[from] VerifyError),
    /// The chain is a valid X509-SVID, but the authorizer refused its SPIFFE ID.
    #[error(transparent)]
    Unauthorized(#[from] Unauthorized),
}

/// The [`PeerRejected`] inside a rustls handshake error, if that is what it holds.
///
/// ```
/// # fn demo(handshake_error: &rustls::Error) {
/// if let Some(why) = meshid::tls::rejection(handshake_error) {
///     eprintln!("peer refused: {why}");
/// }
/// # }
/// ```
pub fn rejection(error: &TlsError) -> Option<&PeerRejected> {
    match error {
        TlsError::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PeerRejected>()
        }
        _ => None,
    }
}

/// The [`PeerRejected`] inside an I/O error, if that is what it holds: what async TLS
/// streams return. tokio-rustls (and futures-rustls) report a failed handshake as an
/// `io::Error` of kind `InvalidData` wrapping the rustls error.
///
/// ```
/// # fn demo(accept_error: &std::io::Error) {
/// if let Some(why) = meshid::tls::io_rejection(accept_error) {
///     eprintln!("peer refused: {why}");
/// }
/// # }
/// ```
pub fn io_rejection(error: &std::io::Error) -> Option<&PeerRejected> {
    error
        .get_ref()?
        .downcast_ref::<TlsError>()
        .and_then(rejection)
}

/// What both verifiers share: where roots come from, who decides, which algorithms, and
/// the verdicts already known.
struct Checks {
    bundles: Arc<dyn BundleSource>,
    authorizer: Arc<dyn Authorizer>,
    provider: Arc<CryptoProvider>,
    usage: Usage,
    cache: Option<(Arc<VerifiedChainCache>, CacheContext)>,
}

impl Checks {
    fn new(
        bundles: Arc<dyn BundleSource>,
        authorizer: Arc<dyn Authorizer>,
        provider: Arc<CryptoProvider>,
        usage: Usage,
    ) -> Self {
        let mut checks = Self {
            bundles,
            authorizer,
            provider,
            usage,
            cache: None,
        };
        checks.set_cache(Some(Arc::new(VerifiedChainCache::default())));
        checks
    }

    fn set_cache(&mut self, cache: Option<Arc<VerifiedChainCache>>) {
        self.cache = cache.map(|cache| {
            let algorithms = self.provider.signature_verification_algorithms.all;
            (cache, CacheContext::new(algorithms, self.usage))
        });
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), TlsError> {
        let at = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        self.check(end_entity, intermediates, at)
            .map_err(|rejected| {
                tracing::debug!(error = %rejected, "refused a peer certificate");
                TlsError::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    rejected,
                ))))
            })
    }

    /// The SPIFFE checks (through the cache when there is one), then the authorizer, which
    /// is asked on every handshake; on the certificates as rustls holds them (nothing
    /// copied on the handshake path).
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        at: SystemTime,
    ) -> Result<(), PeerRejected> {
        let algorithms = self.provider.signature_verification_algorithms.all;
        let bundles = &*self.bundles;
        let verified = match &self.cache {
            Some((cache, context)) => cache.verify_parts(
                context,
                end_entity,
                intermediates,
                bundles,
                at,
                algorithms,
                self.usage,
            ),
            None => verify_parts(
                end_entity,
                intermediates,
                bundles,
                at,
                algorithms,
                self.usage,
            ),
        }?;
        self.authorizer.authorize(&verified.id)?;
        Ok(())
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl fmt::Debug for Checks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checks")
            .field("usage", &self.usage)
            .field("cache", &self.cache.as_ref().map(|(cache, _)| cache))
            .finish_non_exhaustive()
    }
}

/// The cache methods both verifiers share.
macro_rules! cache_methods {
    () => {
        /// Verifies through `cache` instead of the verifier's own: several verifiers (a
        /// server's and a client's, or one per listener) can share one. See
        /// [`VerifiedChainCache`] for what a hit checks and why that is sound.
        #[must_use]
        pub fn with_cache(mut self, cache: Arc<VerifiedChainCache>) -> Self {
            self.0.set_cache(Some(cache));
            self
        }

        /// Verifies every chain in full, every time: the verified-chain cache off.
        #[must_use]
        pub fn without_cache(mut self) -> Self {
            self.0.set_cache(None);
            self
        }

        /// The verified-chain cache in use (its [`stats`](VerifiedChainCache::stats)), if any.
        pub fn cache(&self) -> Option<&Arc<VerifiedChainCache>> {
            self.0.cache.as_ref().map(|(cache, _)| cache)
        }
    };
}

/// A TLS client's check of its server: the server's chain must be an X509-SVID that
/// verifies against the bundle of its own trust domain, and the authorizer must accept its
/// SPIFFE ID. The server name the client connects with is **not** checked.
///
/// Chains already verified are remembered in a [`VerifiedChainCache`] of its own
/// (default bounds) unless [`without_cache`](Self::without_cache) says otherwise.
#[derive(Debug)]
pub struct SpiffeServerCertVerifier(Checks);

impl SpiffeServerCertVerifier {
    /// Verifies servers against `bundles`, admits the IDs `authorizer` allows, and checks
    /// signatures with `provider`'s algorithms.
    pub fn new(
        bundles: Arc<dyn BundleSource>,
        authorizer: impl Authorizer + 'static,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self(Checks::new(
            bundles,
            Arc::new(authorizer),
            provider,
            Usage::ServerAuth,
        ))
    }

    cache_methods!();
}

impl ServerCertVerifier for SpiffeServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.0
            .verify(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// A TLS server's check of its clients: a client certificate is required, its chain must be
/// an X509-SVID that verifies against the bundle of its own trust domain, and the
/// authorizer must accept its SPIFFE ID.
///
/// No CA names are sent in the CertificateRequest: an SVID workload has exactly one
/// identity to present, and bundle subjects would only leak the trust configuration.
///
/// Chains already verified are remembered in a [`VerifiedChainCache`] of its own
/// (default bounds) unless [`without_cache`](Self::without_cache) says otherwise.
#[derive(Debug)]
pub struct SpiffeClientCertVerifier(Checks);

impl SpiffeClientCertVerifier {
    /// Verifies clients against `bundles`, admits the IDs `authorizer` allows, and checks
    /// signatures with `provider`'s algorithms.
    pub fn new(
        bundles: Arc<dyn BundleSource>,
        authorizer: impl Authorizer + 'static,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self(Checks::new(
            bundles,
            Arc::new(authorizer),
            provider,
            Usage::ClientAuth,
        ))
    }

    cache_methods!();
}

impl ClientCertVerifier for SpiffeClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        self.0
            .verify(end_entity, intermediates, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}
