//! Trust bundles: the CA certificates (and JWT keys) a trust domain's SVIDs chain to
//! ([SPIFFE Trust Domain and Bundle §3]).
//!
//! - [`X509Bundle`]: the X.509 authorities of one trust domain, loaded from PEM or DER.
//! - [`BundleSet`]: bundles of several trust domains, keyed by trust domain and never
//!   merged (roots are chosen by the peer's trust domain, X509-SVID §5.2).
//! - [`SpiffeBundle`]: the SPIFFE bundle document, a JWK Set with `x509-svid` and
//!   `jwt-svid` entries, a sequence number and a refresh hint ([§4]).
//! - [`BundleSource`]: where verification asks for the bundle of a trust domain.
//! - [`JwtBundleSource`], [`JwtBundles`]: where JWT-SVID validation asks for the JWT
//!   authorities of a trust domain, and those of several trust domains.
//!
//! Every loader refuses inputs over 16 MiB up front and reports any other refusal as a
//! typed [`BundleError`]; none panics on any input.
//!
//! [SPIFFE Trust Domain and Bundle §3]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#3-spiffe-bundles
//! [§4]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format

mod error;
mod json;
mod jwk;
mod jwt;
mod set;
mod x509;

pub use error::BundleError;
pub use json::{JwtAuthority, SpiffeBundle};
pub(crate) use jwk::{Curve, KeyKind};
pub use jwt::{JwtBundleSource, JwtBundles};
pub use set::BundleSet;
#[cfg_attr(not(feature = "workload-api"), allow(unused_imports))]
pub(crate) use x509::split_der;
#[cfg(feature = "workload-api")]
pub(crate) use x509::split_der_parsed;
pub use x509::X509Bundle;

use crate::TrustDomain;

/// The largest input any bundle loader reads: 16 MiB.
pub(crate) const MAX_INPUT_LEN: usize = 16 << 20;

/// Where verification gets the X.509 trust anchors of a trust domain.
///
/// Static values ([`X509Bundle`], [`BundleSet`], [`SpiffeBundle`]) implement it, and so can
/// anything that holds bundles which change over time: a verifier asks on every handshake.
///
/// ```
/// use meshid::{BundleSource, TrustDomain, X509Bundle};
///
/// let td = TrustDomain::new("example.org")?;
/// let bundle = X509Bundle::new(td.clone());
/// assert!(bundle.x509_bundle(&td).is_some());
/// assert!(bundle.x509_bundle(&TrustDomain::new("other.org")?).is_none());
/// # Ok::<(), meshid::IdError>(())
/// ```
pub trait BundleSource: Send + Sync {
    /// The X.509 bundle of `trust_domain`, if this source has one.
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle>;
}

impl<T: BundleSource + ?Sized> BundleSource for std::sync::Arc<T> {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        (**self).x509_bundle(trust_domain)
    }
}
