//! `meshid serve agent` with real callers under real uids: an Envoy (the official 1.40,
//! run as `nobody`) takes its certificate over SDS from the agent's one socket, through
//! Envoy's own gRPC client (state of the world and delta) and through gRPC C-core, and
//! presents exactly its own identity;
//! an Envoy whose uid matches no entry gets no certificate; and root, asking the same
//! socket by name for another workload's identity, gets no key, while the Workload API
//! there gives root its own. Needs root (`MESHID_SKIP_ROOT_TESTS=1` skips it otherwise).

#![cfg(all(unix, feature = "cli"))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use meshid::workload::{Endpoint, WorkloadApiClient, X509Context};
use meshid::{authorize, tls, CertificateInfo, X509Svid};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[path = "common/agent.rs"]
mod agent;
#[path = "common/envoy.rs"]
mod envoy;
#[path = "common/serve_cli.rs"]
mod serve_cli;
#[path = "common/uds.rs"]
mod uds;

use agent::ServeAgent;
use envoy::{admin_get, envoy_binary, free_port, Envoy};
use serve_cli::Scratch;

const ROOT_ID: &str = "spiffe://example.org/root-thing";
const NOBODY_ID: &str = "spiffe://example.org/envoy-nobody";
const SECOND_ID: &str = "spiffe://example.org/envoy-nobody-second";
const OTHER_ID: &str = "spiffe://example.org/someone-else";
/// Every workload ID the entries name.
const ALL_IDS: [&str; 4] = [ROOT_ID, NOBODY_ID, SECOND_ID, OTHER_ID];

/// `nobody`, whose Envoy has an entry.
const NOBODY: u32 = 65534;
/// A uid with an entry nobody runs as.
const OTHER: u32 = 65533;
/// A uid with no entry at all.
const STRANGER: u32 = 65532;

/// The entries: root's first (so an agent that ignored attestation would hand out
/// root-thing as everybody's `default`), then nobody's (its default), another uid's, and a
/// second entry for nobody (uid and gid) that must not be its default.
fn entries() -> String {
    format!(
        r#"[[entry]]
spiffe_id = "{ROOT_ID}"
selectors = ["unix:uid:0"]

[[entry]]
spiffe_id = "{NOBODY_ID}"
selectors = ["unix:uid:{NOBODY}"]

[[entry]]
spiffe_id = "{OTHER_ID}"
selectors = ["unix:uid:{OTHER}"]

[[entry]]
spiffe_id = "{SECOND_ID}"
selectors = ["unix:uid:{NOBODY}", "unix:gid:{NOBODY}"]
"#
    )
}

/// A node: a CA, `meshid serve agent` serving [`entries`] on one socket, and the Envoy
/// binary where other uids can run it. Dropped in order: the agent, then the scratch
/// directory (with the binary's link).
struct Node {
    agent: ServeAgent,
    envoy: PathBuf,
    scratch: Scratch,
}

impl Node {
    fn start(tag: &str) -> Self {
        let scratch = Scratch::new(&format!("ae-{tag}"));
        // The binary first: a link under the scratch directory, which it makes 0755.
        let envoy = agent::reachable_binary(&envoy_binary(), &scratch.0);
        let agent = ServeAgent::start(&scratch.0, &entries(), &[]);
        let socket = agent.socket.as_os_str().len();
        assert!(socket < 108, "socket path of {socket} bytes");
        Self {
            agent,
            envoy,
            scratch,
        }
    }
}

/// An Envoy started as `uid` (gid the same, no supplementary groups), its bootstrap and
/// log in a directory of its own; killed when dropped. It needs nothing else written:
/// with `--disable-hot-restart` there is no shared memory or base-id socket, and its
/// admin API is on a loopback port.
struct UidEnvoy {
    envoy: Envoy,
    uid: u32,
    admin: u16,
    port: u16,
    dir: PathBuf,
}

