//! The agent at scale: `cargo bench --features agent,ring --bench agent` (about a minute).
//!
//! Prints, for 1,000 registration entries (each its own uid selector) issued by a CA on
//! the ring signer, each figure beside the same work without the agent, in the same run:
//!
//! 1. **Start:** `Agent::start` until every entry holds a verified SVID, vs issuing 1,000
//!    SVIDs in a loop (`Authority::issue`): the ratio is the agent's overhead (a rotator
//!    thread per entry, verification before publishing). Memory (RSS) and threads added.
//! 2. **A call:** `Agent::x509_svids` for a caller (attestation from `/proc` plus matching
//!    against 1,000 entries) vs `UnixAttestor::attest` alone.
//! 3. **Rotating:** process CPU per renewal, measured with 10 s TTLs (every entry renews
//!    about every 5 s), and the CPU share that makes with 1 h TTLs (1,000 renewals per
//!    30 min); and the CPU of 1,000 idle rotators (1 h TTLs, nothing due) over 10 s.
//! 4. **Fan-out:** 1,000 open streams, one per entry (callers told apart by a stand-in
//!    attestor): how many streams each renewal wakes through `Agent::subscribe` (the
//!    caller's own entries) vs the agent's `changes()` (every change), counted over 10 s
//!    of 10 s-TTL rotations.
//!
//! Absolute times drift on shared machines; the ratios are the figures to compare.
#![allow(missing_docs)]
#![allow(clippy::cast_precision_loss)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::agent::{Agent, AttestError, Attestor, Registry, Selector, Selectors, UnixAttestor};
use meshid::serve::{Caller, Identities};
use meshid::watch::Changes;
use meshid::{Authority, KeyType, RingKeyPair, SpiffeId, TrustDomain};

const ENTRIES: usize = 1000;

/// `(utime + stime)` of this process, in seconds (`/proc/self/stat` fields 14 and 15).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name, field 3 is index 0: utime (14) is 11, stime (15) is 12.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux this runs on.
    ticks as f64 / 100.0
}

/// A line of `/proc/self/status` (`VmRSS`, `Threads`), as a number.
fn status(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn entries(td: &TrustDomain, my_uid: u32, ttl: &str) -> Registry {
    let mut text = String::new();
    for i in 0..ENTRIES {
        // Entry 0 matches this process; the others stand for other workloads.
        let uid = if i == 0 {
            my_uid
        } else {
            100_000 + u32::try_from(i).unwrap()
        };
        writeln!(
            text,
            "[[entry]]\nspiffe_id = \"spiffe://example.org/ns/default/sa/w{i}\"\nselectors = [\"unix:uid:{uid}\"]\nttl = \"{ttl}\"\n"
        )
        .unwrap();
    }
    Registry::parse(&text, td).unwrap()
}

fn main() {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Arc::new(
        Authority::new_root_with_signer(
            td.clone(),
            Duration::from_secs(86_400),
            Arc::new(RingKeyPair::generate(KeyType::P256).unwrap()),
        )
        .unwrap(),
    );
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    let me = Caller::unix(i32::try_from(std::process::id()).unwrap(), uid, 0);
    let algorithms = meshid::ring_algorithms();

    println!("== 1. Start: {ENTRIES} entries, ring signer ==");
    let t0 = Instant::now();
    for i in 0..ENTRIES {
        let id = SpiffeId::new(&format!("spiffe://example.org/ns/default/sa/w{i}")).unwrap();
        std::hint::black_box(ca.issue(&id, Duration::from_secs(3600)).unwrap());
    }
    let bare = t0.elapsed();
    let (rss0, threads0) = (status("VmRSS"), status("Threads"));
    let registry = entries(&td, uid, "1h");
    let t0 = Instant::now();
    let agent = Agent::start(
        Arc::clone(&ca),
        &registry,
        Arc::new(UnixAttestor::new()),
        algorithms,
    )
    .unwrap();
    let started = t0.elapsed();
    let (rss1, threads1) = (status("VmRSS"), status("Threads"));
    println!("  bare issuance x{ENTRIES}        {bare:>10.1?}");
    println!(
        "  Agent::start (all issued)  {started:>10.1?}   ratio {:.2}x",
        started.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  memory +{} KiB RSS ({:.1} KiB per entry), threads +{}",
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) as f64 / ENTRIES as f64,
        threads1 - threads0
    );

    println!("== 2. One call: attest and match against {ENTRIES} entries ==");
    let attestor = UnixAttestor::new();
    let rounds = 2000;
    let t0 = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(attestor.attest(&me).unwrap());
    }
    let attest = t0.elapsed() / rounds;
    let t0 = Instant::now();
    for _ in 0..rounds {
        let mine = agent.x509_svids(&me).unwrap();
        assert_eq!(mine.len(), 1);
        std::hint::black_box(mine);
    }
    let call = t0.elapsed() / rounds;
    println!("  UnixAttestor::attest       {attest:>10.1?}");
    println!(
        "  Agent::x509_svids          {call:>10.1?}   ratio {:.2}x",
        call.as_secs_f64() / attest.as_secs_f64()
    );

    println!("== 3. Rotating ==");
    let cpu0 = cpu_seconds();
    std::thread::sleep(Duration::from_secs(10));
    let idle = cpu_seconds() - cpu0;
    println!("  {ENTRIES} rotators with 1 h TTLs, nothing due: {idle:.2} CPU-s over 10 s");
    agent.stop();
    drop(agent);

    let fast = Agent::start(
        Arc::clone(&ca),
        &entries(&td, uid, "10s"),
        Arc::new(UnixAttestor::new()),
        algorithms,
    )
    .unwrap();
    // Let the first round of renewals begin, then measure a window.
    std::thread::sleep(Duration::from_secs(6));
    let (n0, cpu0, t0) = (renewed(&fast), cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(20));
    let (n1, cpu1, window) = (renewed(&fast), cpu_seconds(), t0.elapsed());
    let renewals = n1 - n0;
    let per_renewal = (cpu1 - cpu0) / renewals.max(1) as f64;
    let failures: u64 = fast.status().iter().map(|(_, s)| s.failures).sum();
    println!(
        "  10 s TTLs: {renewals} renewals in {window:.1?} ({:.0}/s), {:.2} CPU-s: {:.0} µs CPU per renewal; {failures} failures",
        renewals as f64 / window.as_secs_f64(),
        cpu1 - cpu0,
        per_renewal * 1e6
    );
    let rate_1h = ENTRIES as f64 / 1800.0;
    println!(
        "  1 h TTLs: {rate_1h:.2} renewals/s -> {:.3}% of a core",
        per_renewal * rate_1h * 100.0
    );
    fast.stop();
    drop(fast);

    fanout(&ca, &td, algorithms);
}

