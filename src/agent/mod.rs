//! A node agent's parts: registration entries ([`Registry`]), workload attestation
//! ([`Attestor`], [`UnixAttestor`]) and the [`Agent`] that matches them, so each caller of
//! a server receives only the identities registered for it (feature `agent`).
//!
//! SPIRE's model, on one node: an entry names a SPIFFE ID and the selectors a caller must
//! have to receive it; the agent attests each caller from the kernel (its Unix peer
//! credentials and `/proc`), and hands it the SVIDs of every entry whose selectors are all
//! among the caller's, in file order. The [`Agent`] is the
//! [`Identities`](crate::serve::Identities) and [`Bundles`](crate::serve::Bundles) of the
//! Workload API and SDS servers, which serve both protocols on one socket with
//! [`WorkloadApiServer::with_sds`](crate::workload::WorkloadApiServer::with_sds): what
//! `meshid serve agent` runs.
//!
//! [`UnixAttestor`] describes callers with SPIRE's `unix` selectors; its documentation
//! lists them and explains how a caller whose PID was reused is told apart.

mod attest;
mod node;
mod registry;
mod selector;

pub use attest::{AttestError, Attestor, UnixAttestor};
#[cfg(feature = "metrics")]
pub(crate) use node::Inner as AgentInner;
pub use node::{Agent, AgentError, Reloaded};
pub use registry::{Entry, Registry, RegistryError};
pub use selector::{Selector, Selectors};
