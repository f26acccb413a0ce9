//! When to renew: a pure function of the SVID's validity, the time, and a random draw, so
//! it can be tested without a clock (DESIGN §3: renew at 50 % of the lifetime, ±10 %
//! jitter, at least 1 s and at most 24 h between attempts; on failure, capped exponential
//! backoff).

use std::time::{Duration, SystemTime};

/// When to renew an SVID and how to back off when renewal fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotationPolicy {
    /// Fraction of the lifetime after which to renew (default 0.5, as SPIRE and Istio).
    pub renew_at: f64,
    /// Jitter, as a fraction of the lifetime, applied both ways (default 0.1).
    pub jitter: f64,
    /// The shortest wait before a renewal (default 1 s).
    pub min_interval: Duration,
    /// The longest wait before a renewal (default 24 h).
    pub max_interval: Duration,
    /// The first retry delay after a failed renewal (default 1 s); it doubles per failure.
    pub retry_base: Duration,
    /// The longest retry delay (default 60 s).
    pub retry_max: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            renew_at: 0.5,
            jitter: 0.1,
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

impl RotationPolicy {
    /// The instant to renew an SVID valid from `not_before` to `not_after`, seen at `now`,
    /// with `random` drawn uniformly from `[0, 1)` (it picks the jitter). The [`Rotator`]
    /// passes the later of NotBefore and the time it received the SVID as `not_before`, so
    /// an issuer's backdating does not count as lifetime already used.
    ///
    /// [`Rotator`]: crate::Rotator
    ///
    /// The result is `not_before + lifetime × (renew_at ± jitter)`, then clamped to at
    /// least `now + min_interval` and at most `now + max_interval`, and never after
    /// `not_after`: a renewal is always scheduled while the SVID is still valid, unless it
    /// has already expired, in which case it is `now` (renew at once).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use meshid::RotationPolicy;
    ///
    /// let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
    /// let end = start + Duration::from_secs(3600);
    /// // With the jitter draw in the middle, renew at half of the lifetime.
    /// let at = RotationPolicy::default().next_renewal(start, end, start, 0.5);
    /// assert_eq!(at, start + Duration::from_secs(1800));
    /// ```
    pub fn next_renewal(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
        now: SystemTime,
        random: f64,
    ) -> SystemTime {
        if now >= not_after {
            return now;
        }
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let fraction = (self.renew_at + self.jitter * (2.0 * random - 1.0)).clamp(0.0, 1.0);
        let target = not_before + Duration::from_secs_f64(lifetime * fraction);
        let earliest = now + self.min_interval;
        let latest = now + self.max_interval;
        target.max(earliest).min(latest).min(not_after)
    }

    /// How long to wait before retry number `failures` (1 for the first retry), with
    /// `random` in `[0, 1)`: `retry_base × 2^(failures−1)`, capped at `retry_max`, then
    /// jittered down by up to a quarter so that many workloads do not retry in step.
    pub fn retry_delay(&self, failures: u32, random: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let delay = self
            .retry_base
            .saturating_mul(1 << exponent)
            .min(self.retry_max);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        delay.mul_f64(1.0 - 0.25 * random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn renews_at_half_the_lifetime_with_jitter_of_ten_percent() {
        let p = RotationPolicy::default();
        let (start, end) = (t(1000), t(1000 + 3600));
        assert_eq!(p.next_renewal(start, end, start, 0.5), t(1000 + 1800));
        assert_eq!(p.next_renewal(start, end, start, 0.0), t(1000 + 1440));
        let high = p.next_renewal(start, end, start, 0.999_999);
        assert!(high > t(1000 + 2159) && high <= t(1000 + 2160));
    }

    #[test]
    fn clamped_to_the_interval_bounds_and_to_expiry() {
        let p = RotationPolicy::default();
        // Half of a 1 s lifetime is 0.5 s, but the minimum wait is 1 s; expiry comes first.
        let (start, end) = (t(10), t(11));
        assert_eq!(p.next_renewal(start, end, start, 0.5), t(11));
        // Already past the target: wait the minimum.
        let (start, end) = (t(0), t(100));
        assert_eq!(p.next_renewal(start, end, t(80), 0.5), t(81));
        // A year-long SVID: no more than 24 h from now.
        let end = t(365 * 86_400);
        assert_eq!(p.next_renewal(t(0), end, t(0), 0.5), t(86_400));
        // Expired: renew now.
        assert_eq!(p.next_renewal(t(0), t(10), t(20), 0.5), t(20));
    }

    #[test]
    fn odd_inputs_never_panic() {
        let p = RotationPolicy::default();
        for r in [f64::NAN, f64::INFINITY, -1.0, 2.0] {
            let at = p.next_renewal(t(0), t(100), t(0), r);
            assert!(at >= t(1) && at <= t(100), "{r}");
            let d = p.retry_delay(3, r);
            assert!(d <= Duration::from_secs(4));
        }
        // not_after before not_before.
        assert_eq!(p.next_renewal(t(100), t(50), t(0), 0.5), t(50));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let p = RotationPolicy::default();
        assert_eq!(p.retry_delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(p.retry_delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(p.retry_delay(5, 0.0), Duration::from_secs(16));
        assert_eq!(p.retry_delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(p.retry_delay(u32::MAX, 0.0), Duration::from_secs(60));
        assert_eq!(p.retry_delay(0, 0.0), Duration::from_secs(1));
        assert_eq!(p.retry_delay(7, 1.0), Duration::from_secs(45));
    }
}
