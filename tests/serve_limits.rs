//! The serving layer's connection limits (`ServeLimits`), which every meshid server has:
//! more silent connections than the cap are refused at once, the ones held are closed at
//! the preface deadline, a well-behaved client is then served, a connection that sends
//! the preface but opens no stream is closed at the idle timeout, and one holding a
//! stream is not. Memory is measured around the silent connections (VmRSS of this
//! process, which holds the server; one test per binary so nothing else runs beside it).
//!
//! Run with `--nocapture` to see the figures.

#![cfg(all(unix, feature = "workload-api", feature = "ca"))]
#![allow(clippy::too_many_lines, clippy::cast_precision_loss)] // one scenario, in order

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::serve::ServeLimits;
use meshid::workload::{Endpoint, WorkloadApiClient, WorkloadApiServer};
use meshid::{Authority, BundleSet, KeyType, SpiffeId, SvidStore, TrustDomain, X509Bundle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio_stream::StreamExt as _;

const CAP: usize = 64;
const SILENT: usize = 3 * CAP;
const PREFACE: Duration = Duration::from_secs(4);
const IDLE: Duration = Duration::from_secs(2);

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Whether the server closed `conn` (a read ends) within `within`.
async fn closed_within(conn: &mut UnixStream, within: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(within, conn.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// Opens `n` connections that send nothing.
async fn silent(socket: &std::path::Path, n: usize) -> Vec<UnixStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(UnixStream::connect(socket).await.unwrap());
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_capped_and_timed_out_and_clients_are_served() {
    let dir = std::env::temp_dir().join(format!("meshid-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("api.sock");
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let store = Arc::new(SvidStore::new());
    let id = SpiffeId::new("spiffe://example.org/web").unwrap();
    store.publish(ca.issue(&id, Duration::from_secs(600)).unwrap());
    let limits = ServeLimits::default()
        .max_connections(CAP)
        .preface_timeout(PREFACE)
        .idle_timeout(IDLE);
    let server = WorkloadApiServer::new(bundles)
        .with_svid(Arc::clone(&store))
        .limits(limits);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let endpoint = Endpoint::parse(&format!("unix://{}", socket.display())).unwrap();
    // Warm up (first-use allocations), then the baseline.
    WorkloadApiClient::connect(&endpoint)
        .await
        .unwrap()
        .fetch_x509_context()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();

    // More silent connections than the cap: all but CAP are closed at once.
    let opened = Instant::now();
    let mut conns = silent(&socket, SILENT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held_rss = rss_kib();
    let mut refused = 0;
    let mut held = Vec::new();
    for mut conn in conns.drain(..) {
        if closed_within(&mut conn, Duration::from_millis(5)).await {
            refused += 1;
        } else {
            held.push(conn);
        }
    }
    assert_eq!(held.len(), CAP, "the cap holds exactly {CAP} connections");
    assert_eq!(refused, SILENT - CAP);
    eprintln!(
        "RSS before {before} KiB, with {CAP} silent connections held (and {refused} refused) {held_rss} KiB: {:.1} KiB per held connection",
        held_rss.saturating_sub(before) as f64 / CAP as f64
    );

    // The held ones are closed at the preface deadline; then a client is served.
    for conn in &mut held {
        let left =
            (opened + PREFACE + Duration::from_secs(3)).saturating_duration_since(Instant::now());
        assert!(
            closed_within(conn, left).await,
            "a silent connection outlived the preface timeout"
        );
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= PREFACE.saturating_sub(Duration::from_millis(100)),
        "closed early: {closed_after:?}"
    );
    let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
    let context = client.fetch_x509_context().await.unwrap();
    assert_eq!(context.default_svid().id(), &id);
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!(
        "RSS after the silent connections were closed and a client served: {} KiB",
        rss_kib()
    );

    // A connection that sends the preface and SETTINGS but opens no stream is closed at
    // the idle timeout (not at the preface deadline).
    let mut idle = UnixStream::connect(&socket).await.unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut idle, IDLE + Duration::from_secs(3)).await);
    let idle_for = started.elapsed();
    assert!(
        idle_for >= IDLE.saturating_sub(Duration::from_millis(100)),
        "closed after {idle_for:?}"
    );

    // A connection holding a stream is not idle: it still gets a rotation after the idle
    // timeout has passed.
    let mut watcher = WorkloadApiClient::connect(&endpoint).await.unwrap();
    let mut updates = watcher.watch_x509_contexts().await.unwrap();
    let first = updates.next().await.unwrap().unwrap();
    tokio::time::sleep(IDLE + Duration::from_secs(1)).await;
    store.publish(ca.issue(&id, Duration::from_secs(600)).unwrap());
    let next = tokio::time::timeout(Duration::from_secs(5), updates.next())
        .await
        .expect("the watching connection was closed as idle")
        .unwrap()
        .unwrap();
    assert_ne!(
        first.default_svid().leaf().as_ref(),
        next.default_svid().leaf().as_ref()
    );
    drop(updates);
    drop(watcher);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
