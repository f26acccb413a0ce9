//! `meshid serve sds --workload-api` bridging a real SPIRE agent (v1.13.3,
//! `tests/peers/spire.sh`; see `common/spire.rs`) to a real Envoy 1.40, through Envoy's own
//! gRPC client (`envoy_grpc`) and gRPC C-core (`google_grpc`): Envoy presents SPIRE's SVIDs
//! to a meshid client, also identified by SPIRE, and follows SPIRE's rotations.

#![cfg(all(unix, feature = "workload-api", feature = "sds", feature = "cli"))]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::workload::{Endpoint, Pick, X509Source, X509SourceOptions};
use meshid::{authorize, tls, SpiffeId};
use rustls::pki_types::ServerName;

#[path = "common/envoy.rs"]
mod envoy;
// `envoy.rs` brings its own copy along.
#[allow(clippy::duplicate_mod)]
#[path = "common/peers.rs"]
mod peers;
#[path = "common/spire.rs"]
mod spire;

use spire::{ServerConfig, Spire};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// A source of `id` from SPIRE's agent.
fn source(rt: &tokio::runtime::Runtime, spire: &Spire, id: &SpiffeId) -> Arc<X509Source> {
    let options = X509SourceOptions::default()
        .pick(Pick::Id(id.clone()))
        .initial_sync_timeout(Duration::from_secs(30));
    let endpoint = Endpoint::parse(&spire.endpoint()).unwrap();
    Arc::new(rt.block_on(X509Source::new(endpoint, options)).unwrap())
}

/// Kills a child on every path out of a test.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn meshid_serve_sds_bridges_spire_to_envoy_across_rotations() {
    for (tag, google_grpc) in [("envoy-grpc", false), ("google-grpc", true)] {
        bridge_to_envoy(tag, google_grpc);
    }
}

fn bridge_to_envoy(tag: &str, google_grpc: bool) {
    let spire = Spire::start(&format!("sds-{tag}"), &ServerConfig::default());
    let envoy_id = id(&spire.entry("/envoy", 20, &[]));
    spire.wait_for_ids(&[envoy_id.as_str()]);
    let sds_socket = spire.dir.join("sds.sock");
    let mut bridge = start_bridge(&spire, &sds_socket);
    let (admin, port) = (envoy::free_port(), envoy::free_port());
    let log = spire.dir.join("envoy.log");
    let _envoy = start_envoy(&spire.dir, &sds_socket, google_grpc, admin, port);
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };

    // A meshid client whose SVID and trust also come from SPIRE (same entry: this
    // process's uid), checking that Envoy presents SPIRE's SVID for /envoy.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client_source = source(&rt, &spire, &envoy_id);
    let client = Arc::new(
        tls::client_config(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::clone(&client_source),
            Arc::clone(&client_source),
            authorize::exact(envoy_id.clone()),
        )
        .unwrap(),
    );
    let mut served = BTreeSet::new();
    let (mut requests, mut failures) = (0u32, Vec::new());
    let mut loaded = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while served.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "Envoy served {} of SPIRE's SVIDs in 90 s ({requests} requests, failures \
             {failures:?}); its log ends with:\n{}",
            served.len(),
            log_tail()
        );
        if !loaded {
            let stats = envoy::admin_get(admin, "/stats").unwrap_or_default();
            loaded = envoy::stat(&stats, "sds.default.update_success").unwrap_or(0) >= 1
                && envoy::stat(&stats, "sds.ROOTCA.update_success").unwrap_or(0) >= 1;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        requests += 1;
        match envoy_request(&client, port) {
            Ok(leaf) => {
                served.insert(leaf);
            }
            Err(e) => failures.push(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let stats = envoy::admin_get(admin, "/stats").unwrap_or_default();
    assert_eq!(
        envoy::stat(&stats, "sds.default.update_rejected").unwrap_or(0),
        0
    );
    assert!(
        failures.is_empty(),
        "{tag}: failed requests through Envoy: {failures:?}"
    );
    eprintln!(
        "{tag}: {requests} requests, Envoy served {} SPIRE SVIDs",
        served.len()
    );
    assert!(bridge.0.try_wait().unwrap().is_none());
}

/// An HTTPS request to Envoy with a client SVID: the leaf Envoy presented (it verified
/// against SPIRE's bundle and is for the authorized ID, or the handshake failed).
fn envoy_request(config: &Arc<rustls::ClientConfig>, port: u16) -> Result<Vec<u8>, String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("envoy").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    match tls.read_to_end(&mut body) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !body.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let body = String::from_utf8_lossy(&body);
    if !body.contains("hello from envoy") {
        return Err(format!("unexpected answer: {body}"));
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no server certificate")?;
    Ok(leaf.to_vec())
}

/// `meshid serve sds --socket <sds_socket> --workload-api <SPIRE's agent>`, once its
/// socket is there.
fn start_bridge(spire: &Spire, sds_socket: &std::path::Path) -> Killed {
    let mut bridge = Killed(
        Command::new(MESHID)
            .args(["serve", "sds", "--socket"])
            .arg(sds_socket)
            .args(["--workload-api", &spire.endpoint()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sds_socket.exists() {
        assert!(
            bridge.0.try_wait().unwrap().is_none(),
            "meshid serve sds exited"
        );
        assert!(Instant::now() < deadline, "no SDS socket in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    bridge
}

/// Envoy with an mTLS listener on `port` taking `default` and `ROOTCA` from `sds_socket`,
/// logging to `dir/envoy.log`.
fn start_envoy(
    dir: &std::path::Path,
    sds_socket: &std::path::Path,
    google_grpc: bool,
    admin: u16,
    port: u16,
) -> envoy::Envoy {
    let sds = if google_grpc {
        envoy::google_grpc_sds_config(sds_socket)
    } else {
        envoy::sds_config("GRPC")
    };
    let yaml = envoy::listener_bootstrap_with(admin, port, sds_socket, &sds, "ROOTCA");
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, yaml).unwrap();
    envoy::Envoy(
        Command::new(envoy::envoy_binary())
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
