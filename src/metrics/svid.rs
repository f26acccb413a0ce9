//! SVID and bundle metrics, read from what they watch on each scrape.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::unix_seconds;
use crate::rotate::StatusReader;
use crate::{BundleSet, RenewalFailure, RotationStatus, Rotator, SpiffeId, TrustDomain};

/// SVID expiry and renewal metrics, and each trust domain's earliest root expiry, read on
/// each scrape from the rotators, agents, sources and bundles it watches:
///
/// | metric | labels |
/// |---|---|
/// | `meshid_svid_expiry_timestamp_seconds` (gauge) | `spiffe_id` |
/// | `meshid_svid_not_before_timestamp_seconds` (gauge) | `spiffe_id` |
/// | `meshid_svid_next_renewal_timestamp_seconds` (gauge) | `spiffe_id` |
/// | `meshid_svid_last_renewal_timestamp_seconds` (gauge, last success) | `spiffe_id` |
/// | `meshid_svid_renewals_total` (counter) | `spiffe_id`, `result` (`ok`, `error`), `reason` (`none`, `issuer`, `wrong_id`, `verify`) |
/// | `meshid_bundle_root_expiry_timestamp_seconds` (gauge) | `trust_domain` |
///
/// An SVID no longer held (expired with no replacement, once its rotator has noticed) has
/// no expiry series: alert on its absence, or on the renewals. Several sources holding the
/// same SPIFFE ID are reported as one: the earliest expiry, the counters added up; when
/// one of them goes away (a rotator dropped, an entry removed) its counts stay in the
/// total, so a counter never goes down.
#[derive(Clone, Default)]
pub struct SvidMetrics {
    watched: Arc<Mutex<Vec<Watched>>>,
    /// Per SPIFFE ID, the renewal counts last summed and what sources that went away had
    /// counted: ok, then each failure kind.
    kept: Arc<Mutex<BTreeMap<SpiffeId, Kept>>>,
}

#[derive(Default)]
struct Kept {
    last: [u64; 4],
    gone: [u64; 4],
}

impl fmt::Debug for SvidMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidMetrics")
            .field("watched", &self.lock().len())
            .finish()
    }
}

/// One thing read on each scrape.
enum Watched {
    Rotator(StatusReader),
    Bundles(BundleSet),
    #[cfg(all(feature = "agent", unix))]
    Agent(std::sync::Weak<crate::agent::AgentInner>),
    #[cfg(all(feature = "workload-api", unix))]
    Source(std::sync::Weak<crate::workload::X509Source>),
}

/// One SPIFFE ID's figures in a scrape.
#[derive(Default)]
struct Row {
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
    next_renewal: Option<SystemTime>,
    last_success: Option<SystemTime>,
    /// Successes and failures by kind, if something renews it here.
    renewals: Option<(u64, [u64; 3])>,
}

impl Row {
    fn add_status(&mut self, status: &RotationStatus) {
        if let Some(not_after) = status.not_after {
            if self.not_after.is_none_or(|held| not_after < held) {
                self.not_after = Some(not_after);
                self.not_before = status.not_before;
            }
        }
        self.next_renewal = match (self.next_renewal, status.next_renewal) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_success = self.last_success.max(status.last_success);
        let (mut ok, mut failed) = self.renewals.unwrap_or_default();
        ok += status.successes;
        for (i, kind) in RenewalFailure::ALL.iter().enumerate() {
            failed[i] += status.failures_of(*kind);
        }
        self.renewals = Some((ok, failed));
    }

    #[cfg(all(feature = "workload-api", unix))]
    fn add_svid(&mut self, svid: &crate::X509Svid) {
        if self.not_after.is_none_or(|held| svid.not_after() < held) {
            self.not_after = Some(svid.not_after());
            self.not_before = Some(svid.not_before());
        }
    }
}

#[derive(Default)]
struct Scrape {
    svids: BTreeMap<SpiffeId, Row>,
    roots: BTreeMap<TrustDomain, SystemTime>,
}

impl Scrape {
    fn bundles(&mut self, set: &BundleSet) {
        for bundle in set.iter() {
            let earliest = bundle
                .authorities()
                .iter()
                .filter_map(|der| crate::CertificateInfo::from_der(der).ok())
                .map(|info| info.not_after())
                .min();
            if let Some(earliest) = earliest {
                let held = self
                    .roots
                    .entry(bundle.trust_domain().clone())
                    .or_insert(earliest);
                *held = (*held).min(earliest);
            }
        }
    }
}

