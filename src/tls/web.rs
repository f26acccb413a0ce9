//! SPIFFE beside the Web PKI: a server with a public (Web PKI) certificate that takes
//! SPIFFE clients, and a client of Web PKI servers that may offer its SVID (go-spiffe's
//! `tlsconfig.MTLSWebServerConfig` and `MTLSWebClientConfig`).
//!
//! For the edge of a mesh: a service reached by a DNS name with a certificate browsers
//! and other clients already trust, whose callers inside the mesh authenticate with their
//! SVIDs; and a workload calling an external HTTPS service, verified as any HTTPS client
//! verifies it (chain to a root in the store, and the server name), that may ask for a
//! client certificate.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls::{ClientConfig, Error as TlsError, OtherError, RootCertStore, ServerConfig};

use super::config::{client_without_resumption, server_without_resumption, VERSIONS};
use super::{SpiffeClientCertVerifier, SvidResolver};
use crate::{Authorizer, BundleSource, SvidSource};

/// A server configuration with a Web PKI certificate for SPIFFE clients: presents what
/// `cert` resolves (a certificate for the server's DNS name, from a public or corporate
/// CA), and requires a client SVID that verifies against `bundles` and that `authorizer`
/// allows (a [`SpiffeClientCertVerifier`]); TLS 1.3 and 1.2, resumption off (see the
/// [module docs](super)). [`peer_id`](super::peer_id) gives the client's SPIFFE ID.
///
/// Fails only when `provider` supports neither TLS version.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use meshid::tls::{self, rustls};
/// use meshid::{authorize, TrustDomain, X509Bundle};
///
/// # let cert = Arc::new(rustls::server::ResolvesServerCertUsingSni::new());
/// # let bundle = X509Bundle::from_authorities(TrustDomain::new("example.org")?, [])?;
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// // `cert`: any `ResolvesServerCert`, such as rustls's `ResolvesServerCertUsingSni` or
/// // `sign::SingleCertAndKey` with a certificate for `api.example.com`.
/// let config = tls::mtls_web_server_config(
///     provider, cert, bundle,
///     authorize::member_of(TrustDomain::new("example.org")?),
/// )?;
/// # let _ = config;
/// # Ok(())
/// # }
/// ```
pub fn mtls_web_server_config(
    provider: Arc<CryptoProvider>,
    cert: Arc<dyn ResolvesServerCert>,
    bundles: impl BundleSource + 'static,
    authorizer: impl Authorizer + 'static,
) -> Result<ServerConfig, TlsError> {
    let verifier =
        SpiffeClientCertVerifier::new(Arc::new(bundles), authorizer, Arc::clone(&provider));
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(cert);
    Ok(server_without_resumption(config))
}

/// A client configuration for Web PKI servers: the server's chain must lead to one of
/// `roots` and name the server name the connection is made with (rustls's
/// `WebPkiServerVerifier`: a DNS name or IP address, as any HTTPS client checks it). With
/// `client_svid`, its current SVID is the client certificate, sent only when the server
/// asks for one (go-spiffe's `MTLSWebClientConfig`); with `None`, none is ever sent. TLS
/// 1.3 and 1.2, resumption off (see the [module docs](super)).
///
/// `client_svid` is any [`SvidSource`]: `Some(Arc::new(store))` for a rotating
/// [`SvidStore`](crate::SvidStore) or an `X509Source`, `Some(Arc::new(svid))` for a fixed
/// `Arc<X509Svid>`.
///
/// `roots` is the application's choice: the `webpki-roots` crate's Mozilla set, the
/// system's (`rustls-native-certs`), or a private CA's.
///
/// Fails when `provider` supports neither TLS version, or `roots` is empty.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use meshid::tls::{self, rustls};
/// use meshid::SvidStore;
///
/// let provider = Arc::new(rustls::crypto::ring::default_provider());
/// let mut roots = rustls::RootCertStore::empty();
/// # let ca = meshid::Authority::new_root(meshid::TrustDomain::new("example.org")?, std::time::Duration::from_secs(60), meshid::KeyType::P256)?;
/// # let ca_der = ca.certificate().clone();
/// roots.add(ca_der)?; // or roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
/// let roots = Arc::new(roots);
/// let svid: Arc<dyn meshid::SvidSource> = Arc::new(SvidStore::new());
///
/// let plain = tls::web_client_config(provider.clone(), roots.clone(), None)?;
/// let with_svid = tls::web_client_config(provider.clone(), roots, Some(svid))?;
///
/// // No roots: refused, nothing would ever verify.
/// assert!(tls::web_client_config(provider, Arc::new(rustls::RootCertStore::empty()), None).is_err());
/// # let _ = (plain, with_svid);
/// # Ok(())
/// # }
/// ```
pub fn web_client_config(
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    client_svid: Option<Arc<dyn SvidSource>>,
) -> Result<ClientConfig, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| TlsError::Other(OtherError(Arc::new(e))))?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)?
        .with_webpki_verifier(verifier);
    let config = match client_svid {
        Some(svid) => {
            builder.with_client_cert_resolver(Arc::new(SvidResolver::new(svid, provider)))
        }
        None => builder.with_no_client_auth(),
    };
    Ok(client_without_resumption(config))
}
