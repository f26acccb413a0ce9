//! The one rule by which meshid takes an X509 update from a Workload API: the
//! [`X509Source`](super::X509Source), `meshid fetch x509` (with and without `--watch`), and
//! through the source the SDS bridge all accept and retry by the functions here.
//!
//! 1. **Verify before accepting** ([`accept_x509_context`]): every SVID of the message must
//!    verify, at the time of receipt, against its own trust domain's bundle from the same
//!    message, by the same rules as a TLS peer's ([`verify_x509_svid`](crate::verify_x509_svid)):
//!    the X509-SVID profile, signatures up to an authority of the bundle, and the validity
//!    of every certificate (an expired or not-yet-valid leaf or intermediate is refused).
//! 2. **Judge by the whole chain**: an accepted SVID is good until the earliest NotAfter of
//!    its verified path ([`VerifiedSvid::not_after`](crate::VerifiedSvid::not_after)), not
//!    the leaf's alone.
//! 3. **One bundle per trust domain**: two SVIDs of one trust domain that come with different
//!    bundles make the message inconsistent, and it is refused
//!    ([`WorkloadApiError::InconsistentBundles`]). Which bundle anchors a trust domain decides
//!    which peers are trusted; letting the order of the SVIDs in a message decide it would
//!    hand that choice to chance (or to a hostile agent). A correct agent (SPIRE's, meshid's)
//!    sends one bundle per trust domain in a message, so this costs nothing in practice.
//! 4. **Keep the last good**: a refused update changes nothing; the caller keeps what it
//!    holds (until that expires) and logs the refusal with its reason.
//! 5. **Retry as the standard says** ([`WorkloadApiError::is_retryable`], [`Reconnect`]):
//!    `InvalidArgument` and `Unimplemented` are final; everything else (`Unavailable`,
//!    `PermissionDenied`, a lost or stalled stream) is retried with capped exponential
//!    backoff and jitter, the delay never longer than half of what is left of the SVID held,
//!    so that reconnection is tried before it expires.
//! 6. **Bound every wait**: the [`WorkloadApiClient`](super::WorkloadApiClient) gives every
//!    message a deadline ([`MESSAGE_TIMEOUT`](super::MESSAGE_TIMEOUT) by default), so an
//!    agent that answers HTTP/2 PINGs but stalls mid-message is left and reconnected to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::SignatureVerificationAlgorithm;

use super::proto::X509SvidResponse;
use super::{WorkloadApiError, X509Context};
use crate::bundle::split_der;
use crate::{RotationPolicy, SpiffeId, X509Svid};

/// An X509 update that passed [`accept_x509_context`]: the context, and for each of its
/// SVIDs the instant its verified chain stops being valid.
#[derive(Debug, Clone)]
pub struct AcceptedX509Context {
    context: X509Context,
    valid_until: Vec<SystemTime>,
}

impl AcceptedX509Context {
    /// The accepted context.
    pub fn context(&self) -> &X509Context {
        &self.context
    }

    /// The accepted context, by value.
    pub fn into_context(self) -> X509Context {
        self.context
    }

    /// Each SVID, in the server's order, with the earliest NotAfter of its verified path.
    pub fn svids(&self) -> impl Iterator<Item = (&Arc<X509Svid>, SystemTime)> {
        self.context.svids().zip(self.valid_until.iter().copied())
    }

    /// When `svid` (one of this context's, compared by identity) stops being valid: the
    /// earliest NotAfter of its verified path. `None` if it is not one of them.
    pub fn valid_until(&self, svid: &Arc<X509Svid>) -> Option<SystemTime> {
        self.svids()
            .find(|(s, _)| Arc::ptr_eq(s, svid))
            .map(|(_, until)| until)
    }

