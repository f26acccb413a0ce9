//! Incremental SDS (`DeltaSecrets`): each stream subscribes to names; only secrets whose
//! content changed since they were last sent to that stream are pushed, each with its own
//! version (a hash of its content).
//!
//! What a stream holds is bounded (see [`check_name`] and [`check_total`]): each name is
//! kept once, with the version the client holds of it, and a request costs work in
//! proportion to itself: a request looks up only the names it subscribes to, and only a
//! new version of the feed (a rotation) looks up every subscribed name again.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;
use tonic::Status;
use zeroize::Zeroizing;

use crate::sds::secrets;
use crate::sds::service::Sds;
use crate::sds::stream::{check_name, check_total, other_type, Ack, Protocol};
use crate::sds::SECRET_TYPE_URL;

/// The version the client holds of a subscribed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// None.
    Nothing,
    /// One we sent (or the client announced, in our format).
    Version(u64),
    /// One the client announced that is not in our format: it never matches ours.
    Other,
}

impl Held {
    /// A version announced in `initial_resource_versions` (ours are 16 hex digits).
    fn announced(version: &str) -> Self {
        let ours = version.len() == 16
            && version
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match u64::from_str_radix(version, 16) {
            Ok(v) if ours => Self::Version(v),
            _ => Self::Other,
        }
    }
}

/// What one DeltaSecrets stream has subscribed to and been sent.
#[derive(Default)]
pub(super) struct DeltaState {
    /// Each subscribed name, and the version of it the stream holds (sent by us, or
    /// announced by the client in `initial_resource_versions`).
    subscribed: BTreeMap<String, Held>,
    /// The bytes of the names in `subscribed`.
    bytes: usize,
    /// How many subscribed names hold a version.
    holding: usize,
    /// Names subscribed since the last response was computed: only they are looked up
    /// until the feed's version moves.
    fresh: Vec<String>,
    /// The feed version every subscribed name was last looked up at.
    looked_up: Option<u64>,
    nonce: u64,
    /// The last nonce the client answered (see the state-of-the-world stream's).
    answered: u64,
    /// How many names this stream has looked up (tests count the work of a request).
    #[cfg(test)]
    lookups: usize,
}

fn version_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn version_text(version: u64) -> String {
    format!("{version:016x}")
}

impl DeltaState {
    /// Records what the stream holds of `name` (subscribed).
    fn hold(&mut self, name: &str, held: Held) {
        if let Some(entry) = self.subscribed.get_mut(name) {
            match (*entry == Held::Nothing, held == Held::Nothing) {
                (true, false) => self.holding += 1,
                (false, true) => self.holding -= 1,
                _ => {}
            }
            *entry = held;
        }
    }
}

impl Protocol for DeltaState {
    const NAME: &'static str = "delta SDS";
    const KIND: crate::serve::StreamKind = crate::serve::StreamKind::SdsDelta;
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    /// Takes a request; whether something may need pushing now (`update` decides). Names
    /// over the bounds are refused, and end the stream.
    fn on_request(&mut self, request: Self::Request) -> Result<(bool, Ack), Status> {
        if other_type(Self::NAME, &request.type_url) {
            return Ok((false, Ack::Unrelated));
        }
        // On a NACK, the rejected versions stay held, so they are not resent: only a
        // change of content sends a secret again.
        let answer = Ack::of(
            Self::NAME,
            (self.nonce, &mut self.answered),
            None,
            &request.response_nonce,
            request.error_detail.as_ref(),
        );
        let announce = request.response_nonce.is_empty() && self.nonce == 0 && self.holding == 0;
        let fresh = self.fresh.len();
        for name in request.resource_names_subscribe {
            check_name(Self::NAME, &name)?;
            if self.subscribed.contains_key(&name) {
                continue;
            }
            check_total(
                Self::NAME,
                self.subscribed.len() + 1,
                self.bytes + name.len(),
            )?;
            self.bytes += name.len();
            self.fresh.push(name.clone());
            self.subscribed.insert(name, Held::Nothing);
        }
        for name in &request.resource_names_unsubscribe {
            if let Some(held) = self.subscribed.remove(name) {
                self.bytes -= name.len();
                self.holding -= usize::from(held != Held::Nothing);
            }
        }
        if announce {
            // A new (or re-established) stream says, once, what it already holds; only
            // what it subscribes to is kept.
            for (name, version) in &request.initial_resource_versions {
                self.hold(name, Held::announced(version));
            }
        }
        Ok((self.fresh.len() > fresh, answer))
    }

