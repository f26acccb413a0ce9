//! The proxy server: a listener, a [`Way`] (terminate or originate TLS), limits, and a
//! graceful shutdown. `meshid proxy` is this, configured from flags.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::net::{Address, Listener, Stream};
use super::observe::{Kind, ProxyEvent, ProxyObserver, Refusal, Way};
use super::sniff::{sniff, Protocol};
use super::{proxy_v2_header, relay, Acceptor, Connector, PeerStream, ProxyError, TlsInfo};

/// How an inbound proxy passes the verified caller's SPIFFE ID on to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardId {
    /// It does not (the default).
    #[default]
    None,
    /// A PROXY protocol v2 header before the caller's bytes ([`proxy_v2_header`]).
    ProxyV2,
    /// HTTP/1: the `x-forwarded-client-cert` header on every request
    /// ([`forward_http`](super::forward_http)).
    Http,
}

/// The limits of a proxy.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Limits {
    /// Connections relayed at once; one more is closed at once (counted as refused,
    /// `max_conns`). Default 10,000.
    pub max_connections: usize,
    /// Connecting to the target. Default 5 s.
    pub connect_timeout: Duration,
    /// A relay where nothing moves either way for this long is closed. Default 1 h.
    pub idle_timeout: Option<Duration>,
    /// After shutdown begins, how long connections in flight may finish. Default 10 s.
    pub shutdown_timeout: Duration,
    /// Permissive mode: how long a client may take to send its first bytes. Default 5 s.
    pub detect_timeout: Duration,
    /// HTTP forwarding ([`ForwardId::Http`]): how long a caller may take to send a request
    /// head, and so how long a kept-alive connection may sit idle between requests.
    /// Default 30 s.
    pub header_timeout: Duration,
    /// HTTP forwarding: how long the target may take to begin a response (then `504`).
    /// Default 60 s.
    pub response_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(3600)),
            shutdown_timeout: Duration::from_secs(10),
            detect_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// Sets `max_connections`.
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
    /// Sets `connect_timeout`.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Sets `idle_timeout` (`None`: never).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }
    /// Sets `shutdown_timeout`.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// Sets `detect_timeout`.
    #[must_use]
    pub fn detect_timeout(mut self, timeout: Duration) -> Self {
        self.detect_timeout = timeout;
        self
    }
    /// Sets `header_timeout`.
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }
    /// Sets `response_timeout`.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

enum Secure {
    Terminate(Acceptor),
    Originate(Connector),
}

/// A TLS proxy: inbound (terminate TLS, forward plaintext to a local target) or outbound
/// (take plaintext, originate TLS to a target).
///
/// ```no_run
/// # async fn demo(acceptor: meshid::proxy::Acceptor, stop: tokio::sync::oneshot::Receiver<()>)
/// #     -> std::io::Result<()> {
/// use meshid::proxy::{Address, Limits, Proxy};
/// let listener = Address::parse("0.0.0.0:8443").unwrap().bind().await?;
/// let target = Address::parse("127.0.0.1:8080").unwrap();
/// Proxy::inbound(acceptor, target)
///     .limits(Limits::default().max_connections(1000))
///     .serve(listener, async { let _ = stop.await; })
///     .await
/// # }
/// ```
pub struct Proxy {
    secure: Secure,
    target: Address,
    limits: Limits,
    permissive: bool,
    forward: ForwardId,
    observer: Option<Arc<dyn ProxyObserver>>,
    /// Set once shutdown begins: HTTP connections then close when idle.
    draining: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Terminates TLS with `acceptor` and forwards the plaintext to `target`.
    pub fn inbound(acceptor: Acceptor, target: Address) -> Self {
        Self::new(Secure::Terminate(acceptor), target)
    }

    /// Takes plaintext and forwards it over TLS, opened with `connector`, to `target`.
    pub fn outbound(connector: Connector, target: Address) -> Self {
        Self::new(Secure::Originate(connector), target)
    }

