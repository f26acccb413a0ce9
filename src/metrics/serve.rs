//! Workload API and SDS server metrics: the servers' [`ServeObserver`].

use std::fmt;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

use super::histogram::DurationHistogram;
use crate::serve::{ServeEvent, ServeObserver};

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
    connections: Family<Labels1, Gauge>,
    streams: Family<Labels2, Gauge>,
    pushes: Family<Labels2, Counter>,
    delays: Family<Labels2, DurationHistogram>,
    refused: Family<Labels2, Counter>,
    sds: Family<Labels1, Counter>,
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
    /// Registers the families into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            connections: Family::default(),
            streams: Family::default(),
            pushes: Family::default(),
            delays: Family::new_with_constructor(delay_histogram as fn() -> DurationHistogram),
            refused: Family::default(),
            sds: Family::default(),
        };
        // Both answers exist from the start at 0, so a first NACK is an increase.
        for result in ["ack", "nack"] {
            metrics.sds.get_or_create_owned(&[("result", result)]);
        }
        registry.register(
            "meshid_serve_connections",
            "Open connections to the server.",
            metrics.connections.clone(),
        );
        registry.register(
            "meshid_serve_streams",
            "Open streams, by kind.",
            metrics.streams.clone(),
        );
        registry.register(
            "meshid_serve_pushes",
            "Messages pushed on streams.",
            metrics.pushes.clone(),
        );
        registry.register_with_unit(
            "meshid_serve_push_delay",
            "From a change (a rotation, new bundles) to the push it caused.",
            Unit::Seconds,
            metrics.delays.clone(),
        );
        registry.register(
            "meshid_serve_refused",
            "Connections and calls refused, by reason.",
            metrics.refused.clone(),
        );
        registry.register(
            "meshid_sds_responses",
            "Envoy's answers to pushed SDS responses: ACK or NACK.",
            metrics.sds.clone(),
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
            ServeEvent::ConnectionOpened { server } => {
                self.connections.get_or_create(&[("server", server)]).inc();
            }
            ServeEvent::ConnectionClosed { server } => {
                self.connections.get_or_create(&[("server", server)]).dec();
            }
            ServeEvent::Refused { server, reason } => {
                self.refused
                    .get_or_create(&[("server", server), ("reason", reason.as_str())])
                    .inc();
            }
            ServeEvent::StreamOpened(kind) => {
                self.streams
                    .get_or_create(&[("server", kind.api()), ("stream", kind.as_str())])
                    .inc();
            }
            ServeEvent::StreamClosed(kind) => {
                self.streams
                    .get_or_create(&[("server", kind.api()), ("stream", kind.as_str())])
                    .dec();
            }
            ServeEvent::Pushed {
                stream,
                since_change,
            } => {
                let labels = [("server", stream.api()), ("stream", stream.as_str())];
                self.pushes.get_or_create(&labels).inc();
                if let Some(delay) = since_change {
                    self.delays.get_or_create(&labels).observe(delay);
                }
            }
            ServeEvent::SdsAnswer { accepted } => {
                let result = if accepted { "ack" } else { "nack" };
                self.sds.get_or_create(&[("result", result)]).inc();
            }
        }
    }
}
