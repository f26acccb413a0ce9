//! Secret names to secrets, as SPIRE's agent answers them (the table in the
//! [module docs](crate::sds)): [`Sds::lookup`] and its two uses, the secrets that exist
//! ([`Sds::secrets`], delta streams) and every secret asked for or a bounded refusal
//! ([`Sds::authorized`], state of the world); the `Secret` messages themselves.

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config, CertificateValidationContext, Secret,
    SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;
use tonic::Status;

use crate::sds::service::Sds;
use crate::{certificates_to_pem, BundleSet};

/// The type URL of Envoy's SPIFFE certificate validator configuration.
const SPIFFE_VALIDATOR_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig";

fn inline(bytes: Vec<u8>) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineBytes(bytes)),
        ..Default::default()
    }
}

fn validation(name: &str, pem: String) -> Secret {
    Secret {
        name: name.to_owned(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline(pem.into_bytes())),
                ..Default::default()
            },
        )),
    }
}

/// A validation context that is Envoy's SPIFFE validator over every bundle in `bundles`.
fn spiffe_validation(name: &str, bundles: &BundleSet) -> Secret {
    let config = SpiffeCertValidatorConfig {
        trust_domains: bundles
            .iter()
            .map(|b| spiffe_cert_validator_config::TrustDomain {
                name: b.trust_domain().name().to_owned(),
                trust_bundle: Some(inline(certificates_to_pem(b.authorities()).into_bytes())),
                workload_trust_domain: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    Secret {
        name: name.to_owned(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                custom_validator_config: Some(TypedExtensionConfig {
                    name: "envoy.tls.cert_validator.spiffe".to_owned(),
                    typed_config: Some(Any {
                        type_url: SPIFFE_VALIDATOR_TYPE_URL.to_owned(),
                        value: config.encode_to_vec(),
                    }),
                }),
                ..Default::default()
            },
        )),
    }
}

impl Sds {
    /// The secrets for `names` in the current state, and the names it has no secret for.
    /// No names at all means every secret: each SVID under its SPIFFE ID and each bundle
    /// under `spiffe://td`, as SPIRE answers.
    pub(super) fn lookup(&self, names: &[String]) -> (Vec<Secret>, Vec<String>) {
        let svid = self.feed.svid();
        let bundles = self.feed.bundles();
        let all_names: Vec<String>;
        let names = if names.is_empty() {
            all_names = svid
                .iter()
                .map(|s| s.id().to_string())
                .chain(bundles.iter().map(|b| b.trust_domain().id().to_string()))
                .collect();
            &all_names
        } else {
            names
        };
        let own_td = svid.as_ref().map(|s| s.id().trust_domain());
        let (mut out, mut unknown) = (Vec::new(), Vec::new());
        for name in names {
            let certificate = svid
                .as_ref()
                .filter(|s| name == "default" || name == s.id().as_str())
                .map(|s| Secret {
                    name: name.clone(),
                    r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                        certificate_chain: Some(inline(s.chain_pem().into_bytes())),
                        private_key: Some(inline(s.key_pem().as_bytes().to_vec())),
                        ..Default::default()
                    })),
                });
            // Which bundles a validation-context name stands for.
            let chosen: Option<BundleSet> = match name.as_str() {
                _ if certificate.is_some() => None,
                "ROOTCA" => own_td
                    .as_ref()
                    .and_then(|td| bundles.get(td).cloned())
                    .map(|b| [b].into_iter().collect()),
                "ALL" => Some(bundles.clone()).filter(|b| !b.is_empty()),
                _ if name.starts_with("spiffe://") => crate::TrustDomain::new(name)
                    .ok()
                    .and_then(|td| bundles.get(&td).cloned())
                    .map(|b| [b].into_iter().collect()),
                _ => None,
            };
            let secret = certificate.or_else(|| {
                chosen.map(|set| {
                    if self.spiffe_validator {
                        spiffe_validation(name, &set)
                    } else {
                        let roots: Vec<_> = set
                            .iter()
                            .flat_map(|b| b.authorities().iter().cloned())
                            .collect();
                        validation(name, certificates_to_pem(&roots))
                    }
                })
            });
            match secret {
                Some(secret) => out.push(secret),
                None => unknown.push(name.clone()),
            }
        }
        (out, unknown)
    }

    /// The secrets for `names` that exist (delta streams: absent names are just absent).
    pub(super) fn secrets(&self, names: &[String]) -> Vec<Secret> {
        self.lookup(names).0
    }

    /// Every secret `names` asks for (state of the world); as SPIRE's agent does, names it
    /// holds no secret for are refused with `InvalidArgument`.
    pub(super) fn authorized(&self, names: &[String]) -> Result<Vec<Secret>, Status> {
        let (secrets, unknown) = self.lookup(names);
        if unknown.is_empty() {
            Ok(secrets)
        } else {
            Err(refusal(unknown))
        }
    }
}

