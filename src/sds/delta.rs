//! Incremental SDS (`DeltaSecrets`): each stream subscribes to names; only secrets whose
//! content changed since they were last sent to that stream are pushed, each with its own
//! version (a hash of its content).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message as _;
use tonic::Status;

use crate::sds::service::Sds;
use crate::sds::stream::{other_type, Ack, Protocol};
use crate::sds::SECRET_TYPE_URL;

/// The most secret names one delta stream may subscribe to (Envoy needs a handful).
const MAX_NAMES: usize = 1024;

/// What one DeltaSecrets stream has subscribed to and been sent.
#[derive(Default)]
pub(super) struct DeltaState {
    subscribed: BTreeSet<String>,
    /// The version of each resource this stream holds (sent by us, or announced by the
    /// client in `initial_resource_versions`).
    held: BTreeMap<String, String>,
    nonce: u64,
}

fn version_of(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Protocol for DeltaState {
    const NAME: &'static str = "delta SDS";
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    /// Takes a request; whether something may need pushing now (`update` decides).
    fn on_request(&mut self, request: Self::Request) -> bool {
        if other_type(Self::NAME, &request.type_url) {
            return false;
        }
        // On a NACK, `held` keeps the rejected versions, so they are not resent: only a
        // change of content sends a secret again.
        Ack::of(
            Self::NAME,
            self.nonce,
            None,
            &request.response_nonce,
            request.error_detail.as_ref(),
        );
        if request.response_nonce.is_empty() && self.nonce == 0 && self.held.is_empty() {
            // A new (or re-established) stream says, once, what it already holds.
            self.held.extend(request.initial_resource_versions);
        }
        let mut changed = false;
        for name in request.resource_names_subscribe {
            if self.subscribed.len() >= MAX_NAMES && !self.subscribed.contains(&name) {
                tracing::warn!(
                    "delta SDS: more than {MAX_NAMES} names subscribed; ignoring the rest"
                );
                break;
            }
            changed |= self.subscribed.insert(name);
        }
        for name in request.resource_names_unsubscribe {
            self.subscribed.remove(&name);
        }
        // Hold versions only for what is subscribed.
        let subscribed = &self.subscribed;
        self.held.retain(|name, _| subscribed.contains(name));
        changed
    }

    /// The response bringing this stream up to date, if anything is new for it, whatever
    /// the event (`push` is not needed: only what changed for the stream is sent). Never
    /// a refusal: absent names are just absent.
    fn update(
        &mut self,
        sds: &Sds,
        _push: bool,
        version: u64,
    ) -> Option<Result<Self::Response, Status>> {
        let names: Vec<String> = self.subscribed.iter().cloned().collect();
        let mut current = BTreeMap::new();
        // No subscription means nothing here (no wildcard for secrets).
        let secrets = if names.is_empty() {
            Vec::new()
        } else {
            sds.secrets(&names)
        };
        for secret in secrets {
            let bytes = secret.encode_to_vec();
            current.insert(secret.name.clone(), (version_of(&bytes), bytes));
        }
        let mut resources = Vec::new();
        for (name, (v, bytes)) in &current {
            if self.held.get(name) != Some(v) {
                resources.push(Resource {
                    name: name.clone(),
                    version: v.clone(),
                    resource: Some(Any {
                        type_url: SECRET_TYPE_URL.to_owned(),
                        value: bytes.clone(),
                    }),
                    ..Default::default()
                });
            }
        }
        // Secrets this stream holds that no longer exist (e.g. a trust domain's bundle
        // was removed) are announced as removed.
        let removed: Vec<String> = self
            .held
            .keys()
            .filter(|n| self.subscribed.contains(*n) && !current.contains_key(*n))
            .cloned()
            .collect();
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        for r in &resources {
            self.held.insert(r.name.clone(), r.version.clone());
        }
        for n in &removed {
            self.held.remove(n);
        }
        self.nonce += 1;
        Some(Ok(DeltaDiscoveryResponse {
            system_version_info: version.to_string(),
            resources,
            type_url: SECRET_TYPE_URL.to_owned(),
            removed_resources: removed,
            nonce: self.nonce.to_string(),
            ..Default::default()
        }))
    }
}