impl UidEnvoy {
    fn start(node: &Node, uid: u32, bootstrap: impl FnOnce(u16, u16) -> String) -> Self {
        let dir = agent::owned_dir(&node.scratch.0, &format!("envoy-{uid}"), uid, uid);
        let (admin, port) = (free_port(), free_port());
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, bootstrap(admin, port)).unwrap();
        std::os::unix::fs::chown(&config, Some(uid), Some(uid)).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
        let child = Command::new(&node.envoy)
            .uid(uid)
            .gid(uid)
            .current_dir(&dir)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "1"])
            .args(["-l", "info", "--log-path"])
            .arg(dir.join("envoy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let running = Self {
            envoy: Envoy(child),
            uid,
            admin,
            port,
            dir,
        };
        // It really runs as `uid` (real, effective, saved and filesystem).
        let uids = agent::uids_of(running.envoy.0.id());
        assert_eq!(uids, [uid; 4], "Envoy's real, effective, saved and fs uids");
        running
    }

    /// What to read when something went wrong: the end of Envoy's log and stderr, and
    /// of what the agent printed.
    fn diagnosis(&self, node: &Node) -> String {
        let tail = |text: String, n: usize| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- Envoy (uid {}) log, last lines\n{}\n--- Envoy stderr\n{}\n--- meshid serve agent\n{}",
            self.uid,
            tail(read("envoy.log"), 40),
            tail(read("stderr"), 20),
            tail(node.agent.output(), 40)
        )
    }

    /// Envoy's stats now (empty if its admin API does not answer).
    fn stats(&self) -> String {
        admin_get(self.admin, "/stats").unwrap_or_default()
    }

    /// Waits (at most 30 s) until `f` holds of Envoy's stats; the stats then. Fails with
    /// Envoy's log and the agent's output if Envoy exits or the time runs out.
    fn wait_for(&mut self, node: &Node, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(exit)) = self.envoy.0.try_wait() {
                panic!(
                    "Envoy exited ({exit}) waiting for {what}\n{}",
                    self.diagnosis(node)
                );
            }
            let stats = self.stats();
            if !stats.is_empty() && f(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy: no {what} within 30 s\n{}\n{}",
                interesting(&stats),
                self.diagnosis(node)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The stats worth reading on a failure: SDS's, the server's and the listeners'.
fn interesting(stats: &str) -> String {
    let lines: Vec<&str> = stats
        .lines()
        .filter(|l| {
            [
                "sds.",
                "server.",
                "listener_manager.",
                "cluster.sds.upstream_cx",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    format!(
        "--- Envoy stats (sds, server, listeners)\n{}",
        lines.join("\n")
    )
}

fn stat(stats: &str, name: &str) -> u64 {
    envoy::stat(stats, name).unwrap_or(0)
}

/// Envoy's state (`LIVE`, `INITIALIZING`, ...) as `/server_info` tells it.
fn server_state(admin: u16) -> String {
    let info = admin_get(admin, "/server_info").unwrap_or_default();
    info.split_once("\"state\": \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| format!("unknown: {info}"), |(state, _)| state.to_owned())
}

/// The workload IDs Envoy's `/certs` shows.
fn ids_in_certs(admin: u16) -> Vec<&'static str> {
    let certs = admin_get(admin, "/certs").unwrap_or_default();
    ALL_IDS
        .into_iter()
        .filter(|id| certs.contains(&format!("\"{id}\"")))
        .collect()
}

/// One HTTPS request to Envoy: the ID it presented and the response.
fn request(config: &Arc<rustls::ClientConfig>, port: u16) -> Result<(String, String), String> {
    let mut tcp =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("envoy").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("TLS: {e}"))?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(format!("TLS: {e}")),
    }
    let peer = tls::peer_id(&conn)
        .map(|p| p.to_string())
        .unwrap_or_default();
    Ok((peer, String::from_utf8_lossy(&out).into_owned()))
}

/// What the Workload API on `socket` gives this process (root).
fn workload_context(rt: &tokio::runtime::Runtime, socket: &Path) -> X509Context {
    rt.block_on(async {
        let mut client = WorkloadApiClient::connect(&Endpoint::Unix(socket.to_path_buf()))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), client.fetch_x509_context())
            .await
            .expect("FetchX509SVID answered within 10 s")
            .unwrap()
    })
}

