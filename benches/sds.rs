//! SDS server measurements: `cargo bench --features sds --bench sds`
//! (`-- --rotations N --streams N` to change the defaults, 20 and 1000).
//!
//! A plain program rather than criterion: the results are latency distributions and memory
//! figures. Absolute numbers drift on shared machines.
//!
//! 1. Memory per StreamSecrets stream: the SDS server runs in this process, S clients in a
//!    child process (this binary re-executed with `--clients`), so this process's VmRSS
//!    growth is the server's alone. Each stream asks for `default` and `ROOTCA` and takes
//!    its first response. Done twice: S streams over S/100 connections of 100, and S
//!    streams over one connection (the server sets no `max_concurrent_streams`: tonic
//!    passes `None` to hyper, overriding hyper's default of 200, so h2 advertises no
//!    limit). Then one rotation, timed until every stream has the push (wall clock across
//!    the two processes).
//! 2. Rotation → Envoy: a real Envoy (the Python test peer's, installed on first use by
//!    `tests/peers/python.sh`, or `MESHID_ENVOY`) takes
//!    `default` and `ROOTCA` from the server; each rotation publishes a pre-issued SVID and
//!    polls Envoy's admin `/stats?filter=sds.default.update_success` every ~1 ms until the
//!    counter moves. The polling adds up to ~1 ms plus one admin round trip, which is
//!    measured on its own too.
#![allow(missing_docs)] // a bench target; nothing here is public API
#![allow(clippy::cast_precision_loss)] // figures for printing

use std::io::{BufRead, BufReader, Write};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use meshid::sds::{SdsServer, SECRET_TYPE_URL};
use meshid::{Authority, BundleSet, KeyType, SpiffeId, SvidStore, TrustDomain, X509Bundle};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

const HOUR: Duration = Duration::from_secs(3600);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "n={} p50={:.2?} p90={:.2?} p99={:.2?} max={:.2?}",
        v.len(),
        pct(&v, 50),
        pct(&v, 90),
        pct(&v, 99),
        v[v.len() - 1]
    )
}

fn envoy_id() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/envoy").unwrap()
}

fn pki() -> (Authority, BundleSet, Arc<SvidStore>) {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let store = Arc::new(SvidStore::new());
    store.publish(ca.issue(&envoy_id(), HOUR).unwrap());
    (ca, bundles, store)
}