impl SvidMetrics {
    /// Registers the families into `registry`; they report what is then watched.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watched>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports `rotator`'s SVID and renewals while it lives (it is not kept alive).
    pub fn watch_rotator(&self, rotator: &Rotator) {
        self.lock().push(Watched::Rotator(rotator.status_reader()));
    }

    /// Reports the earliest root expiry of each trust domain of `bundles` (fixed bundles,
    /// such as a [`LocalSvid`](crate::LocalSvid)'s).
    pub fn watch_bundle_set(&self, bundles: BundleSet) {
        self.lock().push(Watched::Bundles(bundles));
    }

    /// Reports every entry's SVID and renewals of `agent`, and its bundles, while it lives.
    #[cfg(all(feature = "agent", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "agent")))]
    pub fn watch_agent(&self, agent: &crate::agent::Agent) {
        self.lock().push(Watched::Agent(agent.downgrade()));
    }

    /// Reports the SVIDs `source` holds (renewed by its Workload API, so no renewal
    /// counts here) and its bundles, while it lives.
    #[cfg(all(feature = "workload-api", unix))]
    #[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
    pub fn watch_x509_source(&self, source: &Arc<crate::workload::X509Source>) {
        self.lock().push(Watched::Source(Arc::downgrade(source)));
    }

    /// Keeps each renewal counter from going down when a source of its ID goes away.
    fn keep_monotonic(&self, scrape: &mut Scrape) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, row) in &mut scrape.svids {
            let Some((ok, failed)) = &mut row.renewals else {
                continue;
            };
            let entry = kept.entry(id.clone()).or_default();
            let now = [*ok, failed[0], failed[1], failed[2]];
            let mut shown = [0; 4];
            for i in 0..4 {
                if now[i] < entry.last[i] {
                    entry.gone[i] += entry.last[i] - now[i];
                }
                entry.last[i] = now[i];
                shown[i] = now[i] + entry.gone[i];
            }
            *ok = shown[0];
            failed.copy_from_slice(&shown[1..]);
        }
    }

    fn scrape(&self) -> Scrape {
        let mut scrape = Scrape::default();
        self.lock().retain(|watched| match watched {
            Watched::Rotator(reader) => reader.read().is_some_and(|(id, status)| {
                scrape.svids.entry(id).or_default().add_status(&status);
                true
            }),
            Watched::Bundles(set) => {
                scrape.bundles(set);
                true
            }
            #[cfg(all(feature = "agent", unix))]
            Watched::Agent(agent) => agent.upgrade().is_some_and(|inner| {
                let agent = crate::agent::Agent::from_inner(inner);
                for (entry, status) in agent.status() {
                    let id = entry.spiffe_id().clone();
                    scrape.svids.entry(id).or_default().add_status(&status);
                }
                if let Some(set) = crate::serve::Bundles::bundles(&agent) {
                    scrape.bundles(&set);
                }
                true
            }),
            #[cfg(all(feature = "workload-api", unix))]
            Watched::Source(source) => source.upgrade().is_some_and(|source| {
                if let Some(svid) = crate::SvidSource::x509_svid(&*source) {
                    let row = scrape.svids.entry(svid.id().clone()).or_default();
                    row.add_svid(&svid);
                }
                if let Some(set) = source.bundles() {
                    scrape.bundles(&set);
                }
                true
            }),
        });
        self.keep_monotonic(&mut scrape);
        scrape
    }
}

