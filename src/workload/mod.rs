//! The SPIFFE Workload API (feature `workload-api`): how workloads get their SVIDs and
//! bundles from a local agent such as SPIRE's, over a Unix socket
//! ([Workload API](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_API.md),
//! [X509-SVID profile](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#6-spiffe-workload-api)).
//!
//! - [`WorkloadApiClient`] calls every method of the API on one connection to an
//!   [`Endpoint`] (`unix:///path` or `tcp://IP:port`, or `SPIFFE_ENDPOINT_SOCKET`).
//! - [`X509Source`] keeps the workload's SVID and bundles live over that client, and is an
//!   [`SvidSource`](crate::SvidSource) and [`BundleSource`](crate::BundleSource): it feeds
//!   the rustls integration directly. [`X509Source::from_env`] connects to
//!   `SPIFFE_ENDPOINT_SOCKET` in one call; a workload issued several SVIDs chooses the one
//!   served with a [`Pick`] ([Several identities](self#several-identities)).
//! - [`JwtSource`] keeps the JWT bundles live, fetches JWT-SVIDs per audience (cached until
//!   half their lifetime) and validates tokens locally: a
//!   [`JwtBundleSource`](crate::JwtBundleSource).
//! - [`accept_x509_context`] and [`Reconnect`] are the one rule by which meshid takes an
//!   update (verify first, judge by the whole chain, keep the last good, retry as the
//!   standard says, bound every wait): see [Acceptance](self#acceptance).
//! - [`WorkloadApiServer`] serves the SVIDs of local [`SvidStore`](crate::SvidStore)s,
//!   streaming a new message on every rotation.
//!
//! The messages are written with prost derives in [`proto`]; no `protoc` is needed.
//!
//! # Several identities
//!
//! A Workload API server may issue one workload several X509-SVIDs (SPIRE does when several
//! registration entries match it), and sends all of them in every message, in its own
//! order. An [`X509Source`] serves one, chosen by [`X509SourceOptions::pick`]:
//!
//! - [`Pick::Default`] (the default): the first of each message, the server's default.
//! - [`Pick::Id`]: the SVID for that SPIFFE ID, whatever its position.
//! - [`Pick::Hint`]: the SVID the server labels with that hint (a registration entry's
//!   `hint` in SPIRE).
//!
//! An update without the picked SVID is refused ([`WorkloadApiError::NotPicked`]) and the
//! last good state kept. To serve two identities, run one source per [`Pick`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use meshid::workload::{Endpoint, Pick, X509Source, X509SourceOptions};
//! use meshid::{SpiffeId, SvidSource};
//!
//! let endpoint = Endpoint::from_env()?; // SPIFFE_ENDPOINT_SOCKET
//! let pick = |id: &str| -> Result<X509SourceOptions, meshid::IdError> {
//!     Ok(X509SourceOptions::default().pick(Pick::Id(SpiffeId::new(id)?)))
//! };
//! let api = X509Source::new(endpoint.clone(), pick("spiffe://example.org/api")?).await?;
//! let admin = X509Source::new(endpoint, pick("spiffe://example.org/admin")?).await?;
//! assert_eq!(api.x509_svid().map(|s| s.id().clone()), Some(SpiffeId::new("spiffe://example.org/api")?));
//! # let _ = admin;
//! # Ok(())
//! # }
//! ```
//!
//! # Acceptance
//!
//! The rule every meshid client of the Workload API follows, written once in
//! [`accept_x509_context`] and [`reconnect_delay`]:
//!
//! 1. **Verify before accepting**: every SVID of a message must verify, when received,
//!    against its own trust domain's bundle from the same message, by the rules a TLS peer's
//!    chain is verified with (profile, signatures, validity of every certificate).
//! 2. **Judge by the whole chain**: an SVID is good until the earliest NotAfter of its
//!    verified path, not the leaf's alone.
//! 3. **One bundle per trust domain**: two SVIDs of one trust domain with different bundles
//!    make the message inconsistent, and it is refused: which bundle anchors a trust domain
//!    must not depend on the order of the SVIDs in a message.
//! 4. **Keep the last good**: a refused update changes nothing, and the refusal is logged
//!    (`tracing`, at `warn`) with its reason.
//! 5. **Retry as the standard says**: `InvalidArgument` and `Unimplemented` are final
//!    ([`WorkloadApiError::is_retryable`]); the rest is retried with capped exponential
//!    backoff and jitter, never waiting more than half of what is left of the SVID held.
//! 6. **Bound every wait**: each message has a deadline ([`MESSAGE_TIMEOUT`] by default),
//!    so an agent that answers HTTP/2 PINGs but stalls mid-message is left and reconnected.

