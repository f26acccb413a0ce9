//! The SPIFFE Workload API (feature `workload-api`): how workloads get their SVIDs and
//! bundles from a local agent such as SPIRE's, over a Unix socket
//! ([Workload API](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md),
//! [X509-SVID profile](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#6-spiffe-workload-api)).
//!
//! - [`WorkloadApiServer`] serves the SVIDs of local [`SvidStore`](crate::SvidStore)s,
//!   streaming a new message on every rotation.
//!
//! The messages are written with prost derives in [`proto`]; no `protoc` is needed.

use std::path::PathBuf;

use thiserror::Error;

pub mod proto;
mod server;

pub use server::WorkloadApiServer;

/// What went wrong talking the Workload API.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    /// Another server is listening on the socket path.
    #[error("{}: a Workload API server is already listening there", path.display())]
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
    /// Creating, binding or connecting the socket failed.
    #[error("{}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[source] tonic::transport::Error),
}
