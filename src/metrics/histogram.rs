//! A histogram of durations that records without a lock: prometheus-client's `Histogram`
//! takes a write lock on every observation, which every concurrent handshake on a side
//! (or push of a server) would share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Durations in fixed buckets (upper bounds in seconds, then +Inf): each observation is
/// two relaxed atomic additions. The sum is kept in whole nanoseconds.
#[derive(Clone, Debug)]
pub(crate) struct DurationHistogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending, in seconds (`le`); the last bucket, past them, is +Inf.
    bounds: Vec<f64>,
    /// One more than `bounds`: the count of observations in each bucket (not cumulative).
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Buckets with the upper bounds `bounds` (seconds, ascending).
    pub(crate) fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            buckets,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records one duration.
    pub(crate) fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        // The first bucket whose bound is at least the value (`le`), else +Inf.
        let i = self.0.bounds.partition_point(|&bound| bound < seconds);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(&self.0.buckets)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        #[allow(clippy::cast_precision_loss)]
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let mut registry = Registry::default();
        let h = DurationHistogram::new([0.001, 0.01]);
        registry.register("d_seconds", "D.", h.clone());
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // le="0.001" holds 1 ms exactly
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "d_seconds_count 4",
            "d_seconds_sum 2.0065",
            "d_seconds_bucket{le=\"0.001\"} 2",
            "d_seconds_bucket{le=\"0.01\"} 3",
            "d_seconds_bucket{le=\"+Inf\"} 4",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
