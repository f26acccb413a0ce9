//! Rotation: the store, the driver, and their behaviour when the issuer fails, lies or hangs.
//!
//! TTLs are at least `Authority::MIN_SVID_TTL` (5 s), the shortest the CA issues; the
//! shorter SVIDs of a remote issuer are made with rcgen.

#[path = "common/certs.rs"]
mod certs;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime};

use meshid::{
    Authority, BundleSet, Issuer, KeyType, PrivateKey, RotationPolicy, Rotator, RotatorConfig,
    SpiffeId, SvidSource, SvidStore, TrustDomain, X509Bundle, X509Svid,
};

type IssueResult = Result<X509Svid, Box<dyn std::error::Error + Send + Sync>>;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// The shortest TTL the CA issues, which the rotation tests use to rotate quickly.
const MIN_TTL: Duration = Authority::MIN_SVID_TTL;

fn fast_policy() -> RotationPolicy {
    RotationPolicy {
        min_interval: Duration::from_millis(100),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..RotationPolicy::default()
    }
}

struct Setup {
    ca: Arc<Authority>,
    bundles: Arc<BundleSet>,
}

fn setup() -> Setup {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Arc::new(
        Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap(),
    );
    let mut bundles = BundleSet::new();
    bundles.insert(X509Bundle::from_authorities(td, ca.root().cloned()).unwrap());
    Setup {
        ca,
        bundles: Arc::new(bundles),
    }
}

fn start(s: &Setup, issuer: Arc<dyn Issuer>, ttl: Duration, store: &Arc<SvidStore>) -> Rotator {
    Rotator::start(RotatorConfig {
        id: id("spiffe://example.org/web"),
        ttl,
        policy: fast_policy(),
        issuer,
        bundles: s.bundles.clone(),
        algorithms: webpki::ALL_VERIFICATION_ALGS,
        store: Arc::clone(store),
    })
}

/// Waits until `cond` holds, up to 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rotates_repeatedly_with_new_keys_and_serials() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let rotator = start(&s, s.ca.clone(), MIN_TTL, &store);
    eventually("three publications", || store.generation() >= 3);
    let status = rotator.status();
    assert!(status.successes >= 3 && status.failures == 0, "{status:?}");
    assert!(status.serial.is_some() && status.next_renewal.is_some());
    // Each publication is a new certificate with a new key.
    let a = store.x509_svid().unwrap();
    let seen = store.generation();
    store.wait_for_change(seen, Duration::from_secs(5));
    let b = store.x509_svid().unwrap();
    assert_ne!(a.leaf(), b.leaf());
    assert_ne!(
        a.private_key().secret_pkcs8_der(),
        b.private_key().secret_pkcs8_der()
    );
    rotator.stop();
}

/// Issues once, then fails every time.
struct FailsAfterFirst {
    ca: Arc<Authority>,
    calls: AtomicUsize,
}

impl Issuer for FailsAfterFirst {
    fn issue_svid(&self, id: &SpiffeId, ttl: Duration) -> IssueResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(self.ca.issue(id, ttl)?)
        } else {
            Err("the CA is down".into())
        }
    }
}

#[test]
fn keeps_the_last_good_svid_until_it_expires_then_fails_closed() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let issuer = Arc::new(FailsAfterFirst {
        ca: s.ca.clone(),
        calls: AtomicUsize::new(0),
    });
    let rotator = start(&s, issuer, MIN_TTL, &store);
    eventually("the first SVID", || store.x509_svid().is_some());
    let first = store.x509_svid().unwrap();
    eventually("a failed renewal", || rotator.status().failures >= 1);
    let status = rotator.status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("the CA is down"),
        "{status:?}"
    );
    // Still served while valid.
    if SystemTime::now() < first.not_after() {
        assert_eq!(store.x509_svid().unwrap().leaf(), first.leaf());
    }
    // Then nothing: no handshake with an expired identity.
    eventually("fail closed after expiry", || store.x509_svid().is_none());
    assert!(SystemTime::now() >= first.not_after());
    // The store's read guard hides an expired SVID at once; the rotator's thread wakes at
    // expiry (not after its backoff) and clears what it reports.
    eventually("the status drops the expired serial", || {
        rotator.status().serial.is_none()
    });
    rotator.stop();
}

