//! One-way TLS with SPIFFE: the server presents its SVID, the client presents nothing
//! (go-spiffe's `tlsconfig.TLSServerConfig` and `TLSClientConfig`).
//!
//! For a client that cannot hold an SVID (outside the mesh, or before it has an identity)
//! but must still know it reached the right workload. The server learns nothing about its
//! client: authorize callers some other way (a token, a JWT-SVID), or use mTLS.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, Error as TlsError, ServerConfig};

use super::config::{client_without_resumption, server_without_resumption, VERSIONS};
use super::{SpiffeServerCertVerifier, SvidResolver};
use crate::{Authorizer, BundleSource, SvidSource};

/// A server configuration for one-way TLS: presents `svid`'s current SVID and asks for no
/// client certificate; TLS 1.3 and 1.2, resumption off (see the [module docs](super)).
///
/// Fails only when `provider` supports neither TLS version.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use meshid::tls::{self, rustls};
/// use meshid::{authorize, Authority, KeyType, SpiffeId, TrustDomain, X509Bundle};
///
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let td = TrustDomain::new("example.org")?;
/// let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256)?;
/// let bundle = X509Bundle::from_authorities(td, ca.root().cloned())?;
/// let backend = SpiffeId::new("spiffe://example.org/backend")?;
///
/// let server = tls::tls_server_config(provider.clone(), Arc::new(ca.issue(&backend, Duration::from_secs(600))?))?;
/// let client = tls::tls_client_config(provider, bundle, authorize::exact(backend))?;
/// # let _ = (server, client);
/// # Ok(())
/// # }
/// ```
pub fn tls_server_config(
    provider: Arc<CryptoProvider>,
    svid: impl SvidSource + 'static,
) -> Result<ServerConfig, TlsError> {
    let resolver = SvidResolver::new(svid, Arc::clone(&provider));
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    Ok(server_without_resumption(config))
}

/// A client configuration for one-way TLS: requires a server SVID that verifies against
/// `bundles` and that `authorizer` allows (a [`SpiffeServerCertVerifier`]; the server
/// *name* is not checked), and presents no certificate, so a server that requires one
/// (SPIFFE mTLS) refuses it; TLS 1.3 and 1.2, resumption off (see the
/// [module docs](super)).
///
/// Fails only when `provider` supports neither TLS version.
pub fn tls_client_config(
    provider: Arc<CryptoProvider>,
    bundles: impl BundleSource + 'static,
    authorizer: impl Authorizer + 'static,
) -> Result<ClientConfig, TlsError> {
    let verifier =
        SpiffeServerCertVerifier::new(Arc::new(bundles), authorizer, Arc::clone(&provider));
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(client_without_resumption(config))
}
