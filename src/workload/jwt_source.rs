//! [`JwtSource`]: live JWT bundles from the Workload API, JWT-SVIDs fetched and cached per
//! audience, and local validation, usable wherever a [`JwtBundleSource`] is.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls_pki_types::SignatureVerificationAlgorithm;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use super::accept::Reconnect;
use super::source::default_algorithms;
use super::token_cache::TokenCache;
use super::{Endpoint, WorkloadApiClient, WorkloadApiError, MESSAGE_TIMEOUT};
use crate::jwt::{JwtBundleSource, JwtBundles, JwtError, JwtSvid, JwtValidator};
use crate::watch::{Changes, Watch};
use crate::{JwtAuthority, RotationPolicy, SpiffeId, TrustDomain};

/// The most bytes (tokens, IDs and audiences) a [`JwtSource`]'s token cache holds.
const MAX_CACHED_BYTES: usize = 1024 * 1024;

/// How long [`JwtSource::fetch_jwt_svid`] waits for the bundles to move when a fetched
/// token names a key it does not hold yet (the server may sign with a key added a moment
/// before the bundles stream delivers it).
const NEW_KEY_WAIT: Duration = Duration::from_secs(2);

/// How a [`JwtSource`] behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwtSourceOptions {
    /// How long [`JwtSource::new`] waits for the first JWT bundles.
    pub initial_sync_timeout: Duration,
    /// Reconnection backoff: `retry_base` doubling up to `retry_max`, with jitter (the
    /// other fields of the policy are not used).
    pub backoff: RotationPolicy,
    /// The deadline for the server's answer, its first message, and each later message
    /// once begun ([`WorkloadApiClient::with_message_timeout`]).
    pub message_timeout: Duration,
    /// The signature algorithms tokens are verified with.
    pub algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    /// The clock leeway of validation ([`JwtValidator::with_leeway`]); zero by default.
    pub leeway: Duration,
    /// The most fetched tokens kept for reuse (and at most 1 MiB of them); 0 turns the
    /// cache off.
    pub max_cached_svids: usize,
}

impl Default for JwtSourceOptions {
    fn default() -> Self {
        Self {
            initial_sync_timeout: Duration::from_secs(10),
            backoff: RotationPolicy {
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_secs(10),
                ..RotationPolicy::default()
            },
            message_timeout: MESSAGE_TIMEOUT,
            algorithms: default_algorithms(),
            leeway: Duration::ZERO,
            max_cached_svids: 256,
        }
    }
}

impl JwtSourceOptions {
    /// Wait at most `timeout` for the first bundles.
    #[must_use]
    pub fn initial_sync_timeout(mut self, timeout: Duration) -> Self {
        self.initial_sync_timeout = timeout;
        self
    }

    /// Reconnect after `base`, doubling up to `max`.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff.retry_base = base;
        self.backoff.retry_max = max;
        self
    }

    /// Give the server at most `timeout` per message.
    #[must_use]
    pub fn message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// Verify signatures with `algorithms` (a crypto provider's).
    #[must_use]
    pub fn algorithms(
        mut self,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// Validate with this clock leeway.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Keep at most `max` fetched tokens for reuse.
    #[must_use]
    pub fn max_cached_svids(mut self, max: usize) -> Self {
        self.max_cached_svids = max;
        self
    }
}

/// A snapshot of a [`JwtSource`], for health checks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtSourceStatus {
    /// A `FetchJWTBundles` stream is open.
    pub connected: bool,
    /// Bundle updates accepted that changed what is held.
    pub updates: u64,
    /// Messages refused (a trust domain or a JWKS that does not parse, two keys for one
    /// trust domain); the last good bundles were kept.
    pub rejected: u64,
    /// Connection attempts that failed or streams that ended.
    pub reconnects: u64,
    /// How many trust domains' JWT bundles are held.
    pub trust_domains: usize,
    /// Tokens fetched from the server (and validated).
    pub svids_fetched: u64,
    /// Tokens handed out again from the cache.
    pub svid_cache_hits: u64,
    /// The last error of the bundles stream, if any.
    pub last_error: Option<String>,
    /// Set when the source stopped for good (the server answered `InvalidArgument` or
    /// `Unimplemented`, or the source was shut down).
    pub stopped: bool,
}