/// Envoy, run as nobody with an mTLS listener taking `default` and `ROOTCA` from the
/// agent's socket (through `sds`), loads them and presents nobody's first entry to a
/// client (root, with the SVID the Workload API on the same socket gave it), never root's
/// or the second entry's.
fn envoy_as_nobody_presents_its_own_identity(tag: &str, sds: impl FnOnce(&Path) -> String) {
    if !agent::root_or_skip(tag, "starts Envoy as another uid") {
        return;
    }
    let node = Node::start(tag);
    let sds = sds(&node.agent.socket);
    let google = sds.contains("google_grpc");
    let mut envoy = UidEnvoy::start(&node, NOBODY, |admin, port| {
        envoy::listener_bootstrap_with(admin, port, &node.agent.socket, &sds, "ROOTCA")
    });
    let stats = envoy.wait_for(&node, "default and ROOTCA from SDS", |s| {
        stat(s, "sds.default.update_success") >= 1 && stat(s, "sds.ROOTCA.update_success") >= 1
    });
    for name in ["default", "ROOTCA"] {
        assert_eq!(
            stat(&stats, &format!("sds.{name}.update_rejected")),
            0,
            "{stats}\n{}",
            envoy.diagnosis(&node)
        );
    }
    if google {
        // Through gRPC C-core straight to the socket, not through the `sds` cluster.
        assert_eq!(stat(&stats, "cluster.sds.upstream_cx_total"), 0, "{stats}");
    }
    assert_eq!(
        ids_in_certs(envoy.admin),
        [NOBODY_ID],
        "Envoy's /certs\n{}",
        envoy.diagnosis(&node)
    );

    // Root's own identity, from the Workload API on the same socket.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let context = workload_context(&rt, &node.agent.socket);
    let ids: Vec<String> = context.svids().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, [ROOT_ID], "the Workload API's answer to root");
    let client = Arc::new(
        tls::client_config(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::clone(context.default_svid()),
            context.bundles().clone(),
            authorize::any(),
        )
        .unwrap(),
    );
    // The listener starts once Envoy has initialized: the first requests may come early.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = 0;
    while answered < 3 {
        match request(&client, envoy.port) {
            Ok((peer, reply)) => {
                assert_eq!(
                    peer,
                    NOBODY_ID,
                    "Envoy presented another identity\n{}",
                    envoy.diagnosis(&node)
                );
                assert!(
                    reply.starts_with("HTTP/1.1 200") && reply.contains("hello from envoy"),
                    "{reply}\n{}",
                    envoy.diagnosis(&node)
                );
                answered += 1;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "no mTLS answer from Envoy within 20 s: {e}\n{}",
                envoy.diagnosis(&node)
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server_state(envoy.admin), "LIVE");
    let stats = envoy.stats();
    eprintln!(
        "{tag}: Envoy as uid {NOBODY} presented {NOBODY_ID} {answered} times; default updates {}",
        stat(&stats, "sds.default.update_success")
    );
}

#[test]
fn envoy_as_nobody_takes_only_its_own_identity_through_envoy_grpc() {
    envoy_as_nobody_presents_its_own_identity("envoy-grpc", |_| envoy::sds_config("GRPC"));
}

#[test]
fn envoy_as_nobody_takes_only_its_own_identity_through_delta_sds() {
    envoy_as_nobody_presents_its_own_identity("delta", |_| envoy::sds_config("DELTA_GRPC"));
}

#[test]
fn envoy_as_nobody_takes_only_its_own_identity_through_google_grpc() {
    envoy_as_nobody_presents_its_own_identity("google-grpc", envoy::google_grpc_sds_config);
}

/// An Envoy whose uid matches no entry: `default` is refused (the stream closed with the
/// refusal, again on each retry), so it never gets a certificate and, waiting for it, never
/// starts its listener; the bundles (`ALL`) are still served to it.
#[test]
fn an_envoy_whose_uid_matches_no_entry_gets_no_certificate() {
    if !agent::root_or_skip("no-entry", "starts Envoy as another uid") {
        return;
    }
    let node = Node::start("none");
    let sds = envoy::waiting_forever(&envoy::sds_config("GRPC"));
    let mut envoy = UidEnvoy::start(&node, STRANGER, |admin, port| {
        envoy::listener_bootstrap_with(admin, port, &node.agent.socket, &sds, "ALL")
    });
    let stats = envoy.wait_for(&node, "ALL, and default refused twice", |s| {
        stat(s, "sds.ALL.update_success") >= 1 && stat(s, "sds.default.update_failure") >= 2
    });
    let diagnosis = || format!("{}\n{}", interesting(&stats), envoy.diagnosis(&node));
    assert_eq!(
        stat(&stats, "sds.default.update_success"),
        0,
        "{}",
        diagnosis()
    );
    assert_eq!(
        stat(&stats, "sds.default.update_rejected"),
        0,
        "{}",
        diagnosis()
    );
    assert_eq!(
        stat(&stats, "sds.ALL.update_rejected"),
        0,
        "{}",
        diagnosis()
    );
    // Still initializing, waiting for `default`: its listener not started.
    assert_eq!(server_state(envoy.admin), "INITIALIZING", "{}", diagnosis());
    assert_eq!(
        stat(&stats, "listener_manager.workers_started"),
        0,
        "{}",
        diagnosis()
    );
    assert_eq!(
        ids_in_certs(envoy.admin),
        Vec::<&str>::new(),
        "{}",
        diagnosis()
    );
    // Nobody gets an mTLS answer from it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let context = workload_context(&rt, &node.agent.socket);
    let client = Arc::new(
        tls::client_config(
            Arc::new(rustls::crypto::ring::default_provider()),
            Arc::clone(context.default_svid()),
            context.bundles().clone(),
            authorize::any(),
        )
        .unwrap(),
    );
    let answer = request(&client, envoy.port);
    assert!(answer.is_err(), "{answer:?}\n{}", diagnosis());
    assert!(
        node.agent.output().contains("refused names with no secret"),
        "{}",
        diagnosis()
    );
    eprintln!(
        "no-entry: default refused {} times, ALL loaded, TLS: {}",
        stat(&stats, "sds.default.update_failure"),
        answer.unwrap_err()
    );
}

// ---- root asking the agent's SDS by name ----

/// What a secret is: a certificate (its SPIFFE ID, and whether the key that came with it
/// is its key) or a validation context.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Cert {
        name: String,
        id: String,
        with_key: bool,
    },
    Roots(String),
    Other(String),
}

