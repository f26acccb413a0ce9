//! TLS handshake metrics: decorators around the rustls certificate verifiers.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error as TlsError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::histogram::DurationHistogram;
use crate::tls::{rejection, PeerRejected};
use crate::VerifyError;

/// The `result` label values: `accepted`, or why the peer was refused.
const RESULTS: [&str; 8] = [
    "accepted",
    "untrusted_trust_domain",
    "unknown_issuer",
    "expired",
    "profile",
    "not_authorized",
    "malformed",
    "bad_signature",
];
const ACCEPTED: usize = 0;
const BAD_SIGNATURE: usize = 7;

/// The index in [`RESULTS`] of a certificate verifier's refusal.
fn refusal_of(error: &TlsError) -> usize {
    match rejection(error) {
        Some(PeerRejected::Unauthorized(_)) => 5,
        Some(PeerRejected::Verify(e)) => match e {
            VerifyError::NoBundle { .. } => 1,
            // No path to the bundle's authorities: not signed by them, or by nothing
            // this side can check.
            VerifyError::UnknownIssuer
            | VerifyError::BadSignature
            | VerifyError::UnsupportedSignatureAlgorithm => 2,
            VerifyError::Expired { .. }
            | VerifyError::NotYetValid { .. }
            | VerifyError::ExpiredAnchor { .. }
            | VerifyError::AnchorNotYetValid { .. } => 3,
            // The X509-SVID profile, of the leaf or of the CAs on its path.
            VerifyError::Profile(_)
            | VerifyError::RootNotCa
            | VerifyError::RootNoKeyCertSign
            | VerifyError::RootIdHasPath
            | VerifyError::IntermediateNoKeyCertSign
            | VerifyError::PathLenExceeded
            | VerifyError::UnsupportedCriticalExtension
            | VerifyError::NameConstraints
            | VerifyError::WrongRole
            | VerifyError::ExtendedKeyUsage => 4,
            VerifyError::EmptyChain | VerifyError::Path(_) => 6,
        },
        // Another verifier's error (a decorated non-SPIFFE verifier), or a certificate
        // rustls could not take.
        None => 6,
    }
}

/// Handshake metrics, by our side of the connection (`server`: we verify a client;
/// `client`: we verify a server):
///
/// | metric | labels |
/// |---|---|
/// | `meshid_tls_handshakes_total` (counter) | `side`, `result` (`accepted`, `untrusted_trust_domain`, `unknown_issuer`, `expired`, `profile`, `not_authorized`, `malformed`) |
/// | `meshid_tls_verification_duration_seconds` (histogram) | `side` |
///
/// Each handshake in which the peer presented a certificate counts once: refused with the
/// reason its certificate failed, `bad_signature` when the certificate passed but the
/// peer's signature over the handshake did not (a peer presenting a chain whose key it
/// does not hold: chains are public), else `accepted` once that signature verified. A
/// handshake abandoned between the two is not counted. Decorate the verifiers and build
/// the configurations with them:
///
/// ```
/// # #[cfg(all(feature = "ring", feature = "ca"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use meshid::metrics::TlsMetrics;
/// use meshid::tls::SpiffeClientCertVerifier;
/// use meshid::{authorize, BundleSet, SvidStore};
///
/// let mut registry = prometheus_client::registry::Registry::default();
/// let metrics = TlsMetrics::register(&mut registry);
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let verifier = SpiffeClientCertVerifier::new(Arc::new(BundleSet::new()), authorize::any(), provider.clone());
/// let config = meshid::tls::server_config_with_verifier(
///     provider,
///     Arc::new(SvidStore::new()),
///     metrics.server_verifier(Arc::new(verifier)),
/// )?;
/// # let _ = config;
/// # Ok(())
/// # }
/// # #[cfg(not(all(feature = "ring", feature = "ca")))]
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct TlsMetrics {
    server: Side,
    client: Side,
}

impl fmt::Debug for TlsMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMetrics").finish_non_exhaustive()
    }
}

/// One side's counters and histogram, looked up once (the handshake path only adds).
#[derive(Clone)]
struct Side {
    results: [Counter; RESULTS.len()],
    duration: DurationHistogram,
}

impl Side {
    fn new(
        side: &'static str,
        handshakes: &Family<[(&'static str, &'static str); 2], Counter>,
        durations: &Family<[(&'static str, &'static str); 1], DurationHistogram>,
    ) -> Self {
        Self {
            results: RESULTS
                .map(|r| handshakes.get_or_create_owned(&[("side", side), ("result", r)])),
            duration: durations.get_or_create_owned(&[("side", side)]),
        }
    }

