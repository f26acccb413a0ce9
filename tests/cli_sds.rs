//! `meshid serve sds`, from a CA directory and bridged from `meshid serve workload-api`,
//! asked with `FetchSecrets` by envoy-types' generated SDS client.

#[path = "common/uds.rs"]
mod uds;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use prost::Message as _;

#[path = "common/certs.rs"]
mod certs;
#[path = "common/hostile.rs"]
mod hostile;

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

fn meshid(dir: &Path, args: &[&str]) -> Output {
    Command::new(MESHID)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, args: &[&str], socket: &Path) -> Serving {
    let child = Command::new(MESHID)
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Serving(child)
}

/// FetchSecrets for `names` on the SDS socket: each secret's name and kind.
fn fetch(socket: &Path, names: &[&str]) -> Vec<(String, &'static str)> {
    try_fetch(socket, names).unwrap()
}

/// FetchSecrets for `names`, or the status the server refused with.
fn try_fetch(socket: &Path, names: &[&str]) -> Result<Vec<(String, &'static str)>, tonic::Status> {
    let socket = socket.to_path_buf();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let channel = uds::unix_channel(&socket).await;
            let response = SecretDiscoveryServiceClient::new(channel)
                .fetch_secrets(DiscoveryRequest {
                    resource_names: names,
                    type_url: meshid::sds::SECRET_TYPE_URL.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(response
                .resources
                .iter()
                .map(|any| {
                    let secret = Secret::decode(any.value.as_slice()).unwrap();
                    let kind = match secret.r#type {
                        Some(secret::Type::TlsCertificate(_)) => "tls_certificate",
                        Some(secret::Type::ValidationContext(_)) => "validation_context",
                        _ => "other",
                    };
                    (secret.name, kind)
                })
                .collect())
        })
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshid-clisds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = meshid(
        &dir,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    assert!(out.status.success());
    dir
}

#[test]
fn serve_sds_from_a_ca_answers_fetch_secrets_and_stops_on_sigterm() {
    let dir = scratch("ca");
    let socket = dir.join("sds.sock");
    let mut server = spawn(
        &dir,
        &[
            "serve",
            "sds",
            "--socket",
            "sds.sock",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/envoy",
        ],
        &socket,
    );
    // A name it holds no secret for is refused, as SPIRE's agent refuses it.
    let refused = try_fetch(&socket, &["default", "unknown"]).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("not authorized"), "{refused:?}");
    let got = fetch(
        &socket,
        &["default", "ROOTCA", "spiffe://example.org/envoy"],
    );
    assert_eq!(
        got,
        [
            ("default".to_owned(), "tls_certificate"),
            ("ROOTCA".to_owned(), "validation_context"),
            ("spiffe://example.org/envoy".to_owned(), "tls_certificate"),
        ]
    );
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "serve sds did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success());
    assert!(!socket.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_sds_bridges_a_workload_api() {
    let dir = scratch("bridge");
    let agent_socket = dir.join("agent.sock");
    let _agent = spawn(
        &dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            "agent.sock",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/envoy",
        ],
        &agent_socket,
    );
    let sds_socket = dir.join("sds.sock");
    let endpoint = format!("unix://{}", agent_socket.display());
    let sds = spawn(
        &dir,
        &[
            "serve",
            "sds",
            "--socket",
            "sds.sock",
            "--workload-api",
            &endpoint,
        ],
        &sds_socket,
    );
    let got = fetch(&sds_socket, &["spiffe://example.org/envoy", "ALL"]);
    drop(sds);
    // The same with --spiffe-validator: ALL is still a validation context (Envoy's SPIFFE
    // validator inside; `tests/sds_envoy.rs` proves Envoy takes it).
    let validator_socket = dir.join("v.sock");
    let _validator = spawn(
        &dir,
        &[
            "serve",
            "sds",
            "--socket",
            "v.sock",
            "--workload-api",
            &endpoint,
            "--spiffe-validator",
        ],
        &validator_socket,
    );
    assert_eq!(
        fetch(&validator_socket, &["ALL"]),
        [("ALL".to_owned(), "validation_context")]
    );
    assert_eq!(
        got,
        [
            ("spiffe://example.org/envoy".to_owned(), "tls_certificate"),
            ("ALL".to_owned(), "validation_context"),
        ]
    );
    // Neither source nor both: a usage error.
    let out = meshid(&dir, &["serve", "sds", "--socket", "x.sock"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bridge_whose_workload_api_stops_for_good_exits_1() {
    let dir = scratch("stops");
    let agent_socket = dir.join("agent.sock");
    let agent = spawn(
        &dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            "agent.sock",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/envoy",
        ],
        &agent_socket,
    );
    let endpoint = format!("unix://{}", agent_socket.display());
    let sds_socket = dir.join("sds.sock");
    let mut bridge = spawn(
        &dir,
        &[
            "serve",
            "sds",
            "--socket",
            "sds.sock",
            "--workload-api",
            &endpoint,
        ],
        &sds_socket,
    );
    // The agent goes away and something that is no Workload API takes its socket (another
    // SDS server answers FetchX509SVID with Unimplemented): the bridge must not linger.
    let status = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent_socket.exists() {
        assert!(Instant::now() < deadline, "the agent kept its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(agent);
    let _impostor = spawn(
        &dir,
        &[
            "serve",
            "sds",
            "--socket",
            "agent.sock",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/x",
        ],
        &agent_socket,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = bridge.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the bridge kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(1));
    assert!(!sds_socket.exists(), "socket left behind");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bridge_logs_the_updates_it_refuses_and_keeps_serving_the_last_good() {
    use hostile::{Hostile, Pki, Step};
    let dir = scratch("refusals");
    let pki = Pki::new();
    let id = "spiffe://example.org/envoy";
    let (good, expired) = (pki.good(id), pki.expired(id));
    let (m_good, m_expired) = (pki.message(&[(id, &good)]), pki.message(&[(id, &expired)]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let agent = {
        let _entered = rt.enter();
        Hostile::start(&dir.join("agent.sock"), move |_| {
            vec![
                Step::Message(m_good.clone()),
                Step::Sleep(Duration::from_millis(500)),
                Step::Message(m_expired.clone()),
            ]
        })
    };
    let sds_socket = dir.join("sds.sock");
    let mut bridge = Serving(
        Command::new(MESHID)
            .current_dir(&dir)
            .args(["serve", "sds", "--socket", "sds.sock", "--workload-api"])
            .arg(agent.endpoint())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = bridge.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let refusal = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a logged refusal within 15 s");
        if line.contains("refused") {
            break line;
        }
    };
    assert!(refusal.contains("WARN"), "{refusal}");
    assert!(refusal.contains("expired"), "{refusal}");
    // Still serving the good SVID.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sds_socket.exists() {
        assert!(Instant::now() < deadline, "no SDS socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let secrets = fetch(&sds_socket, &["default"]);
    assert!(!secrets.is_empty());
    assert!(bridge.0.try_wait().unwrap().is_none());
    drop(bridge);
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
