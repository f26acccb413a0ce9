//! A node agent's parts: registration entries, workload attestation, and the matching
//! between them, so each caller of a server receives only the identities registered for
//! it (feature `agent`).

mod attest;
mod registry;
mod selector;

pub use attest::{AttestError, Attestor, UnixAttestor};
pub use registry::{Entry, Registry, RegistryError};
pub use selector::{Selector, Selectors};
