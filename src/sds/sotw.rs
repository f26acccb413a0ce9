//! State-of-the-world SDS (`StreamSecrets`, `FetchSecrets`): each response carries every
//! secret the stream names, at one version for all; [`StreamState`] is what one stream
//! has asked for and been sent, [`response`] the answer for a set of names.

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use tonic::Status;

use crate::sds::secrets;
use crate::sds::service::{Sds, Wipe as _};
use crate::sds::stream::{check_request, other_type, Ack, Protocol};
use crate::sds::SECRET_TYPE_URL;

/// A state-of-the-world answer for `names` (within the bounds on names: see
/// [`check_request`]); as SPIRE's agent does, names it holds no secret for are refused
/// with `InvalidArgument`.
pub(super) fn response(
    sds: &Sds,
    names: &[String],
    version: u64,
    nonce: u64,
) -> Result<DiscoveryResponse, Status> {
    let secrets = sds.authorized(names)?;
    Ok(DiscoveryResponse {
        version_info: version.to_string(),
        resources: secrets
            .into_iter()
            .map(|s| Any {
                type_url: SECRET_TYPE_URL.to_owned(),
                value: secrets::encode(s),
            })
            .collect(),
        type_url: SECRET_TYPE_URL.to_owned(),
        nonce: nonce.to_string(),
        ..Default::default()
    })
}

/// What one StreamSecrets stream has asked for and been sent.
#[derive(Default)]
pub(super) struct StreamState {
    names: Vec<String>,
    subscribed: bool,
    names_changed: bool,
    nonce: u64,
    /// The last nonce the client answered (an ACK or a NACK): a later request carrying it
    /// again (names changed) is no new answer.
    answered: u64,
    sent: Option<u64>,
    nacked: Option<u64>,
    /// A digest of the secrets last sent, and of those last rejected: a new version with
    /// the same secrets for this stream (another caller's identity rotated) is not sent.
    sent_digest: Option<u64>,
    nacked_digest: Option<u64>,
}

/// A digest of a response's secrets (not a security boundary: it only spares a resend).
fn digest(response: &DiscoveryResponse) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for any in &response.resources {
        any.value.hash(&mut h);
    }
    h.finish()
}

impl StreamState {
    /// The names this stream asks for (sorted, without duplicates).
    pub(super) fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether this stream has sent a request for secrets yet.
    pub(super) fn subscribed(&self) -> bool {
        self.subscribed
    }
}

impl Protocol for StreamState {
    const NAME: &'static str = "SDS";
    const KIND: crate::serve::StreamKind = crate::serve::StreamKind::Sds;
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    /// Handles a request; whether to push now. The work is bounded by the request (its
    /// names are checked, sorted and compared with the stream's), not by the stream.
    fn on_request(&mut self, request: Self::Request) -> Result<(bool, Ack), Status> {
        if other_type(Self::NAME, &request.type_url) {
            return Ok((false, Ack::Unrelated));
        }
        let answer = Ack::of(
            Self::NAME,
            (self.nonce, &mut self.answered),
            self.sent,
            &request.response_nonce,
            request.error_detail.as_ref(),
        );
        if answer == Ack::Rejected {
            self.nacked = self.sent;
            self.nacked_digest = self.sent_digest;
        }
        check_request(Self::NAME, &request.resource_names)?;
        let mut names = request.resource_names;
        names.sort_unstable();
        names.dedup();
        let first = !self.subscribed;
        self.subscribed = true;
        if names != self.names {
            self.names = names;
            self.names_changed = true;
            return Ok((true, answer));
        }
        // A stale request (answering an older nonce) or an ACK/NACK: nothing new to send,
        // except on the very first request.
        Ok((first, answer))
    }