/// Section 4: how many streams each renewal wakes.
fn fanout(
    ca: &Arc<Authority>,
    td: &TrustDomain,
    algorithms: &'static [&'static dyn rustls_pki_types::SignatureVerificationAlgorithm],
) {
    println!("== 4. Fan-out: {ENTRIES} streams, one per entry ==");
    let byuid = Agent::start(
        Arc::clone(ca),
        &entries(td, 100_000, "10s"),
        Arc::new(ByUid),
        algorithms,
    )
    .unwrap();
    let callers: Vec<Caller> = (0..ENTRIES)
        .map(|i| Caller::unix(1, 100_000 + u32::try_from(i).unwrap(), 0))
        .collect();
    let narrowed: Vec<Arc<Changes>> = callers
        .iter()
        .map(|c| byuid.subscribe(c).unwrap().changes)
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    let n0 = renewed(&byuid);
    let g0: Vec<u64> = narrowed.iter().map(|c| c.generation()).collect();
    let e0 = byuid.changes().generation();
    std::thread::sleep(Duration::from_secs(10));
    let renewals = renewed(&byuid) - n0;
    let wakes: u64 = narrowed
        .iter()
        .zip(&g0)
        .map(|(c, g)| c.generation() - g)
        .sum();
    let moved = byuid.changes().generation() - e0;
    println!(
        "  {renewals} renewals: narrowed streams woke {wakes} times in all; the agent's changes() moved {moved} times, each waking all {ENTRIES} streams"
    );
    println!(
        "  streams woken per renewal: narrowed {:.2}, every change {ENTRIES} (ratio {:.4}x)",
        wakes as f64 / renewals.max(1) as f64,
        wakes as f64 / (renewals.max(1) as f64 * ENTRIES as f64)
    );
    let t0 = Instant::now();
    for caller in &callers {
        std::hint::black_box(byuid.x509_svids(caller).unwrap());
    }
    println!(
        "  what every woken stream then costs (attest + match + resubscribe): {:.1?} per stream",
        t0.elapsed() / u32::try_from(ENTRIES).unwrap()
    );
    byuid.stop();
}

fn renewed(agent: &Agent) -> u64 {
    agent.status().iter().map(|(_, s)| s.successes).sum()
}

/// Callers told apart by their uid alone, with no `/proc` reads: `unix:uid:N`.
struct ByUid;

impl Attestor for ByUid {
    fn attest(&self, caller: &Caller) -> Result<Selectors, AttestError> {
        let uid = caller.uid.ok_or(AttestError::NoCredentials)?;
        Ok([Selector::new("unix", format!("uid:{uid}"))]
            .into_iter()
            .collect())
    }
}
