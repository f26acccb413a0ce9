//! Where the current X509-SVID lives: [`SvidSource`] to read it, [`SvidStore`] to hold a
//! rotating one.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use crate::watch::{Changed, Changes, Watch};
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
/// ([`changed`](Self::changed)). A [`Watch`] of the SVID, with the expiry guard of
/// [`SvidSource`].
///
/// Until the first SVID is published the store holds none, and a TLS config reading it
/// refuses every handshake (fail closed). Wait for it before serving:
/// [`wait_ready`](Self::wait_ready) from sync code, [`ready`](Self::ready) from async code.
///
/// ```
/// use std::time::Duration;
/// use meshid::{SvidSource, SvidStore};
///
/// let store = SvidStore::new();
/// assert!(store.x509_svid().is_none()); // nothing held yet: fail closed
/// assert_eq!(store.generation(), 0);
/// assert!(store.wait_ready(Duration::from_millis(10)).is_err()); // nobody publishes
/// ```
#[derive(Default)]
pub struct SvidStore(Watch<X509Svid>);

impl SvidStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `svid` as the current SVID and returns the new generation.
    pub fn publish(&self, svid: X509Svid) -> u64 {
        self.0.publish(svid)
    }

    /// Drops the current SVID (when it has expired with no replacement): readers get
    /// `None` and handshakes fail closed. Returns the new generation.
    pub fn clear(&self) -> u64 {
        self.0.clear()
    }

    /// How many times the SVID has been published or cleared.
    pub fn generation(&self) -> u64 {
        self.0.generation()
    }

    /// Blocks until the generation differs from `seen`, or `timeout` passes; returns the
    /// generation then.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        self.0.changes().wait_for_change(seen, timeout)
    }

    /// A future that completes with the new generation once it differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        self.0.changes().changed(seen)
    }

    /// Blocks until the store holds an unexpired SVID (at once if it does) and returns it;
    /// [`NotReady`] once `timeout` has passed without one.
    ///
    /// What a service calls after [`Rotator::start`](crate::Rotator::start) and before it
    /// accepts connections, so that its first handshakes do not fail closed. In async code,
    /// use [`ready`](Self::ready) instead: this one blocks the thread.
    ///
    /// ```
    /// # #[cfg(feature = "ca")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use meshid::{Authority, KeyType, SpiffeId, SvidStore, TrustDomain};
    ///
    /// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?;
    /// let store = Arc::new(SvidStore::new());
    /// let svid = ca.issue(&SpiffeId::new("spiffe://example.org/web")?, Duration::from_secs(600))?;
    /// let publisher = Arc::clone(&store);
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(50)); // a Rotator's first issuance
    ///     publisher.publish(svid);
    /// });
    /// let svid = store.wait_ready(Duration::from_secs(10))?;
    /// assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "ca"))]
    /// # fn main() {}
    /// ```
    pub fn wait_ready(&self, timeout: Duration) -> Result<Arc<X509Svid>, NotReady> {
        // No deadline when it would overflow the clock: wait as long as it takes.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let seen = self.generation();
            if let Some(svid) = self.x509_svid() {
                return Ok(svid);
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return Err(NotReady { waited: timeout });
            }
            self.wait_for_change(seen, left);
        }
    }

    /// Completes with the current SVID once the store holds an unexpired one (at once if
    /// it does): the async [`wait_ready`](Self::wait_ready).
    ///
    /// Runtime-agnostic (no tokio needed: it is woken by whoever publishes, from any
    /// thread); bound it with your runtime's timeout, such as `tokio::time::timeout`.
    ///
    /// ```
    /// # async fn demo(store: &meshid::SvidStore) {
    /// let svid = store.ready().await; // then accept connections
    /// println!("serving as {}", svid.id());
    /// # }
    /// ```
    pub async fn ready(&self) -> Arc<X509Svid> {
        loop {
            let seen = self.generation();
            if let Some(svid) = self.x509_svid() {
                return svid;
            }
            self.changed(seen).await;
        }
    }

    /// Its [`Changes`]: to wait on, or to [forward](Changes::forward_to) to a server's.
    pub fn changes(&self) -> &Changes {
        self.0.changes()
    }

    /// What was published last, expired or not.
    pub(crate) fn current(&self) -> Option<Arc<X509Svid>> {
        self.0.get()
    }
}

/// Never hands out an expired SVID, even before whoever publishes has cleared it: a
/// second guard behind the [`Rotator`](crate::Rotator)'s own expiry check.
impl SvidSource for SvidStore {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        self.0
            .get()
            .filter(|svid| SystemTime::now() < svid.not_after())
    }
}

/// [`SvidStore::wait_ready`] waited its whole timeout and no unexpired SVID was published
/// (the issuer failed, or is slow: a [`Rotator`](crate::Rotator)'s
/// [`status`](crate::Rotator::status) tells why).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no X509-SVID was published within {waited:?}")]
#[non_exhaustive]
pub struct NotReady {
    /// How long it waited.
    pub waited: Duration,
}

impl<T: SvidSource + ?Sized> SvidSource for Arc<T> {
    fn x509_svid(&self) -> Option<Arc<X509Svid>> {
        (**self).x509_svid()
    }
}

impl std::fmt::Debug for SvidStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidStore")
            .field("generation", &self.generation())
            .field("id", &self.x509_svid().map(|s| s.id().clone()))
            .finish_non_exhaustive()
    }
}
