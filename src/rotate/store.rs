//! Where the current X509-SVID lives: [`SvidSource`] to read it, [`SvidStore`] to hold a
//! rotating one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::X509Svid;

/// Gives the current X509-SVID: "who am I right now". Implemented by a fixed
/// `Arc<X509Svid>`, by the rotating [`SvidStore`], and by the Workload API source; TLS
/// resolvers read any of them.
///
/// Return the same `Arc` for as long as the SVID is unchanged: readers cache what they
/// derive from it by pointer.
pub trait SvidSource: Send + Sync {
    /// The current SVID, or `None` when none is held (fail closed: no handshake).
    fn x509_svid(&self) -> Option<Arc<X509Svid>>;
}

impl SvidSource for Arc<X509Svid> {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        Some(Arc::clone(self))
    }
}

/// A rotating SVID: readers get the current one without locking; a writer publishes a new
/// one atomically, bumps the generation and wakes whoever waits for a change, from sync
/// code ([`wait_for_change`](Self::wait_for_change)) or async code
/// ([`changed`](Self::changed)).
///
/// ```
/// use meshid::{SvidSource, SvidStore};
///
/// let store = SvidStore::new();
/// assert!(store.x509_svid().is_none()); // nothing held yet: fail closed
/// assert_eq!(store.generation(), 0);
/// ```
#[derive(Default)]
pub struct SvidStore {
    current: ArcSwapOption<X509Svid>,
    generation: AtomicU64,
    waiters: Mutex<Vec<Waker>>,
    changed: Condvar,
}

impl SvidStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `svid` as the current SVID and returns the new generation.
    pub fn publish(&self, svid: X509Svid) -> u64 {
        self.current.store(Some(Arc::new(svid)));
        self.bump()
    }

    /// Drops the current SVID (when it has expired with no replacement): readers get
    /// `None` and handshakes fail closed. Returns the new generation.
    pub fn clear(&self) -> u64 {
        self.current.store(None);
        self.bump()
    }

    fn bump(&self) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let wakers =
            std::mem::take(&mut *self.waiters.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in wakers {
            waker.wake();
        }
        self.changed.notify_all();
        generation
    }

    /// How many times the SVID has been published or cleared.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Blocks until the generation differs from `seen`, or `timeout` passes; returns the
    /// generation then.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |_| self.generation() == seen)
            .unwrap_or_else(PoisonError::into_inner);
        drop(guard);
        self.generation()
    }

    /// A future that completes with the new generation once it differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed { store: self, seen }
    }
}

impl SvidStore {
    /// What was published last, expired or not.
    pub(crate) fn current(&self) -> Option<Arc<X509Svid>> {
        self.current.load_full()
    }
}

/// Never hands out an expired SVID, even before whoever publishes has cleared it: a
/// second guard behind the [`Rotator`](crate::Rotator)'s own expiry check.
impl SvidSource for SvidStore {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        self.current
            .load_full()
            .filter(|svid| std::time::SystemTime::now() < svid.not_after())
    }
}

impl<T: SvidSource + ?Sized> SvidSource for Arc<T> {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        (**self).x509_svid()
    }
}

/// See [`SvidStore::changed`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Changed<'a> {
    store: &'a SvidStore,
    seen: u64,
}

impl std::fmt::Debug for SvidStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidStore")
            .field("generation", &self.generation())
            .field("id", &self.x509_svid().map(|s| s.id().clone()))
            .finish_non_exhaustive()
    }
}

impl Future for Changed<'_> {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let now = self.store.generation();
        if now != self.seen {
            return Poll::Ready(now);
        }
        let mut waiters = self
            .store
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Check again under the lock: a publish between the load and the lock has already
        // taken the waker list.
        let now = self.store.generation();
        if now != self.seen {
            return Poll::Ready(now);
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