struct Shared {
    bundles: Watch<JwtBundles>,
    status: Mutex<JwtSourceStatus>,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, JwtSourceStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A token cache key: the ID asked for (none: the server's default identity) and the
/// audience set, sorted, no repeats.
type Key = (Option<SpiffeId>, Vec<String>);

/// Live JWT bundles from the Workload API's `FetchJWTBundles` stream, kept up to date by a
/// background task (it needs a tokio runtime), with JWT-SVIDs fetched for the workload and
/// tokens validated locally. Implements [`JwtBundleSource`] (and
/// [`JwtBundleFeed`](crate::serve::JwtBundleFeed), so a server can re-serve the bundles).
///
/// - **Bundles**: every message of the stream replaces the whole set, if it parses (each
///   trust domain's JWKS, one bundle per trust domain); otherwise the last good set is
///   kept, the refusal is logged at `warn` and counted. Lost or stalled streams are retried
///   with capped exponential backoff and jitter ([`Reconnect`]); `InvalidArgument` and
///   `Unimplemented` stop the source ([`JwtSource::stopped`] resolves). Bundles are trust,
///   not identity: they are kept while the source reconnects, also when the server says
///   `PermissionDenied`.
/// - **Tokens**: [`fetch_jwt_svid`](JwtSource::fetch_jwt_svid) asks the server (one
///   connection, reopened after a transport failure) and validates the answer against the
///   bundles held before returning it; a token is reused per (ID asked for, audience set)
///   until half its lifetime has passed, and never under other bundles than those it was
///   validated with.
/// - **Validation**: [`validate`](JwtSource::validate) applies every rule of
///   [`JwtValidator`] against the bundles held, with no server round trip.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use meshid::workload::{Endpoint, JwtSource, JwtSourceOptions};
///
/// let source = JwtSource::new(Endpoint::from_env()?, JwtSourceOptions::default()).await?;
///
/// // As a caller: a token for the service called, reused until half its lifetime.
/// let svid = source.fetch_jwt_svid(&["reports".to_owned()], None).await?;
/// let authorization = format!("Bearer {}", svid.token());
///
/// // As the service: a token shown to it, checked against the live bundles, locally.
/// let caller = source.validate(svid.token(), "reports")?;
/// println!("{} called with {} bytes", caller.id(), authorization.len());
/// # Ok(()) }
/// ```
pub struct JwtSource {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    options: JwtSourceOptions,
    /// The connection tokens are fetched over, once made.
    client: Mutex<Option<WorkloadApiClient>>,
    cache: Mutex<TokenCache<Key>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JwtSource {
    /// Connects to `endpoint` and waits until the first JWT bundles arrive (at most
    /// `options.initial_sync_timeout`).
    pub async fn new(
        endpoint: Endpoint,
        options: JwtSourceOptions,
    ) -> Result<Self, WorkloadApiError> {
        let shared = Arc::new(Shared {
            bundles: Watch::new(),
            status: Mutex::new(JwtSourceStatus::default()),
        });
        let (stop, stopped) = watch::channel(false);
        let timeout = options.initial_sync_timeout;
        let task = tokio::spawn(run(
            endpoint.clone(),
            options.clone(),
            Arc::clone(&shared),
            stopped,
        ));
        let source = Self {
            shared,
            endpoint,
            cache: Mutex::new(TokenCache::new(options.max_cached_svids, MAX_CACHED_BYTES)),
            options,
            client: Mutex::new(None),
            stop,
            task: Some(task),
        };
        let synced = tokio::time::timeout(timeout, async {
            loop {
                let seen = source.generation();
                if source.shared.bundles.get().is_some() {
                    return Ok(());
                }
                let status = source.status();
                if status.stopped {
                    return Err(WorkloadApiError::Stopped {
                        reason: status.last_error.unwrap_or_default(),
                    });
                }
                source.changes().changed(seen).await;
            }
        })
        .await;
        match synced {
            Ok(Ok(())) => Ok(source),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WorkloadApiError::NoJwtBundles {
                waited: timeout,
                last_error: source.status().last_error,
            }),
        }
    }

    /// The generation of the bundles: it moves on every accepted change and when the
    /// source stops.
    pub fn generation(&self) -> u64 {
        self.shared.bundles.generation()
    }

    /// The [`Changes`] behind [`generation`](Self::generation):
    /// `source.changes().changed(seen).await` waits for the next move.
    pub fn changes(&self) -> &Changes {
        self.shared.bundles.changes()
    }

    /// A snapshot of the source's state.
    pub fn status(&self) -> JwtSourceStatus {
        self.shared.status().clone()
    }

    /// Resolves when the source has stopped for good (the server answered
    /// `InvalidArgument` or `Unimplemented`, or the background task ended), with the
    /// reason; pending for as long as the source runs. The bundles held stay readable,
    /// but nothing renews them.
    pub async fn stopped(&self) -> String {
        loop {
            let seen = self.generation();
            {
                let status = self.shared.status();
                if status.stopped {
                    return status.last_error.clone().unwrap_or_default();
                }
            }
            self.changes().changed(seen).await;
        }
    }

    /// The JWT bundles held (after [`new`](Self::new), always some).
    pub fn bundles(&self) -> Option<Arc<JwtBundles>> {
        self.shared.bundles.get()
    }

    /// Validates `token` for `audience` by every rule of [`JwtValidator`] (with the
    /// options' algorithms and leeway), now, against the bundles held: no server round
    /// trip.
    pub fn validate(&self, token: &str, audience: &str) -> Result<JwtSvid, JwtError> {
        let bundles = self.bundles().unwrap_or_default();
        self.validator(audience)
            .validate(token, &*bundles, SystemTime::now())
    }

    fn validator(&self, audience: &str) -> JwtValidator<'static> {
        JwtValidator::new(audience, self.options.algorithms).with_leeway(self.options.leeway)
    }

    /// A JWT-SVID for `audience` (the set: order and repeats do not matter) from the
    /// server: the one for `spiffe_id`, or the workload's default (the first the server
    /// answers). It is validated against the bundles held (for every audience asked for)
    /// before it is returned, and cached per (`spiffe_id`, audience set) until half its
    /// lifetime has passed or the bundles change.
    ///
    /// # Errors
    /// The server's refusal ([`WorkloadApiError::Status`]: `InvalidArgument` for no
    /// audience, `PermissionDenied` for an ID the workload does not hold), a transport
    /// failure, or a token that does not validate ([`WorkloadApiError::BadJwtSvid`]) or is
    /// for another ID than asked ([`WorkloadApiError::JwtIdMismatch`]).
    pub async fn fetch_jwt_svid(
        &self,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<JwtSvid, WorkloadApiError> {
        let audience: Vec<String> = audience
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let key: Key = (spiffe_id.cloned(), audience);
        let generation = self.generation();
        if let Some(svid) = self.cache().get(&key, SystemTime::now(), generation) {
            self.shared.status().svid_cache_hits += 1;
            return Ok(svid);
        }
        let mut client = self.client().await?;
        let fetched = client.fetch_jwt_svids(&key.1, spiffe_id).await;
        if matches!(&fetched, Err(e) if !matches!(e, WorkloadApiError::Status(_))) {
            // The connection may be gone: make a new one next time.
            *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        let got = SystemTime::now();
        let svid = fetched?
            .into_iter()
            .next()
            .ok_or(WorkloadApiError::NoJwtSvids)?;
        if let Some(wanted) = spiffe_id.filter(|w| *w != svid.id()) {
            return Err(WorkloadApiError::JwtIdMismatch {
                message: wanted.clone(),
                token: svid.id().clone(),
            });
        }
        let (svid, generation) = self.validate_fetched(&svid, &key.1).await?;
        self.shared.status().svids_fetched += 1;
        let key_bytes = key.0.as_ref().map_or(0, |id| id.as_str().len())
            + key.1.iter().map(String::len).sum::<usize>();
        self.cache()
            .insert(key, key_bytes, svid.clone(), got, generation);
        Ok(svid)
    }

    /// Validates a fetched token for every audience asked for; a key the bundles do not
    /// hold yet is waited for a moment. The token as validated, and the bundles'
    /// generation it was validated under.
    async fn validate_fetched(
        &self,
        svid: &JwtSvid,
        audience: &[String],
    ) -> Result<(JwtSvid, u64), WorkloadApiError> {
        let bad = |source| WorkloadApiError::BadJwtSvid {
            index: 0,
            id: svid.id().clone(),
            source,
        };
        let first = audience.first().map_or("", String::as_str);
        let validator = self.validator(first);
        let mut generation = self.generation();
        let mut result = self.validate_with(&validator, svid);
        if matches!(result, Err(JwtError::UnknownKeyId { .. })) {
            let moved =
                tokio::time::timeout(NEW_KEY_WAIT, self.changes().changed(generation)).await;
            if moved.is_ok() {
                generation = self.generation();
                result = self.validate_with(&validator, svid);
            }
        }
        let validated = result.map_err(bad)?;
        if let Some(missing) = audience.iter().find(|a| !validated.audience().contains(a)) {
            return Err(bad(JwtError::AudienceMismatch {
                expected: missing.clone(),
            }));
        }
        Ok((validated, generation))
    }

    fn validate_with(
        &self,
        validator: &JwtValidator<'_>,
        svid: &JwtSvid,
    ) -> Result<JwtSvid, JwtError> {
        let bundles = self.bundles().unwrap_or_default();
        validator.validate(svid.token(), &*bundles, SystemTime::now())
    }

    /// The connection tokens are fetched over: the one held, else a new one.
    async fn client(&self) -> Result<WorkloadApiClient, WorkloadApiError> {
        let held = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(client) = held {
            return Ok(client);
        }
        let client = WorkloadApiClient::connect(&self.endpoint)
            .await?
            .with_message_timeout(self.options.message_timeout);
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
        Ok(client)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache<Key>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the background task and waits for it. The bundles held stay readable.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for JwtSource {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSource")
            .field("endpoint", &self.endpoint)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The JWT authorities of the bundles held.
impl JwtBundleSource for JwtSource {
    fn jwt_authorities_of(&self, trust_domain: &TrustDomain) -> Option<Vec<JwtAuthority>> {
        self.shared.bundles.get()?.jwt_authorities_of(trust_domain)
    }
}

/// A server re-serving the bundles held (`FetchJWTBundles`, `ValidateJWTSVID`).
impl crate::serve::JwtBundleFeed for JwtSource {
    fn jwt_bundles(&self) -> Option<Arc<JwtBundles>> {
        self.bundles()
    }

    fn changes(&self) -> &Changes {
        self.shared.bundles.changes()
    }
}

/// The background task: connect, follow the stream, reconnect with backoff.
async fn run(
    endpoint: Endpoint,
    options: JwtSourceOptions,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // However the task ends (returns, panics, or is aborted), the source says it stopped.
    let _stopped = Stopped(Arc::clone(&shared));
    let mut reconnect = Reconnect::new(options.backoff);
    loop {
        let error = tokio::select! {
            error = follow(&endpoint, &options, &shared, &mut reconnect) => error,
            _ = stop.wait_for(|s| *s) => break,
        };
        let fatal = !error.is_retryable();
        {
            let mut status = shared.status();
            status.connected = false;
            status.reconnects += 1;
            status.last_error = Some(error.to_string());
            status.stopped = fatal;
        }
        if fatal {
            tracing::error!(%endpoint, %error, "Workload API refused the JWT source for good; stopping");
            shared.bundles.changes().notify();
            return;
        }
        // Bundles do not expire: the plain backoff applies.
        let delay = reconnect.next_delay(None);
        tracing::warn!(%endpoint, %error, retry_in = ?delay, "Workload API JWT bundles stream lost; keeping the last good bundles and reconnecting");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// Marks the source stopped (and wakes whoever waits) when dropped.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.status().stopped = true;
        self.0.bundles.changes().notify();
    }
}

/// One connection: returns why it ended.
async fn follow(
    endpoint: &Endpoint,
    options: &JwtSourceOptions,
    shared: &Shared,
    reconnect: &mut Reconnect,
) -> WorkloadApiError {
    let mut client = match WorkloadApiClient::connect(endpoint).await {
        Ok(c) => c.with_message_timeout(options.message_timeout),
        Err(e) => return e,
    };
    let mut stream = match client.watch_jwt_bundles().await {
        Ok(s) => s,
        Err(e) => return e,
    };
    shared.status().connected = true;
    loop {
        let update = match stream.next().await {
            None => return WorkloadApiError::StreamEnded,
            Some(Err(WorkloadApiError::Status(status))) => return WorkloadApiError::Status(status),
            Some(Err(WorkloadApiError::Transport(e))) => return WorkloadApiError::Transport(e),
            Some(Err(e @ WorkloadApiError::Stalled { .. })) => return e,
            Some(update) => update,
        };
        match update {
            Ok(bundles) => {
                reconnect.reset();
                let unchanged = shared.bundles.get().is_some_and(|held| *held == bundles);
                let trust_domains = bundles.len();
                {
                    let mut status = shared.status();
                    status.last_error = None;
                    if !unchanged {
                        status.updates += 1;
                        status.trust_domains = trust_domains;
                    }
                }
                if !unchanged {
                    shared.bundles.publish(bundles);
                    tracing::info!(trust_domains, "Workload API JWT bundles accepted");
                }
            }
            Err(error) => {
                tracing::warn!(%endpoint, %error, "Workload API JWT bundles refused; keeping the last good ones");
                let mut status = shared.status();
                status.rejected += 1;
                status.last_error = Some(error.to_string());
            }
        }
    }
}
