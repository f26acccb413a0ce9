//! The one change primitive every store and source is built on: [`Changes`] (a generation
//! and whoever waits for it to move) and [`Watch`] (a current value beside its `Changes`).
//!
//! Readers take the current value without locking; a writer publishes a new one, bumps the
//! generation and wakes every waiter, async ([`Changes::changed`]) or blocking
//! ([`Changes::wait_for_change`]). A `Changes` can also forward its bumps to others
//! ([`Changes::forward_to`]), so a server waits on one generation for many stores: an
//! agent's thousand rotating SVIDs, or the few stores a server hands out.
//!
//! ```
//! use std::sync::Arc;
//! use meshid::watch::{Changes, Watch};
//!
//! let all = Arc::new(Changes::new());
//! let a: Watch<String> = Watch::new();
//! let b: Watch<String> = Watch::new();
//! a.changes().forward_to(&all);
//! b.changes().forward_to(&all);
//! assert_eq!(a.publish("one".to_owned()), 1);
//! b.publish("two".to_owned());
//! assert_eq!(all.generation(), 2); // one bump for each publish, wherever it happened
//! assert_eq!(a.get().as_deref().map(String::as_str), Some("one"));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

/// A generation counter and its waiters. Each [`notify`](Self::notify) bumps the
/// generation by one, wakes every waiter and forwards the bump to the `Changes` this one
/// [forwards to](Self::forward_to).
#[derive(Default)]
pub struct Changes {
    generation: AtomicU64,
    /// When the last notify ran (here or forwarded), in nanoseconds since [`epoch`] plus
    /// one (0: never): what a server measures its push delay from.
    last: AtomicU64,
    waiters: Mutex<Waiters>,
    changed: Condvar,
}

#[derive(Default)]
struct Waiters {
    /// Each pending [`Changed`]'s waker, under the key it registered with; removed when
    /// the future completes or is dropped, and all taken by a notify.
    wakers: Vec<(u64, Waker)>,
    next_key: u64,
    forward: Vec<Weak<Changes>>,
}

impl Changes {
    /// Generation 0, nobody waiting.
    pub const fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            last: AtomicU64::new(0),
            waiters: Mutex::new(Waiters {
                wakers: Vec::new(),
                next_key: 0,
                forward: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// The generation: how many times [`notify`](Self::notify) ran (here, or in a
    /// `Changes` that forwards to this one).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Bumps the generation, wakes every waiter and forwards the bump; returns the new
    /// generation.
    pub fn notify(&self) -> u64 {
        // The time first: whoever sees the new generation sees this change's time (or a
        // later one's).
        let since = epoch().elapsed().as_nanos();
        self.last.store(
            u64::try_from(since).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Release,
        );
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let (wakers, forward) = {
            let mut waiters = self.lock();
            waiters.forward.retain(|w| w.strong_count() > 0);
            (std::mem::take(&mut waiters.wakers), waiters.forward.clone())
        };
        self.changed.notify_all();
        for (_, waker) in wakers {
            waker.wake();
        }
        for target in forward.iter().filter_map(Weak::upgrade) {
            target.notify();
        }
        generation
    }

    /// When the generation last moved (`None`: never): a server pushing because of a
    /// change measures how long the push took from here.
    pub fn last_change(&self) -> Option<Instant> {
        match self.last.load(Ordering::Acquire) {
            0 => None,
            n => Some(epoch() + Duration::from_nanos(n - 1)),
        }
    }

    /// From now on, every bump of this `Changes` bumps `target` too (while `target` lives;
    /// it holds no reference back). Chains must not form a cycle.
    pub fn forward_to(&self, target: &Arc<Changes>) {
        let mut waiters = self.lock();
        // Targets that are gone are dropped on every notify, and here whenever the list
        // doubles, so a `Changes` that rarely moves does not collect them without bound.
        let len = waiters.forward.len();
        if len >= 32 && len.is_power_of_two() {
            waiters.forward.retain(|w| w.strong_count() > 0);
        }
        waiters.forward.push(Arc::downgrade(target));
    }

    /// A future that completes with the generation once it differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed {
            changes: self,
            seen,
            key: None,
        }
    }

    /// Blocks until the generation differs from `seen`, or `timeout` passes; returns the
    /// generation then.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |_| self.generation() == seen)
            .unwrap_or_else(PoisonError::into_inner);
        drop(guard);
        self.generation()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The instant change times are counted from (the first one asked for).
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// See [`Changes::changed`]. Dropping it unregisters its waker: a future that never
/// completes (a stream that ended first) leaves nothing behind.
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Changed<'a> {
    changes: &'a Changes,
    seen: u64,
    /// The key its waker is registered under, once polled and pending.
    key: Option<u64>,
}

impl Changed<'_> {
    /// Takes its waker out of the list (if a notify has not taken it already).
    fn unregister(&mut self, waiters: &mut Waiters) {
        if let Some(key) = self.key.take() {
            if let Some(at) = waiters.wakers.iter().position(|(k, _)| *k == key) {
                waiters.wakers.swap_remove(at);
            }
        }
    }
}

