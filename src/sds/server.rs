//! [`SdsServer`]: the builder and [`serve`](SdsServer::serve), which binds the Unix socket,
//! runs the gRPC service ([`Sds`]) on it and shuts it down.

use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

use crate::sds::service::Sds;
use crate::sds::{Feed, CLOSING};
use crate::workload::WorkloadApiError;

/// An Envoy SDS v3 server over a Unix socket. See the [module docs](crate::sds).
#[derive(Debug)]
pub struct SdsServer {
    feed: Feed,
    spiffe_validator: bool,
    socket_mode: u32,
    grace: Duration,
}

impl SdsServer {
    /// A server for what `feed` holds.
    pub fn new(feed: Feed) -> Self {
        Self {
            feed,
            spiffe_validator: false,
            socket_mode: 0o600,
            grace: Duration::from_secs(5),
        }
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

    /// The permission bits of the socket file (default `0o600`).
    #[must_use]
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode & 0o777;
        self
    }

    /// Serves on the Unix socket at `path` until `shutdown` completes; then ends every
    /// stream, closes what is left after 5 s, and removes the socket. The socket is
    /// handled as the Workload API server's is (stale sockets replaced, others left alone).
    pub async fn serve(
        self,
        path: impl AsRef<Path>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), WorkloadApiError> {
        let path = path.as_ref();
        let (listener, socket) = crate::workload::bind_socket(path, self.socket_mode).await?;
        let (version, _) = watch::channel(0u64);
        let (force, forced) = watch::channel(false);
        let follower = tokio::spawn(self.feed.clone().follow(version.clone()));
        let closing_version = version.clone();
        let guard = crate::workload::ServeGuard::new(socket, force.clone(), move || {
            closing_version.send_replace(CLOSING);
            follower.abort();
        });
        let service = Sds {
            feed: self.feed,
            version: version.clone(),
            spiffe_validator: self.spiffe_validator,
        };
        tracing::info!(socket = %path.display(), "SDS server listening");
        let grace = self.grace;
        let closing = async move {
            shutdown.await;
            tracing::info!("SDS server shutting down");
            version.send_replace(CLOSING);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = force.send(true);
            });
        };
        let incoming = UnixListenerStream::new(listener)
            .map(move |c| c.map(|c| crate::workload::GuardedConn::new(c, forced.clone())));
        let result = tonic::transport::Server::builder()
            // Envoy opens one stream per secret subscription on its connection; a cap keeps
            // one client from opening without bound (about 20 KiB of server memory each).
            .max_concurrent_streams(1024)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .serve_with_incoming_shutdown(
                SecretDiscoveryServiceServer::new(service),
                incoming,
                closing,
            )
            .await;
        drop(guard);
        result.map_err(WorkloadApiError::Transport)
    }
}
