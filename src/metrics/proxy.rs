//! `meshid proxy` metrics: the [`Proxy`](crate::proxy::Proxy)'s [`ProxyObserver`].

use std::fmt;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::proxy::{Kind, ProxyEvent, ProxyObserver, Refusal, Way};

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// What a proxy does, as the observer passed to [`Proxy::observer`](crate::proxy::Proxy::observer):
///
/// | metric | labels |
/// |---|---|
/// | `meshid_proxy_connections_total` (counter, set up and relayed) | `way` (`inbound`, `outbound`), `kind` (`mtls`, `tls`, `plaintext`) |
/// | `meshid_proxy_open_connections` (gauge) | `way` |
/// | `meshid_proxy_refused_total` (counter) | `way`, `reason` (`rejected`: the peer's SVID or ID refused; `handshake`, `timeout`, `no_peer_id`, `connect`: the target unreachable, `detect_timeout`, `io`, `max_conns`) |
/// | `meshid_proxy_bytes_total` (counter) | `way`, `direction` (`to_target`, `to_caller`) |
///
/// The reason a peer's certificate was refused (expired, unknown issuer, not authorized)
/// is counted by [`TlsMetrics`](super::TlsMetrics) around the proxy's verifier.
#[derive(Clone)]
pub struct ProxyMetrics {
    connections: [[Counter; KINDS.len()]; 2],
    open: [Gauge; 2],
    refused: [Vec<Counter>; 2],
    bytes: [[Counter; 2]; 2],
}

const WAYS: [Way; 2] = [Way::Inbound, Way::Outbound];
const KINDS: [Kind; 3] = [Kind::Mtls, Kind::Tls, Kind::Plaintext];

fn way(way: Way) -> usize {
    usize::from(way == Way::Outbound)
}

impl fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}

impl ProxyMetrics {
    /// Registers the families into `registry`, every series at 0 from the start.
    pub fn register(registry: &mut Registry) -> Self {
        let connections = Family::<Labels2, Counter>::default();
        let open = Family::<Labels1, Gauge>::default();
        let refused = Family::<Labels2, Counter>::default();
        let bytes = Family::<Labels2, Counter>::default();
        let metrics = Self {
            connections: WAYS.map(|w| {
                KINDS.map(|k| {
                    connections.get_or_create_owned(&[("way", w.as_str()), ("kind", k.as_str())])
                })
            }),
            open: WAYS.map(|w| open.get_or_create_owned(&[("way", w.as_str())])),
            refused: WAYS.map(|w| {
                Refusal::ALL
                    .iter()
                    .map(|r| {
                        refused.get_or_create_owned(&[("way", w.as_str()), ("reason", r.as_str())])
                    })
                    .collect()
            }),
            bytes: WAYS.map(|w| {
                ["to_target", "to_caller"]
                    .map(|d| bytes.get_or_create_owned(&[("way", w.as_str()), ("direction", d)]))
            }),
        };
        registry.register(
            "meshid_proxy_connections",
            "Connections set up and relayed, by kind.",
            connections,
        );
        registry.register(
            "meshid_proxy_open_connections",
            "Connections being relayed.",
            open,
        );
        registry.register(
            "meshid_proxy_refused",
            "Connections refused or failed before relaying, by reason.",
            refused,
        );
        registry.register("meshid_proxy_bytes", "Bytes relayed.", bytes);
        metrics
    }

    /// This, as the observer a proxy takes.
    pub fn observer(&self) -> Arc<dyn ProxyObserver> {
        Arc::new(self.clone())
    }
}

impl ProxyObserver for ProxyMetrics {
    fn observe(&self, event: ProxyEvent) {
        match event {
            ProxyEvent::Opened { way: w, kind } => {
                if let Some(k) = KINDS.iter().position(|x| *x == kind) {
                    self.connections[way(w)][k].inc();
                }
                self.open[way(w)].inc();
            }
            ProxyEvent::Closed { way: w, .. } => {
                self.open[way(w)].dec();
            }
            ProxyEvent::Refused { way: w, reason } => {
                if let Some(r) = Refusal::ALL.iter().position(|x| *x == reason) {
                    self.refused[way(w)][r].inc();
                }
            }
            ProxyEvent::Bytes {
                way: w,
                to_target,
                bytes,
            } => {
                self.bytes[way(w)][usize::from(!to_target)].inc_by(bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_closed_labels() {
        let mut registry = Registry::default();
        let m = ProxyMetrics::register(&mut registry);
        m.observe(ProxyEvent::Opened {
            way: Way::Inbound,
            kind: Kind::Mtls,
        });
        m.observe(ProxyEvent::Opened {
            way: Way::Inbound,
            kind: Kind::Plaintext,
        });
        m.observe(ProxyEvent::Closed {
            way: Way::Inbound,
            kind: Kind::Plaintext,
        });
        m.observe(ProxyEvent::Refused {
            way: Way::Outbound,
            reason: Refusal::Rejected,
        });
        m.observe(ProxyEvent::Bytes {
            way: Way::Inbound,
            to_target: false,
            bytes: 42,
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"meshid_proxy_connections_total{way="inbound",kind="mtls"} 1"#,
            r#"meshid_proxy_connections_total{way="inbound",kind="plaintext"} 1"#,
            r#"meshid_proxy_connections_total{way="outbound",kind="mtls"} 0"#,
            r#"meshid_proxy_open_connections{way="inbound"} 1"#,
            r#"meshid_proxy_refused_total{way="outbound",reason="rejected"} 1"#,
            r#"meshid_proxy_refused_total{way="inbound",reason="max_conns"} 0"#,
            r#"meshid_proxy_bytes_total{way="inbound",direction="to_caller"} 42"#,
            r#"meshid_proxy_bytes_total{way="inbound",direction="to_target"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
