//! Secret names to secrets, as SPIRE's agent answers them (the table in the
//! [module docs](crate::sds)): [`Current::secret`], one name in the feed's current state
//! (delta streams look up each name they need), and every secret asked for or a bounded
//! refusal ([`Sds::authorized`], state of the world); the `Secret` messages themselves,
//! and [`wipe`], which zeroizes the key a built `Secret` carries.

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config, CertificateValidationContext, Secret,
    SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::google::protobuf::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use prost::Message as _;
use tonic::Status;
use zeroize::Zeroize as _;

use crate::sds::service::Sds;
use crate::{certificates_to_pem, BundleSet, X509Svid};

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

/// What names are looked up in: the caller's identities (its default first) and the
/// bundles, read once per response.
pub(super) struct Current {
    svids: Vec<Arc<X509Svid>>,
    bundles: Arc<BundleSet>,
    spiffe_validator: bool,
    trust_domain: Option<crate::TrustDomain>,
}

impl Sds {
    fn refuse(&self, refused: &crate::serve::Refused) -> Status {
        tracing::info!(caller = ?self.caller, reason = %refused, "SDS caller refused");
        Status::permission_denied(format!("no identity issued: {refused}"))
    }

    /// Looks at the caller once: holds its identities for this stream's responses, and
    /// returns the changes that concern them.
    pub(super) fn subscribe(&mut self) -> Result<Arc<crate::watch::Changes>, Status> {
        let subscription = self
            .identities
            .subscribe(&self.caller)
            .map_err(|refused| self.refuse(&refused))?;
        self.held = Some(Arc::new(subscription.identities));
        Ok(subscription.changes)
    }

    /// The caller's identities and the bundles now; `PermissionDenied` if the identities
    /// refuse the caller outright (an agent that cannot attest it).
    pub(super) fn current(&self) -> Result<Current, Status> {
        let svids = self
            .identities
            .x509_svids(&self.caller)
            .map_err(|refused| self.refuse(&refused))?;
        Ok(Current {
            svids: svids.into_iter().map(|i| i.svid).collect(),
            bundles: self.bundles.bundles().unwrap_or_default(),
            spiffe_validator: self.spiffe_validator,
            trust_domain: self.trust_domain.clone(),
        })
    }

    /// Every secret `names` asks for (state of the world); as SPIRE's agent does, names it
    /// holds no secret for are refused with `InvalidArgument`. No names at all means every
    /// secret: each SVID under its SPIFFE ID and each bundle under `spiffe://td`, as SPIRE
    /// answers. Nothing is copied for an unknown name beyond the few the refusal shows.
    pub(super) fn authorized(&self, names: &[String]) -> Result<Vec<Secret>, Status> {
        let current = self.current()?;
        if names.is_empty() {
            return Ok(current
                .all_names()
                .iter()
                .filter_map(|name| current.secret(name))
                .collect());
        }
        let mut secrets = Vec::with_capacity(names.len().min(8));
        let mut unknown = Unknown::default();
        for name in names {
            match current.secret(name) {
                Some(secret) => secrets.push(secret),
                None => unknown.add(name),
            }
        }
        match unknown.refusal() {
            None => Ok(secrets),
            Some(refusal) => {
                secrets.iter_mut().for_each(wipe);
                Err(refusal)
            }
        }
    }
}

impl Current {
    /// The names of every secret: each SVID under its SPIFFE ID and each bundle under
    /// `spiffe://td`.
    fn all_names(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::with_capacity(self.svids.len());
        for svid in &self.svids {
            let id = svid.id().to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.into_iter()
            .chain(
                self.bundles
                    .iter()
                    .map(|b| b.trust_domain().id().to_string()),
            )
            .collect()
    }

    /// The secret `name` stands for, if any.
    pub(super) fn secret(&self, name: &str) -> Option<Secret> {
        let svid = if name == "default" {
            self.svids.first()
        } else {
            // Only the caller's own: another workload's SPIFFE ID is an unknown name.
            self.svids.iter().find(|s| name == s.id().as_str())
        };
        if let Some(svid) = svid {
            return Some(Secret {
                name: name.to_owned(),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: Some(inline(svid.chain_pem().into_bytes())),
                    private_key: Some(inline(svid.key_pem().as_bytes().to_vec())),
                    ..Default::default()
                })),
            });
        }
        // Which bundles a validation-context name stands for.
        let chosen: BundleSet = match name {
            "ROOTCA" => {
                let td = match &self.trust_domain {
                    Some(td) => td.clone(),
                    None => self.svids.first()?.id().trust_domain(),
                };
                [self.bundles.get(&td)?.clone()].into_iter().collect()
            }
            "ALL" => Some((*self.bundles).clone()).filter(|b| !b.is_empty())?,
            _ if name.starts_with("spiffe://") => {
                let td = crate::TrustDomain::new(name).ok()?;
                [self.bundles.get(&td)?.clone()].into_iter().collect()
            }
            _ => return None,
        };
        Some(if self.spiffe_validator {
            spiffe_validation(name, &chosen)
        } else {
            let roots: Vec<_> = chosen
                .iter()
                .flat_map(|b| b.authorities().iter().cloned())
                .collect();
            validation(name, certificates_to_pem(&roots))
        })
    }
}

/// Zeroizes the private key a `Secret` carries (a `TlsCertificate`'s inline key), once
/// the secret is encoded or dropped unsent.
pub(super) fn wipe(secret: &mut Secret) {
    if let Some(secret::Type::TlsCertificate(TlsCertificate {
        private_key: Some(key),
        ..
    })) = &mut secret.r#type
    {
        match &mut key.specifier {
            Some(Specifier::InlineBytes(bytes)) => bytes.zeroize(),
            Some(Specifier::InlineString(string)) => string.zeroize(),
            _ => {}
        }
    }
}