use thiserror::Error;

mod accept;
mod client;
mod context;
mod endpoint;
mod jwt_source;
pub mod proto;
mod server;
mod source;
mod token_cache;

pub use accept::{accept_x509_context, reconnect_delay, AcceptedX509Context, Reconnect};
pub use client::{WorkloadApiClient, MAX_MESSAGE, MESSAGE_TIMEOUT};
pub use context::{bundles_from_message, X509Context};
pub use endpoint::{Endpoint, EndpointProblem, ENDPOINT_ENV};
pub use jwt_source::{JwtSource, JwtSourceOptions, JwtSourceStatus};
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
    /// A `FetchJWTSVID` answer held no token.
    #[error("the Workload API answer holds no JWT-SVID")]
    NoJwtSvids,
    /// A JWT-SVID in an answer is not one (its format, or, when the client validates,
    /// its signature, key, time or audience).
    #[error("JWT-SVID {index} ({id}) in a Workload API answer: {source}")]
    BadJwtSvid {
        /// Its position in the answer.
        index: usize,
        /// The ID the answer gives for it.
        id: crate::SpiffeId,
        /// Which rule it breaks.
        source: crate::JwtError,
    },
    /// The answer's ID for a JWT-SVID differs from the token's `sub`.
    #[error("Workload API answer says {message} but the JWT-SVID is for {token}")]
    JwtIdMismatch {
        /// The ID in the answer.
        message: crate::SpiffeId,
        /// The token's `sub`.
        token: crate::SpiffeId,
    },
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
    /// Two SVIDs of one trust domain in a message come with different bundles.
    #[error("two different bundles for trust domain {trust_domain} in one Workload API message (refused as inconsistent)")]
    InconsistentBundles {
        /// The trust domain.
        trust_domain: String,
    },
    /// The server did not finish a message in time: it answered the call, or began a
    /// message, and then stalled (while possibly still answering HTTP/2 PINGs).
    #[error("the Workload API server did not complete a message within {waited:?} (stalled)")]
    Stalled {
        /// The per-message deadline.
        waited: std::time::Duration,
    },
    /// The update does not hold the SVID the source is configured to pick.
    #[error("the Workload API update has no SVID matching {pick}")]
    NotPicked {
        /// The pick, as configured.
        pick: String,
    },
    /// An SVID of the update does not verify against its trust domain's bundle (the
    /// acceptance rule, [`accept_x509_context`]).
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
    /// No JWT bundles arrived in time ([`JwtSource::new`]).
    #[error("no JWT bundles from the Workload API within {waited:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    NoJwtBundles {
        /// How long the source waited.
        waited: std::time::Duration,
        /// The last error seen, if any.
        last_error: Option<String>,
    },
    /// The source ([`X509Source`], [`JwtSource`]) stopped for good.
    #[error("the Workload API source stopped: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}

impl WorkloadApiError {
    /// Whether a watcher should reconnect after this error (the Workload API standard):
    /// `InvalidArgument` and `Unimplemented` are final (the server will never answer
    /// otherwise), as is a bad endpoint; everything else, `Unavailable` and
    /// `PermissionDenied` (the agent may not have attested the workload yet) included, is
    /// retried with backoff. A malformed or refused message is retried too: the next one
    /// may be good.
    pub fn is_retryable(&self) -> bool {
        client::retryable(self)
    }
}