#[test]
fn an_expired_svid_is_dropped_at_expiry_even_during_a_long_backoff() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let issuer = Arc::new(FailsAfterFirst {
        ca: s.ca.clone(),
        calls: AtomicUsize::new(0),
    });
    // Retries a minute apart: without waking at expiry, the expired SVID would be held
    // for up to a minute.
    let rotator = Rotator::start(RotatorConfig {
        id: id("spiffe://example.org/web"),
        ttl: MIN_TTL,
        policy: RotationPolicy {
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(60),
            ..fast_policy()
        },
        issuer,
        bundles: s.bundles.clone(),
        algorithms: webpki::ALL_VERIFICATION_ALGS,
        store: Arc::clone(&store),
    });
    eventually("the first SVID", || store.x509_svid().is_some());
    let first = store.x509_svid().unwrap();
    eventually("fail closed soon after expiry", || {
        store.x509_svid().is_none()
    });
    let late = SystemTime::now().duration_since(first.not_after()).unwrap();
    assert!(
        late < Duration::from_secs(5),
        "cleared {late:?} after expiry"
    );
    rotator.stop();
}

#[test]
fn renew_now_is_never_lost() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let rotator = start(&s, s.ca.clone(), Duration::from_secs(3600), &store);
    // Ask again and again right after each publication, when the worker may not be
    // waiting yet: every request must lead to a renewal.
    for n in 1..=20 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.generation() < n {
            assert!(Instant::now() < deadline, "renewal {n} never happened");
            std::hint::spin_loop();
        }
        rotator.renew_now();
    }
    eventually("the last requested renewal", || store.generation() >= 21);
    rotator.stop();
}

/// Returns SVIDs that must not be published.
struct Lies {
    ca: Arc<Authority>,
    other_ca: Authority,
    mode: usize,
}

impl Issuer for Lies {
    fn issue_svid(&self, id: &SpiffeId, ttl: Duration) -> IssueResult {
        match self.mode {
            0 => Ok(self
                .ca
                .issue(&SpiffeId::new("spiffe://example.org/someone-else")?, ttl)?),
            _ => Ok(self.other_ca.issue(id, ttl)?),
        }
    }
}

#[test]
fn an_svid_that_is_not_ours_or_does_not_verify_is_never_published() {
    let s = setup();
    for mode in [0, 1] {
        let store = Arc::new(SvidStore::new());
        let issuer = Arc::new(Lies {
            ca: s.ca.clone(),
            other_ca: Authority::new_root(
                TrustDomain::new("example.org").unwrap(),
                Duration::from_secs(600),
                KeyType::P256,
            )
            .unwrap(),
            mode,
        });
        let rotator = start(&s, issuer, Duration::from_secs(60), &store);
        eventually("two refusals", || rotator.status().failures >= 2);
        assert!(store.x509_svid().is_none());
        assert_eq!(store.generation(), 0);
        let why = rotator.status().last_error.unwrap();
        assert!(
            why.contains(if mode == 0 {
                "someone-else"
            } else {
                "does not verify"
            }),
            "{why}"
        );
        rotator.stop();
    }
}

/// Issues once, then never returns.
struct Hangs {
    ca: Arc<Authority>,
    calls: AtomicUsize,
    release: Arc<Mutex<()>>,
}

impl Issuer for Hangs {
    fn issue_svid(&self, id: &SpiffeId, ttl: Duration) -> IssueResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            let _held = self.release.lock().unwrap();
        }
        Ok(self.ca.issue(id, ttl)?)
    }
}