/// The refusal of `unknown` (not empty) names, bounded: a request may carry megabytes of
/// names; the trailer must stay small.
fn refusal(mut unknown: Vec<String>) -> Status {
    unknown.sort();
    let count = unknown.len();
    unknown.truncate(5);
    for name in &mut unknown {
        if name.len() > 128 {
            let mut cut = 128;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
    }
    let more = if count > 5 {
        format!(" and {} more", count - 5)
    } else {
        String::new()
    };
    tracing::info!(?unknown, count, "SDS: refused names with no secret");
    Status::invalid_argument(format!(
        "workload is not authorized for the requested identities {unknown:?}{more}"
    ))
}

/// An SDS service over example.org (with an SVID for /envoy) and other.org.
#[cfg(test)]
pub(super) fn fixture() -> Sds {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::sds::Feed;
    use crate::{Authority, KeyType, SpiffeId, SvidStore, TrustDomain, X509Bundle};
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), Duration::from_secs(60), KeyType::P256).unwrap();
    let other_td = TrustDomain::new("other.org").unwrap();
    let other =
        Authority::new_root(other_td.clone(), Duration::from_secs(60), KeyType::P256).unwrap();
    let bundles: BundleSet = [
        X509Bundle::from_authorities(td, ca.root().cloned()).unwrap(),
        X509Bundle::from_authorities(other_td, other.root().cloned()).unwrap(),
    ]
    .into_iter()
    .collect();
    let store = Arc::new(SvidStore::new());
    let id = SpiffeId::new("spiffe://example.org/envoy").unwrap();
    store.publish(ca.issue(&id, Duration::from_secs(60)).unwrap());
    let (version, _) = tokio::sync::watch::channel(0);
    Sds {
        feed: Feed::Store(store, bundles),
        version,
        spiffe_validator: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_right_secrets_and_unknown_names_are_refused() {
        let sds = fixture();
        let names: Vec<String> = [
            "default",
            "spiffe://example.org/envoy",
            "ROOTCA",
            "ALL",
            "spiffe://other.org",
            "spiffe://nowhere.org",
            "nonsense",
        ]
        .iter()
        .map(|n| (*n).to_owned())
        .collect();
        let secrets = sds.secrets(&names);
        let got: Vec<(&str, bool)> = secrets
            .iter()
            .map(|s| {
                let cert = matches!(s.r#type, Some(secret::Type::TlsCertificate(_)));
                (s.name.as_str(), cert)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("default", true),
                ("spiffe://example.org/envoy", true),
                ("ROOTCA", false),
                ("ALL", false),
                ("spiffe://other.org", false),
            ]
        );
        let pem = |s: &Secret| match &s.r#type {
            Some(secret::Type::ValidationContext(v)) => match &v.trusted_ca {
                Some(DataSource {
                    specifier: Some(Specifier::InlineBytes(b)),
                    ..
                }) => String::from_utf8(b.clone()).unwrap(),
                _ => panic!("no inline CA"),
            },
            _ => panic!("not a validation context"),
        };
        assert_eq!(pem(&secrets[2]).matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(pem(&secrets[3]).matches("BEGIN CERTIFICATE").count(), 2);
        // Unknown names are refused as SPIRE refuses them; known ones answered.
        let refused = sds.authorized(&names).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("spiffe://nowhere.org"));
        let known = &names[..5];
        assert_eq!(sds.authorized(known).unwrap().len(), 5);
        // No names: every secret (the SVID under its ID, each bundle under spiffe://td).
        assert_eq!(sds.authorized(&[]).unwrap().len(), 3);
    }

    #[test]
    fn a_refusal_names_a_few_names_cut_short() {
        let mut unknown: Vec<String> = (0..7).rev().map(|i| format!("name-{i}")).collect();
        unknown.push("nonsense".repeat(100));
        let refused = refusal(unknown);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        let message = refused.message();
        assert!(message.starts_with("workload is not authorized for the requested identities"));
        assert!(message.ends_with(" and 3 more"), "{message}");
        assert!(message.contains("\"name-0\"") && message.contains("\"name-4\""));
        assert!(!message.contains("name-5") && !message.contains("nonsense"));
        // A long name is cut at a character boundary.
        let refused = refusal(vec!["é".repeat(100)]);
        assert!(refused.message().contains(&"é".repeat(64)));
        assert!(!refused.message().contains(&"é".repeat(65)));
    }
}
