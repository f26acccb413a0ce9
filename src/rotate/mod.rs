//! Rotation: sources of the current SVID, the rotating [`SvidStore`], the pure
//! [`RotationPolicy`], and the [`Rotator`] that drives renewal.
//!
//! The policy decides *when* (a pure function, tested without a clock); the store holds
//! *what* is current (lock-free reads on the handshake path); the rotator is the small
//! driver that sleeps, asks an [`Issuer`], verifies, and publishes.

mod policy;
mod rotator;
mod store;

pub use policy::RotationPolicy;
#[cfg(feature = "metrics")]
pub(crate) use rotator::StatusReader;
pub use rotator::{Issuer, RenewalFailure, RotationStatus, Rotator, RotatorConfig};
pub use store::{NotReady, SvidSource, SvidStore};