#[test]
fn a_hanging_issuer_blocks_neither_readers_nor_drop() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let release = Arc::new(Mutex::new(()));
    let gate = release.lock().unwrap();
    let issuer = Arc::new(Hangs {
        ca: s.ca.clone(),
        calls: AtomicUsize::new(0),
        release: Arc::clone(&release),
    });
    let rotator = start(&s, issuer.clone(), MIN_TTL, &store);
    eventually("the first SVID", || store.x509_svid().is_some());
    eventually("the hanging second call", || {
        issuer.calls.load(Ordering::SeqCst) >= 2
    });
    // Readers keep getting the last SVID at once.
    let t = Instant::now();
    for _ in 0..1000 {
        assert!(store.x509_svid().is_some());
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    // Dropping the rotator returns at once; the thread ends when the issuer returns.
    let t = Instant::now();
    drop(rotator);
    assert!(t.elapsed() < Duration::from_secs(1));
    drop(gate);
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls on this thread, parking between wake-ups.
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_secs(5));
    }
}

#[test]
fn changes_are_announced_to_sync_and_async_waiters() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    assert_eq!(
        store.wait_for_change(0, Duration::from_millis(50)),
        0,
        "times out"
    );
    let publisher = {
        let store = Arc::clone(&store);
        let ca = s.ca.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            store.publish(
                ca.issue(&id("spiffe://example.org/a"), Duration::from_secs(60))
                    .unwrap(),
            );
            std::thread::sleep(Duration::from_millis(100));
            store.publish(
                ca.issue(&id("spiffe://example.org/b"), Duration::from_secs(60))
                    .unwrap(),
            );
        })
    };
    assert_eq!(block_on(store.changed(0)), 1);
    assert_eq!(store.wait_for_change(1, Duration::from_secs(5)), 2);
    assert_eq!(
        store.x509_svid().unwrap().id().as_str(),
        "spiffe://example.org/b"
    );
    publisher.join().unwrap();
    assert_eq!(store.clear(), 3);
    assert!(store.x509_svid().is_none());
    // A fixed SVID is a source too, handing out the same Arc every time.
    let fixed = Arc::new(
        s.ca.issue(&id("spiffe://example.org/c"), Duration::from_secs(60))
            .unwrap(),
    );
    assert!(Arc::ptr_eq(
        &fixed.x509_svid().unwrap(),
        &fixed.x509_svid().unwrap()
    ));
}

/// Issues once, then hangs for a long time.
struct HangsAfterFirst {
    ca: Arc<Authority>,
    calls: AtomicUsize,
}

impl Issuer for HangsAfterFirst {
    fn issue_svid(&self, id: &SpiffeId, ttl: Duration) -> IssueResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(self.ca.issue(id, ttl)?)
        } else {
            std::thread::sleep(Duration::from_secs(8));
            Err("gave up".into())
        }
    }
}

#[test]
fn an_svid_that_expires_during_a_hanging_renewal_is_never_served() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let issuer = Arc::new(HangsAfterFirst {
        ca: s.ca.clone(),
        calls: AtomicUsize::new(0),
    });
    let rotator = start(&s, issuer, MIN_TTL, &store);
    eventually("the first SVID", || store.x509_svid().is_some());
    let first = store.x509_svid().unwrap();
    // The renewal (at about half the lifetime) hangs past the expiry: readers get nothing
    // from the expiry on, though the rotator is stuck in the issuer.
    eventually("nothing served after expiry", || {
        store.x509_svid().is_none()
    });
    let late = SystemTime::now()
        .duration_since(first.not_after())
        .unwrap_or_default();
    assert!(
        late < Duration::from_millis(500),
        "served {late:?} past expiry"
    );
    drop(rotator); // never blocks on the hanging issuer
}

/// A remote issuer of "1 s" SVIDs under an rcgen root: NotAfter is the next whole second
/// at least half a second away, so each SVID has between 0.5 s and 1.5 s left when it
/// arrives (X.509 times are whole seconds), less than the policy's 1 s minimum interval.
struct OneSecondIssuer {
    root: certs::Ca,
    calls: AtomicUsize,
}

