//! [`X509Source`]: a live SVID and bundles from the Workload API, usable wherever an
//! [`SvidSource`] or [`BundleSource`] is (the rustls resolver and verifiers, the servers).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls_pki_types::SignatureVerificationAlgorithm;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use super::accept::{accept_x509_context, Reconnect};
use super::{Endpoint, WorkloadApiClient, WorkloadApiError, X509Context, MESSAGE_TIMEOUT};
use crate::watch::{Changes, Watch};
use crate::{BundleSet, BundleSource, RotationPolicy, SpiffeId, SvidSource, TrustDomain};
use crate::{X509Bundle, X509Svid};

/// Which of the workload's SVIDs a source serves.
///
/// A Workload API server may issue a workload several identities (SPIRE does when several
/// registration entries match it: one per service it plays, or an old and a new ID during
/// a migration). Every message carries all of them, in the server's order; the source
/// serves one. [`Pick::Default`] takes the first, which is what a workload with a single
/// identity wants. With several, pick by SPIFFE ID ([`Pick::Id`]) or by the hint the
/// server labels an SVID with ([`Pick::Hint`]; SPIRE's registration entries set it), so
/// that the identity served never depends on the server's order. An update without the
/// picked SVID is refused whole ([`WorkloadApiError::NotPicked`]), and the last good state
/// is kept; at start, [`X509Source::new`] fails with the same error if no update holds it.
///
/// ```no_run
/// # async fn demo() -> Result<(), meshid::workload::WorkloadApiError> {
/// use meshid::workload::{Endpoint, Pick, X509Source, X509SourceOptions};
/// use meshid::SpiffeId;
///
/// // The workload is both `/api` and `/worker`: serve `/api` here, whatever the order.
/// let id = SpiffeId::new("spiffe://example.org/api").expect("a valid ID");
/// let options = X509SourceOptions::default().pick(Pick::Id(id));
/// let api = X509Source::new(Endpoint::from_env()?, options).await?;
///
/// // Or by the hint the server labels it with.
/// let options = X509SourceOptions::default().pick(Pick::Hint("internal".into()));
/// let internal = X509Source::new(Endpoint::from_env()?, options).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pick {
    /// The first SVID of each message (the server's default).
    #[default]
    Default,
    /// The SVID for this SPIFFE ID.
    Id(SpiffeId),
    /// The SVID the server labels with this hint.
    Hint(String),
}

/// How an [`X509Source`] behaves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct X509SourceOptions {
    /// Which SVID to serve.
    pub pick: Pick,
    /// How long [`X509Source::new`] waits for the first valid update.
    pub initial_sync_timeout: Duration,
    /// Reconnection backoff: `retry_base` doubling up to `retry_max`, with jitter, never
    /// longer than half of what is left of the SVID held
    /// ([`reconnect_delay`](super::reconnect_delay); the other fields of the policy are
    /// not used).
    pub backoff: RotationPolicy,
    /// The deadline for the server's answer, its first message, and each later message
    /// once begun ([`WorkloadApiClient::with_message_timeout`]); past it the source
    /// reconnects.
    pub message_timeout: Duration,
    /// The signature algorithms each update's SVID is verified with against its bundle.
    pub algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

impl Default for X509SourceOptions {
    fn default() -> Self {
        Self {
            pick: Pick::Default,
            initial_sync_timeout: Duration::from_secs(10),
            backoff: RotationPolicy {
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_secs(10),
                ..RotationPolicy::default()
            },
            algorithms: default_algorithms(),
            message_timeout: MESSAGE_TIMEOUT,
        }
    }
}

pub(crate) use crate::verify::default_algorithms;

impl X509SourceOptions {
    /// Serve the SVID picked by `pick`.
    #[must_use]
    pub fn pick(mut self, pick: Pick) -> Self {
        self.pick = pick;
        self
    }

    /// Wait at most `timeout` for the first update.
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

    /// Give the server at most `timeout` per message (see [`Self::message_timeout`]).
    #[must_use]
    pub fn message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// Verify each update's SVIDs with `algorithms` (by default the `ring` backend's,
    /// else `aws-lc-rs`'s; with neither feature there are none, so set them).
    #[must_use]
    pub fn algorithms(
        mut self,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        self.algorithms = algorithms;
        self
    }
}

