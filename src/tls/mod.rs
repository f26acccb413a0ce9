//! rustls integration (feature `rustls`): SPIFFE mTLS whose certificates rotate under live
//! traffic.
//!
//! Four small pieces, each with one job, as rustls itself is built:
//!
//! - [`SvidResolver`] presents the current SVID of any [`SvidSource`](crate::SvidSource)
//!   (server and client side). It builds the rustls `CertifiedKey` once per SVID and hands
//!   out the cached one on every handshake: nothing is parsed on the handshake path.
//! - [`SpiffeServerCertVerifier`] (a client verifying its server) and
//!   [`SpiffeClientCertVerifier`] (a server verifying its clients; a client certificate is
//!   required) verify the peer's chain as an X509-SVID against a
//!   [`BundleSource`](crate::BundleSource) with [`verify_x509_svid_for`](crate::verify_x509_svid_for),
//!   then ask an [`Authorizer`](crate::Authorizer). No DNS name is checked: SPIFFE
//!   authenticates the peer's ID, and the authorizer decides whether that ID may talk to us.
//!   Each keeps a [`VerifiedChainCache`](crate::VerifiedChainCache), so a peer that
//!   connects again is not path-validated again while its bundle and validity allow (a
//!   handshake about a quarter faster); the authorizer and the peer's CertificateVerify
//!   signature are still checked every time. `without_cache()` turns it off.
//! - [`server_config`] and [`client_config`] put them together with a crypto provider you
//!   choose, TLS 1.3 and 1.2, and session resumption off (see below).
//! - [`peer_id`] gives the application the authenticated peer's SPIFFE ID.
//!
//! Beside SPIFFE mTLS, the configurations of go-spiffe's `tlsconfig` package, with the same
//! versions and resumption off:
//!
//! | here | go-spiffe | server presents | client presents |
//! | --- | --- | --- | --- |
//! | [`server_config`] / [`client_config`] | `MTLSServerConfig` / `MTLSClientConfig` | its SVID | its SVID (required) |
//! | [`tls_server_config`] / [`tls_client_config`] | `TLSServerConfig` / `TLSClientConfig` | its SVID | nothing (one-way TLS) |
//! | [`mtls_web_server_config`] | `MTLSWebServerConfig` | a Web PKI certificate | its SVID (required) |
//! | [`web_client_config`] | `MTLSWebClientConfig` (with an SVID) | a Web PKI certificate, name checked | its SVID when asked, or nothing |
//!
//! # ALPN: HTTP/2 and gRPC
//!
//! These configurations offer no ALPN protocol. gRPC runs over HTTP/2, and gRPC clients
//! and servers expect to agree on `h2` by ALPN (grpc-go refuses a server that does not
//! select it); set [`ALPN_H2`] on both sides for tonic, or for hyper serving HTTP/2:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use meshid::{authorize, Authority, KeyType, SpiffeId, TrustDomain, X509Bundle};
//! use meshid::tls;
//! # let provider = Arc::new(tls::rustls::crypto::ring::default_provider());
//! # let td = TrustDomain::new("example.org")?;
//! # let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256)?;
//! # let bundle = Arc::new(X509Bundle::from_authorities(td, ca.root().cloned())?);
//! # let svid = Arc::new(ca.issue(&SpiffeId::new("spiffe://example.org/api")?, Duration::from_secs(600))?);
//! let mut server = tls::server_config(provider, svid, bundle, authorize::any())?;
//! server.alpn_protocols = vec![tls::ALPN_H2.to_vec()]; // HTTP/2 only
//! // Serving HTTP/2 and HTTP/1.1 on one port: offer both, h2 first.
//! server.alpn_protocols = vec![tls::ALPN_H2.to_vec(), tls::ALPN_HTTP11.to_vec()];
//! # Ok(())
//! # }
//! ```
//!
//! A peer that offers ALPN protocols none of which the server has is refused
//! (`NoApplicationProtocol`); one that offers none connects without.
//!
//! # Why session resumption is off
//!
//! A resumed TLS session skips certificate verification: the peer is taken to be whoever it
//! was when the session was first established. With SPIFFE that is wrong in three ways. The
//! peer's SVID may have expired or rotated since; the bundle may have changed (a revoked
//! authority removed); and the [`Authorizer`](crate::Authorizer) is not asked again. rustls
//! also keys client-side sessions by server *name*, which SPIFFE does not use. SPIRE, the
//! go-spiffe `tlsconfig` package and `spiffe-rustls` all turn it off; so do these helpers.
//! A full TLS 1.3 handshake with P-256 costs well under a millisecond, so there is little to
//! save. A config with resumption switched back on still verifies every full handshake,
//! but [`peer_id`] returns `None` on a resumed one, since nothing was verified there.
//!
//! # What a refused peer is told
//!
//! Every refusal (no bundle for its trust domain, unknown issuer, expired, a broken SVID
//! rule, an ID the authorizer refuses) reaches rustls as
//! `CertificateError::Other(`[`PeerRejected`]`)`, so the local side can tell exactly why
//! with [`rejection`], and the peer receives one alert, `certificate_unknown`. Telling a
//! caller which check failed (expired, `unknown_ca`, `access_denied`) would help an
//! attacker probe the trust configuration and the authorization policy; the logs (a
//! `tracing` debug event per refusal) and the local error carry the reason instead.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use meshid::{authorize, tls, Authority, KeyType, SpiffeId, TrustDomain, X509Bundle};
//!
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let td = TrustDomain::new("example.org")?;
//! let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256)?;
//! let bundle = Arc::new(X509Bundle::from_authorities(td.clone(), ca.root().cloned())?);
//!
//! let backend = Arc::new(ca.issue(&SpiffeId::new("spiffe://example.org/backend")?, Duration::from_secs(600))?);
//! let frontend = Arc::new(ca.issue(&SpiffeId::new("spiffe://example.org/frontend")?, Duration::from_secs(600))?);
//!
//! // The backend accepts only the frontend; the frontend accepts only the backend.
//! let server = tls::server_config(
//!     Arc::clone(&provider), backend, bundle.clone(),
//!     authorize::exact(SpiffeId::new("spiffe://example.org/frontend")?),
//! )?;
//! let client = tls::client_config(
//!     provider, frontend, bundle,
//!     authorize::exact(SpiffeId::new("spiffe://example.org/backend")?),
//! )?;
//!
//! // Drive a handshake in memory (a TcpStream works the same way).
//! let name = rustls::pki_types::ServerName::try_from("backend")?; // not checked, but required
//! let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
//! let mut s = rustls::ServerConnection::new(Arc::new(server))?;
//! while c.is_handshaking() || s.is_handshaking() {
//!     let mut buf = Vec::new();
//!     c.write_tls(&mut buf)?;
//!     s.read_tls(&mut buf.as_slice())?;
//!     s.process_new_packets()?;
//!     buf.clear();
//!     s.write_tls(&mut buf)?;
//!     c.read_tls(&mut buf.as_slice())?;
//!     c.process_new_packets()?;
//! }
//! assert_eq!(tls::peer_id(&s).unwrap().as_str(), "spiffe://example.org/frontend");
//! assert_eq!(tls::peer_id(&c).unwrap().as_str(), "spiffe://example.org/backend");
//! # Ok(())
//! # }
//! ```
//!
//! All rustls-version-specific code of the crate lives in this module.

mod config;
mod files;
mod oneway;
mod resolver;
mod verifier;
mod web;

pub use config::{
    client_config, client_config_with_verifier, peer_id, server_config, server_config_with_verifier,
};
pub use files::{CertFiles, CertFilesError};
pub use oneway::{tls_client_config, tls_server_config};
pub use resolver::SvidResolver;
pub use verifier::{
    io_rejection, rejection, PeerRejected, SpiffeClientCertVerifier, SpiffeServerCertVerifier,
};
pub use web::{mtls_web_server_config, web_client_config};

/// The ALPN protocol ID of HTTP/2 (`h2`, RFC 9113 §3.2), which gRPC needs: put it in a
/// configuration's `alpn_protocols` (see [ALPN](self#alpn-http2-and-grpc)).
pub const ALPN_H2: &[u8] = b"h2";

/// The ALPN protocol ID of HTTP/1.1 (`http/1.1`).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// The rustls this crate is built against (0.23): name its types through this path
/// (`meshid::tls::rustls::ServerConfig`) and a `rustls` of another version in the
/// application's own dependencies can never be mixed up with it.
pub use rustls;
