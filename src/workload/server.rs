//! A local Workload API server: hands out the SVIDs of [`SvidStore`]s (kept fresh by
//! [`Rotator`](crate::Rotator)s) and their bundles over a Unix socket, streaming a new
//! message on every rotation.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::Grpc;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::proto::{
    self, X509BundlesRequest, X509BundlesResponse, X509SvidMessage, X509SvidRequest,
    X509SvidResponse,
};
use super::WorkloadApiError;
use crate::{BundleSet, SvidSource, SvidStore, X509Bundle};

/// The largest request the server decodes (Workload API requests are tiny).
const MAX_REQUEST: usize = 64 * 1024;
/// A version that never occurs: the server is closing, streams end.
const CLOSING: u64 = u64::MAX;

/// A SPIFFE Workload API server over a Unix socket (DESIGN rule 17).
///
/// It serves `FetchX509SVID` (every identity it holds, each with its trust domain's
/// bundle, plus the other bundles as federated bundles) and `FetchX509Bundles`, each as a
/// stream that sends the current state at once and again on every change of any SVID.
/// JWT methods answer `Unimplemented`. Calls without the `workload.spiffe.io: true`
/// header get `InvalidArgument`; with [`allow_uids`](Self::allow_uids), callers whose Unix
/// user is not listed get `PermissionDenied` ("no identity issued"), as SPIRE answers a
/// workload it has no registration for.
#[derive(Debug)]
pub struct WorkloadApiServer {
    svids: Vec<Arc<SvidStore>>,
    bundles: BundleSet,
    allowed_uids: Option<BTreeSet<u32>>,
    socket_mode: u32,
}

impl WorkloadApiServer {
    /// A server trusting `bundles` (the bundle of each served SVID's trust domain, and any
    /// federated ones). It serves no identity until [`with_svid`](Self::with_svid).
    pub fn new(bundles: BundleSet) -> Self {
        Self {
            svids: Vec::new(),
            bundles,
            allowed_uids: None,
            socket_mode: 0o600,
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
        self.allowed_uids = Some(uids.into_iter().collect());
        self
    }

    /// The permission bits of the socket file (default `0o600`: the server's own user
    /// only; widen it together with [`allow_uids`](Self::allow_uids)).
    #[must_use]
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode & 0o777;
        self
    }

    /// Serves on the Unix socket at `path` until `shutdown` completes, then ends every
    /// stream, waits for connections to close and removes the socket file.
    ///
    /// A stale socket file (nobody listening) is replaced; a live one, or a path that is
    /// not a socket, is an error and left alone.
    pub async fn serve(
        self,
        path: impl AsRef<Path>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), WorkloadApiError> {
        let path = path.as_ref().to_path_buf();
        let listener = bind(&path, self.socket_mode).await?;
        let _remove = RemoveOnDrop(path.clone());
        let (version, _) = watch::channel(0u64);
        let version = Arc::new(version);
        let watchers: Vec<_> = self
            .svids
            .iter()
            .map(|store| tokio::spawn(follow(Arc::clone(store), Arc::clone(&version))))
            .collect();
        let state = Arc::new(State {
            svids: self.svids,
            bundles: self.bundles,
            allowed_uids: self.allowed_uids,
            version: Arc::clone(&version),
        });
        tracing::info!(socket = %path.display(), "Workload API server listening");
        let closing = async {
            shutdown.await;
            tracing::info!("Workload API server shutting down");
            version.send_replace(CLOSING);
        };
        let result = tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(
                WorkloadService(state),
                UnixListenerStream::new(listener),
                closing,
            )
            .await;
        for watcher in watchers {
            watcher.abort();
        }
        result.map_err(WorkloadApiError::Transport)
    }
}

/// Removes the socket file when serving ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds the socket at `path` with `mode`, replacing a stale socket file.
async fn bind(path: &Path, mode: u32) -> Result<UnixListener, WorkloadApiError> {
    let io = |source| WorkloadApiError::Socket {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(WorkloadApiError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            tracing::warn!(socket = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => {
            return Err(WorkloadApiError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(listener)
}

/// Bumps `version` whenever `store` changes.
async fn follow(store: Arc<SvidStore>, version: Arc<watch::Sender<u64>>) {
    let mut seen = store.generation();
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
    allowed_uids: Option<BTreeSet<u32>>,
    version: Arc<watch::Sender<u64>>,
}

fn concat_der(bundle: &X509Bundle) -> Vec<u8> {
    bundle
        .authorities()
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

impl State {
    /// The header and caller checks every method runs first.
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request.metadata().get(proto::SECURITY_HEADER);
        if header.and_then(|v| v.to_str().ok()) != Some("true") {
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        if let Some(allowed) = &self.allowed_uids {
            let uid = request
                .extensions()
                .get::<UdsConnectInfo>()
                .and_then(|info| info.peer_cred)
                .map(|cred| cred.uid());
            if !uid.is_some_and(|uid| allowed.contains(&uid)) {
                tracing::info!(?uid, "refused a Workload API caller");
                return Err(Status::permission_denied("no identity issued"));
            }
        }
        Ok(())
    }

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
                        state.admit(&r)?;
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
                        state.admit(&r)?;
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
