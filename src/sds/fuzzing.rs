//! Not public API: drives one SDS stream's request handling without a socket, for the
//! `sds_request` fuzz target and its corpus replay.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message as _;
use tokio::sync::watch;

use crate::sds::delta::DeltaState;
use crate::sds::service::Sds;
use crate::sds::sotw::StreamState;
use crate::sds::stream::Protocol as _;
use crate::serve::{Caller, EveryCaller};
use crate::{BundleSet, SvidStore, X509Svid};

/// One state-of-the-world stream and one delta stream over a store that can be rotated.
pub struct FuzzStreams {
    sds: Sds,
    store: Arc<SvidStore>,
    svids: Vec<X509Svid>,
    next: usize,
    version: u64,
    sotw: StreamState,
    sotw_closed: bool,
    delta: DeltaState,
    delta_closed: bool,
}

/// What a state-of-the-world stream sent: a response, or the refusal that ended it.
pub type SotwAnswer = Result<DiscoveryResponse, String>;
/// What a delta stream sent: a response, or the refusal that ended it.
pub type DeltaAnswer = Result<DeltaDiscoveryResponse, String>;

impl FuzzStreams {
    /// Streams over `svids` (published in turn by [`rotate`](Self::rotate)) and `bundles`.
    pub fn new(svids: Vec<X509Svid>, bundles: BundleSet) -> Self {
        let store = Arc::new(SvidStore::new());
        if let Some(first) = svids.first() {
            store.publish(first.clone());
        }
        let (_, closed) = watch::channel(false);
        Self {
            sds: Sds {
                identities: Arc::new(EveryCaller::new([Arc::clone(&store)])),
                bundles: Arc::new(bundles),
                closed,
                spiffe_validator: false,
                trust_domain: None,
                caller: Caller::unknown(),
                held: None,
                observer: crate::serve::Observer::default(),
            },
            store,
            svids,
            next: 1,
            version: 1,
            sotw: StreamState::default(),
            sotw_closed: false,
            delta: DeltaState::default(),
            delta_closed: false,
        }
    }

    /// Publishes the next SVID (a rotation) and lets both streams react.
    pub fn rotate(&mut self) -> (Option<SotwAnswer>, Option<DeltaDiscoveryResponse>) {
        if !self.svids.is_empty() {
            self.store
                .publish(self.svids[self.next % self.svids.len()].clone());
            self.next += 1;
        }
        self.version += 1;
        let push = self.sotw.subscribed() && !self.sotw_closed;
        let sotw = self.sotw_answer(push);
        let delta = if self.delta_closed {
            None
        } else {
            self.delta.update(&self.sds, false, self.version)
        };
        // Delta updates never refuse (only requests can): `Err` does not occur.
        (sotw, delta.and_then(Result::ok))
    }

    /// Feeds `bytes` as a state-of-the-world request (if they decode as one).
    /// A refusal ends the stream: later requests get `None`.
    pub fn sotw(&mut self, bytes: &[u8]) -> Option<(DiscoveryRequest, Option<SotwAnswer>)> {
        if self.sotw_closed {
            return None;
        }
        let request = DiscoveryRequest::decode(bytes).ok()?;
        match self.sotw.on_request(request.clone()) {
            Ok((push, _)) => Some((request, self.sotw_answer(push))),
            Err(status) => {
                self.sotw_closed = true;
                Some((request, Some(Err(status.message().to_owned()))))
            }
        }
    }

    fn sotw_answer(&mut self, push: bool) -> Option<SotwAnswer> {
        let answer = self
            .sotw
            .update(&self.sds, push, self.version)?
            .map_err(|status| status.message().to_owned());
        self.sotw_closed |= answer.is_err();
        Some(answer)
    }

    /// Feeds `bytes` as a delta request (if they decode as one). A refusal (a request
    /// over the bounds on names) ends the stream: later requests get `None`.
    pub fn delta(&mut self, bytes: &[u8]) -> Option<(DeltaDiscoveryRequest, Option<DeltaAnswer>)> {
        if self.delta_closed {
            return None;
        }
        let request = DeltaDiscoveryRequest::decode(bytes).ok()?;
        let answer = match self.delta.on_request(request.clone()) {
            Ok((push, _)) => self
                .delta
                .update(&self.sds, push, self.version)
                .map(|r| r.map_err(|status| status.message().to_owned())),
            Err(status) => Some(Err(status.message().to_owned())),
        };
        self.delta_closed |= matches!(answer, Some(Err(_)));
        Some((request, answer))
    }

    /// The names the state-of-the-world stream is subscribed to.
    pub fn sotw_names(&self) -> &[String] {
        self.sotw.names()
    }

    /// The bounds on names every stream keeps: the longest name, the most names and the
    /// most bytes of names one stream may hold.
    pub const NAME_BOUNDS: (usize, usize, usize) = (
        crate::sds::stream::MAX_NAME_LEN,
        crate::sds::stream::MAX_NAMES,
        crate::sds::stream::MAX_NAME_BYTES,
    );

    /// How long a fuzz input may take at most (for the replay's sanity bound).
    pub const BUDGET: Duration = Duration::from_secs(1);
}