impl Issuer for OneSecondIssuer {
    fn issue_svid(&self, id: &SpiffeId, _ttl: Duration) -> IssueResult {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
        let whole = now.as_secs() + if now.subsec_millis() < 500 { 1 } else { 2 };
        let mut p = certs::leaf_params(id.as_str());
        p.not_before = (SystemTime::now() - Duration::from_secs(10)).into();
        p.not_after = (SystemTime::UNIX_EPOCH + Duration::from_secs(whole)).into();
        let key = certs::key(certs::Curve::P256);
        let leaf = self.root.sign(&p, &key);
        Ok(X509Svid::new(
            vec![leaf],
            PrivateKey::from_pkcs8_der(&key.serialize_der())?,
        )?)
    }
}

#[test]
fn svids_of_about_a_second_are_renewed_before_they_expire_with_no_gap() {
    // The default policy's minimum interval is 1 s; these SVIDs live 0.5 s to 1.5 s. Each
    // must still be renewed before its NotAfter: a reader finds a valid SVID at every
    // instant from the first publication on.
    let root = certs::Ca::root("example.org");
    let mut bundles = BundleSet::new();
    bundles.insert(
        X509Bundle::from_authorities(TrustDomain::new("example.org").unwrap(), [root.der.clone()])
            .unwrap(),
    );
    let issuer = Arc::new(OneSecondIssuer {
        root,
        calls: AtomicUsize::new(0),
    });
    let store = Arc::new(SvidStore::new());
    let rotator = Rotator::start(RotatorConfig {
        id: id("spiffe://example.org/web"),
        ttl: Duration::from_secs(1),
        policy: RotationPolicy::default(),
        issuer: issuer.clone(),
        bundles: Arc::new(bundles),
        algorithms: webpki::ALL_VERIFICATION_ALGS,
        store: Arc::clone(&store),
    });
    eventually("the first SVID", || store.x509_svid().is_some());
    let (mut lookups, mut gaps, mut late_renewals) = (0u64, 0u64, Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        lookups += 1;
        // The store never hands out an expired SVID: None is a gap.
        if store.x509_svid().is_none() {
            gaps += 1;
        }
        let status = rotator.status();
        if let (Some(next), Some(not_after)) = (status.next_renewal, status.not_after) {
            if next >= not_after {
                late_renewals.push((next, not_after));
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let status = rotator.status();
    rotator.stop();
    assert_eq!(
        gaps, 0,
        "{gaps} of {lookups} lookups found no valid SVID: {status:?}"
    );
    assert!(
        late_renewals.is_empty(),
        "renewals scheduled at or after NotAfter: {:?}",
        &late_renewals[..late_renewals.len().min(3)]
    );
    assert!(status.successes >= 4, "{status:?}");
    assert_eq!(status.failures, 0, "{status:?}");
}

#[test]
fn a_rotator_at_the_minimum_ttl_always_holds_a_valid_svid() {
    // The shortest TTL the CA issues, with the default policy: over three rotations, every
    // lookup finds a valid SVID and every renewal is scheduled before NotAfter.
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let rotator = Rotator::start(RotatorConfig {
        id: id("spiffe://example.org/web"),
        ttl: MIN_TTL,
        policy: RotationPolicy::default(),
        issuer: s.ca.clone(),
        bundles: s.bundles.clone(),
        algorithms: webpki::ALL_VERIFICATION_ALGS,
        store: Arc::clone(&store),
    });
    eventually("the first SVID", || store.x509_svid().is_some());
    let (mut lookups, mut gaps) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(20);
    while rotator.status().successes < 4 {
        assert!(Instant::now() < deadline, "{:?}", rotator.status());
        lookups += 1;
        if store.x509_svid().is_none() {
            gaps += 1;
        }
        let status = rotator.status();
        if let (Some(next), Some(not_after)) = (status.next_renewal, status.not_after) {
            assert!(next < not_after, "{status:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = rotator.status();
    rotator.stop();
    assert_eq!(
        gaps, 0,
        "{gaps} of {lookups} lookups found no valid SVID: {status:?}"
    );
    assert_eq!(status.failures, 0, "{status:?}");
}

#[test]
fn a_ttl_under_the_minimum_is_refused_and_reported() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let rotator = start(&s, s.ca.clone(), Duration::from_secs(1), &store);
    eventually("a refused renewal", || rotator.status().failures >= 1);
    let status = rotator.status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("under the minimum"),
        "{status:?}"
    );
    assert!(store.x509_svid().is_none());
    assert_eq!(store.generation(), 0);
    rotator.stop();
}

/// An SVID from an rcgen root that expired ten seconds ago.
fn expired_svid(root: &certs::Ca, id: &str) -> X509Svid {
    let mut p = certs::leaf_params(id);
    p.not_before = (SystemTime::now() - Duration::from_secs(60)).into();
    p.not_after = (SystemTime::now() - Duration::from_secs(10)).into();
    let key = certs::key(certs::Curve::P256);
    X509Svid::new(
        vec![root.sign(&p, &key)],
        PrivateKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
    )
    .unwrap()
}

#[test]
fn a_store_is_ready_only_once_it_holds_an_unexpired_svid() {
    let s = setup();
    let root = certs::Ca::root("example.org");
    let store = Arc::new(SvidStore::new());
    // Nothing published: the wait times out with a typed error, and no sooner.
    let t = Instant::now();
    let err = store.wait_ready(Duration::from_millis(100)).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(err.waited, Duration::from_millis(100));
    assert_eq!(err.to_string(), "no X509-SVID was published within 100ms");
    // An expired SVID is not ready either, though it was published.
    store.publish(expired_svid(&root, "spiffe://example.org/old"));
    assert_eq!(store.generation(), 1);
    assert!(store.wait_ready(Duration::from_millis(20)).is_err());
    let mut pending = Box::pin(store.ready());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(pending.as_mut().poll(&mut cx).is_pending());
    drop(pending);
    // A good one published later, from another thread: the async wait (polled by a
    // minimal executor, no tokio) and the blocking one (with a timeout too large to add to
    // the clock) both return it.
    let publisher = {
        let store = Arc::clone(&store);
        let ca = s.ca.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            store.publish(
                ca.issue(&id("spiffe://example.org/new"), Duration::from_secs(60))
                    .unwrap(),
            );
        })
    };
    let svid = block_on(store.ready());
    assert_eq!(svid.id().as_str(), "spiffe://example.org/new");
    publisher.join().unwrap();
    let again = store.wait_ready(Duration::MAX).unwrap();
    assert!(Arc::ptr_eq(&svid, &again));
    assert!(Arc::ptr_eq(&svid, &block_on(store.ready())));
}

#[test]
fn a_rotator_s_first_svid_is_waited_for_and_a_failing_issuer_times_out() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let rotator = start(&s, s.ca.clone(), MIN_TTL, &store);
    let svid = store.wait_ready(Duration::from_secs(10)).unwrap();
    assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
    assert_eq!(rotator.status().successes, 1);
    rotator.stop_and_wait();

    let failing = Arc::new(SvidStore::new());
    let issuer = Arc::new(FailsAfterFirst {
        ca: s.ca.clone(),
        calls: AtomicUsize::new(1), // fails from the first call on
    });
    let rotator = start(&s, issuer, MIN_TTL, &failing);
    assert!(failing.wait_ready(Duration::from_millis(300)).is_err());
    assert!(rotator.status().failures >= 1);
    rotator.stop_and_wait();
}

/// Issues once, then each call waits until the test says go (or the sender is gone).
struct Gated {
    ca: Arc<Authority>,
    calls: AtomicUsize,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Issuer for Gated {
    fn issue_svid(&self, id: &SpiffeId, ttl: Duration) -> IssueResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            let _ = self.go.lock().unwrap().recv();
        }
        Ok(self.ca.issue(id, ttl)?)
    }
}