/// A snapshot of an [`X509Source`], for health checks and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStatus {
    /// A stream to the Workload API is open.
    pub connected: bool,
    /// Updates accepted.
    pub updates: u64,
    /// Updates refused by the acceptance rule
    /// ([`accept_x509_context`](super::accept_x509_context): malformed, inconsistent, an
    /// SVID expired, not yet valid or not verifying, or the picked SVID missing); the last
    /// good state was kept.
    pub rejected: u64,
    /// Connection attempts that failed or streams that ended.
    pub reconnects: u64,
    /// The ID of the SVID served.
    pub id: Option<SpiffeId>,
    /// When the SVID served stops being valid: the earliest NotAfter of its verified chain.
    pub not_after: Option<SystemTime>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Set when the source stopped for good (the server answered `InvalidArgument` or
    /// `Unimplemented`, or the source was shut down).
    pub stopped: bool,
}

struct Current {
    svid: Arc<X509Svid>,
    /// The earliest NotAfter of the SVID's verified chain.
    valid_until: SystemTime,
    bundles: Arc<BundleSet>,
}

struct Shared {
    current: Watch<Current>,
    status: Mutex<SourceStatus>,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.current.changes().notify();
    }
}

/// A live X509-SVID and bundle set from the Workload API, kept up to date by a background
/// task (it needs a tokio runtime). Implements [`SvidSource`] and [`BundleSource`], so it
/// plugs straight into [`tls::server_config`](crate::tls::server_config) and friends.
///
/// Each update replaces the whole state, but only if it passes the acceptance rule
/// ([Acceptance](crate::workload#acceptance)): every SVID of the message verifies against
/// its trust domain's bundle from the same message, the bundles agree, and the picked SVID
/// is present; otherwise the last good state is kept, the refusal is logged at `warn`, and
/// the status counts a rejection. The SVID is served until the earliest NotAfter of its
/// whole chain (an expiring intermediate ends it too), and none past it (fail closed). Lost
/// or stalled connections are retried with capped exponential backoff and jitter, never
/// waiting more than half of what is left of the SVID held; `InvalidArgument` and
/// `Unimplemented` stop the source ([`X509Source::stopped`] resolves).
///
/// [`new`](Self::new) (and [`from_env`](Self::from_env)) return once the first good update
/// is in, so a TLS config built on the source can serve at once; [`ready`](Self::ready)
/// waits again after the identity was lost. A workload issued several identities serves
/// the one its [`Pick`] chooses (the first, by default).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use meshid::workload::X509Source;
/// use meshid::{authorize, tls, SpiffeId};
///
/// // The agent named by SPIFFE_ENDPOINT_SOCKET; returns once the first SVID is in.
/// let source = Arc::new(X509Source::from_env().await?);
/// let provider = Arc::new(tls::rustls::crypto::ring::default_provider());
/// let config = tls::server_config(provider, source.clone(), source,
///     authorize::exact(SpiffeId::new("spiffe://example.org/frontend")?))?;
/// # let _ = config;
/// # Ok(())
/// # }
/// ```
pub struct X509Source {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl X509Source {
    /// Connects to `endpoint` and waits until the first good update (at most
    /// `options.initial_sync_timeout`).
    pub async fn new(
        endpoint: Endpoint,
        options: X509SourceOptions,
    ) -> Result<Self, WorkloadApiError> {
        let shared = Arc::new(Shared {
            current: Watch::new(),
            status: Mutex::new(SourceStatus::default()),
        });
        let (stop, stopped) = watch::channel(false);
        let timeout = options.initial_sync_timeout;
        let task = tokio::spawn(run(endpoint, options, Arc::clone(&shared), stopped));
        let source = Self {
            shared,
            stop,
            task: Some(task),
        };
        match tokio::time::timeout(timeout, source.ready()).await {
            Ok(Ok(_)) => Ok(source),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(WorkloadApiError::InitialSyncTimeout {
                waited: timeout,
                last_error: source.status().last_error,
            }),
        }
    }

    /// [`new`](Self::new) with the endpoint named by `SPIFFE_ENDPOINT_SOCKET`
    /// ([`Endpoint::from_env`]) and the default options: the one call a workload under a
    /// SPIFFE agent (SPIRE's, or `meshid serve agent`) needs. An unset or invalid variable
    /// is a [`WorkloadApiError::InvalidEndpoint`]. For other options,
    /// `X509Source::new(Endpoint::from_env()?, options)`.
    pub async fn from_env() -> Result<Self, WorkloadApiError> {
        Self::new(Endpoint::from_env()?, X509SourceOptions::default()).await
    }

