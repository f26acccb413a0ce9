//! The rotation driver: a std thread that renews an SVID by the [`RotationPolicy`], verifies
//! each new SVID before publishing it, keeps the last good one on failure, and fails closed
//! when nothing valid is left.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rustls_pki_types::SignatureVerificationAlgorithm;

use super::{RotationPolicy, SvidStore};
use crate::{BundleSource, SpiffeId, X509Svid};

/// Makes new X509-SVIDs: an in-process [`Authority`](crate::Authority), or a remote CA.
/// Each call should use a fresh key.
pub trait Issuer: Send + Sync {
    /// A new SVID for `id`, valid for about `ttl`.
    fn issue_svid(
        &self,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<X509Svid, Box<dyn std::error::Error + Send + Sync>>;
}

/// A snapshot of a rotator, for metrics and health checks.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RotationStatus {
    /// The store's generation after the last publish or clear.
    pub generation: u64,
    /// The serial number (hex) of the SVID being served, if any.
    pub serial: Option<String>,
    /// When the SVID being served expires.
    pub not_after: Option<SystemTime>,
    /// When the next renewal (or retry) is due.
    pub next_renewal: Option<SystemTime>,
    /// Renewals that published a new SVID.
    pub successes: u64,
    /// Renewals that failed (issuance or verification).
    pub failures: u64,
    /// The failures by what failed ([`failures_of`](Self::failures_of)); they add up to
    /// [`failures`](Self::failures).
    failures_by_kind: [u64; RenewalFailure::ALL.len()],
    /// When the SVID being served became valid (its NotBefore, backdated for clock skew).
    pub not_before: Option<SystemTime>,
    /// When the last successful renewal published its SVID.
    pub last_success: Option<SystemTime>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Why the last renewal failed, if it did.
    pub last_error: Option<String>,
}

impl RotationStatus {
    /// The renewals that failed for `kind` of reason.
    pub fn failures_of(&self, kind: RenewalFailure) -> u64 {
        self.failures_by_kind[kind as usize]
    }
}

impl Default for RotationStatus {
    fn default() -> Self {
        Self {
            generation: 0,
            serial: None,
            not_after: None,
            next_renewal: None,
            successes: 0,
            failures: 0,
            failures_by_kind: [0; RenewalFailure::ALL.len()],
            consecutive_failures: 0,
            last_error: None,
            not_before: None,
            last_success: None,
        }
    }
}

/// What failed in a renewal: a closed set, so a metric labelled by it stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RenewalFailure {
    /// The issuer failed or refused (the CA is down, expired, or said no).
    Issuer,
    /// The issuer returned an SVID for another SPIFFE ID.
    WrongId,
    /// The new SVID does not verify against the bundles (X509-SVID §5), so it was never
    /// published.
    Verify,
}

impl RenewalFailure {
    /// Every kind.
    pub const ALL: &'static [Self] = &[Self::Issuer, Self::WrongId, Self::Verify];

    /// A short lower-case name (`issuer`, `wrong_id`, `verify`): a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::WrongId => "wrong_id",
            Self::Verify => "verify",
        }
    }
}