    fn new(secure: Secure, target: Address) -> Self {
        Self {
            secure,
            target,
            limits: Limits::default(),
            permissive: false,
            forward: ForwardId::None,
            observer: None,
            draining: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Inbound only: also accept plaintext on the same port (Istio's PERMISSIVE, for
    /// migrations), told apart by the first bytes within `Limits::detect_timeout`.
    /// Strict (TLS only) is the default.
    #[must_use]
    pub fn permissive(mut self, on: bool) -> Self {
        self.permissive = on;
        self
    }

    /// Inbound only: how the caller's SPIFFE ID reaches the application.
    #[must_use]
    pub fn forward_id(mut self, forward: ForwardId) -> Self {
        self.forward = forward;
        self
    }

    /// Reports connections, refusals and bytes to `observer`.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn ProxyObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn way(&self) -> Way {
        match self.secure {
            Secure::Terminate(_) => Way::Inbound,
            Secure::Originate(_) => Way::Outbound,
        }
    }

    /// Serves `listener` until `shutdown` completes; then stops accepting, lets the
    /// connections in flight finish for `Limits::shutdown_timeout`, and closes the rest. A
    /// Unix socket listener's file is removed. Fails only when accepting fails for a reason
    /// other than a momentary one (too many open files is waited out).
    pub async fn serve(
        self,
        listener: Listener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let way = self.way();
        let this = Arc::new(self);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(way = way.as_str(), target = %this.target, "proxy serving");
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, addrs)) => {
                        // Reap what has finished, so the count is of live connections.
                        while connections.try_join_next().is_some() {}
                        if connections.len() >= this.limits.max_connections {
                            this.observe(ProxyEvent::Refused { way, reason: Refusal::MaxConns });
                            tracing::debug!(way = way.as_str(), "proxy: connection limit reached");
                            drop(stream);
                            continue;
                        }
                        let this = Arc::clone(&this);
                        connections.spawn(async move { this.handle(stream, addrs).await });
                    }
                    Err(e) if transient(&e) => {
                        tracing::warn!(error = %e, "proxy: accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => break Err(e),
                },
            }
        };
        listener_cleanup(listener);
        this.draining.send_replace(true);
        let in_flight = connections.len();
        if in_flight > 0 {
            tracing::info!(connections = in_flight, timeout = ?this.limits.shutdown_timeout,
                "proxy: draining");
            let drained = tokio::time::timeout(this.limits.shutdown_timeout, async {
                while connections.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::info!(connections = connections.len(), "proxy: closing the rest");
                connections.shutdown().await;
            }
        }
        result
    }

    fn observe(&self, event: ProxyEvent) {
        if let Some(o) = &self.observer {
            o.observe(event);
        }
    }

    async fn handle(&self, stream: Stream, addrs: Option<(SocketAddr, SocketAddr)>) {
        let way = self.way();
        if let Err(e) = self.setup(stream, addrs).await {
            tracing::debug!(way = way.as_str(), error = %e, "proxy: connection refused");
            self.observe(ProxyEvent::Refused {
                way,
                reason: e.refusal(),
            });
        }
    }

