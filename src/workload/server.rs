//! A local Workload API server: hands each caller the X509-SVIDs it is entitled to (from
//! any [`Identities`]: stores for everyone, a re-served `X509Source`, an agent's registry)
//! and the trust bundles (from any [`Bundles`]), streaming a new message whenever they
//! change.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::Grpc;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::proto::{
    self, JwtBundlesRequest, JwtBundlesResponse, JwtSvidRequest, JwtSvidResponse,
    ValidateJwtSvidRequest, ValidateJwtSvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509SvidMessage, X509SvidRequest, X509SvidResponse,
};
use crate::serve::{
    Bundles, Caller, EveryCaller, Identities, Identity, JwtBundleFeed, JwtIssuer, Listen, Observer,
    Refusal, ServeError, ServeLimits, ServeObserver, Serving, StreamKind, Subscription,
};
use crate::watch::Watch;
use crate::{BundleSet, SvidStore, X509Bundle};

mod jwt;

/// The largest request the server decodes (Workload API requests are tiny).
const MAX_REQUEST: usize = 64 * 1024;

/// A SPIFFE Workload API server over a Unix socket (or TCP), per the
/// [Workload API standard](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md).
///
/// It serves `FetchX509SVID` (the identities the caller is entitled to, each with its
/// trust domain's bundle, plus the other bundles as federated bundles) and
/// `FetchX509Bundles`, each as a stream that sends the current state at once and again
/// whenever it changes for that caller. With [`with_jwt`](Self::with_jwt) it serves the
/// JWT methods too (`FetchJWTSVID`, `FetchJWTBundles`, `ValidateJWTSVID`); without, they
/// answer `Unimplemented`. Calls without
/// the `workload.spiffe.io: true` header get `InvalidArgument`; a caller with no identity
/// gets `PermissionDenied` ("no identity issued"), as SPIRE answers a workload it has no
/// registration for, and a stream whose caller loses its last identity ends with it. With
/// [`allow_uids`](Self::allow_uids), callers whose Unix user is not listed are refused
/// the same way before anything else.
///
/// What each caller gets comes from an [`Identities`] and a [`Bundles`]
/// ([`from_sources`](Self::from_sources)); [`new`](Self::new) and
/// [`with_svid`](Self::with_svid) build the simple case, the same stores for everyone.
///
/// Every gRPC client stack is served: the serving layer normalises the `:authority` that
/// gRPC C-core, grpc-java and grpc-swift clients derive from the socket path (which `h2`
/// alone refuses), so py-spiffe, java-spiffe and go-spiffe clients all get answers.
pub struct WorkloadApiServer {
    identities: Option<Arc<dyn Identities>>,
    stores: Vec<Arc<SvidStore>>,
    bundles: Arc<dyn Bundles>,
    jwt: Option<jwt::Jwt>,
    #[cfg(feature = "sds")]
    sds: Option<crate::sds::SdsServer>,
    serving: Serving,
}

impl std::fmt::Debug for WorkloadApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApiServer")
            .field("stores", &self.stores)
            .field("jwt", &self.jwt.is_some())
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

impl WorkloadApiServer {
    /// A server trusting `bundles` (the bundle of each served SVID's trust domain, and any
    /// federated ones) that hands every caller the same stores' SVIDs. It serves no
    /// identity until [`with_svid`](Self::with_svid).
    pub fn new(bundles: BundleSet) -> Self {
        let fixed = Watch::new();
        fixed.publish(bundles);
        Self::build(None, Arc::new(fixed))
    }

    /// A server handing each caller what `identities` says it is entitled to, with the
    /// bundles of `bundles`; both are followed for changes.
    pub fn from_sources(identities: Arc<dyn Identities>, bundles: Arc<dyn Bundles>) -> Self {
        Self::build(Some(identities), bundles)
    }

