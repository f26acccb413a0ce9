//! An Envoy SDS v3 server (feature `sds`): Envoy sidecars and gateways get their SVID and
//! trust bundles over the Secret Discovery Service, pushed again on every rotation.
//!
//! Secret names, as SPIRE's agent answers them:
//!
//! | name | secret |
//! | --- | --- |
//! | `default`, or the SVID's SPIFFE ID | `tls_certificate`: the chain and key |
//! | `ROOTCA` | `validation_context`: the bundle of the SVID's trust domain |
//! | `ALL` | `validation_context`: every bundle |
//! | `spiffe://td` | `validation_context`: the bundle of trust domain `td` |
//!
//! As SPIRE's agent does, a request with no names gets every secret (each SVID under its
//! SPIFFE ID, each bundle under `spiffe://td`), and a state-of-the-world request naming a
//! secret the server does not hold is refused with `InvalidArgument` ("workload is not
//! authorized for the requested identities"); incremental streams simply do not send
//! absent names. With [`SdsServer::spiffe_validator`], `ROOTCA` and `spiffe://td` carry
//! that one trust domain and `ALL` every trust domain, as Envoy's SPIFFE validator. Both protocols are served: state of the world (`StreamSecrets`,
//! `FetchSecrets`) and incremental (`DeltaSecrets`: per-secret versions, only changed
//! secrets pushed), which neither SPIRE nor Istio offers.
//!
//! The server is fed by any [`Feed`]: an [`SvidStore`] kept fresh by a
//! [`Rotator`](crate::Rotator), or the Workload API's [`X509Source`], so meshid can bridge
//! SPIRE to Envoy.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, spiffe_cert_validator_config, CertificateValidationContext, Secret,
    SpiffeCertValidatorConfig, TlsCertificate,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

mod delta;
#[doc(hidden)]
pub mod fuzzing;
mod server;

pub use server::SdsServer;

use crate::workload::X509Source;
use crate::{certificates_to_pem, BundleSet, SvidSource, SvidStore, X509Svid};

/// The type URL of an SDS `Secret`.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// A version that never occurs: the server is closing, streams end.
const CLOSING: u64 = u64::MAX;

/// Where an [`SdsServer`] gets the SVID and bundles it serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Feed {
    /// A local store (kept fresh by a `Rotator`) and a fixed bundle set.
    Store(Arc<SvidStore>, BundleSet),
    /// A live Workload API source (for example SPIRE's agent).
    Source(Arc<X509Source>),
}

impl Feed {
    fn svid(&self) -> Option<Arc<X509Svid>> {
        match self {
            Self::Store(store, _) => store.x509_svid(),
            Self::Source(source) => source.x509_svid(),
        }
    }

    fn bundles(&self) -> BundleSet {
        match self {
            Self::Store(_, bundles) => bundles.clone(),
            Self::Source(source) => source.bundles().map(|b| (*b).clone()).unwrap_or_default(),
        }
    }

    /// Bumps `version` on every change of the feed, until aborted.
    async fn follow(self, version: watch::Sender<u64>) {
        let bump = || {
            version.send_if_modified(|v| {
                if *v == CLOSING {
                    return false;
                }
                *v += 1;
                true
            })
        };
        match self {
            Self::Store(store, _) => {
                let mut seen = store.generation();
                loop {
                    seen = store.changed(seen).await;
                    bump();
                }
            }
            Self::Source(source) => {
                let mut updates = source.updated();
                while updates.changed().await.is_ok() {
                    bump();
                }
            }
        }
    }
}

struct Sds {
    feed: Feed,
    version: watch::Sender<u64>,
    spiffe_validator: bool,
}

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

/// The type URL of Envoy's SPIFFE certificate validator configuration.
const SPIFFE_VALIDATOR_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig";

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
    fn lookup(&self, names: &[String]) -> (Vec<Secret>, Vec<String>) {
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
    fn secrets(&self, names: &[String]) -> Vec<Secret> {
        self.lookup(names).0
    }

    /// A state-of-the-world answer for `names`; as SPIRE's agent does, names it holds no
    /// secret for are refused with `InvalidArgument`.
    fn response(
        &self,
        names: &[String],
        version: u64,
        nonce: u64,
    ) -> Result<DiscoveryResponse, Status> {
        let (secrets, mut unknown) = self.lookup(names);
        if !unknown.is_empty() {
            unknown.sort();
            // Bounded: a request may carry megabytes of names; the trailer must stay small.
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
            return Err(Status::invalid_argument(format!(
                "workload is not authorized for the requested identities {unknown:?}{more}"
            )));
        }
        Ok(DiscoveryResponse {
            version_info: version.to_string(),
            resources: secrets
                .into_iter()
                .map(|s| Any {
                    type_url: SECRET_TYPE_URL.to_owned(),
                    value: s.encode_to_vec(),
                })
                .collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            nonce: nonce.to_string(),
            ..Default::default()
        })
    }
}

