//! Where the current X509-SVID lives: [`SvidSource`] to read it, [`SvidStore`] to hold a
//! rotating one.

use std::sync::Arc;
use std::time::Duration;

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
/// ```
/// use meshid::{SvidSource, SvidStore};
///
/// let store = SvidStore::new();
/// assert!(store.x509_svid().is_none()); // nothing held yet: fail closed
/// assert_eq!(store.generation(), 0);
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
            .filter(|svid| std::time::SystemTime::now() < svid.not_after())
    }
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