/// A secret's encoding (an `Any`'s value); the key in `secret` is zeroized once encoded.
pub(super) fn encode(mut secret: Secret) -> Vec<u8> {
    let bytes = secret.encode_to_vec();
    wipe(&mut secret);
    bytes
}

/// The names a state-of-the-world request holds no secret for: their count and the few
/// first (in order) the refusal shows, cut short; nothing else is kept.
#[derive(Default)]
struct Unknown {
    count: usize,
    shown: BTreeSet<String>,
}

/// How many unknown names a refusal shows, and how many bytes of each.
const SHOWN: usize = 5;
const SHOWN_LEN: usize = 128;

impl Unknown {
    fn add(&mut self, name: &str) {
        self.count += 1;
        let mut cut = name.len().min(SHOWN_LEN);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let name = &name[..cut];
        if self.shown.len() < SHOWN {
            self.shown.insert(name.to_owned());
        } else if self.shown.last().is_some_and(|last| name < last.as_str()) {
            self.shown.pop_last();
            self.shown.insert(name.to_owned());
        }
    }

    /// The refusal of the unknown names, if any.
    fn refusal(self) -> Option<Status> {
        (self.count > 0).then(|| refusal(self.count, self.shown))
    }
}

/// The refusal of `count` unknown names, showing a few of them (`shown`, cut short): a
/// request may carry megabytes of names; the trailer must stay small.
fn refusal(count: usize, shown: BTreeSet<String>) -> Status {
    let shown: Vec<String> = shown.into_iter().collect();
    let more = if count > shown.len() {
        format!(" and {} more", count - shown.len())
    } else {
        String::new()
    };
    tracing::info!(unknown = ?shown, count, "SDS: refused names with no secret");
    Status::invalid_argument(format!(
        "workload is not authorized for the requested identities {shown:?}{more}"
    ))
}

/// An SDS service over example.org (with an SVID for /envoy) and other.org.
#[cfg(test)]
pub(super) fn fixture() -> Sds {
    fixture_rotating().0
}

/// [`fixture`], with a function that rotates its SVID.
#[cfg(test)]
pub(super) fn fixture_rotating() -> (Sds, impl Fn()) {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::serve::{Caller, EveryCaller};
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
    let (_, closed) = tokio::sync::watch::channel(false);
    let sds = Sds {
        identities: Arc::new(EveryCaller::new([Arc::clone(&store)])),
        bundles: Arc::new(bundles),
        closed,
        spiffe_validator: false,
        trust_domain: None,
        caller: Caller::unknown(),
        held: None,
        observer: crate::serve::Observer::default(),
    };
    let rotate = move || {
        store.publish(ca.issue(&id, Duration::from_secs(60)).unwrap());
    };
    (sds, rotate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::EveryCaller;

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
        let current = sds.current().unwrap();
        let secrets: Vec<Secret> = names.iter().filter_map(|n| current.secret(n)).collect();
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
    fn a_caller_with_no_identity_gets_no_certificate_and_rootca_only_with_a_local_trust_domain() {
        let mut sds = fixture();
        sds.identities = Arc::new(EveryCaller::new(Vec::new()));
        let current = sds.current().unwrap();
        assert!(current.secret("default").is_none());
        assert!(current.secret("spiffe://example.org/envoy").is_none());
        assert!(current.secret("ROOTCA").is_none());
        assert!(current.secret("ALL").is_some());
        sds.trust_domain = Some(crate::TrustDomain::new("example.org").unwrap());
        let current = sds.current().unwrap();
        assert!(current.secret("default").is_none());
        let Some(secret::Type::ValidationContext(root)) = current.secret("ROOTCA").unwrap().r#type
        else {
            panic!("ROOTCA is not a validation context");
        };
        assert!(root.trusted_ca.is_some());
    }

    #[test]
    fn a_refusal_names_a_few_names_cut_short() {
        let refuse = |names: &[String]| {
            let mut unknown = Unknown::default();
            for name in names {
                unknown.add(name);
            }
            unknown.refusal().unwrap()
        };
        let mut unknown: Vec<String> = (0..7).rev().map(|i| format!("name-{i}")).collect();
        unknown.push("nonsense".repeat(100));
        let refused = refuse(&unknown);
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        let message = refused.message();
        assert!(message.starts_with("workload is not authorized for the requested identities"));
        assert!(message.ends_with(" and 3 more"), "{message}");
        assert!(message.contains("\"name-0\"") && message.contains("\"name-4\""));
        assert!(!message.contains("name-5") && !message.contains("nonsense"));
        // A long name is cut at a character boundary.
        let refused = refuse(&["é".repeat(100)]);
        assert!(refused.message().contains(&"é".repeat(64)));
        assert!(!refused.message().contains(&"é".repeat(65)));
        assert!(Unknown::default().refusal().is_none());
    }

    #[test]
    fn a_built_secret_s_key_is_zeroized_once_encoded() {
        let sds = fixture();
        let mut secret = sds.current().unwrap().secret("default").unwrap();
        let key = |s: &Secret| match &s.r#type {
            Some(secret::Type::TlsCertificate(TlsCertificate {
                private_key:
                    Some(DataSource {
                        specifier: Some(Specifier::InlineBytes(b)),
                        ..
                    }),
                ..
            })) => b.clone(),
            _ => panic!("no inline key"),
        };
        let pem = key(&secret);
        assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        let encoded = secret.encode_to_vec();
        assert!(encoded.windows(pem.len()).any(|w| w == pem.as_slice()));
        wipe(&mut secret);
        assert!(key(&secret).is_empty(), "the key is still there");
    }
}
