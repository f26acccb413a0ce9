//! Where JWT-SVID validation finds the JWT authorities of a trust domain:
//! [`JwtBundleSource`], and [`JwtBundles`], the JWT authorities of several trust domains.

use std::collections::BTreeMap;

use super::{JwtAuthority, SpiffeBundle};
use crate::TrustDomain;

/// Where JWT-SVID validation gets the JWT authorities (`jwt-svid` keys) of a trust domain.
///
/// A token's key is looked up among the authorities of the trust domain of its `sub`
/// only, so one trust domain's keys never vouch for another's identities.
/// [`SpiffeBundle`] (its own trust domain only) and [`JwtBundles`] implement it, and so can
/// anything holding bundles that change over time: the validator asks on every token.
///
/// ```
/// use meshid::{JwtBundleSource, SpiffeBundle, TrustDomain};
///
/// let td = TrustDomain::new("example.org")?;
/// let bundle = SpiffeBundle::new(td.clone());
/// assert_eq!(bundle.jwt_authorities_of(&td), Some(Vec::new()));
/// assert_eq!(bundle.jwt_authorities_of(&TrustDomain::new("other.org")?), None);
/// # Ok::<(), meshid::IdError>(())
/// ```
pub trait JwtBundleSource: Send + Sync {
    /// The JWT authorities of `trust_domain`: `None` when this source has no bundle for
    /// it, an empty list when its bundle has no `jwt-svid` key (the trust domain does not
    /// support JWT-SVIDs, JWT-SVID §6.2).
    fn jwt_authorities_of(&self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>>;
}

impl<T: JwtBundleSource + ?Sized> JwtBundleSource for std::sync::Arc<T> {
    fn jwt_authorities_of(&self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>> {
        (**self).jwt_authorities_of(trust_domain)
    }
}

impl<T: JwtBundleSource + ?Sized> JwtBundleSource for &T {
    fn jwt_authorities_of(&self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>> {
        (**self).jwt_authorities_of(trust_domain)
    }
}

impl JwtBundleSource for SpiffeBundle {
    fn jwt_authorities_of(&self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>> {
        (self.trust_domain() == trust_domain).then(|| self.jwt_authorities().to_vec())
    }
}

/// The JWT authorities of several trust domains, keyed by trust domain and never merged:
/// a token is checked against the keys of its own trust domain only.
///
/// Iteration is in trust-domain name order.
///
/// ```
/// use meshid::{JwtBundleSource, JwtBundles, SpiffeBundle, TrustDomain};
///
/// let a = TrustDomain::new("a.test")?;
/// let mut bundles = JwtBundles::new();
/// bundles.insert_bundle(&SpiffeBundle::new(a.clone()));
/// assert_eq!(bundles.len(), 1);
/// assert!(bundles.jwt_authorities_of(&a).is_some());
/// assert!(bundles.jwt_authorities_of(&TrustDomain::new("b.test")?).is_none());
/// # Ok::<(), meshid::IdError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwtBundles {
    bundles: BTreeMap<TrustDomain, Vec<JwtAuthority>>,
}

impl JwtBundles {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the JWT authorities of `trust_domain`, replacing and returning those it had.
    pub fn insert(
        &mut self,
        trust_domain: TrustDomain,
        authorities: Vec<JwtAuthority>,
    ) -> Option<Vec<JwtAuthority>> {
        self.bundles.insert(trust_domain, authorities)
    }

    /// Sets the JWT authorities of `bundle`'s trust domain to `bundle`'s, replacing and
    /// returning those it had.
    pub fn insert_bundle(&mut self, bundle: &SpiffeBundle) -> Option<Vec<JwtAuthority>> {
        self.insert(
            bundle.trust_domain().clone(),
            bundle.jwt_authorities().to_vec(),
        )
    }

    /// Removes and returns the JWT authorities of `trust_domain`.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>> {
        self.bundles.remove(trust_domain)
    }

    /// The JWT authorities of `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&[JwtAuthority]> {
        self.bundles.get(trust_domain).map(Vec::as_slice)
    }

    /// The trust domains and their JWT authorities, in trust-domain name order.
    pub fn iter(&self) -> impl Iterator<Item = (&TrustDomain, &[JwtAuthority])> + '_ {
        self.bundles.iter().map(|(td, a)| (td, a.as_slice()))
    }

    /// How many trust domains have a bundle.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set holds no bundle.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl FromIterator<SpiffeBundle> for JwtBundles {
    /// Collects the JWT authorities of bundles; a later bundle of the same trust domain
    /// replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = SpiffeBundle>>(iter: I) -> Self {
        let mut set = Self::new();
        for bundle in iter {
            set.insert_bundle(&bundle);
        }
        set
    }
}

impl JwtBundleSource for JwtBundles {
    fn jwt_authorities_of(&self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>> {
        self.bundles.get(trust_domain).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_1: &[u8] =
        include_bytes!("../../tests/data/go-spiffe/spiffebundle/spiffebundle_valid_1.json");

    #[test]
    fn keyed_by_trust_domain_never_merged() {
        let a = TrustDomain::new("a.test").unwrap();
        let b = TrustDomain::new("b.test").unwrap();
        let with_keys = SpiffeBundle::parse(a.clone(), VALID_1).unwrap();
        assert!(!with_keys.jwt_authorities().is_empty());
        let mut set: JwtBundles = [with_keys.clone(), SpiffeBundle::new(b.clone())]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(&a), Some(with_keys.jwt_authorities()));
        assert_eq!(set.jwt_authorities_of(&b), Some(Vec::new()));
        // Same trust domain: replaced, not merged.
        let old = set.insert_bundle(&SpiffeBundle::new(a.clone())).unwrap();
        assert_eq!(old, with_keys.jwt_authorities());
        assert_eq!(set.get(&a), Some(&[][..]));
        let order: Vec<_> = set.iter().map(|(td, _)| td.name()).collect();
        assert_eq!(order, ["a.test", "b.test"]);
        assert!(set.remove(&a).is_some());
        assert_eq!(set.jwt_authorities_of(&a), None);
        // A SpiffeBundle answers for its own trust domain only.
        assert_eq!(with_keys.jwt_authorities_of(&b), None);
        assert_eq!(
            with_keys.jwt_authorities_of(&a).unwrap(),
            with_keys.jwt_authorities()
        );
    }
}
