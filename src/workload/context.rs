//! Workload API messages into meshid types: every field checked, nothing trusted.

use std::collections::HashMap;
use std::sync::Arc;

use super::proto::{X509BundlesResponse, X509SvidResponse};
use super::WorkloadApiError;
use crate::bundle::split_der;
use crate::{BundleSet, SpiffeId, SvidError, TrustDomain, X509Bundle, X509Svid};

/// What one `FetchX509SVID` message says: the workload's SVIDs (the first is the default)
/// and every bundle (own and federated). Each message replaces the whole previous state.
#[derive(Debug, Clone)]
pub struct X509Context {
    svids: Vec<(Arc<X509Svid>, String)>,
    bundles: BundleSet,
}

impl X509Context {
    /// Decodes and checks a `FetchX509SVID` response: each SVID's ID, chain (the X509-SVID
    /// profile, the key matching the leaf, the ID in the certificate matching the message)
    /// and bundle, and the federated bundles. An empty message is an error.
    ///
    /// Each key is copied into the SVID's [`PrivateKey`](crate::PrivateKey), which
    /// zeroizes it on drop; the message's own copy is zeroized when the message is
    /// dropped (see [`X509SvidMessage`](super::proto::X509SvidMessage)), or at once with
    /// [`X509SvidMessage::wipe_key`](super::proto::X509SvidMessage::wipe_key).
    pub fn from_message(message: &X509SvidResponse) -> Result<Self, WorkloadApiError> {
        if message.svids.is_empty() {
            return Err(WorkloadApiError::NoSvids);
        }
        let mut svids = Vec::with_capacity(message.svids.len());
        let mut bundles = BundleSet::new();
        for (index, m) in message.svids.iter().enumerate() {
            let id = SpiffeId::new(&m.spiffe_id).map_err(|source| WorkloadApiError::BadId {
                value: m.spiffe_id.chars().take(256).collect(),
                source,
            })?;
            let bad_svid = |source| WorkloadApiError::BadSvid {
                index,
                id: id.clone(),
                source,
            };
            let chain = split_der(&m.x509_svid)
                .map_err(|(i, _)| bad_svid(SvidError::MalformedCertificate { index: i }))?;
            let svid = X509Svid::from_der(chain, &m.x509_svid_key).map_err(bad_svid)?;
            if svid.id() != &id {
                return Err(WorkloadApiError::IdMismatch {
                    message: id,
                    certificate: svid.id().clone(),
                });
            }
            let td = id.trust_domain();
            let bundle = X509Bundle::parse_der(td.clone(), &m.bundle).map_err(|source| {
                WorkloadApiError::BadBundle {
                    trust_domain: td.to_string(),
                    source,
                }
            })?;
            bundles.insert(bundle);
            svids.push((Arc::new(svid), m.hint.clone()));
        }
        for bundle in federated(&message.federated_bundles)? {
            if bundles.get(bundle.trust_domain()).is_none() {
                bundles.insert(bundle);
            }
        }
        Ok(Self { svids, bundles })
    }

    /// The SVIDs, in the order the server sent them.
    pub fn svids(&self) -> impl Iterator<Item = &Arc<X509Svid>> {
        self.svids.iter().map(|(svid, _)| svid)
    }

    /// The default SVID: the first one.
    pub fn default_svid(&self) -> &Arc<X509Svid> {
        &self.svids[0].0
    }

    /// The SVID for `id`, if the workload has one.
    pub fn svid_for(&self, id: &SpiffeId) -> Option<&Arc<X509Svid>> {
        self.svids().find(|s| s.id() == id)
    }

    /// The SVID the server labelled with `hint`, if any.
    pub fn svid_with_hint(&self, hint: &str) -> Option<&Arc<X509Svid>> {
        self.svids
            .iter()
            .find(|(_, h)| !h.is_empty() && h == hint)
            .map(|(svid, _)| svid)
    }

    /// Every bundle: the SVIDs' trust domains and the federated ones.
    pub fn bundles(&self) -> &BundleSet {
        &self.bundles
    }
}

/// Decodes a `FetchX509Bundles` response.
pub fn bundles_from_message(message: &X509BundlesResponse) -> Result<BundleSet, WorkloadApiError> {
    Ok(federated(&message.bundles)?.into_iter().collect())
}

/// Bundles keyed by trust-domain ID (`spiffe://td`) or name, as concatenated DER, read in
/// key order so that the result (and the first error) never depends on the map's random
/// iteration order. Two keys naming one trust domain (`td` and `spiffe://td`) are refused.
fn federated(map: &HashMap<String, Vec<u8>>) -> Result<Vec<X509Bundle>, WorkloadApiError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out: Vec<X509Bundle> = Vec::with_capacity(map.len());
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        let td = TrustDomain::new(key).map_err(|source| WorkloadApiError::BadId {
            value: key.chars().take(256).collect(),
            source,
        })?;
        if !seen.insert(td.clone()) {
            return Err(WorkloadApiError::DuplicateBundle {
                trust_domain: td.to_string(),
            });
        }
        let bundle =
            X509Bundle::parse_der(td, &map[key]).map_err(|source| WorkloadApiError::BadBundle {
                trust_domain: key.chars().take(256).collect(),
                source,
            })?;
        out.push(bundle);
    }
    Ok(out)
}

#[cfg(all(test, feature = "ca"))]
mod tests {
    use super::*;
    use crate::{Authority, KeyType};

    #[test]
    fn two_keys_for_one_trust_domain_are_refused_whatever_the_map_order() {
        let td = TrustDomain::new("example.org").unwrap();
        let root = |_| {
            let ca = Authority::new_root(
                td.clone(),
                std::time::Duration::from_secs(60),
                KeyType::P256,
            )
            .unwrap();
            ca.root().unwrap().to_vec()
        };
        for _ in 0..8 {
            let map: HashMap<String, Vec<u8>> = [
                ("example.org".to_owned(), root(0)),
                ("spiffe://example.org".to_owned(), root(1)),
                ("zzz.org".to_owned(), b"junk".to_vec()),
            ]
            .into_iter()
            .collect();
            // Keys are read in sorted order: the bad `zzz.org` comes after the duplicate pair.
            let err = bundles_from_message(&X509BundlesResponse {
                crl: Vec::new(),
                bundles: map,
            })
            .unwrap_err();
            assert!(
                matches!(&err, WorkloadApiError::DuplicateBundle { trust_domain } if trust_domain == "example.org"),
                "{err}"
            );
        }
    }
}