type Pushes<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type DeltaSecretsStream = Pushes<DeltaDiscoveryResponse>;
    type StreamSecretsStream = Pushes<DiscoveryResponse>;

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let sds = Sds {
            feed: self.feed.clone(),
            version: self.version.clone(),
            spiffe_validator: self.spiffe_validator,
        };
        let mut changes = self.version.subscribe();
        tokio::spawn(async move {
            let mut stream = delta::DeltaState::default();
            loop {
                tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(request)) => {
                            stream.on_request(request);
                        }
                        Ok(None) | Err(_) => break,
                    },
                    moved = changes.changed() => {
                        if moved.is_err() {
                            break;
                        }
                    }
                };
                let version = *changes.borrow_and_update();
                if version == CLOSING {
                    break;
                }
                // Always bring the stream up to date (`update` sends only what changed for
                // it): a request arriving with a version bump must not swallow the push.
                if let Some(response) = stream.update(&sds, version) {
                    if tx.send(Ok(response)).await.is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let request = request.into_inner();
        let version = *self.version.borrow();
        if version == CLOSING {
            return Err(Status::unavailable("the SDS server is shutting down"));
        }
        self.response(&request.resource_names, version, 0)
            .map(Response::new)
    }

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let sds = Sds {
            feed: self.feed.clone(),
            version: self.version.clone(),
            spiffe_validator: self.spiffe_validator,
        };
        let mut changes = self.version.subscribe();
        tokio::spawn(async move {
            let mut stream = StreamState::default();
            loop {
                let push = tokio::select! {
                    message = incoming.message() => match message {
                        Ok(Some(request)) => stream.on_request(request),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(%status, "SDS stream ended by the client");
                            break;
                        }
                    },
                    moved = changes.changed() => {
                        if moved.is_err() || *changes.borrow() == CLOSING {
                            break;
                        }
                        stream.subscribed
                    }
                };
                let version = *changes.borrow_and_update();
                if version == CLOSING {
                    break;
                }
                let Some(response) = stream.update(&sds, push, version) else {
                    continue;
                };
                let refused = response.is_err();
                if tx.send(response).await.is_err() || refused {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What one StreamSecrets stream has asked for and been sent.
#[derive(Default)]
struct StreamState {
    names: Vec<String>,
    subscribed: bool,
    names_changed: bool,
    nonce: u64,
    sent: Option<u64>,
    nacked: Option<u64>,
}

impl StreamState {
    /// The response to send for `version` after an event (`push`: the event may call for
    /// one), if any: for the same names, never the version this stream rejected and never
    /// the same version twice; new names are always answered.
    fn update(
        &mut self,
        sds: &Sds,
        push: bool,
        version: u64,
    ) -> Option<Result<DiscoveryResponse, Status>> {
        // A subscribed stream is always brought up to the current version: an ACK that
        // arrives together with a version bump must not swallow the push (the watch
        // channel has marked the bump as seen by then).
        let push = push || self.subscribed;
        if !push
            || (!self.names_changed && (self.nacked == Some(version) || self.sent == Some(version)))
        {
            return None;
        }
        if self.names_changed {
            self.nacked = None;
        }
        self.nonce += 1;
        self.sent = Some(version);
        self.names_changed = false;
        Some(sds.response(&self.names, version, self.nonce))
    }

    /// Handles a request; whether to push now.
    fn on_request(&mut self, request: DiscoveryRequest) -> bool {
        if !request.type_url.is_empty() && request.type_url != SECRET_TYPE_URL {
            tracing::warn!(type_url = %request.type_url, "SDS: request for another type ignored");
            return false;
        }
        let answers_last =
            !request.response_nonce.is_empty() && request.response_nonce == self.nonce.to_string();
        if let Some(error) = &request.error_detail {
            if answers_last {
                tracing::warn!(version = ?self.sent, code = error.code, message = %error.message, "Envoy rejected the secrets (NACK); not resending until they change");
                self.nacked = self.sent;
            }
        } else if answers_last {
            tracing::debug!(version = %request.version_info, "SDS ACK");
        }
        let mut names = request.resource_names;
        names.sort();
        names.dedup();
        let first = !self.subscribed;
        self.subscribed = true;
        if names != self.names {
            self.names = names;
            self.names_changed = true;
            return true;
        }
        // A stale request (answering an older nonce) or an ACK/NACK: nothing new to send,
        // except on the very first request.
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use std::time::Duration;

    fn request(names: &[&str], nonce: &str, version: &str, nack: bool) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: version.to_owned(),
            resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            response_nonce: nonce.to_owned(),
            error_detail: nack.then(|| RpcStatus {
                code: 3,
                message: "bad secret".into(),
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_request_and_new_names_push_acks_and_nacks_do_not() {
        let mut s = StreamState::default();
        assert!(
            s.on_request(request(&["default"], "", "", false)),
            "first request"
        );
        // We "sent" version 1 with nonce 1.
        s.nonce = 1;
        s.sent = Some(1);
        assert!(
            !s.on_request(request(&["default"], "1", "1", false)),
            "an ACK"
        );
        assert!(s.nacked.is_none());
        assert!(
            !s.on_request(request(&["default"], "1", "0", true)),
            "a NACK"
        );
        assert_eq!(s.nacked, Some(1), "version 1 is not resent");
        // A NACK of an older nonce is stale: ignored.
        s.nacked = None;
        assert!(!s.on_request(request(&["default"], "0", "0", true)));
        assert!(s.nacked.is_none());
        // New names (in any order, duplicates ignored) push at once.
        assert!(s.on_request(request(&["ROOTCA", "default", "ROOTCA"], "1", "1", false)));
        assert_eq!(s.names, ["ROOTCA", "default"]);
        // Another type is ignored.
        let mut other = request(&["x"], "", "", false);
        other.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
        assert!(!s.on_request(other));
    }

    /// An SDS service over example.org (with an SVID for /envoy) and other.org.
    fn fixture() -> Sds {
        use crate::{Authority, KeyType, SpiffeId, TrustDomain, X509Bundle};
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
        let (version, _) = watch::channel(0);
        Sds {
            feed: Feed::Store(store, bundles),
            version,
            spiffe_validator: false,
        }
    }

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
        let refused = sds.response(&names, 7, 3).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("spiffe://nowhere.org"));
        let known = &names[..5];
        let response = sds.response(known, 7, 3).unwrap();
        assert_eq!(response.resources.len(), 5);
        // No names: every secret (the SVID under its ID, each bundle under spiffe://td).
        let all = sds.response(&[], 7, 4).unwrap();
        assert_eq!(all.resources.len(), 3);
        assert_eq!(
            (response.version_info.as_str(), response.nonce.as_str()),
            ("7", "3")
        );
        assert!(response
            .resources
            .iter()
            .all(|a| a.type_url == SECRET_TYPE_URL));
    }

    #[test]
    fn nacks_new_names_and_acks_racing_a_bump() {
        let sds = fixture();
        // A NACKed version is not resent for the same names, but new names are answered
        // at once (Envoy must not wait a rotation for a secret it just asked for).
        let mut stream = StreamState::default();
        let first = ["default".to_owned()];
        assert!(stream.on_request(request(&["default"], "", "", false)));
        let pushed = stream.update(&sds, true, 1).unwrap().unwrap();
        assert_eq!(pushed.resources.len(), first.len());
        assert!(!stream.on_request(request(&["default"], "1", "0", true)));
        assert!(
            stream.update(&sds, true, 1).is_none(),
            "rejected version resent"
        );
        assert!(stream.on_request(request(&["default", "ROOTCA"], "1", "0", false)));
        let pushed = stream
            .update(&sds, true, 1)
            .expect("new names answered")
            .unwrap();
        assert_eq!(pushed.resources.len(), 2);
        // An ACK arriving together with a version bump still brings the stream up to date.
        let mut acked = StreamState::default();
        assert!(acked.on_request(request(&["default"], "", "", false)));
        let first = acked.update(&sds, true, 1).unwrap().unwrap();
        assert!(!acked.on_request(request(&["default"], &first.nonce, "1", false)));
        let pushed = acked
            .update(&sds, false, 2)
            .expect("bump not swallowed")
            .unwrap();
        assert_eq!(pushed.version_info, "2");
        assert!(acked.update(&sds, false, 2).is_none(), "sent once");
    }
}
