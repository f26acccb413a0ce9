//! The one serving layer under every meshid gRPC server (the Workload API and SDS servers,
//! and every later one): what a server needs besides its service logic.
//!
//! - **Listeners:** a Unix socket (bound with its final mode before anyone can connect,
//!   a stale socket file replaced only when nobody listens, removed on exit only if it is
//!   still ours) or a TCP address.
//! - **`:authority` normalisation:** every request's `:authority` becomes `localhost`
//!   before `h2` validates it, so gRPC C-core (grpcio, py-spiffe, Envoy `google_grpc`),
//!   grpc-java and grpc-swift clients, which put the socket path there, are served like
//!   grpc-go and tonic ones. Only that pseudo-header changes; see `authority.rs`.
//! - **Admission** by the caller's Unix peer credentials (`SO_PEERCRED`, taken at
//!   accept): callers outside the allowed uids get `PermissionDenied` before the service
//!   sees the request.
//! - **Caps and timeouts** ([`ServeLimits`]): connections per server (beyond the cap a new
//!   connection is closed at once and counted), concurrent streams per connection, a
//!   deadline for the HTTP/2 preface, an idle timeout for connections holding no stream,
//!   and HTTP/2 keepalive.
//! - **Shutdown:** graceful (the server's streams end, connections close), then forced
//!   after a grace period; the same cleanup runs if the serving future is dropped.
//!
//! What a server hands out is behind two traits, so the servers hold no SVID of their own:
//! [`Identities`] (what each [`Caller`] is entitled to: [`EveryCaller`] for a few stores
//! served to everyone, a Workload API `X509Source` re-served, or an agent's registry that
//! attests each caller) and [`Bundles`] (the trust bundles beside them), each with the
//! [`Changes`](crate::watch::Changes) a stream waits on before it pushes again.
//!
//! [`ServeError`] and [`ServeLimits`] are public; each server exposes the settings that
//! apply to it.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use thiserror::Error;
use tokio::sync::watch;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

mod authority;
mod caller;
mod conn;
#[doc(hidden)]
pub mod fuzzing;
mod hpack;
mod identities;
mod incoming;
mod jwt;
mod listener;
mod observe;

pub use authority::H2RewriteError;
pub use caller::Caller;
pub(crate) use conn::Peer;
pub use hpack::HpackError;
pub use identities::{Bundles, EveryCaller, Identities, Identity, Refused, Subscription};
pub use jwt::{JwtBundleFeed, JwtIssuer, MintError};
pub(crate) use observe::{changed_at, Observer, StreamSeen};
pub use observe::{Refusal, ServeEvent, ServeObserver, StreamKind};

/// Why a server could not serve.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Another server is listening on the socket path.
    #[error("{}: a server is already listening there", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket path exists and is not a socket; it is left alone.
    #[error("{}: exists and is not a socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Creating or binding the Unix socket failed.
    #[error("{}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Binding the TCP address failed.
    #[error("{addr}: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP/2 transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[source] tonic::transport::Error),
}

/// The connection limits of a server: every meshid server enforces them the same way.
///
/// ```
/// use std::time::Duration;
/// use meshid::serve::ServeLimits;
///
/// let limits = ServeLimits::default()
///     .max_connections(256)
///     .preface_timeout(Duration::from_secs(5))
///     .idle_timeout(Duration::from_secs(60));
/// assert_eq!(limits.connections(), 256);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    max_connections: usize,
    max_per_uid: Option<usize>,
    preface_timeout: Duration,
    idle_timeout: Duration,
}

impl Default for ServeLimits {
    /// 512 connections (each costs a file descriptor; the common soft limit is 1,024), 10 s
    /// for the HTTP/2 preface, 5 min idle with no stream.
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_per_uid: None,
            preface_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl ServeLimits {
    /// The most connections the server holds at once (at least 1). A connection accepted
    /// beyond it is closed at once, logged and counted. With `allow_uids`, callers it
    /// refuses share 4 connections of their own instead, so they cannot fill the cap.
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The most connections callers of one Unix uid may hold at once (at least 1; default:
    /// no cap of its own, only [`max_connections`](Self::max_connections)): on a socket
    /// any local user may open (an agent's), one user cannot take every connection.
    /// TCP connections carry no uid and are not counted here.
    #[must_use]
    pub fn max_connections_per_uid(mut self, n: usize) -> Self {
        self.max_per_uid = Some(n.max(1));
        self
    }

    /// How long a new connection may take to send the HTTP/2 client preface and its
    /// first frame before it is closed.
    #[must_use]
    pub fn preface_timeout(mut self, timeout: Duration) -> Self {
        self.preface_timeout = timeout;
        self
    }

    /// How long a connection may hold no request (no open stream) before it is closed.
    /// Clients reconnect when they next need the server.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The connection cap.
    pub fn connections(&self) -> usize {
        self.max_connections
    }

    /// The per-uid connection cap, if any.
    pub fn connections_per_uid(&self) -> Option<usize> {
        self.max_per_uid
    }
}

/// Where a server listens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listen<'a> {
    Unix(&'a Path),
    Tcp(SocketAddr),
}

/// The settings of the serving layer, held by each server and set through its builder.
#[derive(Debug, Clone)]
pub(crate) struct Serving {
    /// The server's name in logs ("Workload API", "SDS").
    pub(crate) name: &'static str,
    pub(crate) socket_mode: u32,
    pub(crate) allowed_uids: Option<Arc<BTreeSet<u32>>>,
    pub(crate) grace: Duration,
    pub(crate) max_streams: u32,
    pub(crate) limits: ServeLimits,
    /// Who hears of connections, streams, pushes and refusals (metrics).
    pub(crate) observer: Option<Arc<dyn ServeObserver>>,
}

impl std::fmt::Debug for dyn ServeObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServeObserver")
    }
}

