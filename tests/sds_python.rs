//! The SDS server against an independent scripted client: `tests/python/sds_client.py`,
//! written with PyPI `envoy-data-plane` (betterproto2 stubs) over `grpclib`, run by the
//! Python test peer (installed on first use by `tests/peers/python.sh`). It checks
//! `FetchSecrets`, ACKs, NACKs, rotations, unknown names and subscription changes on
//! `StreamSecrets`; this side serves, and rotates the SVID each time the script prints
//! `want-rotation`.

#![cfg(all(unix, feature = "sds"))]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::sds::SdsServer;
use meshid::{
    Authority, BundleSet, KeyType, RotationPolicy, Rotator, RotatorConfig, SpiffeId, SvidSource,
    SvidStore, TrustDomain, X509Bundle,
};

#[path = "common/peers.rs"]
mod peers;

const ID: &str = "spiffe://example.org/envoy";

/// The Python test peer's interpreter (installed on first use; panics, never skips, if it
/// cannot be).
fn python() -> PathBuf {
    peers::peer("python").join("bin/python")
}

/// A CA, its bundle, and a store kept by a rotator whose TTL is long enough that only
/// `renew_now` rotates during the test.
fn pki() -> (BundleSet, Arc<SvidStore>, Rotator) {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Arc::new(
        Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap(),
    );
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let store = Arc::new(SvidStore::new());
    let rotator = Rotator::start(RotatorConfig {
        id: SpiffeId::new(ID).unwrap(),
        ttl: Duration::from_secs(3600),
        policy: RotationPolicy::default(),
        issuer: ca,
        bundles: Arc::new(bundles.clone()),
        algorithms: meshid::ring_algorithms(),
        store: Arc::clone(&store),
    });
    assert_ne!(store.wait_for_change(0, Duration::from_secs(10)), 0);
    (bundles, store, rotator)
}

/// Kills the script on every path out of the test.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the script against `socket`; its stdout lines and stderr. Each `want-rotation`
/// renews the SVID and waits until the store holds the new one.
fn run_script(socket: &Path, store: &SvidStore, rotator: &Rotator) -> (Vec<String>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sds_client.py");
    let mut child = Script(
        Command::new(python())
            .arg(&script)
            .args([socket.as_os_str(), ID.as_ref()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    std::thread::scope(|scope| {
        let errors = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let lines = scope.spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                eprintln!("sds_client.py: {line}");
                if line == "want-rotation" {
                    let seen = store.generation();
                    rotator.renew_now();
                    assert_ne!(store.wait_for_change(seen, Duration::from_secs(10)), seen);
                }
                lines.push(line);
            }
            lines
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.0.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "sds_client.py still running after 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = child.0.wait().unwrap();
        let (lines, errors) = (lines.join().unwrap(), errors.join().unwrap());
        assert!(
            status.success(),
            "sds_client.py failed ({status})\nstdout:\n{}\nstderr:\n{errors}",
            lines.join("\n")
        );
        (lines, errors)
    })
}

#[test]
fn a_python_sds_client_sees_fetches_acks_nacks_rotations_and_unknown_names_handled() {
    let dir = std::env::temp_dir().join(format!("meshid-sds-python-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("sds.sock");
    let (bundles, store, rotator) = pki();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Observed as an operator would be: Envoy's ACKs and NACKs, the pushes and their
    // delay after each rotation (metrics).
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = meshid::metrics::ServeMetrics::register(&mut registry);
    let sds = SdsServer::for_store(Arc::clone(&store), bundles).observer(metrics.observer());
    let served = runtime.spawn(sds.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no SDS socket after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = store.x509_svid().unwrap().leaf().to_vec();

    let (lines, errors) = run_script(&socket, &store, &rotator);
    let expected = [
        "ok fetch-secrets",
        "ok stream-first-push",
        "ok ack-is-quiet",
        "want-rotation",
        "ok rotation-pushed",
        "ok nack-not-resent",
        "want-rotation",
        "ok push-after-nack",
        "ok names-change-pushed",
        "ok unknown-names-refused",
        "done",
    ];
    assert_eq!(lines, expected, "stderr:\n{errors}");
    assert_ne!(store.x509_svid().unwrap().leaf().to_vec(), first, "rotated");
    check_metrics(&registry);

    stop.send(()).unwrap();
    runtime.block_on(served).unwrap().unwrap();
    rotator.stop();
    assert!(!socket.exists(), "socket removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The script's ACKs and NACKs were counted, and its pushes, two of them after a rotation
/// with their delay; every stream was closed again.
fn check_metrics(registry: &prometheus_client::registry::Registry) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let closed = text.contains("meshid_serve_streams{server=\"sds\",stream=\"sds\"} 0\n")
            && text.contains("meshid_serve_connections{server=\"sds\"} 0\n");
        if closed || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let count = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    // The script answers r1 (ACK), r2 (NACK), r3 (ACK, then again with new names: the same
    // answer, not counted twice) and r4 (ACK).
    assert_eq!(
        count("meshid_sds_responses_total{result=\"ack\"}"),
        3,
        "{text}"
    );
    assert_eq!(
        count("meshid_sds_responses_total{result=\"nack\"}"),
        1,
        "{text}"
    );
    // r1 to r4; r2 and r3 after a rotation, so measured from it.
    assert_eq!(
        count("meshid_serve_pushes_total{server=\"sds\",stream=\"sds\"}"),
        4,
        "{text}"
    );
    assert_eq!(
        count("meshid_serve_push_delay_seconds_count{server=\"sds\",stream=\"sds\"}"),
        2,
        "{text}"
    );
    // The unknown names, on a stream and from FetchSecrets.
    assert_eq!(
        count("meshid_serve_refused_total{server=\"sds\",reason=\"no_identity\"}"),
        2,
        "{text}"
    );
    assert_eq!(
        count("meshid_serve_connections{server=\"sds\"}"),
        0,
        "{text}"
    );
    assert!(
        text.contains("meshid_serve_streams{server=\"sds\",stream=\"sds\"} 0\n"),
        "{text}"
    );
}
