//! [`SdsServer`]: the builder and [`serve`](SdsServer::serve), which runs the gRPC service
//! ([`Sds`]) on the serving layer every meshid server shares.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::sds::service::Sds;
use crate::serve::{
    Bundles, Caller, EveryCaller, Identities, Listen, ServeError, ServeLimits, ServeObserver,
    Serving,
};
use crate::watch::Watch;
use crate::{BundleSet, SvidStore, TrustDomain};

/// Envoy opens one stream per secret subscription on its connection; a cap keeps one
/// client from opening without bound (about 20 KiB of server memory each).
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// An Envoy SDS v3 server over a Unix socket (or TCP). See the [module docs](crate::sds).
pub struct SdsServer {
    identities: Arc<dyn Identities>,
    bundles: Arc<dyn Bundles>,
    spiffe_validator: bool,
    trust_domain: Option<TrustDomain>,
    serving: Serving,
}

impl std::fmt::Debug for SdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdsServer")
            .field("spiffe_validator", &self.spiffe_validator)
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

impl SdsServer {
    /// A server handing each caller what `identities` says it is entitled to, with the
    /// bundles of `bundles`; both are followed for changes. A Workload API source bridges
    /// as both: `SdsServer::new(source.clone(), source)`.
    pub fn new(identities: Arc<dyn Identities>, bundles: Arc<dyn Bundles>) -> Self {
        Self {
            identities,
            bundles,
            spiffe_validator: false,
            trust_domain: None,
            serving: Serving::new("SDS", MAX_STREAMS_PER_CONNECTION),
        }
    }

    /// The simple case: the SVID in `store` (kept fresh by a
    /// [`Rotator`](crate::Rotator)) for every caller, with the fixed `bundles`.
    pub fn for_store(store: Arc<SvidStore>, bundles: BundleSet) -> Self {
        let fixed = Watch::new();
        fixed.publish(bundles);
        Self::new(Arc::new(EveryCaller::new([store])), Arc::new(fixed))
    }

    /// The stream cap per connection.
    pub(crate) fn max_streams(&self) -> u32 {
        self.serving.max_streams
    }

    /// The gRPC service, ending its streams once `closed` turns true.
    pub(crate) fn service(self, closed: watch::Receiver<bool>) -> Sds {
        Sds {
            observer: self.serving.observer(),
            identities: self.identities,
            bundles: self.bundles,
            closed,
            spiffe_validator: self.spiffe_validator,
            trust_domain: self.trust_domain,
            caller: Caller::unknown(),
            held: None,
        }
    }

    /// The gRPC service on another server's socket, reporting to that server's `observer`
    /// (when it has one).
    pub(crate) fn service_observed(
        mut self,
        closed: watch::Receiver<bool>,
        observer: Option<Arc<dyn ServeObserver>>,
    ) -> Sds {
        if observer.is_some() {
            self.serving.observer = observer;
        }
        self.service(closed)
    }

    /// Reports connections, streams, pushes, refusals, ACKs and NACKs to `observer` (for
    /// metrics: `meshid::metrics::ServeMetrics`, feature `metrics`).
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn ServeObserver>) -> Self {
        self.serving.observer = Some(observer);
        self
    }

    /// Serve validation contexts as Envoy's SPIFFE certificate validator
    /// (`envoy.tls.cert_validator.spiffe`): `ALL` lists every trust domain's bundle (so
    /// Envoy picks each peer's roots by the peer's trust domain, as X509-SVID §5.2 asks),
    /// `ROOTCA` and `spiffe://td` one trust domain, instead of flat lists of trusted CAs.
    #[must_use]
    pub fn spiffe_validator(mut self, on: bool) -> Self {
        self.spiffe_validator = on;
        self
    }

    /// The local trust domain: `ROOTCA` is its bundle for every caller, as SPIRE's agent
    /// answers, including callers with no identity. Without it, `ROOTCA` is the bundle of
    /// the caller's default SVID's trust domain (and absent for a caller with none).
    #[must_use]
    pub fn trust_domain(mut self, trust_domain: TrustDomain) -> Self {
        self.trust_domain = Some(trust_domain);
        self
    }

    /// The permission bits of the socket file (default `0o600`).
    #[must_use]
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.serving.socket_mode = mode & 0o777;
        self
    }

    /// Admits only callers running as one of `uids` (Unix peer credentials); others get
    /// `PermissionDenied`. Without it, whoever can open the socket gets the SVID's
    /// private key: keep the [socket mode](Self::socket_mode) narrow or set this.
    #[must_use]
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.serving.allowed_uids = Some(Arc::new(uids.into_iter().collect()));
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

    /// Serves on the Unix socket at `path` until `shutdown` completes; then ends every
    /// stream, closes what is left after the [grace period](Self::shutdown_grace), and
    /// removes the socket. Stale sockets are replaced; live ones and other files are left
    /// alone. Dropping the returned future also ends everything and removes the socket.
    pub async fn serve(
        self,
        path: impl AsRef<Path>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        self.run(Listen::Unix(path.as_ref()), shutdown).await
    }

    /// Serves on a TCP address as [`serve`](Self::serve) does on a Unix socket (for an
    /// Envoy whose SDS cluster points at `host:port`). TCP carries no peer credentials:
    /// with [`allow_uids`](Self::allow_uids) every TCP caller is refused.
    pub async fn serve_tcp(
        self,
        addr: std::net::SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        self.run(Listen::Tcp(addr), shutdown).await
    }

    async fn run(
        self,
        listen: Listen<'_>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let (closing, closed) = watch::channel(false);
        let stop = move || {
            closing.send_replace(true);
        };
        let serving = self.serving.clone();
        let service = self.service(closed);
        serving.serve(listen, service, shutdown, stop).await
    }
}