impl Future for Changed<'_> {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let now = self.changes.generation();
        if now != self.seen && self.key.is_none() {
            return Poll::Ready(now);
        }
        let changes = self.changes;
        let mut waiters = changes.lock();
        // Check under the lock: a notify between the load and the lock has already taken
        // the waker list.
        let now = changes.generation();
        if now != self.seen {
            self.unregister(&mut waiters);
            return Poll::Ready(now);
        }
        if let Some((_, waker)) = self
            .key
            .and_then(|key| waiters.wakers.iter_mut().find(|(k, _)| *k == key))
        {
            if !waker.will_wake(cx.waker()) {
                waker.clone_from(cx.waker());
            }
        } else {
            let key = waiters.next_key;
            waiters.next_key = key.wrapping_add(1);
            waiters.wakers.push((key, cx.waker().clone()));
            self.key = Some(key);
        }
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if self.key.is_some() {
            let changes = self.changes;
            let mut waiters = changes.lock();
            self.unregister(&mut waiters);
        }
    }
}

/// A current value (or none) and the [`Changes`] that count its replacements.
///
/// ```
/// use meshid::watch::Watch;
///
/// let watch = Watch::new();
/// assert!(watch.get().is_none());
/// let seen = watch.generation();
/// watch.publish(7_u32);
/// assert_eq!(watch.changes().wait_for_change(seen, std::time::Duration::ZERO), seen + 1);
/// assert_eq!(watch.get().as_deref(), Some(&7));
/// ```
pub struct Watch<T> {
    current: ArcSwapOption<T>,
    changes: Changes,
}

impl<T> Default for Watch<T> {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            changes: Changes::new(),
        }
    }
}

impl<T> Watch<T> {
    /// Holding nothing, at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value, if any (no lock taken).
    pub fn get(&self) -> Option<Arc<T>> {
        self.current.load_full()
    }

    /// Publishes `value`; returns the new generation.
    pub fn publish(&self, value: T) -> u64 {
        self.publish_arc(Arc::new(value))
    }

    /// Publishes a shared `value`; returns the new generation.
    pub fn publish_arc(&self, value: Arc<T>) -> u64 {
        self.current.store(Some(value));
        self.changes.notify()
    }

    /// Drops the current value; returns the new generation.
    pub fn clear(&self) -> u64 {
        self.current.store(None);
        self.changes.notify()
    }

    /// Takes the current value out, if any (and then bumps the generation, as
    /// [`clear`](Self::clear) does); taking from an empty watch changes nothing.
    pub fn take(&self) -> Option<Arc<T>> {
        let held = self.current.swap(None);
        if held.is_some() {
            self.changes.notify();
        }
        held
    }

    /// The generation: how many times a value was published or cleared.
    pub fn generation(&self) -> u64 {
        self.changes.generation()
    }

    /// Its [`Changes`]: wait on them, or forward them.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

impl<T> std::fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("generation", &self.generation())
            .field("holds", &self.current.load().is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_bumps_reach_every_target_and_dead_targets_are_dropped() {
        let a = Changes::new();
        let all = Arc::new(Changes::new());
        let gone = Arc::new(Changes::new());
        a.forward_to(&all);
        a.forward_to(&gone);
        drop(gone);
        assert_eq!(a.notify(), 1);
        assert_eq!(all.generation(), 1);
        assert_eq!(a.lock().forward.len(), 1);
        // A chain: a -> all -> top.
        let top = Arc::new(Changes::new());
        all.forward_to(&top);
        a.notify();
        assert_eq!((all.generation(), top.generation()), (2, 1));
    }

    #[test]
    fn forwarding_to_targets_that_are_gone_does_not_grow_without_bound() {
        let a = Changes::new();
        for _ in 0..10_000 {
            a.forward_to(&Arc::new(Changes::new()));
        }
        assert!(a.lock().forward.len() <= 64, "{}", a.lock().forward.len());
        let kept: Vec<_> = (0..100).map(|_| Arc::new(Changes::new())).collect();
        for target in &kept {
            a.forward_to(target);
        }
        a.notify();
        assert_eq!(a.lock().forward.len(), 100);
        assert!(kept.iter().all(|t| t.generation() == 1));
    }

    #[test]
    fn a_dropped_future_leaves_no_waker_behind() {
        let changes = Changes::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..1000 {
            let mut pending = Box::pin(changes.changed(0));
            assert!(pending.as_mut().poll(&mut cx).is_pending());
            assert!(
                pending.as_mut().poll(&mut cx).is_pending(),
                "polled again: one waker"
            );
            assert_eq!(changes.lock().wakers.len(), 1);
        }
        assert!(changes.lock().wakers.is_empty());
        // One that a notify woke is gone from the list too, and completes.
        let mut woken = Box::pin(changes.changed(0));
        assert!(woken.as_mut().poll(&mut cx).is_pending());
        changes.notify();
        assert!(changes.lock().wakers.is_empty());
        assert_eq!(woken.as_mut().poll(&mut cx), Poll::Ready(1));
    }

    #[test]
    fn a_blocked_waiter_wakes_on_a_bump_from_another_thread() {
        let changes = Arc::new(Changes::new());
        let writer = Arc::clone(&changes);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.notify()
        });
        assert_eq!(changes.wait_for_change(0, Duration::from_secs(10)), 1);
        assert_eq!(t.join().unwrap(), 1);
        // Nothing moves: the wait times out at the same generation.
        assert_eq!(changes.wait_for_change(1, Duration::from_millis(1)), 1);
    }

    #[test]
    fn the_future_completes_only_once_the_generation_moves() {
        let changes = Arc::new(Changes::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let pending = tokio::time::timeout(Duration::from_millis(10), changes.changed(0)).await;
            assert!(pending.is_err());
            let writer = Arc::clone(&changes);
            tokio::spawn(async move { writer.notify() });
            assert_eq!(changes.changed(0).await, 1);
            assert_eq!(changes.changed(0).await, 1, "already moved: ready at once");
        });
    }
}
