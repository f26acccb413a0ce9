//! SPIFFE mTLS for tokio programs, and a TLS proxy for programs that cannot link meshid
//! (feature `proxy`).
//!
//! Two halves, for any tokio service (hyper, axum, tonic, a raw protocol):
//!
//! - [`Acceptor`] completes the server side of a handshake with a rustls `ServerConfig`
//!   (usually [`tls::server_config`](crate::tls::server_config): a rotating SVID, client
//!   SVIDs verified by the SPIFFE rules and an authorizer) and yields a [`PeerStream`]: the
//!   TLS stream with the caller's verified SPIFFE ID.
//! - [`Connector`] completes the client side with a rustls `ClientConfig` (usually
//!   [`tls::client_config`](crate::tls::client_config), whose authorizer is the check of the
//!   server's expected ID) and yields a [`PeerStream`] with the server's ID.
//!
//! Both bound the handshake with a timeout and report a refused peer as
//! [`ProxyError::Rejected`] with the reason.
//!
//! On top of them, [`Proxy`] is what `meshid proxy` runs: inbound, it terminates mTLS and
//! forwards plaintext to a local application (optionally telling it the caller's ID with a
//! PROXY protocol v2 header or an HTTP `x-forwarded-client-cert` header); outbound, it takes
//! the application's plaintext and originates mTLS to a target whose ID it checks. It
//! [`relay`](fn@relay)s bytes both ways with half-close and an idle timeout in bounded memory, limits
//! connections, can accept plaintext beside TLS on one port ([`sniff`], permissive mode),
//! and shuts down gracefully.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use meshid::proxy::{Acceptor, Connector};
//! use meshid::{authorize, tls, Authority, KeyType, SpiffeId, TrustDomain, X509Bundle};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let provider = Arc::new(tls::rustls::crypto::ring::default_provider());
//! let td = TrustDomain::new("example.org")?;
//! let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256)?;
//! let bundle = Arc::new(X509Bundle::from_authorities(td, ca.root().cloned())?);
//! let backend = SpiffeId::new("spiffe://example.org/backend")?;
//! let frontend = SpiffeId::new("spiffe://example.org/frontend")?;
//!
//! let server = tls::server_config(provider.clone(), Arc::new(ca.issue(&backend, Duration::from_secs(600))?),
//!     bundle.clone(), authorize::exact(frontend.clone()))?;
//! let client = tls::client_config(provider, Arc::new(ca.issue(&frontend, Duration::from_secs(600))?),
//!     bundle, authorize::exact(backend.clone()))?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let acceptor = Acceptor::new(Arc::new(server));
//! let served = tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await?;
//!     let mut stream = acceptor.accept(tcp).await?;
//!     let caller = stream.peer_id().cloned();
//!     stream.write_all(b"hello").await?;
//!     stream.shutdown().await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(caller)
//! });
//!
//! let tcp = tokio::net::TcpStream::connect(addr).await?;
//! let mut stream = Connector::new(Arc::new(client)).connect(tcp).await?;
//! assert_eq!(stream.peer_id(), Some(&backend));
//! let mut got = String::new();
//! stream.read_to_string(&mut got).await?;
//! assert_eq!(got, "hello");
//! assert_eq!(served.await?.map_err(|e| e.to_string())?, Some(frontend));
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

mod error;
mod http;
mod net;
mod observe;
mod proxy_v2;
pub mod relay;
mod server;
mod sniff;
mod stream;

pub use error::ProxyError;
pub use http::{forward_http, HttpLimits, XFCC};
pub use net::{Address, AddressError, Listener, Stream};
pub use observe::{Kind, ProxyEvent, ProxyObserver, Refusal, Way};
pub use proxy_v2::{proxy_v2_header, TlsInfo, PP2_TYPE_SPIFFE_ID};
pub use relay::relay;
pub use server::{ForwardId, Limits, Proxy};
pub use sniff::{sniff, Protocol, Rewind};
pub use stream::{Acceptor, Connector, PeerStream, DEFAULT_HANDSHAKE_TIMEOUT};

/// The tokio-rustls this module is built on (0.26, over [`tls::rustls`](crate::tls::rustls)):
/// name its stream types (`meshid::proxy::tokio_rustls::server::TlsStream`) through this
/// path.
pub use tokio_rustls;
