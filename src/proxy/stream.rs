//! The two halves of a tokio SPIFFE mTLS connection: [`Acceptor`] (server side) and
//! [`Connector`] (client side), each yielding a [`PeerStream`], the TLS stream with the
//! peer's verified SPIFFE ID.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use super::ProxyError;
use crate::SpiffeId;

/// How long a handshake may take unless set otherwise: 10 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS connections with a rustls [`ServerConfig`] (usually
/// [`tls::server_config`](crate::tls::server_config): SPIFFE mTLS with a rotating SVID) and
/// yields each stream with its peer's verified SPIFFE ID.
///
/// The handshake is bounded by a timeout, so a client that connects and sends nothing holds
/// nothing for long. A refused peer comes back as [`ProxyError::Rejected`] with the reason.
#[derive(Clone)]
pub struct Acceptor {
    inner: TlsAcceptor,
    timeout: Duration,
    spiffe: bool,
}

impl Acceptor {
    /// An acceptor for `config`, whose client-certificate verifier must be a SPIFFE one
    /// ([`SpiffeClientCertVerifier`](crate::tls::SpiffeClientCertVerifier), as in
    /// [`tls::server_config`](crate::tls::server_config) and
    /// [`tls::mtls_web_server_config`](crate::tls::mtls_web_server_config)): every accepted
    /// peer then has a verified SPIFFE ID. For any other configuration (one-way TLS, Web PKI
    /// client certificates) call [`Acceptor::without_peer_id`].
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            inner: TlsAcceptor::from(config),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            spiffe: true,
        }
    }

    /// The handshake timeout ([`DEFAULT_HANDSHAKE_TIMEOUT`] by default).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// For a configuration whose verifier is not a SPIFFE one (or that asks for no client
    /// certificate): accept every peer the configuration accepts and never report a SPIFFE
    /// ID ([`PeerStream::peer_id`] is `None`), whatever URI the peer's certificate carries,
    /// since nothing checked that its chain leads to that trust domain's bundle. By default
    /// a peer without an X509-SVID is refused with [`ProxyError::NoPeerId`].
    #[must_use]
    pub fn without_peer_id(mut self) -> Self {
        self.spiffe = false;
        self
    }

    /// Completes the server side of a TLS handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> Result<PeerStream<server::TlsStream<IO>>, ProxyError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        finish(self.timeout, self.spiffe, self.inner.accept(io), |s| {
            &**s.get_ref().1
        })
        .await
    }
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("handshake_timeout", &self.timeout)
            .field("spiffe", &self.spiffe)
            .finish_non_exhaustive()
    }
}

/// Opens TLS connections with a rustls [`ClientConfig`] (usually
/// [`tls::client_config`](crate::tls::client_config), whose authorizer is the check of the
/// server's expected ID) and yields each stream with the server's verified SPIFFE ID.
#[derive(Clone)]
pub struct Connector {
    inner: TlsConnector,
    name: ServerName<'static>,
    timeout: Duration,
    spiffe: bool,
}

impl Connector {
    /// A connector for `config`. SPIFFE verification does not check a server *name*, but TLS
    /// sends one (SNI): `spiffe` unless [`Connector::server_name`] sets another.
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            inner: TlsConnector::from(config),
            name: ServerName::try_from("spiffe")
                .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            spiffe: true,
        }
    }

    /// The server name to send (SNI) and, with a Web PKI configuration, to verify.
    #[must_use]
    pub fn server_name(mut self, name: ServerName<'static>) -> Self {
        self.name = name;
        self
    }

    /// The handshake timeout ([`DEFAULT_HANDSHAKE_TIMEOUT`] by default).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// For a configuration whose verifier is not a SPIFFE one (a Web PKI server, as with
    /// [`tls::web_client_config`](crate::tls::web_client_config)): never report a SPIFFE ID
    /// ([`PeerStream::peer_id`] is `None`), whatever URI the server's certificate carries.
    /// By default the verifier must be a SPIFFE one, and a server that presents no X509-SVID
    /// is refused with [`ProxyError::NoPeerId`].
    #[must_use]
    pub fn without_peer_id(mut self) -> Self {
        self.spiffe = false;
        self
    }

    /// Completes the client side of a TLS handshake on `io`.
    pub async fn connect<IO>(&self, io: IO) -> Result<PeerStream<client::TlsStream<IO>>, ProxyError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let handshake = self.inner.connect(self.name.clone(), io);
        finish(self.timeout, self.spiffe, handshake, |s| &**s.get_ref().1).await
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.name)
            .field("handshake_timeout", &self.timeout)
            .field("spiffe", &self.spiffe)
            .finish_non_exhaustive()
    }
}

/// What both halves do with a handshake: bound it by `timeout`, tell a refused peer apart,
/// and take the peer's verified ID from the connection `state` finds in the stream.
async fn finish<S>(
    timeout: Duration,
    spiffe: bool,
    handshake: impl std::future::Future<Output = io::Result<S>>,
    state: impl Fn(&S) -> &rustls::CommonState,
) -> Result<PeerStream<S>, ProxyError> {
    let stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ProxyError::HandshakeTimeout(timeout))?
        .map_err(ProxyError::handshake)?;
    if !spiffe {
        // The verifier is not a SPIFFE one: a URI in the peer's certificate proves nothing.
        return Ok(PeerStream { stream, peer: None });
    }
    let peer = crate::tls::peer_id(state(&stream)).ok_or(ProxyError::NoPeerId)?;
    Ok(PeerStream {
        stream,
        peer: Some(peer),
    })
}

/// An established TLS stream and its peer's verified SPIFFE ID. It reads and writes as the
/// stream does, so hyper, axum, tonic or [`relay`](fn@super::relay) take it as it is.
#[derive(Debug)]
pub struct PeerStream<S> {
    stream: S,
    peer: Option<SpiffeId>,
}

impl<S> PeerStream<S> {
    /// The peer's SPIFFE ID, verified and authorized during the handshake by the SPIFFE
    /// verifier (`None` only with `without_peer_id`).
    pub fn peer_id(&self) -> Option<&SpiffeId> {
        self.peer.as_ref()
    }

    /// The TLS stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The TLS stream and the peer's ID.
    pub fn into_parts(self) -> (S, Option<SpiffeId>) {
        (self.stream, self.peer)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PeerStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PeerStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