    /// The response bringing this stream up to date, if anything is new for it, whatever
    /// the event (`push` is not needed: only what changed for the stream is sent). Never
    /// a refusal: absent names are just absent. At a version already looked up, only the
    /// names subscribed since are looked up.
    fn update(
        &mut self,
        sds: &Sds,
        _push: bool,
        version: u64,
    ) -> Option<Result<Self::Response, Status>> {
        let fresh = std::mem::take(&mut self.fresh);
        let names: Vec<&str> = if self.looked_up == Some(version) {
            // Only names still subscribed (one may have come and gone in one request).
            fresh
                .iter()
                .map(String::as_str)
                .filter(|n| self.subscribed.contains_key(*n))
                .collect()
        } else {
            self.subscribed.keys().map(String::as_str).collect()
        };
        self.looked_up = Some(version);
        if names.is_empty() {
            return None;
        }
        let current = match sds.current() {
            Ok(current) => current,
            Err(refused) => return Some(Err(refused)),
        };
        let mut resources = Vec::new();
        let mut removed = Vec::new();
        let mut changes = Vec::new();
        #[cfg(test)]
        {
            self.lookups += names.len();
        }
        for name in names {
            let held = self.subscribed.get(name).copied().unwrap_or(Held::Nothing);
            match current.secret(name) {
                Some(secret) => {
                    // Dropped zeroized unless sent.
                    let mut bytes = Zeroizing::new(secrets::encode(secret));
                    let v = version_of(&bytes);
                    if held != Held::Version(v) {
                        resources.push(Resource {
                            name: name.to_owned(),
                            version: version_text(v),
                            resource: Some(Any {
                                type_url: SECRET_TYPE_URL.to_owned(),
                                value: std::mem::take(&mut *bytes),
                            }),
                            ..Default::default()
                        });
                        changes.push((name.to_owned(), Held::Version(v)));
                    }
                }
                // A secret this stream holds that no longer exists (e.g. a trust domain's
                // bundle was removed) is announced as removed.
                None if held != Held::Nothing => {
                    removed.push(name.to_owned());
                    changes.push((name.to_owned(), Held::Nothing));
                }
                None => {}
            }
        }
        drop(fresh);
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        for (name, held) in changes {
            self.hold(&name, held);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sds::secrets::fixture;
    use crate::sds::stream::{MAX_NAMES, MAX_NAME_BYTES, MAX_NAME_LEN};

    fn subscribe(names: impl IntoIterator<Item = String>, nonce: u64) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            resource_names_subscribe: names.into_iter().collect(),
            type_url: SECRET_TYPE_URL.to_owned(),
            response_nonce: if nonce == 0 {
                String::new()
            } else {
                nonce.to_string()
            },
            ..Default::default()
        }
    }

