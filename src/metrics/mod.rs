//! Prometheus metrics (feature `metrics`): what an operator watches and alerts on, exported
//! with the Prometheus organisation's [`prometheus_client`] in OpenMetrics text.
//!
//! A library must not own a global registry: each part registers into the
//! [`Registry`] the application passes in, and the application serves it (the `meshid`
//! CLI does on `--metrics ADDR`). What can be read when scraped is read then; what must
//! be counted as it happens costs a few relaxed atomic additions, never a lock:
//!
//! - [`SvidMetrics`] reads what it watches (rotators, an agent, a Workload API source,
//!   bundles) **on each scrape**: SVID expiry and renewal timestamps, renewals by result,
//!   each trust domain's earliest root expiry. Timestamps are Unix seconds, as cert-manager
//!   and Linkerd export them (an alert compares them with `time()`).
//! - [`CaMetrics`] reads an [`Authority`](crate::Authority)'s issuance counters on each
//!   scrape.
//! - [`TlsMetrics`] decorates the rustls certificate verifiers (as linkerd2-proxy wraps
//!   its services): each handshake's peer decision by side and reason, and how long the
//!   verification took.
//! - [`ServeMetrics`] is the [`ServeObserver`](crate::serve::ServeObserver) of the Workload
//!   API and SDS servers: connections, streams, pushes and their delay after a rotation,
//!   refusals, SDS ACKs and NACKs.
//! - [`ProxyMetrics`] (feature `proxy`) is the observer of a
//!   [`Proxy`](crate::proxy::Proxy): connections by kind, refusals by reason, bytes.
//!
//! Every label comes from a closed set or from an identity the process itself holds
//! (`spiffe_id` of its own SVIDs, `trust_domain` of its bundles): never a serial, never
//! the ID of a refused peer.
//!
//! ```
//! # #[cfg(all(feature = "ca", feature = "ring", feature = "rustls", feature = "workload-api"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use meshid::metrics::Metrics;
//! use meshid::{Authority, KeyType, LocalSvid, SpiffeId, TrustDomain};
//! use prometheus_client::registry::Registry;
//!
//! let mut registry = Registry::default();
//! let metrics = Metrics::register(&mut registry);
//!
//! let ca = Arc::new(Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?);
//! metrics.ca.watch(&ca);
//! let web = LocalSvid::start(ca, &SpiffeId::new("spiffe://example.org/web")?, Duration::from_secs(60), meshid::ring_algorithms())?;
//! metrics.svid.watch_rotator(&web.rotator);
//! metrics.svid.watch_bundle_set(web.bundles.clone());
//!
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry)?;
//! assert!(text.contains(r#"meshid_svid_renewals_total{spiffe_id="spiffe://example.org/web",result="ok",reason="none"} 1"#));
//! assert!(text.contains(r#"meshid_ca_issued_total{kind="x509_svid"} 1"#));
//! web.rotator.stop();
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "ca", feature = "ring", feature = "rustls", feature = "workload-api")))]
//! # fn main() {}
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;

#[cfg(feature = "ca")]
mod ca;
#[cfg(any(
    feature = "rustls",
    all(any(feature = "workload-api", feature = "sds"), unix)
))]
mod histogram;
#[cfg(feature = "proxy")]
mod proxy;
#[cfg(all(any(feature = "workload-api", feature = "sds"), unix))]
mod serve;
mod svid;
#[cfg(feature = "rustls")]
mod tls;

#[cfg(feature = "ca")]
pub use ca::CaMetrics;
#[cfg(feature = "proxy")]
pub use proxy::ProxyMetrics;
#[cfg(all(any(feature = "workload-api", feature = "sds"), unix))]
pub use serve::ServeMetrics;
pub use svid::SvidMetrics;
#[cfg(feature = "rustls")]
pub use tls::TlsMetrics;

/// Every meshid metric family, registered at once (each part can also be registered on
/// its own).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Metrics {
    /// SVIDs, renewals and bundles.
    pub svid: SvidMetrics,
    /// An authority's issuance.
    #[cfg(feature = "ca")]
    pub ca: CaMetrics,
    /// TLS handshakes (decorate the verifiers with it).
    #[cfg(feature = "rustls")]
    pub tls: TlsMetrics,
    /// The Workload API and SDS servers (pass it as their observer).
    #[cfg(all(any(feature = "workload-api", feature = "sds"), unix))]
    pub serve: ServeMetrics,
}

impl Metrics {
    /// Registers every family into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            svid: SvidMetrics::register(registry),
            #[cfg(feature = "ca")]
            ca: CaMetrics::register(registry),
            #[cfg(feature = "rustls")]
            tls: TlsMetrics::register(registry),
            #[cfg(all(any(feature = "workload-api", feature = "sds"), unix))]
            serve: ServeMetrics::register(registry),
        }
    }
}

/// Unix seconds (negative before 1970), as a gauge holds them.
#[allow(clippy::cast_precision_loss)]
fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
