//! The SDS server under misbehaving clients: streams dropped mid-way, garbage on the
//! socket, a client that NACKs every push, thousands of abandoned streams. After each, a
//! well-behaved client is still served (first response and the push after a rotation),
//! the runtime's task count returns near its baseline, and shutdown ends in time and
//! removes the socket. Also the incremental protocol (`DeltaSecrets`): only changed
//! secrets are pushed, unsubscribing works, and a NACK is not answered by a resend.

#![cfg(all(unix, feature = "sds"))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use meshid::sds::{SdsServer, SECRET_TYPE_URL};
use meshid::{Authority, BundleSet, KeyType, SpiffeId, SvidStore, TrustDomain, X509Bundle};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// The generous liveness bound for anything the server should do "at once".
const LIVE: Duration = Duration::from_secs(10);
/// Tasks the runtime may hold above its baseline once misbehaving clients are gone.
const TASK_SLACK: usize = 8;

struct Server {
    dir: PathBuf,
    socket: PathBuf,
    ca: Authority,
    store: Arc<SvidStore>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), meshid::serve::ServeError>>,
}

impl Server {
    async fn start(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("meshid-sdsfaults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sds.sock");
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
        let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
            .into_iter()
            .collect();
        let store = Arc::new(SvidStore::new());
        store.publish(ca.issue(&envoy_id(), Duration::from_secs(600)).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let sds = SdsServer::for_store(Arc::clone(&store), bundles);
        let served = tokio::spawn(sds.serve(socket.clone(), async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + LIVE;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the SDS socket never appeared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            dir,
            socket,
            ca,
            store,
            stop: Some(stop),
            served,
        }
    }

    /// Publishes a fresh SVID; its chain as PEM.
    fn rotate(&self) -> String {
        let svid = self
            .ca
            .issue(&envoy_id(), Duration::from_secs(600))
            .unwrap();
        let chain = svid.chain_pem();
        self.store.publish(svid);
        chain
    }

    /// Shuts the server down: the serve future must resolve Ok within 10 s and the socket
    /// file must be gone.
    async fn shutdown(mut self) {
        let started = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        let result = timeout(LIVE, &mut self.served)
            .await
            .expect("the server did not shut down within 10 s");
        result.unwrap().unwrap();
        assert!(!self.socket.exists(), "the socket file was left behind");
        eprintln!("shutdown took {:?}", started.elapsed());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn envoy_id() -> SpiffeId {
    SpiffeId::new("spiffe://example.org/envoy").unwrap()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (up to 10 s) until the runtime's alive tasks are back near `baseline`.
async fn tasks_settle(baseline: usize, after: &str) {
    let deadline = Instant::now() + LIVE;
    loop {
        let now = alive_tasks();
        if now <= baseline + TASK_SLACK {
            eprintln!("{after}: {now} alive tasks (baseline {baseline})");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{after}: {now} tasks still alive, baseline {baseline}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect(socket: &Path) -> Channel {
    uds::unix_channel(socket).await
}

#[path = "common/uds.rs"]
mod uds;

fn nack_status() -> RpcStatus {
    RpcStatus {
        code: 3,
        message: "rejected by the test".into(),
        details: Vec::new(),
    }
}

/// One StreamSecrets stream.
struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    names: Vec<String>,
}

impl Sotw {
    async fn open(channel: &Channel, names: &[&str]) -> Self {
        let (tx, rx) = mpsc::channel(8);
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        tx.send(DiscoveryRequest {
            resource_names: names.clone(),
            type_url: SECRET_TYPE_URL.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let rx = SecretDiscoveryServiceClient::new(channel.clone())
            .stream_secrets(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self { tx, rx, names }
    }

    async fn next(&mut self) -> DiscoveryResponse {
        timeout(LIVE, self.rx.message())
            .await
            .expect("no response within 10 s")
            .unwrap()
            .expect("the stream ended")
    }

    /// ACKs (or NACKs) `response`.
    async fn answer(&self, response: &DiscoveryResponse, nack: bool) {
        self.tx
            .send(DiscoveryRequest {
                resource_names: self.names.clone(),
                type_url: SECRET_TYPE_URL.into(),
                response_nonce: response.nonce.clone(),
                version_info: if nack {
                    String::new()
                } else {
                    response.version_info.clone()
                },
                error_detail: nack.then(nack_status),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn decode(any: &envoy_types::pb::google::protobuf::Any) -> Secret {
    assert_eq!(any.type_url, SECRET_TYPE_URL);
    Secret::decode(any.value.as_slice()).unwrap()
}

fn sorted_names(secrets: impl IntoIterator<Item = Secret>) -> Vec<String> {
    let mut names: Vec<String> = secrets.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// The certificate chain (PEM) of the `default` secret in `secrets`.
fn default_chain(secrets: impl IntoIterator<Item = Secret>) -> Option<String> {
    secrets.into_iter().find_map(|s| match s.r#type {
        Some(secret::Type::TlsCertificate(t)) if s.name == "default" => {
            match t.certificate_chain?.specifier? {
                Specifier::InlineBytes(b) => String::from_utf8(b).ok(),
                _ => None,
            }
        }
        _ => None,
    })
}

/// A fresh, well-behaved client gets its first response at once and the push after a
/// rotation, with the new certificate.
async fn well_behaved(server: &Server) {
    let channel = connect(&server.socket).await;
    let mut stream = Sotw::open(&channel, &["default", "ROOTCA"]).await;
    let first = stream.next().await;
    assert_eq!(
        sorted_names(first.resources.iter().map(decode)),
        ["ROOTCA", "default"]
    );
    stream.answer(&first, false).await;
    let chain = server.rotate();
    let deadline = Instant::now() + LIVE;
    loop {
        let push = stream.next().await;
        stream.answer(&push, false).await;
        if default_chain(push.resources.iter().map(decode)).as_ref() == Some(&chain) {
            assert_ne!(push.version_info, first.version_info);
            break;
        }
        assert!(Instant::now() < deadline, "the rotation was never pushed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_drop_streams_mid_way_or_abandon_thousands_do_not_hurt_the_server() {
    let server = Server::start("abandon").await;
    let baseline = alive_tasks();
    well_behaved(&server).await;

    // Disconnects mid-stream: drops the stream after the first response, then the
    // connection; and one that drops the stream while a push is pending.
    for rotate_first in [false, true] {
        let channel = connect(&server.socket).await;
        let mut stream = Sotw::open(&channel, &["default", "ROOTCA"]).await;
        let _ = stream.next().await;
        if rotate_first {
            server.rotate();
        }
        drop(stream);
        drop(channel);
        well_behaved(&server).await;
    }
    tasks_settle(baseline, "after mid-stream disconnects").await;

    // 2,000 streams over 20 connections: half wait for their first response, half are
    // dropped right after opening; then all are abandoned.
    let mut opened = tokio::task::JoinSet::new();
    for c in 0..20 {
        let channel = connect(&server.socket).await;
        for s in 0..100 {
            let channel = channel.clone();
            opened.spawn(async move {
                let mut stream = Sotw::open(&channel, &["default", "ROOTCA"]).await;
                if (c + s) % 2 == 0 {
                    let _ = stream.next().await;
                }
                stream
            });
        }
    }
    let mut streams = Vec::new();
    while let Some(stream) = timeout(Duration::from_secs(60), opened.join_next())
        .await
        .expect("opening 2,000 streams took over 60 s")
    {
        streams.push(stream.unwrap());
    }
    assert_eq!(streams.len(), 2000);
    eprintln!(
        "2,000 streams open: {} alive tasks (baseline {baseline})",
        alive_tasks()
    );
    // A rotation while they are all open, then abandon them.
    server.rotate();
    drop(streams);
    well_behaved(&server).await;
    tasks_settle(baseline, "after 2,000 abandoned streams").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_is_dropped_and_does_not_block_others_or_shutdown() {
    let server = Server::start("garbage").await;
    let baseline = alive_tasks();
    let junk: [&[u8]; 3] = [
        b"\x00\x01\x02\x03 garbage \xff\xfe\xfd\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: sds\r\n\r\n",
        // The HTTP/2 preface, then a frame of nonsense.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x08\x07\x00\x00\x00\x00\x00garbage!",
    ];
    for bytes in junk {
        let mut raw = tokio::net::UnixStream::connect(&server.socket)
            .await
            .unwrap();
        raw.write_all(bytes).await.unwrap();
        // The server answers or closes; either way the connection ends.
        let mut sink = Vec::new();
        let read = timeout(LIVE, raw.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the server kept a garbage connection open");
        well_behaved(&server).await;
    }
    tasks_settle(baseline, "after garbage").await;

    // A client that connects and sends half a preface, then nothing, and a healthy stream
    // still open: neither keeps shutdown past its grace period.
    let mut idle = tokio::net::UnixStream::connect(&server.socket)
        .await
        .unwrap();
    idle.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let channel = connect(&server.socket).await;
    let mut open = Sotw::open(&channel, &["default"]).await;
    let _ = open.next().await;
    well_behaved(&server).await;
    server.shutdown().await;
    // The open stream was ended by the shutdown (after the pushes it had not read).
    let ended = timeout(LIVE, async {
        while let Ok(Some(_)) = open.rx.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the shutdown");
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_nacks_every_push_gets_each_version_once_and_others_are_served() {
    let server = Server::start("nack").await;
    let baseline = alive_tasks();
    let channel = connect(&server.socket).await;
    let mut nacker = Sotw::open(&channel, &["default", "ROOTCA"]).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let nacking = tokio::spawn(async move {
        loop {
            let Ok(Some(response)) = nacker.rx.message().await else {
                return;
            };
            nacker.answer(&response, true).await;
            if seen_tx.send(response.version_info).is_err() {
                return;
            }
        }
    });
    let first = timeout(LIVE, seen.recv()).await.unwrap().unwrap();
    let mut versions = vec![first];
    for _ in 0..5 {
        well_behaved(&server).await;
        // Each rotation reaches the NACKing client too (a new version), exactly once.
        let version = timeout(LIVE, seen.recv()).await.unwrap().unwrap();
        versions.push(version);
    }
    // Nothing is resent after the NACKs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(version) = seen.try_recv() {
        versions.push(version);
    }
    let mut unique = versions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        versions.len(),
        "a NACKed version was resent: {versions:?}"
    );
    // Shutdown with the NACKing stream still open ends it.
    server.shutdown().await;
    timeout(LIVE, nacking)
        .await
        .expect("the NACKing stream outlived the shutdown")
        .unwrap();
    drop(channel);
    tasks_settle(baseline, "after the NACKing client").await;
}

/// One DeltaSecrets stream.
struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn send(&self, request: DeltaDiscoveryRequest) {
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: SECRET_TYPE_URL.into(),
                ..request
            })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        timeout(LIVE, self.rx.message())
            .await
            .expect("no delta response within 10 s")
            .unwrap()
            .expect("the delta stream ended")
    }

    /// Nothing arrives for a while.
    async fn quiet(&mut self, what: &str) {
        if let Ok(got) = timeout(Duration::from_millis(500), self.rx.message()).await {
            panic!("{what}: {got:?}");
        }
    }

    async fn ack(&self, response: &DeltaDiscoveryResponse, nack: bool) {
        self.send(DeltaDiscoveryRequest {
            response_nonce: response.nonce.clone(),
            error_detail: nack.then(nack_status),
            ..Default::default()
        })
        .await;
    }
}

fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<String> {
    let secrets = response.resources.iter().map(|r| {
        let secret = decode(r.resource.as_ref().unwrap());
        assert_eq!(secret.name, r.name);
        secret
    });
    sorted_names(secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_pushes_only_what_changed_honours_unsubscribe_and_does_not_resend_nacks() {
    let server = Server::start("delta").await;
    let channel = connect(&server.socket).await;
    let (tx, rx) = mpsc::channel(8);
    let rx = SecretDiscoveryServiceClient::new(channel.clone())
        .delta_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut delta = Delta { tx, rx };
    delta
        .send(DeltaDiscoveryRequest {
            resource_names_subscribe: vec!["default".into(), "ROOTCA".into()],
            ..Default::default()
        })
        .await;
    let first = delta.next().await;
    assert_eq!(delta_names(&first), ["ROOTCA", "default"]);
    delta.ack(&first, false).await;
    delta.quiet("an ACK was answered").await;

    // A rotation: only the certificate.
    let chain = server.rotate();
    let push = delta.next().await;
    assert_eq!(delta_names(&push), ["default"]);
    assert!(push.removed_resources.is_empty());
    let secrets = push
        .resources
        .iter()
        .map(|r| decode(r.resource.as_ref().unwrap()));
    assert_eq!(default_chain(secrets), Some(chain));
    delta.ack(&push, false).await;

    // Unsubscribe ROOTCA (nothing to send for that), rotate: only the certificate again.
    delta
        .send(DeltaDiscoveryRequest {
            resource_names_unsubscribe: vec!["ROOTCA".into()],
            response_nonce: push.nonce.clone(),
            ..Default::default()
        })
        .await;
    delta.quiet("an unsubscribe was answered").await;
    server.rotate();
    let push = delta.next().await;
    assert_eq!(delta_names(&push), ["default"]);
    assert!(push.removed_resources.is_empty());

    // A NACK is not answered by a resend of the same version.
    delta.ack(&push, true).await;
    delta.quiet("a NACKed version was resent").await;
    // The next rotation is pushed (a new version of `default`).
    server.rotate();
    let next = delta.next().await;
    assert_eq!(delta_names(&next), ["default"]);
    assert_ne!(next.resources[0].version, push.resources[0].version);
    drop(delta);
    drop(channel);
    server.shutdown().await;
}

/// Opens a DeltaSecrets stream on `channel`.
async fn open_delta(channel: &Channel) -> Delta {
    let (tx, rx) = mpsc::channel(8);
    let rx = SecretDiscoveryServiceClient::new(channel.clone())
        .delta_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    Delta { tx, rx }
}

/// The status a refused stream ends with (within 10 s; a response instead is a failure).
async fn refusal<T>(rx: &mut Streaming<T>) -> tonic::Status {
    match timeout(LIVE, rx.message()).await {
        Ok(Err(status)) => status,
        Ok(Ok(Some(_))) => panic!("not refused: a response arrived"),
        Ok(Ok(None)) => panic!("not refused: the stream ended without a status"),
        Err(elapsed) => panic!("not refused within 10 s ({elapsed})"),
    }
}

/// A name of `len` bytes, `i` in it.
fn long(i: usize, len: usize) -> String {
    let mut name = format!("spiffe://example.org/{i:06}/");
    name.extend(std::iter::repeat_n('x', len - name.len()));
    name
}

/// Opens a StreamSecrets stream on `channel` asking for `names`.
async fn open_sotw(channel: &Channel, names: Vec<String>) -> Streaming<DiscoveryResponse> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(DiscoveryRequest {
        resource_names: names,
        type_url: SECRET_TYPE_URL.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    SecretDiscoveryServiceClient::new(channel.clone())
        .stream_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner()
}

/// A FetchSecrets for `names` on `channel`, which must fail.
async fn fetch_refused(channel: &Channel, names: Vec<String>) -> tonic::Status {
    SecretDiscoveryServiceClient::new(channel.clone())
        .fetch_secrets(DiscoveryRequest {
            resource_names: names,
            type_url: SECRET_TYPE_URL.into(),
            ..Default::default()
        })
        .await
        .unwrap_err()
}

/// Streams and calls on `channel` over the bounds on names, each refused with its typed
/// status; the delta streams (kept open by the caller until the end of the test).
async fn hostile_streams(channel: &Channel) -> Vec<Delta> {
    let mut kept = Vec::new();
    // A name longer than a SPIFFE ID may be: InvalidArgument naming the bound, in both
    // protocols and in FetchSecrets.
    let too_long = |status: &tonic::Status| {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("2048-byte maximum"), "{status:?}");
    };
    let mut hostile = open_delta(channel).await;
    hostile
        .send(DeltaDiscoveryRequest {
            resource_names_subscribe: vec!["default".into(), long(0, 2049)],
            ..Default::default()
        })
        .await;
    too_long(&refusal(&mut hostile.rx).await);
    kept.push(hostile);
    too_long(&refusal(&mut open_sotw(channel, vec![long(0, 2049)]).await).await);
    too_long(&fetch_refused(channel, vec![long(0, 2049)]).await);

    // Names of a legal length, but more bytes of them than a stream may hold (a delta
    // stream's subscription growing request by request) or more names: ResourceExhausted.
    let exhausted = |status: &tonic::Status| {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    };
    let mut hostile = open_delta(channel).await;
    let mut status = None;
    for request in 0..100 {
        let names = (0..40).map(|i| long(request * 40 + i, 2048)).collect();
        let sent = hostile.tx.send(DeltaDiscoveryRequest {
            resource_names_subscribe: names,
            type_url: SECRET_TYPE_URL.into(),
            ..Default::default()
        });
        if sent.await.is_err() {
            break;
        }
        match timeout(Duration::from_millis(50), hostile.rx.message()).await {
            Ok(Ok(got)) => panic!("a response to unknown names: {:?}", got.is_some()),
            Ok(Err(refused)) => {
                status = Some(refused);
                break;
            }
            Err(_quiet) => {}
        }
    }
    let status = match status {
        Some(status) => status,
        None => refusal(&mut hostile.rx).await,
    };
    exhausted(&status);
    kept.push(hostile);
    let mut hostile = open_delta(channel).await;
    hostile
        .send(DeltaDiscoveryRequest {
            resource_names_subscribe: (0..1025).map(|i| format!("n{i}")).collect(),
            ..Default::default()
        })
        .await;
    exhausted(&refusal(&mut hostile.rx).await);
    kept.push(hostile);
    let many: Vec<String> = (0..40).map(|i| long(i, 2048)).collect();
    exhausted(&fetch_refused(channel, many.clone()).await);
    exhausted(&refusal(&mut open_sotw(channel, many).await).await);
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_over_the_bounds_are_refused_typed_and_the_connection_s_other_streams_keep_working() {
    let server = Server::start("bounds").await;
    let channel = connect(&server.socket).await;
    // Well-behaved streams of both protocols, on the connection the hostile ones share.
    let mut sotw = Sotw::open(&channel, &["default", "ROOTCA"]).await;
    let first = sotw.next().await;
    sotw.answer(&first, false).await;
    let mut delta = open_delta(&channel).await;
    delta
        .send(DeltaDiscoveryRequest {
            resource_names_subscribe: vec!["default".into(), "ROOTCA".into()],
            ..Default::default()
        })
        .await;
    let first_delta = delta.next().await;
    assert_eq!(delta_names(&first_delta), ["ROOTCA", "default"]);
    delta.ack(&first_delta, false).await;

    let hostile = hostile_streams(&channel).await;

    // The well-behaved streams on the same connection get the rotation.
    let chain = server.rotate();
    let push = delta.next().await;
    assert_eq!(delta_names(&push), ["default"]);
    let secrets = push
        .resources
        .iter()
        .map(|r| decode(r.resource.as_ref().unwrap()));
    assert_eq!(default_chain(secrets), Some(chain.clone()));
    let deadline = Instant::now() + LIVE;
    loop {
        let push = sotw.next().await;
        sotw.answer(&push, false).await;
        if default_chain(push.resources.iter().map(decode)).as_ref() == Some(&chain) {
            break;
        }
        assert!(Instant::now() < deadline, "the rotation was never pushed");
    }
    // And FetchSecrets on it still answers.
    let fetched = SecretDiscoveryServiceClient::new(channel.clone())
        .fetch_secrets(DiscoveryRequest {
            resource_names: vec!["default".into()],
            type_url: SECRET_TYPE_URL.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.resources.len(), 1);
    well_behaved(&server).await;
    drop((sotw, delta, hostile, channel));
    server.shutdown().await;
}