    #[test]
    fn names_over_the_bounds_are_refused_typed() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let refused = DeltaState::default()
            .on_request(subscribe([long], 0))
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("2048-byte maximum"));
        // Exactly at the bounds is fine; one more name, or one more byte, is not.
        let mut stream = DeltaState::default();
        let names = (0..MAX_NAMES).map(|i| format!("{i:04}"));
        assert!(stream.on_request(subscribe(names, 0)).unwrap().0);
        let refused = stream
            .on_request(subscribe(["one more".into()], 0))
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        let mut stream = DeltaState::default();
        let per = MAX_NAME_BYTES / 32;
        assert_eq!(per, MAX_NAME_LEN);
        let names = (0..32).map(|i| format!("{i:02}{}", "x".repeat(per - 2)));
        assert!(stream.on_request(subscribe(names, 0)).unwrap().0);
        assert_eq!(stream.bytes, MAX_NAME_BYTES);
        // Subscribing again to what is held costs nothing; a new byte is refused.
        let again = subscribe([format!("00{}", "x".repeat(per - 2))], 0);
        assert!(!stream.on_request(again).unwrap().0);
        let refused = stream.on_request(subscribe(["y".into()], 0)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // Unsubscribing frees the room.
        let mut stream = DeltaState::default();
        assert!(
            stream
                .on_request(subscribe(["a".repeat(100)], 0))
                .unwrap()
                .0
        );
        let leave = DeltaDiscoveryRequest {
            resource_names_unsubscribe: vec!["a".repeat(100)],
            ..Default::default()
        };
        assert!(!stream.on_request(leave).unwrap().0);
        assert_eq!((stream.bytes, stream.subscribed.len()), (0, 0));
    }

    #[test]
    fn a_request_looks_up_only_its_own_names_a_new_version_every_name() {
        let sds = fixture();
        let mut stream = DeltaState::default();
        let mut names: Vec<String> = (0..1000).map(|i| format!("unknown-{i}")).collect();
        names.push("default".into());
        assert!(stream.on_request(subscribe(names, 0)).unwrap().0);
        let first = stream.update(&sds, true, 1).unwrap().unwrap();
        assert_eq!(first.resources.len(), 1);
        assert_eq!(stream.lookups, 1001);
        // An ACK: nothing looked up, nothing sent.
        assert!(!stream.on_request(subscribe([], 1)).unwrap().0);
        assert!(stream.update(&sds, false, 1).is_none());
        assert_eq!(stream.lookups, 1001);
        // Two new names: two lookups; only the one that exists is sent.
        let two = ["ROOTCA".to_owned(), "unknown-x".to_owned()];
        assert!(stream.on_request(subscribe(two, 1)).unwrap().0);
        let pushed = stream.update(&sds, true, 1).unwrap().unwrap();
        assert_eq!(pushed.resources.len(), 1);
        assert_eq!(pushed.resources[0].name, "ROOTCA");
        assert_eq!(stream.lookups, 1003);
        // A new version of the feed: every name once; nothing changed, nothing sent.
        assert!(stream.update(&sds, false, 2).is_none());
        assert_eq!(stream.lookups, 1003 + 1003);
    }

    #[test]
    fn announced_versions_are_held_and_only_ours_match() {
        let sds = fixture();
        let mut first = DeltaState::default();
        assert!(
            first
                .on_request(subscribe(["default".into()], 0))
                .unwrap()
                .0
        );
        let sent = first.update(&sds, true, 1).unwrap().unwrap();
        let version = sent.resources[0].version.clone();
        // A re-established stream announcing that version is not sent it again; one
        // announcing another (or an unparsable) version is.
        for (announced, resent) in [
            (version.clone(), false),
            (version.to_uppercase(), true),
            ("junk".repeat(100), true),
        ] {
            let mut stream = DeltaState::default();
            let mut request = subscribe(["default".into(), "ROOTCA".into()], 0);
            request.initial_resource_versions = [
                ("default".to_owned(), announced),
                ("unsubscribed".to_owned(), "v".to_owned()),
            ]
            .into_iter()
            .collect();
            assert!(stream.on_request(request).unwrap().0);
            let pushed = stream.update(&sds, true, 1).unwrap().unwrap();
            let names: Vec<&str> = pushed.resources.iter().map(|r| r.name.as_str()).collect();
            if resent {
                assert_eq!(names, ["ROOTCA", "default"]);
            } else {
                assert_eq!(names, ["ROOTCA"]);
            }
            assert_eq!(stream.subscribed.len(), 2);
        }
    }
}
