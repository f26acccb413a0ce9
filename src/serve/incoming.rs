//! Accepting connections: within the server's connection cap (and a small cap of its own
//! for callers that admission will refuse, so they cannot crowd out the workloads it
//! serves), pausing after an accept error (such as running out of file descriptors)
//! instead of spinning on it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;

use super::conn::{self, Conn};

/// How many connections callers outside `allow_uids` may hold at once: enough for them
/// to hear `PermissionDenied`, too few to use up the server's cap.
const STRANGER_SLOTS: usize = 4;
/// How long accepting pauses after an accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A bound listener.
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Decides which accepted sockets become connections.
pub(crate) struct Admission {
    pub(crate) name: &'static str,
    pub(crate) slots: Arc<Semaphore>,
    /// The uids admission lets in, and the slots everyone else shares.
    pub(crate) allowed: Option<(Arc<BTreeSet<u32>>, Arc<Semaphore>)>,
    pub(crate) timeouts: conn::Timeouts,
    pub(crate) forced: watch::Receiver<bool>,
    /// The most connections one uid may hold, and how many each holds.
    per_uid: Option<(usize, UidCounts)>,
    refused: AtomicU64,
    observer: super::Observer,
}

/// How many connections each uid holds.
type UidCounts = Arc<Mutex<HashMap<u32, usize>>>;

/// One connection counted against its uid's cap, given back when the connection closes.
pub(crate) struct UidSlot {
    uid: u32,
    counts: UidCounts,
}

impl UidSlot {
    /// A slot for `uid` if it holds fewer than `cap`.
    fn take(uid: u32, cap: usize, counts: &UidCounts) -> Option<Self> {
        let mut held = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(uid).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Self {
            uid,
            counts: Arc::clone(counts),
        })
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut held = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(
        name: &'static str,
        max_connections: usize,
        max_per_uid: Option<usize>,
        allowed_uids: Option<Arc<BTreeSet<u32>>>,
        timeouts: conn::Timeouts,
        forced: watch::Receiver<bool>,
        observer: super::Observer,
    ) -> Self {
        Self {
            observer,
            name,
            slots: Arc::new(Semaphore::new(max_connections)),
            allowed: allowed_uids.map(|uids| (uids, Arc::new(Semaphore::new(STRANGER_SLOTS)))),
            timeouts,
            forced,
            per_uid: max_per_uid.map(|cap| (cap, Arc::new(Mutex::new(HashMap::new())))),
            refused: AtomicU64::new(0),
        }
    }

    /// The connection for `stream`, or `None` (the socket is dropped: closed at once)
    /// when its cap is full.
    fn admit(&self, stream: conn::Stream) -> Option<Conn> {
        let slots = match &self.allowed {
            Some((uids, strangers))
                if !stream
                    .peer_cred()
                    .is_some_and(|cred| uids.contains(&cred.uid())) =>
            {
                strangers
            }
            _ => &self.slots,
        };
        // Over TCP there is no uid: the server-wide cap alone applies.
        let uid_slot = match (&self.per_uid, stream.peer_cred()) {
            (Some((cap, counts)), Some(cred)) => {
                let slot = UidSlot::take(cred.uid(), *cap, counts);
                if slot.is_none() {
                    self.count_refusal("its per-uid cap");
                    return None;
                }
                slot
            }
            _ => None,
        };
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Some(Conn::new(
                stream,
                self.forced.clone(),
                self.timeouts,
                (permit, uid_slot, self.observer.connection()),
            ));
        }
        self.count_refusal("its connection cap");
        None
    }

    /// Counts (and logs, sparingly) a connection closed at `cap`.
    fn count_refusal(&self, cap: &str) {
        self.observer
            .refused(super::observe::Refusal::ConnectionCap);
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // Counted always, logged at warn the first time and every 1,000th (a flood must
        // not flood the logs).
        if refused == 1 || refused % 1000 == 0 {
            tracing::warn!(
                server = self.name,
                refused,
                reason = cap,
                "closed a new connection at a cap"
            );
        } else {
            tracing::debug!(
                server = self.name,
                refused,
                reason = cap,
                "closed a new connection at a cap"
            );
        }
    }
}

/// The stream of admitted connections.
pub(crate) struct Incoming {
    listener: Listener,
    admission: Admission,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    pub(crate) fn new(listener: Listener, admission: Admission) -> Self {
        Self {
            listener,
            admission,
            pause: None,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            let accepted = match &this.listener {
                Listener::Unix(l) => ready!(l.poll_accept(cx)).map(|(s, _)| conn::Stream::Unix(s)),
                Listener::Tcp(l) => ready!(l.poll_accept(cx)).map(|(s, _)| conn::Stream::Tcp(s)),
            };
            match accepted {
                Ok(stream) => {
                    if let Some(conn) = this.admission.admit(stream) {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{}: accepting a connection failed; pausing", this.admission.name);
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
            }
        }
    }
}