    /// Sets one connection up and relays it; an error is one before relaying began.
    async fn setup(
        &self,
        stream: Stream,
        addrs: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<(), ProxyError> {
        match &self.secure {
            Secure::Originate(connector) => {
                let target = self.target.connect(self.limits.connect_timeout).await?;
                let tls = connector.connect(target).await?;
                let kind = kind_of(&tls);
                self.relayed(stream, tls, kind).await;
                Ok(())
            }
            Secure::Terminate(acceptor) if self.permissive => {
                let (protocol, stream) = sniff(stream, self.limits.detect_timeout).await?;
                match protocol {
                    Protocol::Tls => self.terminated(acceptor.accept(stream).await?, addrs).await,
                    Protocol::Plaintext => {
                        let target = self.forward_header(None, addrs).await?;
                        self.deliver(stream, target, None, Kind::Plaintext).await
                    }
                }
            }
            Secure::Terminate(acceptor) => {
                self.terminated(acceptor.accept(stream).await?, addrs).await
            }
        }
    }

    async fn terminated<S>(
        &self,
        tls: PeerStream<tokio_rustls::server::TlsStream<S>>,
        addrs: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<(), ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let version = tls
            .get_ref()
            .get_ref()
            .1
            .protocol_version()
            .unwrap_or(rustls::ProtocolVersion::TLSv1_3);
        let kind = kind_of(&tls);
        let peer = tls.peer_id().cloned();
        let target = self
            .forward_header(Some(TlsInfo::new(version, peer.as_ref())), addrs)
            .await?;
        self.deliver(tls, target, peer, kind).await
    }

    /// Connects to the target and, with PROXY protocol forwarding, writes the header.
    async fn forward_header(
        &self,
        tls: Option<TlsInfo<'_>>,
        addrs: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<Option<Stream>, ProxyError> {
        if self.forward == ForwardId::Http {
            return Ok(None); // connected per request
        }
        let mut target = self.target.connect(self.limits.connect_timeout).await?;
        if self.forward == ForwardId::ProxyV2 {
            let header = proxy_v2_header(addrs.map(|a| a.0), addrs.map(|a| a.1), tls);
            target.write_all(&header).await?;
        }
        Ok(Some(target))
    }

    async fn deliver<D>(
        &self,
        downstream: D,
        target: Option<Stream>,
        peer: Option<crate::SpiffeId>,
        kind: Kind,
    ) -> Result<(), ProxyError>
    where
        D: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(target) = target {
            self.relayed(downstream, target, kind).await;
            return Ok(());
        }
        let way = self.way();
        let _open = self.opened(kind);
        let address = self.target.clone();
        let timeout = self.limits.connect_timeout;
        let connect = move || {
            let address = address.clone();
            async move { address.connect(timeout).await.map_err(io::Error::other) }
        };
        let limits =
            super::HttpLimits::new(self.limits.header_timeout, self.limits.response_timeout);
        let mut draining = self.draining.subscribe();
        let shutdown = async move {
            let _ = draining.wait_for(|on| *on).await;
        };
        if let Err(e) =
            super::forward_http(downstream, peer.as_ref(), connect, limits, shutdown).await
        {
            tracing::debug!(way = way.as_str(), error = %e, "proxy: HTTP connection ended with an error");
        }
        Ok(())
    }

    async fn relayed<A, B>(&self, a: A, b: B, kind: Kind)
    where
        A: AsyncRead + AsyncWrite,
        B: AsyncRead + AsyncWrite,
    {
        let way = self.way();
        let _open = self.opened(kind);
        let progress = |direction: relay::Direction, bytes: u64| {
            self.observe(ProxyEvent::Bytes {
                way,
                to_target: direction == relay::Direction::Forward,
                bytes,
            });
        };
        match relay::relay(a, b, self.limits.idle_timeout, &progress).await {
            Ok(t) => tracing::debug!(
                way = way.as_str(),
                forward = t.forward,
                back = t.back,
                "proxy: connection closed"
            ),
            Err(e) => tracing::debug!(way = way.as_str(), error = %e, "proxy: connection ended"),
        }
    }

    /// Reports the connection opened now, and closed when the guard drops: also when the
    /// task is aborted at the end of a shutdown.
    fn opened(&self, kind: Kind) -> Open<'_> {
        let way = self.way();
        self.observe(ProxyEvent::Opened { way, kind });
        Open {
            proxy: self,
            way,
            kind,
        }
    }
}

struct Open<'a> {
    proxy: &'a Proxy,
    way: Way,
    kind: Kind,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.proxy.observe(ProxyEvent::Closed {
            way: self.way,
            kind: self.kind,
        });
    }
}

fn kind_of<S>(tls: &PeerStream<S>) -> Kind {
    if tls.peer_id().is_some() {
        Kind::Mtls
    } else {
        Kind::Tls
    }
}

/// Accept errors worth waiting out: out of file descriptors or memory, a connection reset
/// before it was accepted.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) // ENFILE, EMFILE, ENOMEM, ENOBUFS
}

/// Closes the listener, removing a Unix socket's file.
fn listener_cleanup(listener: Listener) {
    if let Listener::Unix(l, path) = listener {
        drop(l);
        let _ = std::fs::remove_file(path);
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("way", &self.way())
            .field("target", &self.target)
            .field("limits", &self.limits)
            .field("permissive", &self.permissive)
            .field("forward", &self.forward)
            .finish_non_exhaustive()
    }
}
