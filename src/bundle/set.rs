//! [`BundleSet`]: X.509 bundles of several trust domains.

use std::collections::BTreeMap;

use super::{BundleSource, X509Bundle};
use crate::TrustDomain;

/// X.509 bundles keyed by trust domain: at most one bundle per trust domain, and bundles
/// of different trust domains are never merged, so a peer is only ever checked against
/// the roots of its own trust domain ([X509-SVID §5.2]; [SPIFFE Trust Domain and Bundle §3]).
///
/// Iteration is in trust-domain name order.
///
/// ```
/// use meshid::{BundleSet, BundleSource, TrustDomain, X509Bundle};
///
/// let a = TrustDomain::new("a.test")?;
/// let b = TrustDomain::new("b.test")?;
/// let set: BundleSet = [X509Bundle::new(a.clone()), X509Bundle::new(b.clone())]
///     .into_iter()
///     .collect();
/// assert_eq!(set.len(), 2);
/// assert_eq!(set.x509_bundle(&a).unwrap().trust_domain(), &a);
/// assert!(set.x509_bundle(&TrustDomain::new("c.test")?).is_none());
/// # Ok::<(), meshid::IdError>(())
/// ```
///
/// [SPIFFE Trust Domain and Bundle §3]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#3-spiffe-bundles
/// [X509-SVID §5.2]: https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md#52-leaf-validation
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleSet {
    bundles: BTreeMap<TrustDomain, X509Bundle>,
}

impl BundleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bundle` under its trust domain, replacing and returning the bundle that trust
    /// domain had.
    pub fn insert(&mut self, bundle: X509Bundle) -> Option<X509Bundle> {
        self.bundles.insert(bundle.trust_domain().clone(), bundle)
    }

    /// Removes and returns the bundle of `trust_domain`.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        self.bundles.remove(trust_domain)
    }

    /// The bundle of `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&X509Bundle> {
        self.bundles.get(trust_domain)
    }

    /// The bundles, in trust-domain name order.
    pub fn iter(&self) -> impl Iterator<Item = &X509Bundle> + '_ {
        self.bundles.values()
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

impl FromIterator<X509Bundle> for BundleSet {
    /// Collects bundles; a later bundle of the same trust domain replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = X509Bundle>>(iter: I) -> Self {
        let mut set = Self::new();
        set.extend(iter);
        set
    }
}

impl Extend<X509Bundle> for BundleSet {
    fn extend<I: IntoIterator<Item = X509Bundle>>(&mut self, iter: I) {
        for bundle in iter {
            self.insert(bundle);
        }
    }
}

impl BundleSource for BundleSet {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        self.get(trust_domain).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &[u8] = include_bytes!("../../tests/data/go-spiffe/x509bundle/cert.pem");
    const CERTS: &[u8] = include_bytes!("../../tests/data/go-spiffe/x509bundle/certs.pem");

    #[test]
    fn keyed_by_trust_domain_never_merged() {
        let a = TrustDomain::new("a.test").unwrap();
        let b = TrustDomain::new("b.test").unwrap();
        let a1 = X509Bundle::parse_pem(a.clone(), CERT).unwrap();
        let a2 = X509Bundle::parse_pem(a.clone(), CERTS).unwrap();
        let b1 = X509Bundle::parse_pem(b.clone(), CERT).unwrap();

        let mut set = BundleSet::new();
        assert!(set.is_empty());
        assert_eq!(set.insert(a1.clone()), None);
        assert_eq!(set.insert(b1.clone()), None);
        // Same trust domain: replaced, not merged.
        assert_eq!(set.insert(a2.clone()), Some(a1));
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(&a), Some(&a2));
        assert_eq!(set.x509_bundle(&b), Some(b1));
        let order: Vec<_> = set.iter().map(|x| x.trust_domain().name()).collect();
        assert_eq!(order, ["a.test", "b.test"]);
        assert_eq!(set.remove(&a), Some(a2));
        assert_eq!(set.x509_bundle(&a), None);
    }
}