impl std::fmt::Display for RenewalFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a [`Rotator`] renews and how.
///
/// Build it with [`RotatorConfig::new`] from an in-process [`Authority`](crate::Authority)
/// (feature `ca`: it issues, and its root is the bundle), or with
/// [`with_issuer`](Self::with_issuer) for any [`Issuer`]; both default the lifetime
/// ([`DEFAULT_TTL`](Self::DEFAULT_TTL)), the [`policy`](Self::policy) and the
/// [`algorithms`](Self::algorithms), which the builder methods change. The fields are
/// public too, for a struct literal.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use meshid::{RotatorConfig, SpiffeId, SvidStore, TrustDomain, X509Bundle};
/// # struct RemoteCa;
/// # impl meshid::Issuer for RemoteCa {
/// #     fn issue_svid(&self, _: &SpiffeId, _: Duration)
/// #         -> Result<meshid::X509Svid, Box<dyn std::error::Error + Send + Sync>> {
/// #         Err("offline".into())
/// #     }
/// # }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let bundle = X509Bundle::from_authorities(TrustDomain::new("example.org")?, [])?;
/// let config = RotatorConfig::with_issuer(
///     SpiffeId::new("spiffe://example.org/web")?,
///     Arc::new(RemoteCa),   // any `Issuer`
///     Arc::new(bundle),     // what each new SVID must verify against
///     Arc::new(SvidStore::new()),
/// )
/// .ttl(Duration::from_secs(600));
/// assert_eq!(config.ttl, Duration::from_secs(600));
/// assert_eq!(config.policy, meshid::RotationPolicy::default());
/// # Ok(())
/// # }
/// ```
pub struct RotatorConfig {
    /// The SPIFFE ID to keep an SVID for.
    pub id: SpiffeId,
    /// The lifetime to ask for.
    pub ttl: Duration,
    /// When to renew.
    pub policy: RotationPolicy,
    /// Who issues.
    pub issuer: Arc<dyn Issuer>,
    /// The bundles each new SVID must verify against before it is published.
    pub bundles: Arc<dyn BundleSource>,
    /// The signature algorithms for that check.
    pub algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    /// Where the current SVID is published.
    pub store: Arc<SvidStore>,
}

impl RotatorConfig {
    /// The lifetime asked for unless [`ttl`](Self::ttl) says otherwise: 1 hour, as SPIRE.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// Renew `id` from `issuer`, verify each new SVID against `bundles` and publish it to
    /// `store`; with the [`DEFAULT_TTL`](Self::DEFAULT_TTL), [`RotationPolicy::default`],
    /// and the verification algorithms of the crypto backend built in (`ring`'s, else
    /// `aws-lc-rs`'s). With neither feature there are none and every renewal fails to
    /// verify: set [`algorithms`](Self::algorithms).
    pub fn with_issuer(
        id: SpiffeId,
        issuer: Arc<dyn Issuer>,
        bundles: Arc<dyn BundleSource>,
        store: Arc<SvidStore>,
    ) -> Self {
        Self {
            id,
            ttl: Self::DEFAULT_TTL,
            policy: RotationPolicy::default(),
            issuer,
            bundles,
            algorithms: crate::verify::default_algorithms(),
            store,
        }
    }

