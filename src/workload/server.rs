//! A local Workload API server: hands out the SVIDs of [`SvidStore`]s (kept fresh by
//! [`Rotator`](crate::Rotator)s) and their bundles over a Unix socket, streaming a new
//! message on every rotation.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::Grpc;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::proto::{
    self, X509BundlesRequest, X509BundlesResponse, X509SvidMessage, X509SvidRequest,
    X509SvidResponse,
};
use crate::serve::{Listen, ServeError, ServeLimits, Serving};
use crate::{BundleSet, SvidSource, SvidStore, X509Bundle};

/// The largest request the server decodes (Workload API requests are tiny).
const MAX_REQUEST: usize = 64 * 1024;
/// A version that never occurs: the server is closing, streams end.
const CLOSING: u64 = u64::MAX;

/// A SPIFFE Workload API server over a Unix socket (or TCP), per the
/// [Workload API standard](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md).
///
/// It serves `FetchX509SVID` (every identity it holds, each with its trust domain's
/// bundle, plus the other bundles as federated bundles) and `FetchX509Bundles`, each as a
/// stream that sends the current state at once and again on every change of any SVID.
/// JWT methods answer `Unimplemented`. Calls without the `workload.spiffe.io: true`
/// header get `InvalidArgument`; with [`allow_uids`](Self::allow_uids), callers whose Unix
/// user is not listed get `PermissionDenied` ("no identity issued"), as SPIRE answers a
/// workload it has no registration for.
///
/// Every gRPC client stack is served: the serving layer normalises the `:authority` that
/// gRPC C-core, grpc-java and grpc-swift clients derive from the socket path (which `h2`
/// alone refuses), so py-spiffe, java-spiffe and go-spiffe clients all get answers.
#[derive(Debug)]
pub struct WorkloadApiServer {
    svids: Vec<Arc<SvidStore>>,
    bundles: BundleSet,
    serving: Serving,
}

impl WorkloadApiServer {
    /// A server trusting `bundles` (the bundle of each served SVID's trust domain, and any
    /// federated ones). It serves no identity until [`with_svid`](Self::with_svid).
    pub fn new(bundles: BundleSet) -> Self {
        Self {
            svids: Vec::new(),
            bundles,
            serving: Serving::new("Workload API", MAX_STREAMS_PER_CONNECTION),
        }
    }

    /// Serves the SVID held in `store` (in the order added; the first is the default
    /// SVID clients pick).
    #[must_use]
    pub fn with_svid(mut self, store: Arc<SvidStore>) -> Self {
        self.svids.push(store);
        self
    }

    /// Admits only callers running as one of `uids` (Unix peer credentials); others get
    /// `PermissionDenied`.
    #[must_use]
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.serving.allowed_uids = Some(Arc::new(uids.into_iter().collect()));
        self
    }

    /// The permission bits of the socket file (default `0o600`: the server's own user
    /// only; widen it together with [`allow_uids`](Self::allow_uids)).
    #[must_use]
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.serving.socket_mode = mode & 0o777;
        self
    }

    /// The connection cap and the preface and idle timeouts (default:
    /// [`ServeLimits::default`]).
    #[must_use]
    pub fn limits(mut self, limits: ServeLimits) -> Self {
        self.serving.limits = limits;
        self
    }

    /// How long a shutdown waits for clients to close their connections before closing
    /// them by force (default 5 s).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.serving.grace = grace;
        self
    }

    /// Serves on the Unix socket at `path` until `shutdown` completes, then ends every
    /// stream, waits up to the [grace period](Self::shutdown_grace) for connections to
    /// close (closing the rest by force) and removes the socket file.
    ///
    /// A stale socket file (connection refused) is replaced; a live one, one that cannot
    /// be probed, or a path that is not a socket is an error and left alone. The socket
    /// has its final permissions before it appears at `path`. Dropping the returned future
    /// also ends every stream and connection and removes the socket.
    pub async fn serve(
        self,
        path: impl AsRef<Path>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        self.run(Listen::Unix(path.as_ref()), shutdown).await
    }

    /// Serves on a TCP address (the Workload Endpoint standard's `tcp://IP:port`) as
    /// [`serve`](Self::serve) does on a Unix socket. TCP carries no peer credentials: with
    /// [`allow_uids`](Self::allow_uids) every TCP caller is refused.
    pub async fn serve_tcp(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        self.run(Listen::Tcp(addr), shutdown).await
    }

    async fn run(
        self,
        listen: Listen<'_>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let (version, _) = watch::channel(0u64);
        let watchers: Vec<_> = self
            .svids
            .iter()
            .map(|store| {
                let seen = store.generation();
                tokio::spawn(follow(Arc::clone(store), seen, version.clone()))
            })
            .collect();
        let closing = version.clone();
        let stop = move || {
            closing.send_replace(CLOSING);
            for watcher in &watchers {
                watcher.abort();
            }
        };
        let state = Arc::new(State {
            svids: self.svids,
            bundles: self.bundles,
            version,
        });
        self.serving
            .serve(listen, WorkloadService(state), shutdown, stop)
            .await
    }
}