/// An SDS server on `socket` in `runtime`; send on the sender to stop it.
fn serve(
    runtime: &tokio::runtime::Runtime,
    socket: &Path,
    store: &Arc<SvidStore>,
    bundles: &BundleSet,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let sds = SdsServer::for_store(Arc::clone(store), bundles.clone());
    let serving = sds.serve(socket.to_path_buf(), async {
        let _ = stopped.await;
    });
    let served = runtime.spawn(async move { serving.await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no SDS socket");
        std::thread::sleep(Duration::from_millis(5));
    }
    (stop, served)
}

// ---------------------------------------------------------------------------------------
// 1. Memory per stream, clients in a child process.

/// The child: `--clients SOCKET S PER_CONN`. Opens S streams, prints `READY <rss>`, waits
/// for every stream's push, reads `ROTATED <t0 ns>` from stdin, prints the latencies.
fn clients_child(socket: &str, streams: usize, per_conn: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let before = rss_kib();
    let (pushed_tx, mut pushed) = mpsc::unbounded_channel::<u128>();
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    let opened = Instant::now();
    runtime.block_on(async {
        for c in 0..streams.div_ceil(per_conn) {
            let channel = connect(PathBuf::from(socket)).await;
            for _ in 0..per_conn.min(streams - c * per_conn) {
                let (channel, pushed_tx, ready_tx) =
                    (channel.clone(), pushed_tx.clone(), ready_tx.clone());
                tokio::spawn(async move {
                    let (tx, rx) = mpsc::channel(4);
                    tx.send(request()).await.unwrap();
                    let mut stream = SecretDiscoveryServiceClient::new(channel)
                        .stream_secrets(ReceiverStream::new(rx))
                        .await
                        .unwrap()
                        .into_inner();
                    let first = stream.message().await.unwrap().unwrap();
                    assert_eq!(first.resources.len(), 2);
                    ready_tx.send(()).unwrap();
                    let _push = stream.message().await.unwrap().unwrap();
                    pushed_tx.send(now_nanos()).unwrap();
                    // Hold the stream until the process exits.
                    std::future::pending::<()>().await;
                    drop(tx);
                });
            }
        }
        for _ in 0..streams {
            tokio::time::timeout(Duration::from_secs(60), ready.recv())
                .await
                .expect("streams did not all open within 60 s")
                .unwrap();
        }
    });
    let open_time = opened.elapsed();
    println!("READY {} {} {}", before, rss_kib(), open_time.as_micros());
    std::io::stdout().flush().unwrap();
    let mut arrivals = Vec::with_capacity(streams);
    runtime.block_on(async {
        for _ in 0..streams {
            let at = tokio::time::timeout(Duration::from_secs(60), pushed.recv())
                .await
                .expect("the push did not reach every stream within 60 s")
                .unwrap();
            arrivals.push(at);
        }
    });
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let t0: u128 = line
        .trim()
        .strip_prefix("ROTATED ")
        .unwrap()
        .parse()
        .unwrap();
    let latencies: Vec<String> = arrivals
        .iter()
        .map(|a| a.saturating_sub(t0).to_string())
        .collect();
    println!("PUSHED {}", latencies.join(","));
    std::io::stdout().flush().unwrap();
    runtime.shutdown_background();
}

async fn connect(socket: PathBuf) -> tonic::transport::Channel {
    uds::unix_channel(&socket).await
}

#[path = "../tests/common/uds.rs"]
mod uds;

fn request() -> DiscoveryRequest {
    DiscoveryRequest {
        resource_names: vec!["default".into(), "ROOTCA".into()],
        type_url: SECRET_TYPE_URL.into(),
        ..Default::default()
    }
}

fn memory(streams: usize, per_conn: usize, dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ca, bundles, store) = pki();
    let socket = dir.join(format!("mem-{per_conn}.sock"));
    let (stop, served) = serve(&runtime, &socket, &store, &bundles);
    std::thread::sleep(Duration::from_millis(100));
    let server_before = rss_kib();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--clients")
        .arg(&socket)
        .args([streams.to_string(), per_conn.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ready: Vec<u64> = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("child said {line:?}"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let server_after = rss_kib();
    let next = ca.issue(&envoy_id(), HOUR).unwrap();
    let t0 = now_nanos();
    store.publish(next);
    writeln!(child.stdin.as_mut().unwrap(), "ROTATED {t0}").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let latencies: Vec<Duration> = line
        .trim()
        .strip_prefix("PUSHED ")
        .unwrap_or_else(|| panic!("child said {line:?}"))
        .split(',')
        .map(|v| Duration::from_nanos(v.parse().unwrap()))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let server_growth = server_after.saturating_sub(server_before);
    let client_growth = ready[1].saturating_sub(ready[0]);
    println!(
        "  {streams} streams over {} connection(s) of {per_conn}: opened in {:.1?}",
        streams.div_ceil(per_conn),
        Duration::from_micros(ready[2])
    );
    println!(
        "    server VmRSS {server_before} -> {server_after} KiB: +{server_growth} KiB, {:.1} KiB/stream",
        server_growth as f64 / streams as f64
    );
    println!(
        "    client process VmRSS {} -> {} KiB: +{client_growth} KiB, {:.1} KiB/stream",
        ready[0],
        ready[1],
        client_growth as f64 / streams as f64
    );
    println!(
        "    one rotation pushed to all {streams}: per stream {}",
        summary(latencies)
    );
    let _ = stop.send(());
    runtime.block_on(served).unwrap();
}

// ---------------------------------------------------------------------------------------
// 2. Rotation → Envoy update_success.

#[path = "../tests/common/envoy.rs"]
mod envoy;

use envoy::{admin_get, envoy_binary, free_port, stat, Envoy};

fn bootstrap(admin: u16, port: u16, socket: &Path) -> String {
    envoy::listener_bootstrap(admin, port, socket, "GRPC", "ROOTCA")
}

const UPDATES: &str = "/stats?filter=sds.default.update_success";

fn updates(admin: u16) -> Option<u64> {
    stat(&admin_get(admin, UPDATES)?, "sds.default.update_success")
}

fn envoy_rotations(rotations: usize, dir: &Path) {
    let binary = envoy_binary();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ca, bundles, store) = pki();
    let socket = dir.join("envoy.sock");
    let (stop, served) = serve(&runtime, &socket, &store, &bundles);
    let (admin, port) = (free_port(), free_port());
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, bootstrap(admin, port, &socket)).unwrap();
    let log = dir.join("envoy.log");
    let mut envoy = Envoy(
        Command::new(binary)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .args(["-l", "warning", "--log-path"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while updates(admin).unwrap_or(0) < 1 {
        if let Ok(Some(exit)) = envoy.0.try_wait() {
            panic!(
                "Envoy exited ({exit}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "Envoy never loaded `default`");
        std::thread::sleep(Duration::from_millis(50));
    }
    let admin_rtt: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            updates(admin).unwrap();
            t.elapsed()
        })
        .collect();
    println!("  admin round trip ({UPDATES}): {}", summary(admin_rtt));
    let mut latencies = Vec::with_capacity(rotations);
    let mut polls = 0usize;
    for _ in 0..rotations {
        std::thread::sleep(Duration::from_millis(100));
        let next = ca.issue(&envoy_id(), HOUR).unwrap();
        let seen = updates(admin).unwrap();
        let t0 = Instant::now();
        store.publish(next);
        loop {
            polls += 1;
            if updates(admin).unwrap() > seen {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "Envoy missed a rotation"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(t0.elapsed());
    }
    println!(
        "  publish -> update_success seen: {} ({:.1} polls/rotation)",
        summary(latencies),
        polls as f64 / rotations as f64
    );
    let rejected = admin_get(admin, "/stats?filter=sds.default.update_rejected")
        .and_then(|s| stat(&s, "sds.default.update_rejected"));
    println!("  update_rejected: {rejected:?}");
    drop(envoy);
    let _ = stop.send(());
    runtime.block_on(served).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--clients") {
        let n = |k: usize| args[i + k].parse::<usize>().unwrap();
        clients_child(&args[i + 1], n(2), n(3));
        return;
    }
    let rotations = arg("--rotations", 20);
    let streams = arg("--streams", 1000);
    let dir = std::env::temp_dir().join(format!("meshid-bench-sds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    println!("SDS server memory per StreamSecrets stream (clients in a child process):");
    memory(streams, 100, &dir);
    memory(streams, streams, &dir);
    println!(
        "Rotation -> Envoy sds.default.update_success ({rotations} rotations, ~100 ms apart):"
    );
    envoy_rotations(rotations, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