#[test]
fn stop_returns_at_once_and_stop_and_wait_waits_for_the_issuance_under_way() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let (go, gate) = std::sync::mpsc::channel();
    let issuer = Arc::new(Gated {
        ca: s.ca.clone(),
        calls: AtomicUsize::new(0),
        go: Mutex::new(gate),
    });
    let rotator = start(&s, issuer.clone(), MIN_TTL, &store);
    store.wait_ready(Duration::from_secs(10)).unwrap();
    rotator.renew_now();
    eventually("the second call, held at the gate", || {
        issuer.calls.load(Ordering::SeqCst) >= 2
    });
    // `stop` only signals: it returns at once while the issuer is still held (so it never
    // blocks an async runtime's worker), and may be called again.
    let t = Instant::now();
    rotator.stop();
    rotator.stop();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(!rotator.is_finished(), "the thread is still in the issuer");
    assert_eq!(rotator.status().successes, 1, "the status stays readable");
    // `stop_and_wait` returns only once the issuance under way is done and the thread gone.
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        go.send(()).unwrap();
        go // held open: a later call would wait here, and the count below would show it
    });
    let t = Instant::now();
    rotator.stop_and_wait();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // The issuance under way was published; nothing was asked for after it.
    assert_eq!(store.generation(), 2);
    let _go = opener.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(issuer.calls.load(Ordering::SeqCst), 2);
    assert_eq!(store.generation(), 2);

    // Without a hanging issuer, the thread of a stopped rotator is soon gone.
    let other = Arc::new(SvidStore::new());
    let rotator = start(&s, s.ca.clone(), MIN_TTL, &other);
    other.wait_ready(Duration::from_secs(10)).unwrap();
    assert!(!rotator.is_finished());
    rotator.stop();
    eventually("the thread exits", || rotator.is_finished());
}