    fn build(identities: Option<Arc<dyn Identities>>, bundles: Arc<dyn Bundles>) -> Self {
        Self {
            identities,
            stores: Vec::new(),
            bundles,
            jwt: None,
            #[cfg(feature = "sds")]
            sds: None,
            serving: Serving::new("Workload API", MAX_STREAMS_PER_CONNECTION),
        }
    }

    /// Serves the SVID held in `store` to every caller (in the order added; the first is
    /// the default SVID clients pick). Only for a server made by [`new`](Self::new): one
    /// made [`from_sources`](Self::from_sources) serves what its sources say and ignores
    /// this.
    #[must_use]
    pub fn with_svid(mut self, store: Arc<SvidStore>) -> Self {
        self.stores.push(store);
        self
    }

    /// Also serves JWT-SVIDs: `issuer` mints them for the caller's identities (those its
    /// [`Identities`] give it, in order) and `jwt_bundles` are the JWT bundles published
    /// (`FetchJWTBundles`, resent when they change) and validated against
    /// (`ValidateJWTSVID`).
    ///
    /// - `FetchJWTSVID` needs an audience (else `InvalidArgument` "audience must be
    ///   specified") and answers one token per identity of the caller, or only the one
    ///   its `spiffe_id` names (an ID the caller holds no identity for is refused with
    ///   `PermissionDenied`, as SPIRE does). A token is cached per (identity, audience set)
    ///   and handed out again until half its lifetime has passed (at most 1,024 tokens
    ///   and 4 MiB; the cache is emptied when the JWT bundles change).
    /// - `FetchJWTBundles` is for callers with an identity (as SPIRE): each trust
    ///   domain's JWT authorities as a SPIFFE bundle (JWKS, `use: jwt-svid`), keyed by
    ///   trust-domain ID.
    /// - `ValidateJWTSVID` needs an audience and a token (else `InvalidArgument`) and
    ///   validates by every rule of [`JwtValidator`](crate::jwt::JwtValidator) with the
    ///   [JWT algorithms](Self::jwt_algorithms); a refusal is `InvalidArgument` naming the
    ///   rule. It does not ask for an identity of the caller (a relying party need not
    ///   hold one): the header and [`allow_uids`](Self::allow_uids) admit it.
    #[must_use]
    pub fn with_jwt(
        mut self,
        issuer: Arc<dyn JwtIssuer>,
        jwt_bundles: Arc<dyn JwtBundleFeed>,
    ) -> Self {
        let algorithms = self.jwt.as_ref().map(|j| j.algorithms);
        let mut jwt = jwt::Jwt::new(issuer, jwt_bundles);
        if let Some(algorithms) = algorithms {
            jwt.algorithms = algorithms;
        }
        self.jwt = Some(jwt);
        self
    }

    /// The signature algorithms `ValidateJWTSVID` verifies with (default: `ring`'s with
    /// feature `ring`, else `aws-lc-rs`'s). Only after [`with_jwt`](Self::with_jwt).
    #[must_use]
    pub fn jwt_algorithms(
        mut self,
        algorithms: &'static [&'static dyn rustls_pki_types::SignatureVerificationAlgorithm],
    ) -> Self {
        if let Some(jwt) = &mut self.jwt {
            jwt.algorithms = algorithms;
        }
        self
    }

    /// Also serves Envoy SDS v3 on the same socket, as SPIRE's agent does: each protocol
    /// routed by its gRPC service name, one listener, one set of limits (this server's,
    /// with SDS's larger stream cap). `sds`'s own socket settings are not used.
    #[cfg(feature = "sds")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sds")))]
    #[must_use]
    pub fn with_sds(mut self, sds: crate::sds::SdsServer) -> Self {
        self.serving.max_streams = self.serving.max_streams.max(sds.max_streams());
        self.serving.name = "Workload API and SDS";
        self.sds = Some(sds);
        self
    }

    /// Reports connections, streams, pushes and refusals to `observer` (for metrics:
    /// `meshid::metrics::ServeMetrics`, feature `metrics`). With [`with_sds`](Self::with_sds),
    /// the SDS streams on the socket are reported to it too.
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn ServeObserver>) -> Self {
        self.serving.observer = Some(observer);
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
    /// only; widen it together with [`allow_uids`](Self::allow_uids), or when an agent
    /// attests every caller).
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
    /// [`allow_uids`](Self::allow_uids) every TCP caller is refused, and an agent attests
    /// none.
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
        let (closing, closed) = watch::channel(false);
        let stop = move || {
            closing.send_replace(true);
        };
        let identities = match self.identities {
            Some(identities) => identities,
            None => Arc::new(EveryCaller::new(self.stores)),
        };
        let state = Arc::new(State {
            identities,
            bundles: self.bundles,
            jwt: self.jwt,
            closed: closed.clone(),
            observer: self.serving.observer(),
        });
        let service = WorkloadService(state);
        #[cfg(feature = "sds")]
        if let Some(sds) = self.sds {
            let both = WithSds {
                workload: service,
                sds: sds.service_observed(closed, self.serving.observer.clone()),
            };
            return self.serving.serve(listen, both, shutdown, stop).await;
        }
        self.serving.serve(listen, service, shutdown, stop).await
    }
}