    /// Completes with the SVID served once an unexpired one is held: at once after
    /// [`new`](Self::new), or, once the identity was lost (expired with the agent away, or
    /// no longer issued), when a good update brings one back. Fails with
    /// [`WorkloadApiError::Stopped`] if the source stops for good with none held. Bound
    /// it with `tokio::time::timeout`.
    pub async fn ready(&self) -> Result<Arc<X509Svid>, WorkloadApiError> {
        loop {
            let seen = self.generation();
            if let Some(svid) = self.x509_svid() {
                return Ok(svid);
            }
            let status = self.status();
            if status.stopped {
                return Err(WorkloadApiError::Stopped {
                    reason: status.last_error.unwrap_or_default(),
                });
            }
            self.changes().changed(seen).await;
        }
    }

    /// The generation of the source's state: it moves on every accepted update, when
    /// the SVID is dropped (expired, or no longer issued) and when the source stops.
    pub fn generation(&self) -> u64 {
        self.shared.current.generation()
    }

    /// The [`Changes`] behind [`generation`](Self::generation):
    /// `source.changes().changed(seen).await` waits for the next move.
    pub fn changes(&self) -> &Changes {
        self.shared.current.changes()
    }

    /// A snapshot of the source's state.
    pub fn status(&self) -> SourceStatus {
        self.shared.status().clone()
    }

    /// Resolves when the source has stopped for good (the server answered
    /// `InvalidArgument` or `Unimplemented`, or the background task ended), with the
    /// reason; pending for as long as the source runs. What was held stays readable until
    /// it expires, but nothing renews it: a server bridging the source should stop too.
    ///
    /// ```no_run
    /// # async fn demo(source: &meshid::workload::X509Source) {
    /// let why = source.stopped().await;
    /// eprintln!("the Workload API source stopped: {why}");
    /// # }
    /// ```
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

    /// True while an unexpired SVID is held.
    pub fn is_healthy(&self) -> bool {
        self.x509_svid().is_some()
    }

    /// Every bundle of the last good update.
    pub fn bundles(&self) -> Option<Arc<BundleSet>> {
        self.shared.current.get().map(|c| Arc::clone(&c.bundles))
    }

    /// Stops the background task and waits for it. What was held stays readable.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for X509Source {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for X509Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Source")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl SvidSource for X509Source {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        let current = self.shared.current.get()?;
        (SystemTime::now() < current.valid_until).then(|| Arc::clone(&current.svid))
    }
}

impl BundleSource for X509Source {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        self.shared.current.get()?.bundles.x509_bundle(trust_domain)
    }
}

/// Every caller of a server re-serving the source gets the SVID it serves (a Workload API
/// bridged to Envoy, or re-served on another socket).
impl crate::serve::Identities for X509Source {
    fn x509_svids(
        &self,
        _: &crate::serve::Caller,
    ) -> Result<Vec<crate::serve::Identity>, crate::serve::Refused> {
        Ok(self
            .x509_svid()
            .map(crate::serve::Identity::new)
            .into_iter()
            .collect())
    }

    fn changes(&self) -> &Changes {
        self.shared.current.changes()
    }

    /// The source's SVID is in memory.
    fn may_block(&self) -> bool {
        false
    }
}

/// The bundles of the last good update.
impl crate::serve::Bundles for X509Source {
    fn bundles(&self) -> Option<Arc<BundleSet>> {
        X509Source::bundles(self)
    }

    fn changes(&self) -> &Changes {
        self.shared.current.changes()
    }
}

/// Checks an update by the acceptance rule; the SVID to serve and the bundles if it is
/// good.
fn accept(context: &X509Context, options: &X509SourceOptions) -> Result<Current, WorkloadApiError> {
    let accepted = accept_x509_context(context, SystemTime::now(), options.algorithms)?;
    let svid = match &options.pick {
        Pick::Default => Some(context.default_svid()),
        Pick::Id(id) => context.svid_for(id),
        Pick::Hint(hint) => context.svid_with_hint(hint),
    }
    .ok_or_else(|| WorkloadApiError::NotPicked {
        pick: format!("{:?}", options.pick),
    })?;
    let valid_until = accepted
        .valid_until(svid)
        .ok_or_else(|| WorkloadApiError::NotPicked {
            pick: format!("{:?}", options.pick),
        })?;
    Ok(Current {
        svid: Arc::clone(svid),
        valid_until,
        bundles: Arc::new(context.bundles().clone()),
    })
}

/// `current` with every bundle equal to the one held already replaced by the held one: an
/// update that only rotated an SVID keeps the bundles' identity, and so every chain the
/// TLS verifiers have cached against them (see [`crate::VerifiedChainCache`]).
fn keep_unchanged_bundles(shared: &Shared, mut current: Current) -> Current {
    let Some(held) = shared.current.get() else {
        return current;
    };
    let bundles = current
        .bundles
        .iter()
        .map(|new| match held.bundles.get(new.trust_domain()) {
            Some(old) if old == new => old.clone(),
            _ => new.clone(),
        })
        .collect();
    current.bundles = Arc::new(bundles);
    current
}

