//! [`UnixAttestor`]: SPIRE's `unix` workload attestor selectors.

use super::{AttestError, Attestor};
use crate::agent::Selectors;
use crate::serve::Caller;

/// SPIRE's `unix` workload attestor.
#[derive(Debug, Default)]
pub struct UnixAttestor {}

impl Attestor for UnixAttestor {
    fn attest(&self, _caller: &Caller) -> Result<Selectors, AttestError> {
        Err(AttestError::NoCredentials)
    }
}