/// Streams one connection may hold open (a workload needs two).
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// Bumps `version` whenever `store` changes from generation `seen` on.
async fn follow(store: Arc<SvidStore>, mut seen: u64, version: watch::Sender<u64>) {
    loop {
        seen = store.changed(seen).await;
        version.send_if_modified(|v| {
            if *v == CLOSING {
                return false;
            }
            *v += 1;
            true
        });
    }
}

struct State {
    svids: Vec<Arc<SvidStore>>,
    bundles: BundleSet,
    version: watch::Sender<u64>,
}

fn concat_der(bundle: &X509Bundle) -> Vec<u8> {
    bundle
        .authorities()
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

impl State {
    /// The header check every method runs first (callers were admitted by the serving
    /// layer).
    fn admit<T>(request: &Request<T>) -> Result<(), Status> {
        let header = request.metadata().get(proto::SECURITY_HEADER);
        if header.and_then(|v| v.to_str().ok()) != Some("true") {
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        Ok(())
    }

    /// The `FetchX509SVID` message for the current SVIDs. Each key is copied into its
    /// [`X509SvidMessage`], which zeroizes it when dropped: once tonic has encoded the
    /// message (the encoded frame in tonic's and hyper's buffers is not zeroized).
    fn x509_svids(&self) -> Result<X509SvidResponse, Status> {
        let mut svids = Vec::new();
        let mut own = BTreeSet::new();
        for svid in self.svids.iter().filter_map(SvidSource::x509_svid) {
            let td = svid.id().trust_domain();
            let bundle = self.bundles.get(&td).map(concat_der).unwrap_or_default();
            own.insert(td);
            svids.push(X509SvidMessage {
                spiffe_id: svid.id().to_string(),
                x509_svid: svid
                    .chain()
                    .iter()
                    .flat_map(|c| c.iter().copied())
                    .collect(),
                x509_svid_key: svid.private_key().secret_pkcs8_der().to_vec(),
                bundle,
                hint: String::new(),
            });
        }
        if svids.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let federated_bundles = self
            .bundles
            .iter()
            .filter(|b| !own.contains(b.trust_domain()))
            .map(|b| (b.trust_domain().id().to_string(), concat_der(b)))
            .collect();
        Ok(X509SvidResponse {
            svids,
            crl: Vec::new(),
            federated_bundles,
        })
    }

    fn x509_bundles(&self) -> Result<X509BundlesResponse, Status> {
        let bundles: HashMap<_, _> = self
            .bundles
            .iter()
            .map(|b| (b.trust_domain().id().to_string(), concat_der(b)))
            .collect();
        if bundles.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        Ok(X509BundlesResponse {
            crl: Vec::new(),
            bundles,
        })
    }

    /// The current state now and after every change, until the server closes.
    fn stream<T: Send + 'static>(
        self: &Arc<Self>,
        make: fn(&Self) -> Result<T, Status>,
    ) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
        let state = Arc::clone(self);
        let changes = WatchStream::new(self.version.subscribe());
        Box::pin(
            changes
                .take_while(|v| *v != CLOSING)
                .map(move |_| make(&state)),
        )
    }
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
struct WorkloadService(Arc<State>);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for WorkloadService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = Arc::clone(&self.0);
        match req.uri().path() {
            proto::FETCH_X509_SVID => Box::pin(async move {
                let codec = ProstCodec::<X509SvidResponse, X509SvidRequest>::default();
                let handler = tower::service_fn(move |r: Request<X509SvidRequest>| {
                    let state = Arc::clone(&state);
                    async move {
                        State::admit(&r)?;
                        // Fail the call itself (not only the stream) when nothing is held.
                        state.x509_svids()?;
                        Ok::<_, Status>(Response::new(state.stream(State::x509_svids)))
                    }
                });
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.server_streaming(handler, req).await)
            }),
            proto::FETCH_X509_BUNDLES => Box::pin(async move {
                let codec = ProstCodec::<X509BundlesResponse, X509BundlesRequest>::default();
                let handler = tower::service_fn(move |r: Request<X509BundlesRequest>| {
                    let state = Arc::clone(&state);
                    async move {
                        State::admit(&r)?;
                        state.x509_bundles()?;
                        let stream: Stream_<X509BundlesResponse> =
                            state.stream(State::x509_bundles);
                        Ok::<_, Status>(Response::new(stream))
                    }
                });
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.server_streaming(handler, req).await)
            }),
            path => {
                let status = if [
                    proto::FETCH_JWT_SVID,
                    proto::FETCH_JWT_BUNDLES,
                    proto::VALIDATE_JWT_SVID,
                ]
                .contains(&path)
                {
                    Status::unimplemented("this server issues X509-SVIDs only")
                } else {
                    Status::unimplemented(format!("unknown method {path}"))
                };
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