    /// When the default SVID (the first) stops being valid.
    pub fn default_valid_until(&self) -> SystemTime {
        // `X509Context` never holds zero SVIDs, and `valid_until` has one entry per SVID.
        self.valid_until
            .first()
            .copied()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The acceptance rule of meshid's Workload API clients (see [Acceptance](crate::workload#acceptance)):
/// verifies every SVID of `context` at `at` against its trust domain's bundle from the same
/// message, with the signature `algorithms` allowed. On success, each SVID's validity is
/// the earliest NotAfter of its whole verified path.
///
/// The first SVID that does not verify refuses the whole update
/// ([`WorkloadApiError::Unverified`], naming the SVID and the rule it breaks): each message
/// is the workload's complete state (Workload API §5.3), so taking part of it would serve a
/// state the agent never sent.
pub fn accept_x509_context(
    context: &X509Context,
    at: SystemTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<AcceptedX509Context, WorkloadApiError> {
    let valid_until = context
        .svids()
        .map(|svid| {
            crate::verify_x509_svid(svid.chain(), context.bundles(), at, algorithms)
                .map(|verified| verified.not_after())
                .map_err(|source| WorkloadApiError::Unverified {
                    id: svid.id().clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AcceptedX509Context {
        context: context.clone(),
        valid_until,
    })
}

/// Refuses a `FetchX509SVID` message in which two SVIDs of one trust domain carry different
/// bundles (compared as sets of certificates). Runs after decoding, so every field parses.
pub(crate) fn check_bundles_agree(message: &X509SvidResponse) -> Result<(), WorkloadApiError> {
    let mut seen: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for m in &message.svids {
        let Ok(id) = SpiffeId::new(&m.spiffe_id) else {
            continue;
        };
        let Ok(certs) = split_der(&m.bundle) else {
            continue;
        };
        let certs: BTreeSet<Vec<u8>> = certs.iter().map(|c| c.to_vec()).collect();
        let td = id.trust_domain().to_string();
        match seen.get(&td) {
            Some(first) if *first != certs => {
                return Err(WorkloadApiError::InconsistentBundles { trust_domain: td });
            }
            Some(_) => {}
            None => {
                seen.insert(td, certs);
            }
        }
    }
    Ok(())
}

/// The shortest wait between two reconnections, however little life the held SVID has
/// left: no busy loop in an SVID's last moments.
const MIN_RECONNECT: Duration = Duration::from_millis(50);

/// How long to wait before reconnection number `failures` (1 for the first): the
/// `backoff` policy's [`retry_delay`](RotationPolicy::retry_delay) (`retry_base` doubling
/// up to `retry_max`, `random` in `[0, 1)` picking the jitter), but never more than half of
/// what is left of the held SVID at `now` (`held_until`, the earliest NotAfter of its
/// chain), and never less than 50 ms. Successive retries thus come ever closer together as
/// the SVID nears its end, and one is always tried before it expires. With nothing held, or
/// an SVID already expired, the plain backoff applies.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use meshid::RotationPolicy;
/// use meshid::workload::reconnect_delay;
///
/// let backoff = RotationPolicy { retry_base: Duration::from_secs(1), retry_max: Duration::from_secs(10), ..RotationPolicy::default() };
/// let now = SystemTime::now();
/// // Five failures: 10 s of backoff, but the SVID held has 4 s left: retry in 2 s.
/// let delay = reconnect_delay(&backoff, 5, 0.0, Some(now + Duration::from_secs(4)), now);
/// assert_eq!(delay, Duration::from_secs(2));
/// ```
pub fn reconnect_delay(
    backoff: &RotationPolicy,
    failures: u32,
    random: f64,
    held_until: Option<SystemTime>,
    now: SystemTime,
) -> Duration {
    let delay = backoff.retry_delay(failures, random);
    match held_until.and_then(|until| until.duration_since(now).ok()) {
        Some(left) if !left.is_zero() => delay.min((left / 2).max(MIN_RECONNECT)),
        _ => delay,
    }
}

/// A reconnection schedule by [`reconnect_delay`]: counts consecutive failures and draws
/// the jitter.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: RotationPolicy,
    failures: u32,
}

impl Reconnect {
    /// A schedule by `backoff`'s `retry_base` and `retry_max` (its other fields are unused).
    pub fn new(backoff: RotationPolicy) -> Self {
        Self {
            backoff,
            failures: 0,
        }
    }

    /// Forgets past failures (after a good update).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts one more failure and returns how long to wait before reconnecting, given
    /// when the SVID held (if any) stops being valid.
    pub fn next_delay(&mut self, held_until: Option<SystemTime>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        reconnect_delay(
            &self.backoff,
            self.failures,
            jitter(),
            held_until,
            SystemTime::now(),
        )
    }
}

/// A uniform draw from `[0, 1)` for backoff jitter (not for secrets).
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        >> 11;
    #[allow(clippy::cast_precision_loss)]
    let unit = bits as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn policy() -> RotationPolicy {
        RotationPolicy {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            ..RotationPolicy::default()
        }
    }

    #[test]
    fn backoff_is_capped_by_half_the_held_svids_remaining_life() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let p = policy();
        // Nothing held: the plain backoff, doubling to the cap.
        assert_eq!(
            reconnect_delay(&p, 1, 0.0, None, now),
            Duration::from_millis(100)
        );
        assert_eq!(
            reconnect_delay(&p, 20, 0.0, None, now),
            Duration::from_secs(10)
        );
        // The case from the field: 20 s SVIDs, the agent gone; the backoff has reached 10 s
        // but the SVID held has 6 s left: retry in 3 s, well before it expires.
        let held = Some(now + Duration::from_secs(6));
        assert_eq!(
            reconnect_delay(&p, 20, 0.0, held, now),
            Duration::from_secs(3)
        );
        // Every retry lands before the expiry, down to the floor.
        let mut t = now;
        let until = now + Duration::from_secs(6);
        let mut tries = 0;
        while t < until {
            let d = reconnect_delay(&p, 20, 0.0, Some(until), t);
            assert!(d >= MIN_RECONNECT);
            t += d;
            tries += 1;
        }
        assert!(tries >= 5, "{tries}");
        // A short backoff is not lengthened by a long-lived SVID.
        assert_eq!(
            reconnect_delay(&p, 1, 0.0, Some(now + Duration::from_secs(3600)), now),
            Duration::from_millis(100)
        );
        // Expired: the plain backoff.
        let past = Some(now - Duration::from_secs(1));
        assert_eq!(
            reconnect_delay(&p, 20, 0.0, past, now),
            Duration::from_secs(10)
        );
        assert_eq!(
            reconnect_delay(&p, 20, 0.0, Some(now), now),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn the_schedule_counts_failures_and_resets() {
        let mut r = Reconnect::new(policy());
        let first = r.next_delay(None);
        assert!(first <= Duration::from_millis(100));
        for _ in 0..10 {
            r.next_delay(None);
        }
        assert_eq!(r.failures(), 11);
        r.reset();
        assert_eq!(r.failures(), 0);
    }
}
