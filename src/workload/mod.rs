//! The SPIFFE Workload API (feature `workload-api`): how workloads get their SVIDs and
//! bundles from a local agent such as SPIRE's, over a Unix socket
//! ([Workload API](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md),
//! [X509-SVID profile](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#6-spiffe-workload-api)).
//!
//! - [`WorkloadApiClient`] calls every method of the API on one connection to an
//!   [`Endpoint`] (`unix:///path` or `tcp://IP:port`, or `SPIFFE_ENDPOINT_SOCKET`).
//! - [`X509Source`] keeps the workload's SVID and bundles live over that client, and is an
//!   [`SvidSource`](crate::SvidSource) and [`BundleSource`](crate::BundleSource): it feeds
//!   the rustls integration directly.
//! - [`WorkloadApiServer`] serves the SVIDs of local [`SvidStore`](crate::SvidStore)s,
//!   streaming a new message on every rotation.
//!
//! The messages are written with prost derives in [`proto`]; no `protoc` is needed.

use thiserror::Error;

mod client;
mod context;
mod endpoint;
pub mod proto;
mod server;
mod source;

pub use client::{JwtSvid, WorkloadApiClient, MAX_MESSAGE};
pub use context::{bundles_from_message, X509Context};
pub use endpoint::{Endpoint, EndpointProblem, ENDPOINT_ENV};
pub use server::WorkloadApiServer;
pub use source::{Pick, SourceStatus, X509Source, X509SourceOptions};

/// What went wrong talking to a Workload API (the client's and the source's errors; the
/// server's are [`ServeError`](crate::serve::ServeError)s).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    /// The gRPC transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[source] tonic::transport::Error),
    /// The endpoint address is not one the Workload Endpoint standard allows.
    #[error("Workload API endpoint '{endpoint}': {problem}")]
    InvalidEndpoint {
        /// The address as given.
        endpoint: String,
        /// What is wrong with it.
        problem: EndpointProblem,
    },
    /// Connecting to the endpoint failed.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("Workload API: {}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The server closed a stream that should stay open.
    #[error("the Workload API stream ended")]
    StreamEnded,
    /// A message held no SVID.
    #[error("the Workload API message holds no X509-SVID")]
    NoSvids,
    /// A SPIFFE ID or trust domain in a message is invalid.
    #[error("invalid SPIFFE ID or trust domain '{value}' in a Workload API message: {source}")]
    BadId {
        /// The value (at most 256 characters of it).
        value: String,
        /// Which rule it breaks.
        source: crate::IdError,
    },
    /// An SVID in a message is not a valid X509-SVID with its key.
    #[error("X509-SVID {index} ({id}) in a Workload API message: {source}")]
    BadSvid {
        /// Its position in the message.
        index: usize,
        /// The ID the message gives for it.
        id: crate::SpiffeId,
        /// What is wrong.
        source: crate::SvidError,
    },
    /// The message's ID for an SVID differs from the ID in its certificate.
    #[error("Workload API message says {message} but the certificate is for {certificate}")]
    IdMismatch {
        /// The ID in the message.
        message: crate::SpiffeId,
        /// The ID in the certificate.
        certificate: crate::SpiffeId,
    },
    /// A bundle in a message is not valid DER certificates.
    #[error("bundle for '{trust_domain}' in a Workload API message: {source}")]
    BadBundle {
        /// The trust domain (as the message gives it).
        trust_domain: String,
        /// What is wrong.
        source: crate::BundleError,
    },
    /// Two keys of a bundle map name the same trust domain (`td` and `spiffe://td`).
    #[error("two bundles for trust domain {trust_domain} in a Workload API message")]
    DuplicateBundle {
        /// The trust domain.
        trust_domain: String,
    },
    /// The update does not hold the SVID the source is configured to pick.
    #[error("the Workload API update has no SVID matching {pick}")]
    NotPicked {
        /// The pick, as configured.
        pick: String,
    },
    /// The picked SVID does not verify against its trust domain's bundle.
    #[error("the Workload API SVID for {id} does not verify against its bundle: {source}")]
    Unverified {
        /// The SVID's ID.
        id: crate::SpiffeId,
        /// Why.
        source: crate::VerifyError,
    },
    /// No good update arrived in time.
    #[error("no valid X509-SVID from the Workload API within {waited:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    InitialSyncTimeout {
        /// How long the source waited.
        waited: std::time::Duration,
        /// The last error seen, if any.
        last_error: Option<String>,
    },
    /// The source stopped for good.
    #[error("the X509 source stopped: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}