    /// Asks for SVIDs that live `ttl`.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Renews by `policy`.
    #[must_use]
    pub fn policy(mut self, policy: RotationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Verifies each new SVID with `algorithms` (such as `meshid::ring_algorithms()`, or a
    /// rustls provider's `signature_verification_algorithms.all`).
    #[must_use]
    pub fn algorithms(
        mut self,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        self.algorithms = algorithms;
        self
    }
}

impl std::fmt::Debug for RotatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatorConfig")
            .field("id", &self.id)
            .field("ttl", &self.ttl)
            .field("policy", &self.policy)
            .field("algorithms", &self.algorithms.len())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Requests to the worker, guarded by one mutex so none is lost between checks.
#[derive(Default)]
struct Control {
    stop: bool,
    renew: bool,
}

struct Shared {
    config: RotatorConfig,
    status: Mutex<RotationStatus>,
    control: Mutex<Control>,
    wake: Condvar,
}

/// Keeps an SVID fresh in an [`SvidStore`] on a background thread.
///
/// The store holds nothing until the first renewal succeeds: wait for it with
/// [`SvidStore::wait_ready`] (or [`SvidStore::ready`] in async code) before serving.
/// [`stop`](Self::stop) (or dropping the rotator) never blocks;
/// [`stop_and_wait`](Self::stop_and_wait) also waits for the thread to exit.
///
/// ```
/// # #[cfg(all(feature = "ca", any(feature = "ring", feature = "aws-lc-rs")))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use meshid::{Authority, KeyType, Rotator, RotatorConfig, SpiffeId, SvidStore, TrustDomain};
///
/// let td = TrustDomain::new("example.org")?;
/// let ca = Arc::new(Authority::new_root(td, Duration::from_secs(3600), KeyType::P256)?);
/// let store = Arc::new(SvidStore::new());
/// let id = SpiffeId::new("spiffe://example.org/web")?;
/// let rotator = Rotator::start(RotatorConfig::new(id, ca, store.clone())?.ttl(Duration::from_secs(60)));
/// let svid = store.wait_ready(Duration::from_secs(10))?;
/// assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
/// assert_eq!(rotator.status().successes, 1);
/// rotator.stop();
/// # Ok(())
/// # }
/// # #[cfg(not(all(feature = "ca", any(feature = "ring", feature = "aws-lc-rs"))))]
/// # fn main() {}
/// ```
pub struct Rotator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Rotator {
    /// Starts renewing at once (the store holds nothing until the first success).
    pub fn start(config: RotatorConfig) -> Self {
        let shared = Arc::new(Shared {
            config,
            status: Mutex::new(RotationStatus::default()),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("meshid-rotator".into())
            .spawn(move || run(&worker))
            .ok();
        Self { shared, thread }
    }

    /// A snapshot of the rotation state.
    pub fn status(&self) -> RotationStatus {
        lock(&self.shared.status).clone()
    }

    /// The SPIFFE ID this rotator renews.
    pub fn id(&self) -> &SpiffeId {
        &self.shared.config.id
    }

    #[cfg(feature = "metrics")]
    /// A reader of this rotator's status that does not keep it alive (metrics read it on
    /// each scrape; once the rotator is dropped it reads `None`).
    pub(crate) fn status_reader(&self) -> StatusReader {
        StatusReader(Arc::downgrade(&self.shared))
    }

    /// Renews now rather than at the scheduled time.
    pub fn renew_now(&self) {
        // Recorded under the lock, so a request made while a renewal is under way is not
        // lost: the worker renews again as soon as it finishes.
        lock(&self.shared.control).renew = true;
        self.shared.wake.notify_all();
    }

    /// Asks the rotator to stop, and returns at once: it never blocks, so it is safe to
    /// call from async code (a tokio worker thread) or while the issuer hangs. The thread
    /// finishes the issuance under way, if any (its SVID may still be published), and
    /// exits; the store keeps the last SVID, served until it expires. The status stays
    /// readable. Calling it again does nothing; dropping the rotator does the same.
    ///
    /// To also wait until the thread has exited, call [`stop_and_wait`](Self::stop_and_wait).
    pub fn stop(&self) {
        lock(&self.shared.control).stop = true;
        self.shared.wake.notify_all();
    }

    /// Stops the rotator and blocks until its thread has exited, so that nothing is
    /// published after it returns. That wait lasts as long as an issuance under way: from
    /// async code, call [`stop`](Self::stop) instead (or this one in
    /// `tokio::task::spawn_blocking`).
    pub fn stop_and_wait(mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// True once the rotator's thread has exited (after a stop), or if it never started.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Rotator {
    fn drop(&mut self) {
        // Signal, but do not wait: an issuer that hangs must not hang the caller.
        self.stop();
    }
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("id", &self.shared.config.id)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// See [`Rotator::status_reader`].
#[cfg(feature = "metrics")]
#[derive(Clone)]
pub(crate) struct StatusReader(std::sync::Weak<Shared>);

#[cfg(feature = "metrics")]
impl StatusReader {
    /// The rotator's ID and status, while it lives.
    pub(crate) fn read(&self) -> Option<(SpiffeId, RotationStatus)> {
        let shared = self.0.upgrade()?;
        let status = lock(&shared.status).clone();
        Some((shared.config.id.clone(), status))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A uniform draw from `[0, 1)` for jitter (not for secrets: std's randomly keyed hasher).
fn random_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    // 53 random bits into the mantissa; the cast is exact.
    #[allow(clippy::cast_precision_loss)]
    let unit = bits as f64 / (1u64 << 53) as f64;
    unit
}

fn run(shared: &Shared) {
    let cfg = &shared.config;
    loop {
        drop_if_expired(shared, SystemTime::now());
        let now = SystemTime::now();
        let next = match renew(cfg) {
            Ok(svid) => {
                // Measure the lifetime from when we got the SVID: issuers backdate NotBefore
                // for peers' clock skew (10 s here, rule 13), which for SVIDs living seconds
                // would put "half the lifetime" before issuance.
                let next = cfg.policy.next_renewal(
                    svid.not_before().max(now),
                    svid.not_after(),
                    now,
                    random_unit(),
                );
                let serial = serial_hex(&svid);
                let (not_before, not_after) = (svid.not_before(), svid.not_after());
                // Logged (and timestamped) before the store has it, so a log's time is never
                // later than the moment a server could hand the SVID out (the "rotated"
                // event below may be, on a busy machine): benches/spire measures from it.
                tracing::debug!(id = %cfg.id, serial = %serial, "publishing X509-SVID");
                // Publish under the status lock: whoever sees the new generation and then
                // asks for the status gets the status of that generation.
                let mut st = lock(&shared.status);
                let generation = cfg.store.publish(svid);
                tracing::info!(id = %cfg.id, serial = %serial, generation, not_after = %crate::time::Rfc3339(not_after), "rotated X509-SVID");
                st.generation = generation;
                st.serial = Some(serial);
                st.not_after = Some(not_after);
                st.not_before = Some(not_before);
                st.next_renewal = Some(next);
                st.last_success = Some(SystemTime::now());
                st.successes += 1;
                st.consecutive_failures = 0;
                st.last_error = None;
                next
            }
            Err((kind, why)) => {
                let mut st = lock(&shared.status);
                st.failures += 1;
                st.failures_by_kind[kind as usize] += 1;
                st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                let delay = cfg
                    .policy
                    .retry_delay(st.consecutive_failures, random_unit());
                tracing::warn!(id = %cfg.id, failed = %kind, error = %why, retry_in = ?delay, "X509-SVID renewal failed");
                st.last_error = Some(why);
                drop(st);
                // Keep the last good SVID until it expires (the issuer call may have been
                // long: look at the clock again); then fail closed.
                let now = SystemTime::now();
                drop_if_expired(shared, now);
                let mut st = lock(&shared.status);
                // Retry after the backoff, but wake no later than the held SVID's expiry so
                // that an expired SVID is never served for the rest of a long backoff.
                let mut next = now + delay;
                if let Some(held) = cfg.store.current() {
                    next = next.min(held.not_after().max(now));
                }
                st.next_renewal = Some(next);
                next
            }
        };
        // Sleep until the next renewal, a stop, or a `renew_now`.
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let control = lock(&shared.control);
        let (mut control, _) = shared
            .wake
            .wait_timeout_while(control, wait, |c| !c.stop && !c.renew)
            .unwrap_or_else(PoisonError::into_inner);
        if control.stop {
            return;
        }
        control.renew = false;
    }
}

/// Fail closed: clears the store once the held SVID has expired.
fn drop_if_expired(shared: &Shared, now: SystemTime) {
    let cfg = &shared.config;
    let expired = cfg
        .store
        .current()
        .is_some_and(|held| held.not_after() <= now);
    if expired {
        let mut st = lock(&shared.status);
        st.generation = cfg.store.clear();
        st.serial = None;
        st.not_after = None;
        st.not_before = None;
        tracing::error!(id = %cfg.id, "X509-SVID expired with no replacement; serving none");
    }
}

/// Issues a new SVID and verifies it against the bundles before anyone sees it.
fn renew(cfg: &RotatorConfig) -> Result<X509Svid, (RenewalFailure, String)> {
    let svid = cfg
        .issuer
        .issue_svid(&cfg.id, cfg.ttl)
        .map_err(|e| (RenewalFailure::Issuer, format!("issuer: {e}")))?;
    if svid.id() != &cfg.id {
        return Err((
            RenewalFailure::WrongId,
            format!("issuer returned an SVID for {}, not {}", svid.id(), cfg.id),
        ));
    }
    crate::verify_x509_svid(
        svid.chain(),
        cfg.bundles.as_ref(),
        SystemTime::now(),
        cfg.algorithms,
    )
    .map_err(|e| {
        (
            RenewalFailure::Verify,
            format!("new SVID does not verify: {e}"),
        )
    })?;
    Ok(svid)
}

fn serial_hex(svid: &X509Svid) -> String {
    crate::CertificateInfo::from_der(svid.leaf())
        .map(|info| info.serial_hex().to_owned())
        .unwrap_or_default()
}
