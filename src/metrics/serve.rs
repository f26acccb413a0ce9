//! Workload API and SDS server metrics: the servers' [`ServeObserver`].

use std::fmt;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

use super::histogram::DurationHistogram;
use crate::serve::{Refusal, ServeEvent, ServeObserver, StreamKind};

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// What the Workload API and SDS servers do, as the [`ServeObserver`] passed to them
/// (`WorkloadApiServer::observer`, `SdsServer::observer`):
///
/// | metric | labels |
/// |---|---|
/// | `meshid_serve_connections` (gauge, open) | `server` (`workload_api`, `sds`, `workload_api_and_sds`) |
/// | `meshid_serve_streams` (gauge, open) | `server` (`workload_api`, `sds`), `stream` (`x509_svid`, `x509_bundles`, `jwt_bundles`, `sds`, `sds_delta`) |
/// | `meshid_serve_pushes_total` (counter) | `server`, `stream` |
/// | `meshid_serve_push_delay_seconds` (histogram: from the change, a rotation or a new bundle, to the push) | `server`, `stream` |
/// | `meshid_serve_refused_total` (counter) | `server`, `reason` (`uid_not_allowed`, `too_many_connections`, `no_identity`, `bad_request`) |
/// | `meshid_sds_responses_total` (counter: Envoy's answers) | `result` (`ack`, `nack`) |
///
/// Refused callers are counted by reason only: their IDs and PIDs are in the logs, never
/// in a label.
#[derive(Clone)]
pub struct ServeMetrics {
    /// Every series of a closed label set, looked up once: an event only adds.
    connections: [Gauge; SERVERS.len()],
    streams: [Gauge; STREAMS.len()],
    pushes: [Counter; STREAMS.len()],
    delays: [DurationHistogram; STREAMS.len()],
    refused: [[Counter; REFUSALS.len()]; SERVERS.len()],
    sds: [Counter; 2],
}

/// The `server` label values: a socket's server, or a call's API.
const SERVERS: [&str; 3] = ["workload_api", "sds", "workload_api_and_sds"];
const STREAMS: [StreamKind; 5] = [
    StreamKind::X509Svid,
    StreamKind::X509Bundles,
    StreamKind::JwtBundles,
    StreamKind::Sds,
    StreamKind::SdsDelta,
];
const REFUSALS: [Refusal; 4] = [
    Refusal::UidNotAllowed,
    Refusal::ConnectionCap,
    Refusal::NoIdentity,
    Refusal::BadRequest,
];

fn server_index(server: &str) -> usize {
    SERVERS.iter().position(|s| *s == server).unwrap_or(2)
}

impl fmt::Debug for ServeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeMetrics").finish_non_exhaustive()
    }
}

fn delay_histogram() -> DurationHistogram {
    // 100 µs to about 100 s: an idle push, a fan-out to thousands, a stalled client.
    DurationHistogram::new(exponential_buckets(1e-4, 4.0, 11))
}

impl ServeMetrics {
    /// Registers the families into `registry`; every series of their closed label sets
    /// exists from the start, at 0.
    pub fn register(registry: &mut Registry) -> Self {
        let connections = Family::<Labels1, Gauge>::default();
        let streams = Family::<Labels2, Gauge>::default();
        let pushes = Family::<Labels2, Counter>::default();
        let delays = Family::<Labels2, DurationHistogram>::new_with_constructor(
            delay_histogram as fn() -> DurationHistogram,
        );
        let refused = Family::<Labels2, Counter>::default();
        let sds = Family::<Labels1, Counter>::default();
        let stream_labels = |kind: StreamKind| [("server", kind.api()), ("stream", kind.as_str())];
        let metrics = Self {
            connections: SERVERS.map(|s| connections.get_or_create_owned(&[("server", s)])),
            streams: STREAMS.map(|k| streams.get_or_create_owned(&stream_labels(k))),
            pushes: STREAMS.map(|k| pushes.get_or_create_owned(&stream_labels(k))),
            delays: STREAMS.map(|k| delays.get_or_create_owned(&stream_labels(k))),
            refused: SERVERS.map(|s| {
                REFUSALS
                    .map(|r| refused.get_or_create_owned(&[("server", s), ("reason", r.as_str())]))
            }),
            sds: ["ack", "nack"].map(|r| sds.get_or_create_owned(&[("result", r)])),
        };
        registry.register(
            "meshid_serve_connections",
            "Open connections to the server.",
            connections,
        );
        registry.register("meshid_serve_streams", "Open streams, by kind.", streams);
        registry.register("meshid_serve_pushes", "Messages pushed on streams.", pushes);
        registry.register_with_unit(
            "meshid_serve_push_delay",
            "From a change (a rotation, new bundles) to the push it caused.",
            Unit::Seconds,
            delays,
        );
        registry.register(
            "meshid_serve_refused",
            "Connections and calls refused, by reason.",
            refused,
        );
        registry.register(
            "meshid_sds_responses",
            "Envoy's answers to pushed SDS responses: ACK or NACK.",
            sds,
        );
        metrics
    }

    /// This, as the observer a server takes.
    pub fn observer(&self) -> Arc<dyn ServeObserver> {
        Arc::new(self.clone())
    }
}

impl ServeObserver for ServeMetrics {
    fn observe(&self, event: ServeEvent) {
        match event {
            ServeEvent::ConnectionOpened { server, .. } => {
                self.connections[server_index(server)].inc();
            }
            ServeEvent::ConnectionClosed { server, .. } => {
                self.connections[server_index(server)].dec();
            }
            ServeEvent::Refused { server, reason, .. } => {
                if let Some(r) = REFUSALS.iter().position(|r| *r == reason) {
                    self.refused[server_index(server)][r].inc();
                }
            }
            ServeEvent::StreamOpened(kind) => {
                if let Some(k) = STREAMS.iter().position(|k| *k == kind) {
                    self.streams[k].inc();
                }
            }
            ServeEvent::StreamClosed(kind) => {
                if let Some(k) = STREAMS.iter().position(|k| *k == kind) {
                    self.streams[k].dec();
                }
            }
            ServeEvent::Pushed {
                stream,
                since_change,
                ..
            } => {
                if let Some(k) = STREAMS.iter().position(|k| *k == stream) {
                    self.pushes[k].inc();
                    if let Some(delay) = since_change {
                        self.delays[k].observe(delay);
                    }
                }
            }
            ServeEvent::SdsAnswer { accepted, .. } => {
                self.sds[usize::from(!accepted)].inc();
            }
            ServeEvent::Listening { .. } | ServeEvent::Stopped { .. } => {}
        }
    }
}