    /// Times a certificate verification; counts it if it refused.
    fn certificate<T>(&self, verify: impl FnOnce() -> Result<T, TlsError>) -> Result<T, TlsError> {
        let started = Instant::now();
        let verdict = verify();
        self.duration.observe(started.elapsed());
        if let Err(e) = &verdict {
            self.results[refusal_of(e)].inc();
        }
        verdict
    }

    /// Counts the handshake signature's verdict: the end of a handshake's peer checks.
    fn signature<T>(&self, verdict: Result<T, TlsError>) -> Result<T, TlsError> {
        let result = if verdict.is_ok() {
            ACCEPTED
        } else {
            BAD_SIGNATURE
        };
        self.results[result].inc();
        verdict
    }
}

fn duration_histogram() -> DurationHistogram {
    // 10 µs to about 40 ms: a cached verification, a full one (~100 µs), a slow authorizer.
    DurationHistogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-5, 2.5, 10,
    ))
}

impl TlsMetrics {
    /// Registers the families into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let handshakes = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let durations =
            Family::<[(&'static str, &'static str); 1], DurationHistogram>::new_with_constructor(
                duration_histogram as fn() -> DurationHistogram,
            );
        let metrics = Self {
            server: Side::new("server", &handshakes, &durations),
            client: Side::new("client", &handshakes, &durations),
        };
        registry.register(
            "meshid_tls_handshakes",
            "TLS handshakes by our side and the peer certificate's verdict.",
            handshakes,
        );
        registry.register_with_unit(
            "meshid_tls_verification_duration",
            "How long verifying the peer's certificate chain took.",
            Unit::Seconds,
            durations,
        );
        metrics
    }

    /// `inner`, counted as the server side (it verifies clients).
    pub fn server_verifier(
        &self,
        inner: Arc<dyn ClientCertVerifier>,
    ) -> Arc<dyn ClientCertVerifier> {
        Arc::new(MeteredClientCertVerifier {
            inner,
            side: self.server.clone(),
        })
    }

    /// `inner`, counted as the client side (it verifies servers).
    pub fn client_verifier(
        &self,
        inner: Arc<dyn ServerCertVerifier>,
    ) -> Arc<dyn ServerCertVerifier> {
        Arc::new(MeteredServerCertVerifier {
            inner,
            side: self.client.clone(),
        })
    }
}

/// A client-certificate verifier whose verdicts are counted ([`TlsMetrics::server_verifier`]).
struct MeteredClientCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    side: Side,
}

impl fmt::Debug for MeteredClientCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredClientCertVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for MeteredClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        self.side.certificate(|| {
            self.inner
                .verify_client_cert(end_entity, intermediates, now)
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.side
            .signature(self.inner.verify_tls12_signature(message, cert, dss))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.side
            .signature(self.inner.verify_tls13_signature(message, cert, dss))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// A server-certificate verifier whose verdicts are counted ([`TlsMetrics::client_verifier`]).
struct MeteredServerCertVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    side: Side,
}

impl fmt::Debug for MeteredServerCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredServerCertVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for MeteredServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.side.certificate(|| {
            self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.side
            .signature(self.inner.verify_tls12_signature(message, cert, dss))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.side
            .signature(self.inner.verify_tls13_signature(message, cert, dss))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::Unauthorized;
    use crate::SpiffeId;

    #[test]
    fn verdicts_map_to_a_closed_set_of_results() {
        let wrap = |rejected: PeerRejected| {
            TlsError::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(rejected),
            )))
        };

        let td = crate::TrustDomain::new("other.org").unwrap();
        let no_bundle = wrap(PeerRejected::Verify(VerifyError::NoBundle {
            trust_domain: td,
        }));
        assert_eq!(RESULTS[refusal_of(&no_bundle)], "untrusted_trust_domain");
        let unknown = wrap(PeerRejected::Verify(VerifyError::UnknownIssuer));
        assert_eq!(RESULTS[refusal_of(&unknown)], "unknown_issuer");
        let id = SpiffeId::new("spiffe://example.org/x").unwrap();
        let refused = wrap(PeerRejected::Unauthorized(Unauthorized::new(
            id,
            crate::authorize::Refusal::NotOneOf { allowed: 0 },
        )));
        assert_eq!(RESULTS[refusal_of(&refused)], "not_authorized");
        let other = TlsError::InvalidCertificate(rustls::CertificateError::BadEncoding);
        assert_eq!(RESULTS[refusal_of(&other)], "malformed");
    }
}
