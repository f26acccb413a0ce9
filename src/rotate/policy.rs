//! When to renew: a pure function of the SVID's validity, the time, and a random draw, so
//! it can be tested without a clock (the defaults of SPIRE and Istio: renew at 50 % of the lifetime, ±10 %
//! jitter, at least 1 s and at most 24 h between attempts; on failure, capped exponential
//! backoff). Whatever the lifetime and the policy, a valid SVID is renewed strictly before
//! its NotAfter, with time left to issue the next one and hand over to it.

use std::time::{Duration, SystemTime};

/// When to renew an SVID and how to back off when renewal fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotationPolicy {
    /// Fraction of the lifetime after which to renew (default 0.5, as SPIRE and Istio).
    pub renew_at: f64,
    /// Jitter, as a fraction of the lifetime, applied both ways (default 0.1).
    pub jitter: f64,
    /// The shortest wait before a renewal (default 1 s), unless half of the SVID's remaining
    /// time is shorter: then that.
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
    /// The result is `not_before + lifetime × (renew_at ± jitter)`, then clamped:
    ///
    /// - to at least `now + min_interval`, or `now` + half the time left before `not_after`
    ///   when that is shorter (a 1 s SVID is not kept until it expires for want of the
    ///   minimum interval);
    /// - to at most `now + max_interval`;
    /// - to at most the later of 90 % of the lifetime and `now` + half the time left, so
    ///   that a renewal is always scheduled strictly before `not_after`, with at least a
    ///   tenth of the lifetime or half the time left to spare for issuing and handing over
    ///   (even with `renew_at + jitter` at 1 or more).
    ///
    /// An SVID that has already expired is renewed at once (`now`). X.509 times are whole
    /// seconds: an SVID issued for `ttl` lives between `ttl − 1 s` and `ttl` from issuance,
    /// and the [`Rotator`] measures it from receipt, so the truncation is accounted for.
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
        let left = match not_after.duration_since(now) {
            Ok(left) if !left.is_zero() => left,
            _ => return now,
        };
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or(Duration::ZERO);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let fraction = (self.renew_at + self.jitter * (2.0 * random - 1.0)).clamp(0.0, 1.0);
        let target = not_before + Duration::from_secs_f64(lifetime.as_secs_f64() * fraction);
        let halfway = now + left / 2;
        // The minimum interval yields to expiry: wait at most half of what is left.
        let earliest = now + self.min_interval.min(left / 2);
        // Never in the last tenth of the lifetime, unless half of what is left is later.
        let latest = not_before
            .checked_add(lifetime.saturating_sub(lifetime / 10))
            .filter(|t| *t < not_after)
            .map_or(halfway, |t| t.max(halfway));
        target
            .max(earliest)
            .min(now + self.max_interval)
            .min(latest)
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
        // Half of a 1 s lifetime is 0.5 s: the minimum wait of 1 s yields to it, since
        // renewing at expiry would leave no valid SVID while the next one is issued.
        let (start, end) = (t(10), t(11));
        assert_eq!(
            p.next_renewal(start, end, start, 0.5),
            t(10) + Duration::from_millis(500)
        );
        // Already past the target: wait the minimum.
        let (start, end) = (t(0), t(100));
        assert_eq!(p.next_renewal(start, end, t(80), 0.5), t(81));
        // A year-long SVID: no more than 24 h from now.
        let end = t(365 * 86_400);
        assert_eq!(p.next_renewal(t(0), end, t(0), 0.5), t(86_400));
        // Expired: renew now.
        assert_eq!(p.next_renewal(t(0), t(10), t(20), 0.5), t(20));
    }

    /// A lifetime of `secs` seconds as the rotator sees it: from receipt (`now`) to NotAfter.
    fn renewal_of(p: &RotationPolicy, now: SystemTime, secs: f64, random: f64) -> Duration {
        let end = now + Duration::from_secs_f64(secs);
        p.next_renewal(now, end, now, random)
            .duration_since(now)
            .unwrap()
    }

    #[test]
    fn short_lifetimes_renew_strictly_before_expiry() {
        // 1 s and 2 s SVIDs, and what NotAfter truncation to whole seconds leaves of them
        // (issued at x.9 s, a "1 s" SVID has 0.1 s left): each renews at half of what is
        // left (± jitter), well before NotAfter, even though the minimum interval is 1 s.
        let p = RotationPolicy::default();
        let now = t(1_000) + Duration::from_millis(900);
        for secs in [0.1, 0.5, 1.0, 1.5, 2.0, 2.5] {
            for random in [0.0, 0.5, 0.999_999] {
                let wait = renewal_of(&p, now, secs, random).as_secs_f64();
                assert!(
                    wait <= secs * 0.6 + 1e-6 && wait >= secs * 0.4 - 1e-6,
                    "{secs} s lifetime, draw {random}: renews after {wait} s"
                );
            }
        }
        // The 1 s case of the issue: half of it, not at NotAfter.
        assert_eq!(renewal_of(&p, now, 1.0, 0.5), Duration::from_millis(500));
    }

    #[test]
    fn renewal_is_before_expiry_for_any_lifetime_and_policy() {
        // Whatever the policy (even one that asks to renew at 100 % of the lifetime) and
        // wherever `now` is in the lifetime, a still-valid SVID renews strictly before its
        // NotAfter, at no more than half the time left once past the policy point.
        let policies = [
            RotationPolicy::default(),
            RotationPolicy {
                renew_at: 1.0,
                jitter: 0.0,
                ..RotationPolicy::default()
            },
            RotationPolicy {
                renew_at: 0.95,
                jitter: 0.5,
                min_interval: Duration::from_secs(30),
                ..RotationPolicy::default()
            },
        ];
        let start = t(5_000);
        for p in &policies {
            for lifetime_ms in [
                1u64, 10, 300, 999, 1_000, 1_001, 2_000, 4_000, 5_000, 60_000,
            ] {
                let end = start + Duration::from_millis(lifetime_ms);
                for elapsed_permille in [0u64, 100, 400, 500, 899, 900, 999] {
                    let now = start + Duration::from_millis(lifetime_ms * elapsed_permille / 1000);
                    for random in [0.0, 0.5, 0.999_999] {
                        let at = p.next_renewal(start, end, now, random);
                        let left = end.duration_since(now).unwrap();
                        assert!(
                            at >= now && at < end,
                            "{p:?} {lifetime_ms} ms at {elapsed_permille}‰: {at:?} not in [now, end)"
                        );
                        // At least a tenth of the lifetime or half of what is left remains.
                        let margin = end.duration_since(at).unwrap();
                        let lifetime = Duration::from_millis(lifetime_ms);
                        assert!(
                            margin >= (lifetime / 10).min(left / 2),
                            "{p:?} {lifetime_ms} ms at {elapsed_permille}‰: {margin:?} left"
                        );
                    }
                }
            }
        }
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
        // not_after before not_before: half of the time left.
        assert_eq!(p.next_renewal(t(100), t(50), t(0), 0.5), t(25));
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