/// Encodes one gauge family.
fn gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = ([(&'static str, &'a str); 1], f64)>,
) -> fmt::Result {
    let mut family =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SvidMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let scrape = self.scrape();
        let ids: Vec<(String, &Row)> = scrape
            .svids
            .iter()
            .map(|(id, row)| (id.to_string(), row))
            .collect();
        let per_id = |pick: fn(&Row) -> Option<SystemTime>| {
            ids.iter().filter_map(move |(id, row)| {
                pick(row).map(|t| ([("spiffe_id", id.as_str())], unix_seconds(t)))
            })
        };
        gauges(
            &mut encoder,
            "meshid_svid_expiry_timestamp",
            "When the X509-SVID held now expires (NotAfter), Unix seconds.",
            per_id(|r| r.not_after),
        )?;
        gauges(
            &mut encoder,
            "meshid_svid_not_before_timestamp",
            "When the X509-SVID held now became valid (NotBefore), Unix seconds.",
            per_id(|r| r.not_before),
        )?;
        gauges(
            &mut encoder,
            "meshid_svid_next_renewal_timestamp",
            "When the next renewal (or retry) of the X509-SVID is due, Unix seconds.",
            per_id(|r| r.next_renewal),
        )?;
        gauges(
            &mut encoder,
            "meshid_svid_last_renewal_timestamp",
            "When the X509-SVID was last renewed successfully, Unix seconds.",
            per_id(|r| r.last_success),
        )?;
        let mut renewals = encoder.encode_descriptor(
            "meshid_svid_renewals",
            "X509-SVID renewals by result and, for errors, what failed.",
            None,
            MetricType::Counter,
        )?;
        for (id, row) in &ids {
            let Some((ok, failed)) = row.renewals else {
                continue;
            };
            let labels = [
                ("spiffe_id", id.as_str()),
                ("result", "ok"),
                ("reason", "none"),
            ];
            ConstCounter::new(ok).encode(renewals.encode_family(&labels)?)?;
            for (kind, n) in RenewalFailure::ALL.iter().zip(failed) {
                let labels = [
                    ("spiffe_id", id.as_str()),
                    ("result", "error"),
                    ("reason", kind.as_str()),
                ];
                ConstCounter::new(n).encode(renewals.encode_family(&labels)?)?;
            }
        }
        let roots: Vec<(String, SystemTime)> = scrape
            .roots
            .iter()
            .map(|(td, t)| (td.to_string(), *t))
            .collect();
        gauges(
            &mut encoder,
            "meshid_bundle_root_expiry_timestamp",
            "When the trust domain's first X.509 root expires (the earliest NotAfter of its bundle), Unix seconds.",
            roots
                .iter()
                .map(|(td, t)| ([("trust_domain", td.as_str())], unix_seconds(*t))),
        )
    }
}

#[cfg(all(test, feature = "ca", feature = "ring"))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{Authority, KeyType, LocalSvid, X509Bundle};

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn a_rotator_s_svid_and_renewals_are_read_on_each_scrape_until_it_is_dropped() {
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Arc::new(
            Authority::new_root(td.clone(), Duration::from_secs(600), KeyType::P256).unwrap(),
        );
        let id = SpiffeId::new("spiffe://example.org/web").unwrap();
        let local = LocalSvid::start(
            ca.clone(),
            &id,
            Duration::from_secs(60),
            crate::ring_algorithms(),
        )
        .unwrap();
        let mut registry = Registry::default();
        let metrics = SvidMetrics::register(&mut registry);
        metrics.watch_rotator(&local.rotator);
        metrics.watch_bundle_set(local.bundles.clone());
        let out = text(&registry);
        let svid = local.store.current().unwrap();
        let expiry = format!(
            "meshid_svid_expiry_timestamp_seconds{{spiffe_id=\"spiffe://example.org/web\"}} {}",
            unix_seconds(svid.not_after())
        );
        assert!(out.contains(&expiry), "{out}");
        assert!(out.contains("# TYPE meshid_svid_renewals counter"), "{out}");
        assert!(out.contains(r#"meshid_svid_renewals_total{spiffe_id="spiffe://example.org/web",result="ok",reason="none"} 1"#), "{out}");
        assert!(out.contains(r#"meshid_svid_renewals_total{spiffe_id="spiffe://example.org/web",result="error",reason="issuer"} 0"#), "{out}");
        let root = crate::CertificateInfo::from_der(ca.root().unwrap()).unwrap();
        let root_line = format!(
            "meshid_bundle_root_expiry_timestamp_seconds{{trust_domain=\"example.org\"}} {}",
            unix_seconds(root.not_after())
        );
        assert!(out.contains(&root_line), "{out}");
        assert!(!out.contains("serial"), "{out}");

        // A second source of the same ID: the counts add up; when it goes, they stay.
        let other = LocalSvid::start(
            ca.clone(),
            &id,
            Duration::from_secs(60),
            crate::ring_algorithms(),
        )
        .unwrap();
        metrics.watch_rotator(&other.rotator);
        let ok = r#"meshid_svid_renewals_total{spiffe_id="spiffe://example.org/web",result="ok",reason="none"}"#;
        assert!(text(&registry).contains(&format!("{ok} 2")));
        other.rotator.stop_and_wait();
        assert!(text(&registry).contains(&format!("{ok} 2")), "never down");

        local.rotator.stop_and_wait();
        let out = text(&registry);
        assert!(
            !out.contains("spiffe_id="),
            "a stopped rotator is no longer reported: {out}"
        );
        let _ = X509Bundle::from_authorities(td, ca.root().cloned());
    }
}
