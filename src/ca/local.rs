//! [`LocalSvid`]: an SVID for one ID, issued and kept fresh by a local [`Authority`], and
//! [`RotatorConfig::new`], the rotator configuration an in-process authority implies.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::SignatureVerificationAlgorithm;
use thiserror::Error;

use super::{Authority, CaError};
use crate::bundle::{BundleError, BundleSet, X509Bundle};
use crate::id::SpiffeId;
use crate::rotate::{Rotator, RotatorConfig, SvidStore};

/// Why a [`LocalSvid`] could not start, or [`RotatorConfig::new`] refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LocalSvidError {
    /// The authority does not know its root (an intermediate loaded without its bundle), so
    /// no bundle can be served beside its SVIDs.
    #[error("the authority's root is unknown (an intermediate needs its bundle)")]
    UnknownRoot,
    /// The root does not make a bundle.
    #[error("the authority's root: {0}")]
    Bundle(#[from] BundleError),
    /// The authority will not issue what was asked (for example a TTL under
    /// [`Authority::MIN_SVID_TTL`]); refused before anything starts.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// No SVID was issued and verified in time.
    #[error("{id}: no SVID could be issued within {waited:?}{}", last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotIssued {
        /// The ID.
        id: SpiffeId,
        /// How long it waited.
        waited: Duration,
        /// The rotator's last error, if any.
        last_error: Option<String>,
    },
}

/// A rotating X509-SVID for one ID from a local [`Authority`]: the store that holds it, the
/// bundle set of the authority's trust domain, and the [`Rotator`] that renews it (at about
/// half of each SVID's lifetime, by [`RotationPolicy::default`](crate::RotationPolicy::default)). What
/// `meshid serve workload-api` and `meshid serve sds --ca` serve.
///
/// ```
/// # #[cfg(feature = "ring")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use meshid::{Authority, KeyType, LocalSvid, SpiffeId, SvidSource, TrustDomain};
///
/// let td = TrustDomain::new("example.org")?;
/// let ca = Arc::new(Authority::new_root(td, Duration::from_secs(3600), KeyType::P256)?);
/// let id = SpiffeId::new("spiffe://example.org/web")?;
/// let local = LocalSvid::start(ca, &id, Duration::from_secs(60), meshid::ring_algorithms())?;
/// assert_eq!(local.store.x509_svid().unwrap().id(), &id);
/// local.rotator.stop();
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "ring"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct LocalSvid {
    /// Where the current SVID is published.
    pub store: Arc<SvidStore>,
    /// The bundle of the authority's trust domain (its root).
    pub bundles: BundleSet,
    /// The renewal driver; stop it when done.
    pub rotator: Rotator,
}

impl LocalSvid {
    /// How long [`LocalSvid::start`] waits for the first SVID.
    pub const FIRST_SVID_WITHIN: Duration = Duration::from_secs(10);

    /// Starts renewing SVIDs for `id` with lifetime `ttl` from `ca`, each verified against
    /// the authority's root with `algorithms` before it is published, and waits (at most
    /// [`Self::FIRST_SVID_WITHIN`]) for the first: [`RotatorConfig::new`], a [`Rotator`]
    /// and [`SvidStore::wait_ready`] in one call.
    pub fn start(
        ca: Arc<Authority>,
        id: &SpiffeId,
        ttl: Duration,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Result<Self, LocalSvidError> {
        if ttl < Authority::MIN_SVID_TTL {
            return Err(CaError::TtlTooShort {
                ttl,
                min: Authority::MIN_SVID_TTL,
            }
            .into());
        }
        let store = Arc::new(SvidStore::new());
        let (config, bundles) = local_config(id.clone(), ca, Arc::clone(&store))?;
        let rotator = Rotator::start(config.ttl(ttl).algorithms(algorithms));
        if let Err(not_ready) = store.wait_ready(Self::FIRST_SVID_WITHIN) {
            let last_error = rotator.status().last_error;
            rotator.stop();
            return Err(LocalSvidError::NotIssued {
                id: id.clone(),
                waited: not_ready.waited,
                last_error,
            });
        }
        Ok(Self {
            store,
            bundles,
            rotator,
        })
    }
}

/// The rotator configuration an in-process [`Authority`] implies.
impl RotatorConfig {
    /// Renew `id` from `ca` and publish to `store`: the authority is the issuer, and its
    /// root (as the bundle of its trust domain) is what each new SVID is verified against
    /// before it is published. The lifetime ([`DEFAULT_TTL`](Self::DEFAULT_TTL), 1 h), the
    /// policy ([`RotationPolicy::default`](crate::RotationPolicy::default): renew at about
    /// half of each lifetime) and the verification algorithms (feature `ring`'s, else
    /// `aws-lc-rs`'s) are defaults that [`ttl`](Self::ttl), [`policy`](Self::policy) and
    /// [`algorithms`](Self::algorithms) change.
    ///
    /// Refuses an `id` the authority would never issue (outside its trust domain, or the
    /// trust domain's own ID), and an authority that does not know its root (an
    /// intermediate loaded without its bundle).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use meshid::{Authority, KeyType, RotatorConfig, SpiffeId, SvidStore, TrustDomain};
    ///
    /// let ca = Arc::new(Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(86_400), KeyType::P256)?);
    /// let store = Arc::new(SvidStore::new());
    /// let config = RotatorConfig::new(SpiffeId::new("spiffe://example.org/web")?, ca.clone(), store.clone())?
    ///     .ttl(Duration::from_secs(600));
    /// assert_eq!(config.ttl, Duration::from_secs(600));
    /// // An ID of another trust domain is refused before anything starts.
    /// assert!(RotatorConfig::new(SpiffeId::new("spiffe://other.org/web")?, ca, store).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        id: SpiffeId,
        ca: Arc<Authority>,
        store: Arc<SvidStore>,
    ) -> Result<Self, LocalSvidError> {
        local_config(id, ca, store).map(|(config, _)| config)
    }
}

/// [`RotatorConfig::new`], and the bundle set it verifies against.
fn local_config(
    id: SpiffeId,
    ca: Arc<Authority>,
    store: Arc<SvidStore>,
) -> Result<(RotatorConfig, BundleSet), LocalSvidError> {
    ca.check_id(&id)?;
    let root = ca.root().cloned().ok_or(LocalSvidError::UnknownRoot)?;
    let bundle = X509Bundle::from_authorities(ca.trust_domain().clone(), [root])?;
    let bundles: BundleSet = [bundle].into_iter().collect();
    let config = RotatorConfig::with_issuer(id, ca, Arc::new(bundles.clone()), store);
    Ok((config, bundles))
}