/// The background task: connect, follow the stream, reconnect with backoff.
async fn run(
    endpoint: Endpoint,
    options: X509SourceOptions,
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
        // PermissionDenied is "no identity issued": the workload lost its identity, and
        // each answer replaces the whole state, so stop serving the old one.
        if matches!(&error, WorkloadApiError::Status(s) if s.code() == tonic::Code::PermissionDenied)
            && shared.current.take().is_some()
        {
            tracing::warn!(%endpoint, "the Workload API no longer issues an identity to us");
        }
        let fatal = !error.is_retryable();
        {
            let mut status = shared.status();
            status.connected = false;
            status.reconnects += 1;
            status.last_error = Some(error.to_string());
            status.stopped = fatal;
        }
        if fatal {
            tracing::error!(%endpoint, %error, "Workload API refused the source for good; stopping");
            shared.notify();
            return;
        }
        drop_if_expired(&shared);
        let held_until = shared.current.get().map(|c| c.valid_until);
        let delay = reconnect.next_delay(held_until);
        tracing::warn!(%endpoint, %error, retry_in = ?delay, "Workload API stream lost; keeping the last good SVID and reconnecting");
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
        self.0.notify();
    }
}

/// Completes when the SVID held expires (never while none is held).
async fn expiry(shared: &Shared) {
    match shared.current.get() {
        Some(held) => {
            let left = held
                .valid_until
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}

/// Fail closed: nothing served past the held SVID's expiry.
fn drop_if_expired(shared: &Shared) {
    let expired = shared
        .current
        .get()
        .is_some_and(|c| c.valid_until <= SystemTime::now());
    if expired {
        shared.current.clear();
    }
}

/// One connection: returns why it ended.
async fn follow(
    endpoint: &Endpoint,
    options: &X509SourceOptions,
    shared: &Shared,
    reconnect: &mut Reconnect,
) -> WorkloadApiError {
    let mut client = match WorkloadApiClient::connect(endpoint).await {
        Ok(c) => c.with_message_timeout(options.message_timeout),
        Err(e) => return e,
    };
    let mut stream = match client.watch_x509_contexts().await {
        Ok(s) => s,
        Err(e) => return e,
    };
    shared.status().connected = true;
    loop {
        // The SVID held expiring is a change too: whoever serves it must stop.
        let next = tokio::select! {
            next = stream.next() => next,
            () = expiry(shared) => {
                drop_if_expired(shared);
                continue;
            }
        };
        let update = match next {
            None => return WorkloadApiError::StreamEnded,
            Some(Err(WorkloadApiError::Status(status))) => return WorkloadApiError::Status(status),
            Some(Err(WorkloadApiError::Transport(e))) => return WorkloadApiError::Transport(e),
            Some(Err(e @ WorkloadApiError::Stalled { .. })) => return e,
            Some(update) => update,
        };
        match update.and_then(|context| accept(&context, options)) {
            Ok(current) if unchanged(shared, &current) => {
                // The server resent what we hold (another identity of the workload
                // rotated): keep the same `Arc`, so TLS resolvers keep their cached key.
                reconnect.reset();
                shared.status().last_error = None;
            }
            Ok(current) => {
                reconnect.reset();
                let current = keep_unchanged_bundles(shared, current);
                let (id, not_after) = (current.svid.id().clone(), current.valid_until);
                let svid = Arc::clone(&current.svid);
                {
                    let mut status = shared.status();
                    status.updates += 1;
                    status.id = Some(id.clone());
                    status.not_after = Some(not_after);
                    status.last_error = None;
                }
                shared.current.publish(current);
                tracing::info!(
                    %id,
                    serial = svid.serial_hex(),
                    valid_until = %crate::time::Rfc3339(not_after),
                    "Workload API update accepted"
                );
            }
            Err(error) => {
                tracing::warn!(%endpoint, %error, "Workload API update refused; keeping the last good one");
                let mut status = shared.status();
                status.rejected += 1;
                status.last_error = Some(error.to_string());
            }
        }
    }
}

fn unchanged(shared: &Shared, new: &Current) -> bool {
    shared.current.get().is_some_and(|held| {
        held.svid.chain() == new.svid.chain()
            && held.svid.private_key().secret_pkcs8_der()
                == new.svid.private_key().secret_pkcs8_der()
            && held.bundles == new.bundles
    })
}
