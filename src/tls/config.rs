//! Ready-made rustls configurations and the peer's ID.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::NoServerSessionStorage;
use rustls::version::{TLS12, TLS13};
use rustls::{
    ClientConfig, CommonState, Error as TlsError, ServerConfig, SupportedProtocolVersion,
};

use super::{SpiffeClientCertVerifier, SpiffeServerCertVerifier, SvidResolver};
use crate::svid::profile::{self, CertView};
use crate::{Authorizer, BundleSource, SpiffeId, SvidSource};

/// A server configuration for SPIFFE mTLS: presents `svid`'s current SVID, requires a client
/// SVID that verifies against `bundles` and that `authorizer` allows, speaks TLS 1.3 and
/// 1.2, and never resumes sessions (see the [module docs](super)).
///
/// Fails only when `provider` supports neither TLS version.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    svid: impl SvidSource + 'static,
    bundles: impl BundleSource + 'static,
    authorizer: impl Authorizer + 'static,
) -> Result<ServerConfig, TlsError> {
    let verifier =
        SpiffeClientCertVerifier::new(Arc::new(bundles), authorizer, Arc::clone(&provider));
    server_config_with_verifier(provider, svid, Arc::new(verifier))
}

/// [`server_config`] with the client-certificate verifier given: a
/// [`SpiffeClientCertVerifier`] decorated (with metrics: `meshid::metrics::TlsMetrics`),
/// or another.
pub fn server_config_with_verifier(
    provider: Arc<CryptoProvider>,
    svid: impl SvidSource + 'static,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, TlsError> {
    let resolver = SvidResolver::new(svid, Arc::clone(&provider));
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    Ok(server_without_resumption(config))
}

/// A client configuration for SPIFFE mTLS: presents `svid`'s current SVID, requires a server
/// SVID that verifies against `bundles` and that `authorizer` allows (the server *name* is
/// not checked), speaks TLS 1.3 and 1.2, and never resumes sessions (see the
/// [module docs](super)).
///
/// Fails only when `provider` supports neither TLS version.
pub fn client_config(
    provider: Arc<CryptoProvider>,
    svid: impl SvidSource + 'static,
    bundles: impl BundleSource + 'static,
    authorizer: impl Authorizer + 'static,
) -> Result<ClientConfig, TlsError> {
    let verifier =
        SpiffeServerCertVerifier::new(Arc::new(bundles), authorizer, Arc::clone(&provider));
    client_config_with_verifier(provider, svid, Arc::new(verifier))
}

/// [`client_config`] with the server-certificate verifier given: a
/// [`SpiffeServerCertVerifier`] decorated (with metrics: `meshid::metrics::TlsMetrics`),
/// or another.
pub fn client_config_with_verifier(
    provider: Arc<CryptoProvider>,
    svid: impl SvidSource + 'static,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, TlsError> {
    let resolver = SvidResolver::new(svid, Arc::clone(&provider));
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(resolver));
    Ok(client_without_resumption(config))
}

/// The TLS versions of every configuration here: 1.3 and 1.2.
pub(super) const VERSIONS: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];

/// `config` with session resumption off: no session cache, no TLS 1.3 tickets (see the
/// [module docs](super)).
pub(super) fn server_without_resumption(mut config: ServerConfig) -> ServerConfig {
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config
}

/// `config` with session resumption off (see the [module docs](super)).
pub(super) fn client_without_resumption(mut config: ClientConfig) -> ClientConfig {
    config.resumption = Resumption::disabled();
    config
}

/// The SPIFFE ID of the connection's peer, once the handshake has completed; `None` before
/// that, or when the peer presented no X509-SVID. Works on a `ServerConnection` or a
/// `ClientConnection` (both dereference to `CommonState`).
///
/// With the verifiers of this module the peer's chain has been verified and authorized
/// before the handshake completes, so the ID returned is an authenticated one. On a
/// resumed session (only possible if resumption was switched back on) it is `None`.
pub fn peer_id(conn: &CommonState) -> Option<SpiffeId> {
    // A resumed session restores the peer's certificates without verifying or authorizing
    // them again: never report them as an authenticated ID.
    if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        return None;
    }
    let leaf = conn.peer_certificates()?.first()?;
    let view = CertView::parse(leaf, 0).ok()?;
    profile::check_leaf(&view).ok()
}
