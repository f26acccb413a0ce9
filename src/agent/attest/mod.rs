//! Workload attestation: from a caller's peer credentials to the [`Selectors`] that
//! describe it. [`Attestor`] is the one-method trait; [`UnixAttestor`] implements SPIRE's
//! `unix` selectors from `SO_PEERCRED` and `/proc`.

mod unix;

pub use unix::UnixAttestor;

use thiserror::Error;

use crate::agent::Selectors;
use crate::serve::Caller;

/// Works out who a caller is: peer credentials in, selectors out. The agent asks on every
/// call (and again before every push on a stream), so a caller that exited or changed is
/// not served as what it was.
///
/// Implement it for other platforms (container or Kubernetes attestors) and hand it to
/// the [`Agent`](super::Agent); the servers do not change.
pub trait Attestor: Send + Sync {
    /// The selectors describing `caller`, or why it cannot be attested (the call is then
    /// refused).
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError>;
}

/// Why a caller could not be attested.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The connection carries no peer credentials (TCP).
    #[error("the caller has no Unix peer credentials (not a Unix socket connection)")]
    NoCredentials,
}