/// Streams one connection may hold open (a workload needs two).
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

struct State {
    identities: Arc<dyn Identities>,
    bundles: Arc<dyn Bundles>,
    /// The JWT issuer, bundles and token cache, when JWT-SVIDs are served.
    jwt: Option<jwt::Jwt>,
    /// True once the server is closing: streams end.
    closed: watch::Receiver<bool>,
    /// Who hears of streams, pushes and refusals.
    observer: Observer,
}

fn concat_der(bundle: &X509Bundle) -> Vec<u8> {
    bundle
        .authorities()
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

/// What one message was built from: a stream resends only when it changes (the same
/// SVIDs, by identity, and equal bundles are the same message).
struct Basis {
    svids: Vec<(Arc<crate::X509Svid>, String)>,
    bundles: Option<Arc<BundleSet>>,
}

impl PartialEq for Basis {
    fn eq(&self, other: &Self) -> bool {
        self.svids.len() == other.svids.len()
            && self
                .svids
                .iter()
                .zip(&other.svids)
                .all(|((a, ha), (b, hb))| Arc::ptr_eq(a, b) && ha == hb)
            && self.bundles == other.bundles
    }
}

impl State {
    /// The header check every method runs first (callers were admitted by the serving
    /// layer).
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let header = request.metadata().get(proto::SECURITY_HEADER);
        if header.and_then(|v| v.to_str().ok()) != Some("true") {
            tracing::info!(
                reason = "security header missing",
                "Workload API request refused"
            );
            self.observer
                .refused_call("workload_api", Refusal::BadRequest);
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        Ok(())
    }

    fn no_identity() -> Status {
        Status::permission_denied("no identity issued")
    }

    /// A call refused at its start for want of an identity: counted (a stream that ends
    /// later because its identity went away is not a refused caller).
    pub(super) fn refused_at_start(&self, status: Status) -> Status {
        self.observer
            .refused_call("workload_api", Refusal::NoIdentity);
        status
    }

    /// The caller's identities now and the changes that concern them; refused when it
    /// gets none.
    fn subscribe(&self, caller: &Caller) -> Result<Subscription, Status> {
        let subscription = crate::serve::blocking(self.identities.may_block(), || {
            self.identities.subscribe(caller)
        })
        .map_err(|refused| {
            tracing::info!(?caller, reason = %refused, "Workload API caller refused");
            Status::permission_denied(format!("no identity issued: {refused}"))
        })?;
        if subscription.identities.is_empty() {
            tracing::info!(
                ?caller,
                reason = "no identity issued",
                "Workload API caller refused"
            );
            return Err(Self::no_identity());
        }
        Ok(subscription)
    }

    /// The `FetchX509SVID` message for `identities`. Each key is copied into its
    /// [`X509SvidMessage`], which zeroizes it when dropped: once tonic has encoded the
    /// message (the encoded frame in tonic's and hyper's buffers is not zeroized).
    fn x509_svids(identities: &[Identity], bundles: Option<&BundleSet>) -> X509SvidResponse {
        let empty = BundleSet::new();
        let bundles = bundles.unwrap_or(&empty);
        let mut svids = Vec::new();
        let mut own = BTreeSet::new();
        for identity in identities {
            let svid = &identity.svid;
            let td = svid.id().trust_domain();
            let bundle = bundles.get(&td).map(concat_der).unwrap_or_default();
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
                hint: identity.hint.clone(),
            });
        }
        let federated_bundles = bundles
            .iter()
            .filter(|b| !own.contains(b.trust_domain()))
            .map(|b| (b.trust_domain().id().to_string(), concat_der(b)))
            .collect();
        X509SvidResponse {
            svids,
            crl: Vec::new(),
            federated_bundles,
        }
    }

    fn x509_bundles(bundles: Option<&BundleSet>) -> Result<X509BundlesResponse, Status> {
        let bundles: HashMap<_, _> = bundles
            .iter()
            .flat_map(|set| set.iter())
            .map(|b| (b.trust_domain().id().to_string(), concat_der(b)))
            .collect();
        if bundles.is_empty() {
            return Err(Self::no_identity());
        }
        Ok(X509BundlesResponse {
            crl: Vec::new(),
            bundles,
        })
    }

    /// One message of `identities` and the current bundles (`svids`: `FetchX509SVID`,
    /// else `FetchX509Bundles`), with what it was built from.
    fn message(&self, identities: &[Identity], svids: bool) -> Result<(Basis, Message), Status> {
        let bundles = self.bundles.bundles();
        if svids {
            let basis = Basis {
                svids: identities
                    .iter()
                    .map(|i| (Arc::clone(&i.svid), i.hint.clone()))
                    .collect(),
                bundles: bundles.clone(),
            };
            let message = Self::x509_svids(identities, bundles.as_deref());
            Ok((basis, Message::Svids(message)))
        } else {
            // Bundles are for callers with an identity too (SPIRE answers the same): the
            // stream subscribed, so the caller has one.
            let message = Self::x509_bundles(bundles.as_deref())?;
            let basis = Basis {
                svids: Vec::new(),
                bundles,
            };
            Ok((basis, Message::Bundles(message)))
        }
    }

    /// Streams `caller`'s messages: the current one now, then a new one whenever what it
    /// is built from changes, until the caller leaves, loses its last identity (the stream
    /// ends with `PermissionDenied`) or the server closes.
    fn stream(
        self: &Arc<Self>,
        caller: Caller,
        svids: bool,
    ) -> Result<mpsc::Receiver<Result<Message, Status>>, Status> {
        // The bundles' generation is read before they are, and the subscription watches
        // the identities from before they are read: a change in between is seen. A caller
        // with nothing issued fails the call itself (not only the stream).
        let mut seen = self.bundles.changes().generation();
        let mut mine = self
            .subscribe(&caller)
            .map_err(|s| self.refused_at_start(s))?;
        let (mut sent, first) = self
            .message(&mine.identities, svids)
            .map_err(|s| self.refused_at_start(s))?;
        let (tx, rx) = mpsc::channel(1);
        let state = Arc::clone(self);
        let kind = if svids {
            StreamKind::X509Svid
        } else {
            StreamKind::X509Bundles
        };
        tokio::spawn(async move {
            let seen_by = state.observer.stream(kind);
            let mut closed = state.closed.clone();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            seen_by.observer().pushed(kind, None);
            loop {
                tokio::select! {
                    _ = mine.changes.changed(0) => {}
                    _ = state.bundles.changes().changed(seen) => {}
                    () = crate::serve::closing(&mut closed) => return,
                    () = tx.closed() => return,
                }
                // What woke the stream, when: the push's delay is measured from it.
                let changed_at =
                    crate::serve::changed_at(&[&mine.changes, state.bundles.changes()]);
                seen = state.bundles.changes().generation();
                let next = state
                    .subscribe(&caller)
                    .and_then(|sub| Ok((state.message(&sub.identities, svids)?, sub)));
                match next.map(|(message, sub)| {
                    mine = sub;
                    message
                }) {
                    Ok((basis, _)) if basis == sent => {}
                    Ok((basis, message)) => {
                        sent = basis;
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                        seen_by.observer().pushed(kind, changed_at);
                    }
                    Err(status) => {
                        tracing::info!(?caller, %status, "Workload API stream ended: no identity left");
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// One pushed message.
enum Message {
    Svids(X509SvidResponse),
    Bundles(X509BundlesResponse),
}

/// The caller of a request, as the serving layer recorded it at accept.
fn caller_of<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<crate::serve::Peer>()
        .map_or_else(Caller::unknown, |peer| peer.caller)
}

#[derive(Clone)]
struct WorkloadService(Arc<State>);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A stream of one kind of message out of a stream of [`Message`]s.
fn pushes<T: Send + 'static>(
    rx: mpsc::Receiver<Result<Message, Status>>,
    pick: fn(Message) -> Option<T>,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>> {
    use tokio_stream::StreamExt as _;
    Box::pin(ReceiverStream::new(rx).filter_map(move |m| match m {
        Ok(m) => pick(m).map(Ok),
        Err(status) => Some(Err(status)),
    }))
}

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
                        let rx = state.stream(caller_of(&r), true)?;
                        Ok::<_, Status>(Response::new(pushes(rx, |m| match m {
                            Message::Svids(m) => Some(m),
                            Message::Bundles(_) => None,
                        })))
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
                        let rx = state.stream(caller_of(&r), false)?;
                        Ok::<_, Status>(Response::new(pushes(rx, |m| match m {
                            Message::Bundles(m) => Some(m),
                            Message::Svids(_) => None,
                        })))
                    }
                });
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.server_streaming(handler, req).await)
            }),
            proto::FETCH_JWT_SVID => Box::pin(async move {
                let codec = ProstCodec::<JwtSvidResponse, JwtSvidRequest>::default();
                let handler = tower::service_fn(move |r: Request<JwtSvidRequest>| {
                    let state = Arc::clone(&state);
                    async move { state.fetch_jwt_svid(&r).map(Response::new) }
                });
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.unary(handler, req).await)
            }),
            proto::VALIDATE_JWT_SVID => Box::pin(async move {
                let codec =
                    ProstCodec::<ValidateJwtSvidResponse, ValidateJwtSvidRequest>::default();
                let handler = tower::service_fn(move |r: Request<ValidateJwtSvidRequest>| {
                    let state = Arc::clone(&state);
                    async move { state.validate_jwt_svid(&r).map(Response::new) }
                });
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.unary(handler, req).await)
            }),
            proto::FETCH_JWT_BUNDLES => Box::pin(async move {
                let codec = ProstCodec::<JwtBundlesResponse, JwtBundlesRequest>::default();
                let handler = tower::service_fn(move |r: Request<JwtBundlesRequest>| {
                    let state = Arc::clone(&state);
                    async move {
                        if state.jwt.is_some() {
                            state.admit(&r)?;
                        }
                        let rx = state.jwt_bundles_stream(caller_of(&r))?;
                        Ok::<_, Status>(Response::new(Box::pin(ReceiverStream::new(rx))))
                    }
                });
                let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_REQUEST);
                Ok(grpc.server_streaming(handler, req).await)
            }),
            path => {
                let status = Status::unimplemented(format!("unknown method {path}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The Workload API and SDS on one socket, routed by gRPC service name.
#[cfg(feature = "sds")]
#[derive(Clone)]
struct WithSds {
    workload: WorkloadService,
    sds: crate::sds::Service,
}

#[cfg(feature = "sds")]
impl tower::Service<http::Request<Body>> for WithSds {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path().starts_with(crate::sds::SERVICE_PATH) {
            self.sds.call(req)
        } else {
            self.workload.call(req)
        }
    }
}