fn inline(source: Option<&envoy_types::pb::envoy::config::core::v3::DataSource>) -> Vec<u8> {
    match source.and_then(|s| s.specifier.as_ref()) {
        Some(Specifier::InlineBytes(b)) => b.clone(),
        Some(Specifier::InlineString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

fn got(secret: &Secret) -> Got {
    match &secret.r#type {
        Some(secret::Type::TlsCertificate(tls)) => {
            let chain = inline(tls.certificate_chain.as_ref());
            let key = inline(tls.private_key.as_ref());
            // The leaf: the chain's first PEM block.
            let end = b"-----END CERTIFICATE-----";
            let leaf_end = chain
                .windows(end.len())
                .position(|w| w == end)
                .expect("a PEM certificate chain")
                + end.len();
            let (label, leaf) = der::pem::decode_vec(&chain[..leaf_end]).unwrap();
            assert_eq!(label, "CERTIFICATE");
            let id = CertificateInfo::from_der(&leaf)
                .unwrap()
                .spiffe_id()
                .map(ToString::to_string)
                .unwrap_or_default();
            let with_key = !key.is_empty();
            if with_key {
                let svid = X509Svid::parse_pem(&chain, &key).expect("the key is the leaf's");
                assert_eq!(svid.id().as_str(), id);
            }
            Got::Cert {
                name: secret.name.clone(),
                id,
                with_key,
            }
        }
        Some(secret::Type::ValidationContext(_)) => Got::Roots(secret.name.clone()),
        _ => Got::Other(secret.name.clone()),
    }
}

fn secrets(resources: &[envoy_types::pb::google::protobuf::Any]) -> Vec<Got> {
    resources
        .iter()
        .map(|any| got(&Secret::decode(any.value.as_slice()).unwrap()))
        .collect()
}

/// `got` in a fixed order (certificates first, then validation contexts, each by name).
fn sorted(mut got: Vec<Got>) -> Vec<Got> {
    got.sort_by_key(|g| format!("{g:?}"));
    got
}

fn cert(name: &str, id: &str) -> Got {
    Got::Cert {
        name: name.to_owned(),
        id: id.to_owned(),
        with_key: true,
    }
}

/// Any certificate among `got` that is not root's own.
fn foreign(got: &[Got]) -> Vec<&Got> {
    got.iter()
        .filter(|g| matches!(g, Got::Cert { id, .. } if id != ROOT_ID))
        .collect()
}

const WAIT: Duration = Duration::from_secs(10);

async fn sds_client(socket: &Path) -> SecretDiscoveryServiceClient<tonic::transport::Channel> {
    SecretDiscoveryServiceClient::new(uds::unix_channel(socket).await)
}

fn request_for(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_owned(),
        resource_names: names.iter().map(|&n| n.to_owned()).collect(),
        type_url: meshid::sds::SECRET_TYPE_URL.into(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

/// FetchSecrets for `names`: the secrets, or the refusal.
async fn fetch(socket: &Path, names: &[&str]) -> Result<Vec<Got>, tonic::Status> {
    let mut client = sds_client(socket).await;
    let call = client.fetch_secrets(request_for(names, "", ""));
    let response = tokio::time::timeout(WAIT, call)
        .await
        .expect("FetchSecrets answered")?;
    Ok(secrets(&response.into_inner().resources))
}

/// The refusal `names` get; fails on an answer.
async fn refused(socket: &Path, names: &[&str]) -> tonic::Status {
    match fetch(socket, names).await {
        Ok(got) => panic!("FetchSecrets {names:?} answered {got:?}"),
        Err(status) => status,
    }
}

/// A StreamSecrets stream: requests in, responses (or the refusal) out.
struct SotwStream {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: tonic::Streaming<DiscoveryResponse>,
}

impl SotwStream {
    async fn open(socket: &Path, first: DiscoveryRequest) -> Self {
        let (requests, rx) = mpsc::channel(4);
        requests.send(first).await.unwrap();
        let responses = tokio::time::timeout(
            WAIT,
            sds_client(socket)
                .await
                .stream_secrets(ReceiverStream::new(rx)),
        )
        .await
        .expect("StreamSecrets opened")
        .expect("StreamSecrets opened")
        .into_inner();
        Self {
            requests,
            responses,
        }
    }

    /// The next response, `Err` the status the stream ended with.
    async fn next(&mut self) -> Result<DiscoveryResponse, tonic::Status> {
        match tokio::time::timeout(WAIT, self.responses.message()).await {
            Err(tokio::time::error::Elapsed { .. }) => {
                panic!("StreamSecrets: nothing within {WAIT:?}")
            }
            Ok(Ok(Some(response))) => Ok(response),
            Ok(Ok(None)) => Err(tonic::Status::ok("ended")),
            Ok(Err(status)) => Err(status),
        }
    }
}

/// Root, a workload with its own entry, on the agent's one socket: the Workload API gives
/// it only its own SVID; SDS `default` is its own; asking by name for nobody's identity
/// (FetchSecrets, or StreamSecrets, first or on a stream that was answered) is refused with
/// InvalidArgument exactly as a name nobody has, and no response ever carries another's
/// certificate or key; DeltaSecrets just leaves the name out.
#[test]
fn root_asking_for_another_workloads_identity_by_name_gets_no_key() {
    if !agent::root_or_skip("root-by-name", "is attested as root") {
        return;
    }
    let node = Node::start("byname");
    let socket = node.agent.socket.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let context = workload_context(&rt, &socket);
    let ids: Vec<String> = context.svids().map(|s| s.id().to_string()).collect();
    assert_eq!(ids, [ROOT_ID], "{}", node.agent.output());
    assert!(context
        .bundles()
        .iter()
        .any(|b| b.trust_domain().name() == "example.org"));

    rt.block_on(async {
        // FetchSecrets: root's own, by `default` and by its ID.
        assert_eq!(
            fetch(&socket, &["default", ROOT_ID, "ROOTCA"])
                .await
                .unwrap(),
            [
                cert("default", ROOT_ID),
                cert(ROOT_ID, ROOT_ID),
                Got::Roots("ROOTCA".into())
            ]
        );
        // Another workload's ID is refused just as an ID nobody has: the same code and the
        // same message, but for the name.
        let unknown = "spiffe://example.org/nobody-has-this";
        let expected = refused(&socket, &[unknown]).await;
        assert_eq!(
            expected.code(),
            tonic::Code::InvalidArgument,
            "{expected:?}"
        );
        assert!(
            expected
                .message()
                .starts_with("workload is not authorized for the requested identities"),
            "{expected:?}"
        );
        for other in [NOBODY_ID, SECOND_ID, OTHER_ID] {
            for names in [vec![other], vec!["default", other, "ROOTCA"]] {
                let status = refused(&socket, &names).await;
                assert_eq!(status.code(), expected.code(), "{names:?}: {status:?}");
                assert_eq!(
                    status.message().replace(other, unknown),
                    expected.message(),
                    "{names:?}"
                );
            }
        }

        // StreamSecrets asking for nobody's first: refused, nothing sent.
        let mut stream = SotwStream::open(&socket, request_for(&[NOBODY_ID], "", "")).await;
        let status = stream.next().await.expect_err("a refusal");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(NOBODY_ID), "{status:?}");

        // A stream answered with root's own, then asking for nobody's too: refused.
        let mut stream =
            SotwStream::open(&socket, request_for(&["default", "ROOTCA"], "", "")).await;
        let first = stream.next().await.unwrap();
        assert_eq!(
            sorted(secrets(&first.resources)),
            [cert("default", ROOT_ID), Got::Roots("ROOTCA".into())]
        );
        stream
            .requests
            .send(request_for(
                &["default", "ROOTCA", NOBODY_ID],
                &first.version_info,
                &first.nonce,
            ))
            .await
            .unwrap();
        match stream.next().await {
            Ok(response) => panic!(
                "StreamSecrets answered a request for {NOBODY_ID}: {:?}",
                secrets(&response.resources)
            ),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
                assert!(status.message().contains(NOBODY_ID), "{status:?}");
            }
        }

        delta(&socket).await;
    });
    eprintln!("root-by-name: agent said\n{}", node.agent.output());
}

/// The next DeltaSecrets response, if one comes within `quiet`.
async fn next_delta(
    responses: &mut tonic::Streaming<DeltaDiscoveryResponse>,
    quiet: Duration,
) -> Option<DeltaDiscoveryResponse> {
    match tokio::time::timeout(quiet, responses.message()).await {
        Err(_) => None,
        Ok(m) => Some(m.expect("DeltaSecrets stays open").expect("not ended")),
    }
}

/// DeltaSecrets: nobody's and another uid's IDs are simply left out (`default` and
/// `ROOTCA` come), a later subscription to them brings nothing, and the stream still
/// answers root's own ID after that.
async fn delta(socket: &Path) {
    let (requests, rx) = mpsc::channel(4);
    let subscribe = |names: &[&str], nonce: &str| DeltaDiscoveryRequest {
        resource_names_subscribe: names.iter().map(|&n| n.to_owned()).collect(),
        type_url: meshid::sds::SECRET_TYPE_URL.into(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    };
    requests
        .send(subscribe(&[NOBODY_ID, "default", "ROOTCA"], ""))
        .await
        .unwrap();
    let mut responses = tokio::time::timeout(
        WAIT,
        sds_client(socket)
            .await
            .delta_secrets(ReceiverStream::new(rx)),
    )
    .await
    .expect("DeltaSecrets opened")
    .expect("DeltaSecrets opened")
    .into_inner();
    let names = |r: &DeltaDiscoveryResponse| -> Vec<Got> {
        r.resources
            .iter()
            .map(|res| {
                let secret =
                    Secret::decode(res.resource.as_ref().unwrap().value.as_slice()).unwrap();
                assert_eq!(secret.name, res.name);
                got(&secret)
            })
            .collect()
    };
    let first: DeltaDiscoveryResponse = next_delta(&mut responses, WAIT)
        .await
        .expect("a first response");
    assert_eq!(
        sorted(names(&first)),
        [cert("default", ROOT_ID), Got::Roots("ROOTCA".into())]
    );
    assert!(first.removed_resources.is_empty(), "{first:?}");
    requests
        .send(subscribe(&[SECOND_ID, OTHER_ID], &first.nonce))
        .await
        .unwrap();
    if let Some(response) = next_delta(&mut responses, Duration::from_millis(1500)).await {
        let got = names(&response);
        panic!(
            "DeltaSecrets answered a subscription to others' IDs: {got:?} (foreign: {:?})",
            foreign(&got)
        );
    }
    requests
        .send(subscribe(&[ROOT_ID], &first.nonce))
        .await
        .unwrap();
    let own = next_delta(&mut responses, WAIT)
        .await
        .expect("root's own ID by name");
    assert_eq!(names(&own), [cert(ROOT_ID, ROOT_ID)]);
}
