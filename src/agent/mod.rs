//! A node agent's parts: registration entries, workload attestation, and the matching
//! between them, so each caller of a server receives only the identities registered for
//! it (feature `agent`).
//!
//! [`UnixAttestor`] describes callers with SPIRE's `unix` selectors; its documentation
//! lists them and explains how a caller whose PID was reused is told apart.

mod attest;
mod selector;

pub use attest::{AttestError, Attestor, UnixAttestor};
pub use selector::{Selector, Selectors};