#[test]
fn a_config_from_an_authority_defaults_the_rest_and_refuses_what_it_would_never_issue() {
    let s = setup();
    let store = Arc::new(SvidStore::new());
    let config =
        RotatorConfig::new(id("spiffe://example.org/web"), s.ca.clone(), store.clone()).unwrap();
    assert_eq!(config.ttl, RotatorConfig::DEFAULT_TTL);
    assert_eq!(config.policy, RotationPolicy::default());
    assert_eq!(
        config.algorithms.len(),
        meshid::ring_algorithms().len(),
        "the backend's algorithms"
    );
    // The root is the bundle: the rotator publishes, and the SVID verifies against it.
    let rotator = Rotator::start(config.ttl(Duration::from_secs(600)));
    let svid = store.wait_ready(Duration::from_secs(10)).unwrap();
    let left = svid.not_after().duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(590) && left <= Duration::from_secs(600),
        "{left:?}"
    );
    meshid::verify_x509_svid(
        svid.chain(),
        s.bundles.as_ref(),
        SystemTime::now(),
        meshid::ring_algorithms(),
    )
    .unwrap();
    rotator.stop_and_wait();

    // Refused before anything starts: another trust domain, the trust domain's own ID,
    // and an intermediate that does not know its root.
    for bad in ["spiffe://other.org/web", "spiffe://example.org"] {
        let err = RotatorConfig::new(id(bad), s.ca.clone(), store.clone()).unwrap_err();
        assert!(
            matches!(err, meshid::LocalSvidError::Ca(_)),
            "{bad}: {err:?}"
        );
    }
    let root = certs::Ca::root("example.org");
    let inter = root.intermediate(certs::ca_params("spiffe://example.org"));
    let signer = meshid::KeyPair::from_pkcs8_der(&inter.key.serialize_der()).unwrap();
    let orphan = Authority::from_parts(&inter.chain[..1], Arc::new(signer), None).unwrap();
    let err =
        RotatorConfig::new(id("spiffe://example.org/web"), Arc::new(orphan), store).unwrap_err();
    assert!(
        matches!(err, meshid::LocalSvidError::UnknownRoot),
        "{err:?}"
    );
}