    /// The response to send for `version` after an event (`push`: the event may call for
    /// one), if any: for the same names, never the version this stream rejected and never
    /// the same version twice; new names are always answered.
    fn update(
        &mut self,
        sds: &Sds,
        push: bool,
        version: u64,
    ) -> Option<Result<Self::Response, Status>> {
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
            self.nacked_digest = None;
        }
        let answer = response(sds, &self.names, version, self.nonce + 1);
        if let Ok(mut unchanged) = answer {
            let digest = digest(&unchanged);
            if !self.names_changed
                && (self.sent_digest == Some(digest) || self.nacked_digest == Some(digest))
            {
                // Nothing new for this stream at this version.
                self.sent = Some(version);
                unchanged.wipe();
                return None;
            }
            self.sent_digest = Some(digest);
            self.nonce += 1;
            self.sent = Some(version);
            self.names_changed = false;
            return Some(Ok(unchanged));
        }
        self.nonce += 1;
        self.sent = Some(version);
        self.names_changed = false;
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sds::secrets::fixture;
    use envoy_types::pb::google::rpc::Status as RpcStatus;

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
            s.on_request(request(&["default"], "", "", false))
                .unwrap()
                .0,
            "first request"
        );
        // We "sent" version 1 with nonce 1.
        s.nonce = 1;
        s.sent = Some(1);
        assert!(
            !s.on_request(request(&["default"], "1", "1", false))
                .unwrap()
                .0,
            "an ACK"
        );
        assert!(s.nacked.is_none());
        // The same nonce again is no new answer (each response is answered once).
        let again = s.on_request(request(&["default"], "1", "1", true)).unwrap();
        assert_eq!(again, (false, Ack::Unrelated));
        assert!(s.nacked.is_none());
        // We "sent" version 2 with nonce 2, and it is NACKed.
        s.nonce = 2;
        s.sent = Some(2);
        assert!(
            !s.on_request(request(&["default"], "2", "1", true))
                .unwrap()
                .0,
            "a NACK"
        );
        assert_eq!(s.nacked, Some(2), "version 2 is not resent");
        // A NACK of an older nonce is stale: ignored.
        s.nacked = None;
        assert!(
            !s.on_request(request(&["default"], "0", "0", true))
                .unwrap()
                .0
        );
        assert!(s.nacked.is_none());
        // New names (in any order, duplicates ignored) push at once.
        assert!(
            s.on_request(request(&["ROOTCA", "default", "ROOTCA"], "2", "1", false))
                .unwrap()
                .0
        );
        assert_eq!(s.names, ["ROOTCA", "default"]);
        // Another type is ignored.
        let mut other = request(&["x"], "", "", false);
        other.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
        assert!(!s.on_request(other).unwrap().0);
    }

    #[test]
    fn a_response_carries_its_version_nonce_and_typed_secrets_or_the_refusal() {
        let sds = fixture();
        let names: Vec<String> = ["default", "ROOTCA", "ALL", "spiffe://other.org"]
            .iter()
            .map(|n| (*n).to_owned())
            .collect();
        let answer = response(&sds, &names, 7, 3).unwrap();
        assert_eq!(answer.resources.len(), 4);
        assert_eq!(
            (answer.version_info.as_str(), answer.nonce.as_str()),
            ("7", "3")
        );
        assert_eq!(answer.type_url, SECRET_TYPE_URL);
        assert!(answer
            .resources
            .iter()
            .all(|a| a.type_url == SECRET_TYPE_URL));
        // No names: every secret.
        assert_eq!(response(&sds, &[], 7, 4).unwrap().resources.len(), 3);
        let refused = response(&sds, &["nonsense".to_owned()], 7, 5).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn nacks_new_names_and_acks_racing_a_bump() {
        let (sds, rotate) = crate::sds::secrets::fixture_rotating();
        // A NACKed version is not resent for the same names, but new names are answered
        // at once (Envoy must not wait a rotation for a secret it just asked for).
        let mut stream = StreamState::default();
        let first = ["default".to_owned()];
        assert!(
            stream
                .on_request(request(&["default"], "", "", false))
                .unwrap()
                .0
        );
        let pushed = stream.update(&sds, true, 1).unwrap().unwrap();
        assert_eq!(pushed.resources.len(), first.len());
        assert!(
            !stream
                .on_request(request(&["default"], "1", "0", true))
                .unwrap()
                .0
        );
        assert!(
            stream.update(&sds, true, 1).is_none(),
            "rejected version resent"
        );
        assert!(
            stream
                .on_request(request(&["default", "ROOTCA"], "1", "0", false))
                .unwrap()
                .0
        );
        let pushed = stream
            .update(&sds, true, 1)
            .expect("new names answered")
            .unwrap();
        assert_eq!(pushed.resources.len(), 2);
        // An ACK arriving together with a version bump still brings the stream up to date.
        let mut acked = StreamState::default();
        assert!(
            acked
                .on_request(request(&["default"], "", "", false))
                .unwrap()
                .0
        );
        let first = acked.update(&sds, true, 1).unwrap().unwrap();
        assert!(
            !acked
                .on_request(request(&["default"], &first.nonce, "1", false))
                .unwrap()
                .0
        );
        // A new version with the same secrets for this stream (another caller's identity
        // rotated) is not sent.
        assert!(
            acked.update(&sds, false, 2).is_none(),
            "same secrets resent"
        );
        rotate();
        let pushed = acked
            .update(&sds, false, 3)
            .expect("bump not swallowed")
            .unwrap();
        assert_eq!(pushed.version_info, "3");
        assert!(acked.update(&sds, false, 3).is_none(), "sent once");
    }
}