impl Serving {
    /// Defaults: socket mode 0600, every local caller admitted, 5 s grace.
    pub(crate) fn new(name: &'static str, max_streams: u32) -> Self {
        Self {
            name,
            socket_mode: 0o600,
            allowed_uids: None,
            grace: Duration::from_secs(5),
            max_streams,
            limits: ServeLimits::default(),
            observer: None,
        }
    }

    /// The observer, labelled with this server's name: `workload_api`, `sds`, or
    /// `workload_api_and_sds` for both on one socket.
    pub(crate) fn observer(&self) -> Observer {
        let label = match self.name {
            "Workload API" => "workload_api",
            "SDS" => "sds",
            _ => "workload_api_and_sds",
        };
        Observer::new(label, self.observer.clone())
    }

    /// Serves `service` on `listen` until `shutdown` completes. `stop` runs once, when
    /// shutdown begins or when serving ends (returns, fails, or is dropped): it must end
    /// the server's streams. Connections left open after the grace period are closed.
    pub(crate) async fn serve<S>(
        &self,
        listen: Listen<'_>,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
        stop: impl FnOnce() + Send + 'static,
    ) -> Result<(), ServeError>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let (force, forced) = watch::channel(false);
        let admission = incoming::Admission::new(
            self.name,
            self.limits.max_connections,
            self.limits.max_per_uid,
            self.allowed_uids.clone(),
            conn::Timeouts {
                preface: self.limits.preface_timeout,
                idle: self.limits.idle_timeout,
            },
            forced,
            self.observer(),
        );
        let (listener, socket) = match listen {
            Listen::Unix(path) => {
                let (listener, socket) = listener::bind(path, self.socket_mode).await?;
                tracing::info!(socket = %path.display(), "{} server listening", self.name);
                (incoming::Listener::Unix(listener), Some(socket))
            }
            Listen::Tcp(addr) => {
                let listener = listener::bind_tcp(addr).await?;
                tracing::info!(%addr, "{} server listening", self.name);
                (incoming::Listener::Tcp(listener), None)
            }
        };
        let incoming = incoming::Incoming::new(listener, admission);
        let guard = Guard {
            force: force.clone(),
            stop: Arc::new(std::sync::Mutex::new(Some(Box::new(stop)))),
            _socket: socket,
            _listening: self.observer().listening(),
        };
        let stop = Arc::clone(&guard.stop);
        let (name, grace) = (self.name, self.grace);
        let closing = async move {
            shutdown.await;
            tracing::info!("{name} server shutting down");
            run_once(&stop);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if force.send(true).is_ok() {
                    tracing::warn!("closing {name} connections by force");
                }
            });
        };
        let admitted = Admit {
            inner: service,
            allowed: self.allowed_uids.clone(),
            observer: self.observer(),
        };
        let result = tonic::transport::Server::builder()
            .max_concurrent_streams(self.max_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .serve_with_incoming_shutdown(admitted, incoming, closing)
            .await;
        drop(guard);
        result.map_err(ServeError::Transport)
    }
}

type Stop = Arc<std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>>;

fn run_once(stop: &Stop) {
    let f = stop
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(f) = f {
        f();
    }
}

/// Ends what `serve` started however it ends: runs `stop`, closes connections by force,
/// removes the socket.
struct Guard {
    force: watch::Sender<bool>,
    stop: Stop,
    _socket: Option<listener::BoundSocket>,
    /// Reports the server stopped once the socket is gone (dropped after it).
    _listening: observe::ListeningSeen,
}

impl Drop for Guard {
    fn drop(&mut self) {
        run_once(&self.stop);
        let _ = self.force.send(true);
    }
}

/// Refuses callers whose uid is not allowed, before the service sees the request.
#[derive(Clone)]
struct Admit<S> {
    inner: S,
    allowed: Option<Arc<BTreeSet<u32>>>,
    observer: Observer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Admit<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let peer = req.extensions().get::<conn::Peer>();
        if let Some(allowed) = &self.allowed {
            let uid = peer.and_then(|p| p.cred).map(|c| c.uid());
            if !uid.is_some_and(|uid| allowed.contains(&uid)) {
                tracing::info!(
                    ?uid,
                    path = req.uri().path(),
                    reason = "uid not allowed",
                    "refused a caller"
                );
                // A call of one API: labelled with it, as the services label theirs.
                let api = if req.uri().path().starts_with("/envoy.") {
                    "sds"
                } else {
                    "workload_api"
                };
                self.observer.refused_call(api, Refusal::UidNotAllowed);
                // As SPIRE answers a workload it has no registration for.
                let refused = Status::permission_denied("no identity issued").into_http();
                return Box::pin(async move { Ok(refused) });
            }
        }
        // The request counts as open until its response body is done or dropped (so a
        // connection holding a stream is never idle).
        let open = peer.map(|p| p.activity.begin());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(match open {
                Some(open) => response.map(|body| Body::new(Tracked { body, _open: open })),
                None => response,
            })
        })
    }
}

/// A response body that keeps its request open while it lives.
struct Tracked {
    body: Body,
    _open: conn::Open,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Completes once `closed` turns true (or its sender is gone): a server is closing.
pub(crate) async fn closing(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

/// Runs `f`, which may block when `may_block` (an agent attesting a caller reads `/proc`
/// and may hash an executable: [`Identities::may_block`]), without stalling the other
/// tasks of a multi-threaded runtime: the worker hands its tasks over first. Otherwise,
/// or on a current-thread runtime, it simply runs.
pub(crate) fn blocking<T>(may_block: bool, f: impl FnOnce() -> T) -> T {
    if !may_block {
        return f();
    }
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
