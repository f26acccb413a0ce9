//! Workload API messages into meshid types: every field checked, nothing trusted.

use std::collections::HashMap;
use std::sync::Arc;

use super::proto::{X509BundlesResponse, X509SvidResponse};
use super::WorkloadApiError;
use crate::bundle::split_der_parsed;
use crate::{BundleSet, PrivateKey, SpiffeId, SvidError, TrustDomain, X509Bundle, X509Svid};

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
            // Each certificate is parsed once, here: the SVID's checks read these parses.
            let chain = split_der_parsed(&m.x509_svid)
                .map_err(|(i, _)| bad_svid(SvidError::MalformedCertificate { index: i }))?;
            let key = PrivateKey::from_pkcs8_der(&m.x509_svid_key)
                .map_err(|e| bad_svid(SvidError::Key(e)))?;
            let svid = X509Svid::from_parsed(chain, key).map_err(bad_svid)?;
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
    use crate::bundle::split_der;
    use crate::workload::proto::X509SvidMessage;
    use crate::{Authority, CsrBuilder, KeyError, KeyPair, KeyType, SvidRequest};
    use rustls_pki_types::CertificateDer;
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A one-SVID message: the chain concatenated, the key, the bundle.
    fn message(
        chain: &[CertificateDer<'_>],
        key: &[u8],
        id: &str,
        bundle: &[u8],
    ) -> X509SvidResponse {
        X509SvidResponse {
            svids: vec![X509SvidMessage {
                spiffe_id: id.to_owned(),
                x509_svid: chain.iter().flat_map(|c| c.iter().copied()).collect(),
                x509_svid_key: key.to_vec(),
                bundle: bundle.to_vec(),
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: HashMap::new(),
        }
    }

    /// What `from_message` says of the message's one SVID, next to what the standalone
    /// loader (`split_der` then `X509Svid::from_der`, the path before the parse was
    /// shared) says of the same bytes: they must agree, on the SVID and on every error.
    fn both(m: &X509SvidResponse) -> Result<Arc<X509Svid>, SvidError> {
        let svid = &m.svids[0];
        let alone = split_der(&svid.x509_svid)
            .map_err(|(index, _)| SvidError::MalformedCertificate { index })
            .and_then(|chain| X509Svid::from_der(chain, &svid.x509_svid_key));
        let decoded = X509Context::from_message(m).map(|c| Arc::clone(c.default_svid()));
        match (&decoded, &alone) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.id(), a.chain(), a.not_before(), a.not_after()),
                    (b.id(), b.chain(), b.not_before(), b.not_after())
                );
                assert_eq!(
                    a.private_key().secret_pkcs8_der(),
                    b.private_key().secret_pkcs8_der()
                );
                assert_eq!(
                    a.serial_hex(),
                    crate::CertificateInfo::from_der(a.leaf())
                        .unwrap()
                        .serial_hex()
                );
            }
            (Err(WorkloadApiError::BadSvid { source, .. }), Err(e)) => assert_eq!(source, e),
            (a, b) => panic!("from_message says {a:?}, the loader {b:?}"),
        }
        decoded.map_err(|e| match e {
            WorkloadApiError::BadSvid { source, .. } => source,
            other => panic!("not an SVID error: {other}"),
        })
    }

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn p256_svids_are_taken_with_their_own_key_only() {
        let ca = Authority::new_root(td(), HOUR, KeyType::P256).unwrap();
        let id = SpiffeId::new("spiffe://example.org/a").unwrap();
        let (a, b) = (ca.issue(&id, HOUR).unwrap(), ca.issue(&id, HOUR).unwrap());
        let root = ca.root().unwrap().to_vec();
        let key = |s: &X509Svid| s.private_key().secret_pkcs8_der().to_vec();
        both(&message(a.chain(), &key(&a), id.as_str(), &root)).unwrap();
        assert_eq!(
            both(&message(a.chain(), &key(&b), id.as_str(), &root)).unwrap_err(),
            SvidError::Key(KeyError::Mismatch)
        );
        // With an intermediate: the chain's every certificate is read from the one parse.
        let mid = ca.new_intermediate(HOUR, KeyType::P384).unwrap();
        let c = mid.issue(&id, HOUR).unwrap();
        assert_eq!(c.chain().len(), 2);
        both(&message(c.chain(), &key(&c), id.as_str(), &root)).unwrap();
        assert_eq!(
            both(&message(c.chain(), &key(&a), id.as_str(), &root)).unwrap_err(),
            SvidError::Key(KeyError::Mismatch)
        );
    }

    #[test]
    fn p384_svids_are_taken_with_their_own_key_only() {
        let ca = Authority::new_root(td(), HOUR, KeyType::P384).unwrap();
        let id = SpiffeId::new("spiffe://example.org/b").unwrap();
        let root = ca.root().unwrap().to_vec();
        let issue = |key: &KeyPair| {
            let csr = CsrBuilder::new(id.clone()).build(key).unwrap();
            ca.sign_csr(&csr, &SvidRequest::new().ttl(HOUR)).unwrap()
        };
        let (a, b) = (
            KeyPair::generate(KeyType::P384).unwrap(),
            KeyPair::generate(KeyType::P384).unwrap(),
        );
        let p256 = KeyPair::generate(KeyType::P256).unwrap();
        let chain = issue(&a);
        let svid = both(&message(&chain, &a.to_pkcs8_der(), id.as_str(), &root)).unwrap();
        assert_eq!(svid.private_key().key_type(), KeyType::P384);
        for wrong in [&b, &p256] {
            assert_eq!(
                both(&message(&chain, &wrong.to_pkcs8_der(), id.as_str(), &root)).unwrap_err(),
                SvidError::Key(KeyError::Mismatch)
            );
        }
    }

    #[test]
    fn rsa_svids_are_taken_with_their_own_key_only() {
        let data = |name: &str| {
            let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
            crate::pem::parse(&std::fs::read(path).unwrap()).unwrap()
        };
        let leaf = CertificateDer::from(
            data("go-spiffe/x509svid/good-leaf-only.pem")[0]
                .der
                .to_vec(),
        );
        let key = data("go-spiffe/x509svid/key-pkcs8-rsa.pem")[0].der.to_vec();
        let other = data("jwt/rsa2048.key")[0].der.to_vec();
        let root = Authority::new_root(td(), HOUR, KeyType::P256)
            .unwrap()
            .root()
            .unwrap()
            .to_vec();
        let id = "spiffe://example.org/workload-1";
        let svid = both(&message(std::slice::from_ref(&leaf), &key, id, &root)).unwrap();
        assert!(matches!(
            svid.private_key().key_type(),
            KeyType::Rsa { bits: 2048 }
        ));
        assert_eq!(
            both(&message(std::slice::from_ref(&leaf), &other, id, &root)).unwrap_err(),
            SvidError::Key(KeyError::Mismatch)
        );
        let p256 = KeyPair::generate(KeyType::P256).unwrap().to_pkcs8_der();
        assert_eq!(
            both(&message(&[leaf], &p256, id, &root)).unwrap_err(),
            SvidError::Key(KeyError::Mismatch)
        );
    }

    #[test]
    fn errors_are_those_of_the_standalone_loader_in_the_same_order() {
        let ca = Authority::new_root(td(), HOUR, KeyType::P256).unwrap();
        let mid = ca.new_intermediate(HOUR, KeyType::P256).unwrap();
        let id = SpiffeId::new("spiffe://example.org/c").unwrap();
        let svid = mid.issue(&id, HOUR).unwrap();
        let other = ca.issue(&id, HOUR).unwrap();
        let root = ca.root().unwrap().to_vec();
        let key = svid.private_key().secret_pkcs8_der().to_vec();
        let wrong_key = other.private_key().secret_pkcs8_der().to_vec();
        let (leaf, inter) = (svid.chain()[0].clone(), svid.chain()[1].clone());
        let cut = |c: &CertificateDer<'_>| CertificateDer::from(c[..c.len() - 1].to_vec());
        let ca_leaf = data_leaf("wrong-leaf-ca-true.pem");
        let cases: Vec<(Vec<CertificateDer<'static>>, Vec<u8>, SvidError)> = vec![
            (vec![], key.clone(), SvidError::NoCertificates),
            (
                vec![],
                b"junk".to_vec(),
                SvidError::Key(KeyError::MalformedPrivateKey),
            ),
            // A malformed certificate comes first, before the key and the profile.
            (
                vec![leaf.clone(), cut(&inter)],
                b"junk".to_vec(),
                SvidError::MalformedCertificate { index: 1 },
            ),
            (
                vec![cut(&leaf)],
                key.clone(),
                SvidError::MalformedCertificate { index: 0 },
            ),
            // The key is read before the profile is checked...
            (
                vec![ca_leaf.clone()],
                b"junk".to_vec(),
                SvidError::Key(KeyError::MalformedPrivateKey),
            ),
            // ...and matched after it.
            (vec![ca_leaf], wrong_key.clone(), SvidError::LeafIsCa),
            (
                vec![leaf.clone(), leaf.clone()],
                wrong_key.clone(),
                SvidError::SigningNotCa { index: 1 },
            ),
            (
                vec![leaf.clone(), inter.clone()],
                wrong_key,
                SvidError::Key(KeyError::Mismatch),
            ),
        ];
        for (i, (chain, key, error)) in cases.into_iter().enumerate() {
            let got = both(&message(&chain, &key, id.as_str(), &root));
            assert_eq!(got.unwrap_err(), error, "case {i}");
        }
    }

    /// The first certificate of a go-spiffe X509-SVID vector.
    fn data_leaf(name: &str) -> CertificateDer<'static> {
        let path = format!(
            "{}/tests/data/go-spiffe/x509svid/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        CertificateDer::from(
            crate::pem::parse(&std::fs::read(path).unwrap()).unwrap()[0]
                .der
                .to_vec(),
        )
    }

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
