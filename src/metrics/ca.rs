//! An authority's issuance, read from its counters on each scrape.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::ca::counts::REFUSALS;
use crate::Authority;

/// What the watched [`Authority`]s issued and refused, added up:
///
/// | metric | labels |
/// |---|---|
/// | `meshid_ca_issued_total` (counter) | `kind` (`x509_svid`, `jwt_svid`) |
/// | `meshid_ca_refusals_total` (counter) | `kind`, `reason` (`ttl`, `request`, `csr`, `expired_ca`, `no_key`, `internal`) |
///
/// An authority's clones share its counters: watch one of them.
#[derive(Clone, Default)]
pub struct CaMetrics {
    watched: Arc<Mutex<Vec<Weak<Authority>>>>,
}

impl fmt::Debug for CaMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaMetrics").finish_non_exhaustive()
    }
}

impl CaMetrics {
    /// Registers the families into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register_collector(Box::new(metrics.clone()));
        metrics
    }

    /// Reports `authority`'s counts while it lives (it is not kept alive).
    pub fn watch(&self, authority: &Arc<Authority>) {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(authority));
    }
}

impl Collector for CaMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut x509 = (0, [0; REFUSALS.len()]);
        let mut jwt = (0, [0; REFUSALS.len()]);
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|ca| {
                let Some(ca) = ca.upgrade() else {
                    return false;
                };
                for (sum, (issued, refused)) in [
                    (&mut x509, ca.counts().x509_counts()),
                    (&mut jwt, ca.counts().jwt_counts()),
                ] {
                    sum.0 += issued;
                    for (s, r) in sum.1.iter_mut().zip(refused) {
                        *s += r;
                    }
                }
                true
            });
        let kinds = [("x509_svid", x509), ("jwt_svid", jwt)];
        let mut issued = encoder.encode_descriptor(
            "meshid_ca_issued",
            "SVIDs the authority issued (X.509) or minted (JWT).",
            None,
            MetricType::Counter,
        )?;
        for (kind, (n, _)) in &kinds {
            ConstCounter::new(*n).encode(issued.encode_family(&[("kind", *kind)])?)?;
        }
        let mut refusals = encoder.encode_descriptor(
            "meshid_ca_refusals",
            "Requests the authority refused, by what was wrong.",
            None,
            MetricType::Counter,
        )?;
        for (kind, (_, refused)) in &kinds {
            for (reason, n) in REFUSALS.iter().zip(refused) {
                let labels = [("kind", *kind), ("reason", *reason)];
                ConstCounter::new(*n).encode(refusals.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
