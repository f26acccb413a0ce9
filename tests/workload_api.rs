//! The Workload API server against clients nobody here wrote: the `spiffe` crate's client
//! and `X509Source`, and `spiffe-rustls` peers (fed by that source) against meshid's rustls
//! configs in both directions.

#![cfg(all(unix, feature = "workload-api", feature = "ca", feature = "ring"))]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshid::workload::WorkloadApiServer;
use meshid::{
    authorize, tls, Authority, BundleSet, KeyType, RotationPolicy, Rotator, RotatorConfig,
    SpiffeId, SvidSource, SvidStore, TrustDomain, X509Bundle,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

#[path = "common/certs.rs"]
mod certs;
#[path = "common/hostile.rs"]
mod hostile;

const HOUR: Duration = Duration::from_secs(3600);

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// A socket path of its own for each test.
fn socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "meshid-wl-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A CA for example.org (and a federated one for other.org), rotators for the workload's
/// IDs, and a running server.
struct Agent {
    ca: Arc<Authority>,
    bundles: BundleSet,
    rotators: Vec<Rotator>,
    stores: Vec<Arc<SvidStore>>,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), meshid::serve::ServeError>>>,
}

impl Agent {
    async fn start(ids: &[&str], ttl: Duration) -> Self {
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Arc::new(Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap());
        let other =
            Authority::new_root(TrustDomain::new("other.org").unwrap(), HOUR, KeyType::P256)
                .unwrap();
        let mut bundles = BundleSet::new();
        bundles.insert(X509Bundle::from_authorities(td, ca.root().cloned()).unwrap());
        bundles.insert(
            X509Bundle::from_authorities(
                TrustDomain::new("other.org").unwrap(),
                other.root().cloned(),
            )
            .unwrap(),
        );
        let mut rotators = Vec::new();
        let mut stores = Vec::new();
        for s in ids {
            let store = Arc::new(SvidStore::new());
            rotators.push(Rotator::start(RotatorConfig {
                id: id(s),
                ttl,
                policy: RotationPolicy::default(),
                issuer: ca.clone(),
                bundles: Arc::new(bundles.clone()),
                algorithms: meshid::ring_algorithms(),
                store: Arc::clone(&store),
            }));
            assert_ne!(store.wait_for_change(0, Duration::from_secs(10)), 0);
            stores.push(store);
        }
        let mut api = WorkloadApiServer::new(bundles.clone());
        for store in &stores {
            api = api.with_svid(Arc::clone(store));
        }
        let path = socket_path();
        let (stop, stopped) = oneshot::channel();
        let served = tokio::spawn(api.serve(path.clone(), async {
            let _ = stopped.await;
        }));
        // Wait for the socket.
        for _ in 0..200 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            ca,
            bundles,
            rotators,
            stores,
            path,
            stop: Some(stop),
            served: Some(served),
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Stops the server but keeps the rotators (returned) running.
    async fn shutdown_server_only(mut self) -> Vec<Rotator> {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
        std::mem::take(&mut self.rotators)
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("server stops within 10 s")
            .unwrap()
            .unwrap();
        assert!(!self.path.exists(), "socket removed");
        for r in self.rotators.drain(..) {
            r.stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spiffe_crate_client_fetches_ids_chains_and_bundles() {
    let agent = Agent::start(
        &["spiffe://example.org/web", "spiffe://example.org/db"],
        HOUR,
    )
    .await;
    let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();

    let context = client.fetch_x509_context().await.unwrap();
    let ids: Vec<String> = context
        .svids()
        .iter()
        .map(|s| s.spiffe_id().to_string())
        .collect();
    assert_eq!(ids, ["spiffe://example.org/web", "spiffe://example.org/db"]);
    let default = context.default_svid().unwrap();
    let ours = agent.stores[0].x509_svid().unwrap();
    let chain: Vec<&[u8]> = default.cert_chain().iter().map(AsRef::as_ref).collect();
    let expected: Vec<&[u8]> = ours.chain().iter().map(AsRef::as_ref).collect();
    assert_eq!(chain, expected);
    // Own and federated bundles.
    let set = context.bundle_set();
    let mut tds: Vec<String> = set.iter().map(|(td, _)| td.to_string()).collect();
    tds.sort();
    assert_eq!(tds, ["example.org", "other.org"]);
    let example = set
        .get(&spiffe::TrustDomain::new("example.org").unwrap())
        .unwrap();
    assert_eq!(
        example.authorities()[0].as_ref(),
        agent.ca.root().unwrap().as_ref()
    );

    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert_eq!(bundles.len(), 2);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spiffe_crate_x509_source_follows_rotations() {
    let agent = Agent::start(&["spiffe://example.org/web"], Authority::MIN_SVID_TTL).await;
    let source = spiffe::X509Source::builder()
        .endpoint(agent.endpoint())
        .build()
        .await
        .unwrap();
    let mut updates = source.updated();
    let mut leaves = std::collections::BTreeSet::new();
    leaves.insert(source.svid().unwrap().leaf().as_ref().to_vec());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while leaves.len() < 3 {
        tokio::time::timeout_at(deadline, updates.changed())
            .await
            .expect("a rotation reaches the source")
            .unwrap();
        let svid = source.svid().unwrap();
        assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/web");
        leaves.insert(svid.leaf().as_ref().to_vec());
    }
    // The source holds what our store holds now (or had a moment ago).
    source.shutdown().await;
    agent.shutdown().await;
}

/// A handshake over a tokio TcpStream, records pumped by hand through the sans-IO rustls
/// connection (tokio-rustls is not a dependency); the peer's SPIFFE ID.
async fn drive(
    mut conn: rustls::Connection,
    tcp: &mut tokio::net::TcpStream,
) -> std::io::Result<Option<SpiffeId>> {
    loop {
        while conn.wants_write() {
            let mut buf = Vec::new();
            conn.write_tls(&mut buf)?;
            tcp.write_all(&buf).await?;
        }
        if !conn.is_handshaking() {
            return Ok(tls::peer_id(&conn));
        }
        let mut buf = vec![0u8; 16 * 1024];
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        conn.read_tls(&mut &buf[..n])?;
        if let Err(e) = conn.process_new_packets() {
            // Send our alert before giving up.
            let mut buf = Vec::new();
            let _ = conn.write_tls(&mut buf);
            let _ = tcp.write_all(&buf).await;
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    }
}

fn server(config: Arc<rustls::ServerConfig>) -> rustls::Connection {
    rustls::ServerConnection::new(config).unwrap().into()
}

fn client(config: Arc<rustls::ClientConfig>) -> rustls::Connection {
    let name = rustls::pki_types::ServerName::try_from("not-checked").unwrap();
    rustls::ClientConnection::new(config, name).unwrap().into()
}

/// A handshake between `server_config` and `client_config` on loopback: the ID each side saw.
async fn handshake(
    server_config: Arc<rustls::ServerConfig>,
    client_config: Arc<rustls::ClientConfig>,
) -> (
    std::io::Result<Option<SpiffeId>>,
    std::io::Result<Option<SpiffeId>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        drive(server(server_config), &mut tcp).await
    });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client_saw = drive(client(client_config), &mut tcp).await;
    // TLS 1.3: the client finishes first; wait for the server's verdict before closing.
    let server_saw = accepted.await.unwrap();
    (server_saw, client_saw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_rustls_peers_and_meshid_peers_accept_each_other() {
    let agent = Agent::start(&["spiffe://example.org/theirs"], HOUR).await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let source = spiffe::X509Source::builder()
        .endpoint(agent.endpoint())
        .build()
        .await
        .unwrap();
    // Our side: an SVID from the same CA, verified against the same bundles.
    let ours = Arc::new(
        agent
            .ca
            .issue(&id("spiffe://example.org/ours"), HOUR)
            .unwrap(),
    );
    let bundles = Arc::new(agent.bundles.clone());

    let only = |s: &str| spiffe_rustls::authorizer::exact([s.to_owned()]).unwrap();

    // spiffe-rustls server, meshid client.
    let their_server = Arc::new(
        spiffe_rustls::mtls_server(source.clone())
            .authorize(only("spiffe://example.org/ours"))
            .build()
            .unwrap(),
    );
    let our_client = Arc::new(
        tls::client_config(
            Arc::clone(&provider),
            Arc::clone(&ours),
            Arc::clone(&bundles),
            authorize::exact(id("spiffe://example.org/theirs")),
        )
        .unwrap(),
    );
    let (they_saw, we_saw) = handshake(their_server, our_client).await;
    assert_eq!(
        we_saw.unwrap().unwrap().as_str(),
        "spiffe://example.org/theirs"
    );
    assert_eq!(
        they_saw.unwrap().unwrap().as_str(),
        "spiffe://example.org/ours"
    );

    // meshid server, spiffe-rustls client.
    let our_server = Arc::new(
        tls::server_config(
            Arc::clone(&provider),
            Arc::clone(&ours),
            Arc::clone(&bundles),
            authorize::exact(id("spiffe://example.org/theirs")),
        )
        .unwrap(),
    );
    let their_client = Arc::new(
        spiffe_rustls::mtls_client(source.clone())
            .authorize(only("spiffe://example.org/ours"))
            .build()
            .unwrap(),
    );
    let (we_saw, they_saw) = handshake(Arc::clone(&our_server), their_client).await;
    assert_eq!(
        we_saw.unwrap().unwrap().as_str(),
        "spiffe://example.org/theirs"
    );
    assert_eq!(
        they_saw.unwrap().unwrap().as_str(),
        "spiffe://example.org/ours"
    );

    // Each side refuses what its authorizer does not list.
    let strict_client = Arc::new(
        spiffe_rustls::mtls_client(source.clone())
            .authorize(only("spiffe://example.org/x"))
            .build()
            .unwrap(),
    );
    let (_, they_saw) = handshake(Arc::clone(&our_server), strict_client).await;
    assert!(they_saw.is_err());
    let our_strict_server = Arc::new(
        tls::server_config(
            Arc::clone(&provider),
            Arc::clone(&ours),
            Arc::clone(&bundles),
            authorize::exact(id("spiffe://example.org/x")),
        )
        .unwrap(),
    );
    let their_client = Arc::new(spiffe_rustls::mtls_client(source.clone()).build().unwrap());
    let (we_saw, _) = handshake(our_strict_server, their_client).await;
    let err = we_saw.unwrap_err();
    let why = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .and_then(tls::rejection)
        .unwrap();
    assert!(matches!(why, tls::PeerRejected::Unauthorized(_)), "{why}");

    source.shutdown().await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_other_files_are_left_alone() {
    // A regular file at the path: refused, untouched.
    let path = socket_path();
    std::fs::write(&path, b"not a socket").unwrap();
    let err = WorkloadApiServer::new(BundleSet::new())
        .serve(&path, async {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, meshid::serve::ServeError::NotASocket { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    std::fs::remove_file(&path).unwrap();

    // A socket nobody listens on (left by a crashed server): replaced.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(WorkloadApiServer::new(BundleSet::new()).serve(
        path.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A second server on a live socket: refused.
    let err = WorkloadApiServer::new(BundleSet::new())
        .serve(&path, async {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, meshid::serve::ServeError::SocketInUse { .. }),
        "{err}"
    );
    // The socket is the owner's only.
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    assert!(!path.exists());
}

use meshid::workload::{
    Endpoint, Pick, WorkloadApiClient, WorkloadApiError, X509Source, X509SourceOptions,
};

/// The uid this test runs as: the owner of a file it creates.
fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let probe = std::env::temp_dir().join(format!("meshid-uid-{}", std::process::id()));
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    let _ = std::fs::remove_file(&probe);
    uid
}

fn status_code(err: &WorkloadApiError) -> Option<tonic::Code> {
    match err {
        WorkloadApiError::Status(s) => Some(s.code()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_fetches_from_our_server_and_jwt_calls_are_unimplemented() {
    let agent = Agent::start(
        &["spiffe://example.org/web", "spiffe://example.org/db"],
        HOUR,
    )
    .await;
    let endpoint = Endpoint::parse(&agent.endpoint()).unwrap();
    let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
    let context = client.fetch_x509_context().await.unwrap();
    let ids: Vec<&str> = context.svids().map(|s| s.id().as_str()).collect();
    assert_eq!(ids, ["spiffe://example.org/web", "spiffe://example.org/db"]);
    assert_eq!(
        context.default_svid().leaf(),
        agent.stores[0].x509_svid().unwrap().leaf()
    );
    assert!(context.svid_for(&id("spiffe://example.org/db")).is_some());
    assert_eq!(context.bundles().len(), 2);
    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert_eq!(bundles.len(), 2);
    let err = client
        .fetch_jwt_svids(&["aud".to_owned()], None)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(tonic::Code::Unimplemented), "{err}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_security_header_get_invalid_argument() {
    use tonic::codegen::http::uri::PathAndQuery;
    let agent = Agent::start(&["spiffe://example.org/web"], HOUR).await;
    let path = agent.path.clone();
    let channel = tonic::transport::Endpoint::from_static("http://x.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<
        meshid::workload::proto::X509SvidRequest,
        meshid::workload::proto::X509SvidResponse,
    >::default();
    let status = grpc
        .server_streaming(
            tonic::Request::new(meshid::workload::proto::X509SvidRequest {}),
            PathAndQuery::from_static(meshid::workload::proto::FETCH_X509_SVID),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "security header missing from request");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_outside_the_uid_allow_list_get_permission_denied() {
    let agent = Agent::start(&["spiffe://example.org/web"], HOUR).await;
    for (allowed, ok) in [(my_uid(), true), (my_uid().wrapping_add(4242), false)] {
        let path = socket_path();
        let (stop, stopped) = oneshot::channel::<()>();
        let api = WorkloadApiServer::new(agent.bundles.clone())
            .with_svid(Arc::clone(&agent.stores[0]))
            .allow_uids([allowed]);
        let served = tokio::spawn(api.serve(path.clone(), async {
            let _ = stopped.await;
        }));
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let endpoint = Endpoint::Unix(path.clone());
        let result = WorkloadApiClient::connect(&endpoint)
            .await
            .unwrap()
            .fetch_x509_context()
            .await;
        if ok {
            assert!(result.is_ok(), "{:?}", result.err());
        } else {
            let err = result.unwrap_err();
            assert_eq!(
                status_code(&err),
                Some(tonic::Code::PermissionDenied),
                "{err}"
            );
            assert!(err.to_string().contains("no identity issued"));
        }
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
    }
    agent.shutdown().await;
}

/// Serves `stores` on `path` until `stop` fires.
fn serve_on(
    path: &std::path::Path,
    bundles: &BundleSet,
    stores: &[Arc<SvidStore>],
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), meshid::serve::ServeError>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let mut api = WorkloadApiServer::new(bundles.clone());
    for s in stores {
        api = api.with_svid(Arc::clone(s));
    }
    let served = tokio::spawn(api.serve(path.to_path_buf(), async {
        let _ = stopped.await;
    }));
    (stop, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_feeds_rustls_follows_rotations_and_survives_a_server_restart() {
    let agent = Agent::start(&["spiffe://example.org/web"], Authority::MIN_SVID_TTL).await;
    let endpoint = Endpoint::parse(&agent.endpoint()).unwrap();
    let options =
        X509SourceOptions::default().backoff(Duration::from_millis(50), Duration::from_millis(400));
    let source = Arc::new(X509Source::new(endpoint, options).await.unwrap());
    assert!(source.is_healthy());
    assert_eq!(
        source.status().id.unwrap().as_str(),
        "spiffe://example.org/web"
    );

    // The source is the server's identity and trust: a meshid client handshakes with it.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = Arc::new(
        tls::server_config(
            Arc::clone(&provider),
            Arc::clone(&source),
            Arc::clone(&source),
            authorize::exact(id("spiffe://example.org/client")),
        )
        .unwrap(),
    );
    let client_svid = Arc::new(
        agent
            .ca
            .issue(&id("spiffe://example.org/client"), HOUR)
            .unwrap(),
    );
    let client_config = Arc::new(
        tls::client_config(
            Arc::clone(&provider),
            Arc::clone(&client_svid),
            Arc::new(agent.bundles.clone()),
            authorize::exact(id("spiffe://example.org/web")),
        )
        .unwrap(),
    );
    let (we, they) = handshake(Arc::clone(&server_config), Arc::clone(&client_config)).await;
    assert_eq!(we.unwrap().unwrap().as_str(), "spiffe://example.org/client");
    assert_eq!(they.unwrap().unwrap().as_str(), "spiffe://example.org/web");

    // A chain verified against the source's bundle, cached.
    let cache = meshid::VerifiedChainCache::default();
    let algorithms = meshid::ring_algorithms();
    let verify_client = || {
        cache
            .verify(
                client_svid.chain(),
                &*source,
                std::time::SystemTime::now(),
                algorithms,
                meshid::Usage::ClientAuth,
            )
            .unwrap()
    };
    verify_client();

    // Rotations reach the source.
    let mut seen = source.generation();
    let first = source.x509_svid().unwrap();
    for _ in 0..2 {
        seen = tokio::time::timeout(Duration::from_secs(10), source.changes().changed(seen))
            .await
            .expect("an update within 10 s");
    }
    assert_ne!(source.x509_svid().unwrap().leaf(), first.leaf());
    assert!(source.status().updates >= 3);
    // Updates that only rotated the SVID keep the bundle's identity: the cached chain is
    // still a hit.
    verify_client();
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits), (1, 1), "{stats:?}");

    // Kill the server: the source keeps its SVID; restart it: the source reconnects.
    let path = agent.path.clone();
    let bundles = agent.bundles.clone();
    let stores = agent.stores.clone();
    let rotators_alive = agent.shutdown_server_only().await;
    assert!(
        source.is_healthy(),
        "the last good SVID is kept while it is valid"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while source.status().connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loss was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Handshakes go on with the held SVID while the agent is away.
    let (we, _) = handshake(Arc::clone(&server_config), Arc::clone(&client_config)).await;
    assert_eq!(we.unwrap().unwrap().as_str(), "spiffe://example.org/client");
    let (stop, served) = serve_on(&path, &bundles, &stores);
    let restarted = tokio::time::Instant::now();
    let before = source.status().updates;
    while source.status().updates == before {
        assert!(
            restarted.elapsed() < Duration::from_secs(5),
            "no recovery: {:?}",
            source.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    let (we, they) = handshake(server_config, client_config).await;
    assert_eq!(we.unwrap().unwrap().as_str(), "spiffe://example.org/client");
    assert!(they.is_ok());
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    drop(rotators_alive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_picks_by_id_and_refuses_what_is_missing() {
    let agent = Agent::start(
        &["spiffe://example.org/web", "spiffe://example.org/db"],
        HOUR,
    )
    .await;
    let endpoint = Endpoint::parse(&agent.endpoint()).unwrap();
    let source = X509Source::new(
        endpoint.clone(),
        X509SourceOptions::default().pick(Pick::Id(id("spiffe://example.org/db"))),
    )
    .await
    .unwrap();
    assert_eq!(
        source.x509_svid().unwrap().id().as_str(),
        "spiffe://example.org/db"
    );
    source.shutdown().await;
    let err = X509Source::new(
        endpoint,
        X509SourceOptions::default()
            .pick(Pick::Id(id("spiffe://example.org/nobody")))
            .initial_sync_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, WorkloadApiError::InitialSyncTimeout { last_error: Some(e), .. } if e.contains("no SVID matching")),
        "{err}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_silent_servers_and_non_sockets_give_typed_errors() {
    // Not an endpoint the standard allows.
    assert!(matches!(
        Endpoint::parse("localhost:8081"),
        Err(WorkloadApiError::InvalidEndpoint { .. })
    ));
    // A regular file where the socket should be.
    let file = socket_path();
    std::fs::write(&file, b"x").unwrap();
    let err = WorkloadApiClient::connect(&Endpoint::Unix(file.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadApiError::Connect { .. }), "{err}");
    std::fs::remove_file(&file).unwrap();
    // A server that accepts and never answers: the source gives up after its timeout.
    let path = socket_path();
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let started = std::time::Instant::now();
    let err = X509Source::new(
        Endpoint::Unix(path.clone()),
        X509SourceOptions::default().initial_sync_timeout(Duration::from_millis(700)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, WorkloadApiError::InitialSyncTimeout { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    silent.abort();
    let _ = std::fs::remove_file(&path);
    // Nobody there at all.
    let err = WorkloadApiClient::connect(&Endpoint::Unix(socket_path()))
        .await
        .unwrap_err();
    assert!(matches!(err, WorkloadApiError::Connect { .. }), "{err}");
}

/// A hand-made Workload API server that sends `messages` on every `FetchX509SVID` call and
/// then holds the stream open: for malformed and oversized messages our server never sends.
fn scripted_server(
    path: &std::path::Path,
    messages: Vec<Result<meshid::workload::proto::X509SvidResponse, tonic::Status>>,
) -> tokio::task::JoinHandle<()> {
    use meshid::workload::proto::{X509SvidRequest, X509SvidResponse};
    type Body = tonic::body::Body;
    #[derive(Clone)]
    struct Scripted(Arc<Vec<Result<X509SvidResponse, tonic::Status>>>);
    impl tower::Service<tonic::codegen::http::Request<Body>> for Scripted {
        type Response = tonic::codegen::http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
        >;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: tonic::codegen::http::Request<Body>) -> Self::Future {
            let messages = Arc::clone(&self.0);
            Box::pin(async move {
                let handler = tower::service_fn(move |_: tonic::Request<X509SvidRequest>| {
                    let items: Vec<Result<X509SvidResponse, tonic::Status>> =
                        messages.iter().cloned().collect();
                    let stream = tokio_stream::StreamExt::chain(
                        tokio_stream::iter(items),
                        tokio_stream::pending(),
                    );
                    async move {
                        Ok::<_, tonic::Status>(tonic::Response::new(Box::pin(stream)
                            as std::pin::Pin<
                                Box<
                                    dyn tokio_stream::Stream<
                                            Item = Result<X509SvidResponse, tonic::Status>,
                                        > + Send,
                                >,
                            >))
                    }
                });
                let codec = tonic_prost::ProstCodec::<X509SvidResponse, X509SvidRequest>::default();
                Ok(tonic::server::Grpc::new(codec)
                    .server_streaming(handler, req)
                    .await)
            })
        }
    }
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(Scripted(Arc::new(messages)), incoming)
            .await;
    })
}

/// The wire form of an SVID, as a Workload API server sends it.
fn message_for(
    svid: &meshid::X509Svid,
    bundle: &X509Bundle,
) -> meshid::workload::proto::X509SvidResponse {
    meshid::workload::proto::X509SvidResponse {
        svids: vec![meshid::workload::proto::X509SvidMessage {
            spiffe_id: svid.id().to_string(),
            x509_svid: svid
                .chain()
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect(),
            x509_svid_key: svid.private_key().secret_pkcs8_der().to_vec(),
            bundle: bundle
                .authorities()
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect(),
            hint: String::new(),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_are_refused_and_the_last_good_state_kept() {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundle = X509Bundle::from_authorities(td, ca.root().cloned()).unwrap();
    let good = ca.issue(&id("spiffe://example.org/web"), HOUR).unwrap();
    let good_message = message_for(&good, &bundle);
    let mut bad_der = good_message.clone();
    bad_der.svids[0].x509_svid.truncate(100);
    let mut lying = good_message.clone();
    lying.svids[0].spiffe_id = "spiffe://example.org/admin".into();
    let mut wrong_key = good_message.clone();
    wrong_key.svids[0].x509_svid_key = ca
        .issue(&id("spiffe://example.org/web"), HOUR)
        .unwrap()
        .private_key()
        .secret_pkcs8_der()
        .to_vec();
    let short = ca
        .issue(&id("spiffe://example.org/web"), Authority::MIN_SVID_TTL)
        .unwrap();
    let expired = message_for(&short, &bundle);
    let wait = short
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1100)).await;
    let mut huge = good_message.clone();
    huge.svids[0].hint = "x".repeat(meshid::workload::MAX_MESSAGE + 1);

    // Our client decodes each and names what is wrong; the process goes on.
    for (message, expect) in [
        (bad_der.clone(), "X509-SVID 0"),
        (lying.clone(), "says spiffe://example.org/admin"),
        (wrong_key.clone(), "X509-SVID 0"),
        (huge.clone(), "message length too large"),
    ] {
        let path = socket_path();
        let server = scripted_server(&path, vec![Ok(message)]);
        let mut client = WorkloadApiClient::connect(&Endpoint::Unix(path.clone()))
            .await
            .unwrap();
        let err = client.fetch_x509_context().await.unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        server.abort();
        let _ = std::fs::remove_file(&path);
    }

    // A source takes the good message, refuses the bad ones after it, keeps serving the
    // good SVID, and treats the oversized one as a lost stream (it reconnects).
    let path = socket_path();
    let server = scripted_server(
        &path,
        [good_message, bad_der, lying, wrong_key, expired, huge]
            .into_iter()
            .map(Ok)
            .collect(),
    );
    let source = X509Source::new(
        Endpoint::Unix(path.clone()),
        X509SourceOptions::default().backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while source.status().reconnects == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            source.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = source.status();
    assert!(status.rejected >= 4, "{status:?}");
    assert_eq!(source.x509_svid().unwrap().leaf(), good.leaf());
    source.shutdown().await;
    server.abort();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_retries_permission_denied_and_stops_on_unimplemented() {
    // PermissionDenied (not attested yet): retried with backoff, never a stop.
    let path = socket_path();
    let server = scripted_server(
        &path,
        vec![Err(tonic::Status::permission_denied("no identity issued"))],
    );
    let err = X509Source::new(
        Endpoint::Unix(path.clone()),
        X509SourceOptions::default()
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .initial_sync_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    match &err {
        WorkloadApiError::InitialSyncTimeout {
            last_error: Some(e),
            ..
        } => {
            assert!(e.contains("no identity issued"), "{e}");
        }
        other => panic!("{other}"),
    }
    server.abort();
    let _ = std::fs::remove_file(&path);

    // Unimplemented and InvalidArgument: final, the source stops at once with the reason.
    for status in [
        tonic::Status::unimplemented("no X509 here"),
        tonic::Status::invalid_argument("security header missing from request"),
    ] {
        let path = socket_path();
        let server = scripted_server(&path, vec![Err(status.clone())]);
        let started = std::time::Instant::now();
        let err = X509Source::new(
            Endpoint::Unix(path.clone()),
            X509SourceOptions::default().initial_sync_timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, WorkloadApiError::Stopped { reason } if reason.contains(status.message())),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "it waited for the timeout"
        );
        server.abort();
        let _ = std::fs::remove_file(&path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_silent_connections_and_dropping_serve_ends_streams() {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let store = Arc::new(SvidStore::new());
    store.publish(ca.issue(&id("spiffe://example.org/web"), HOUR).unwrap());

    // A client that connects and never speaks must not keep the server from stopping.
    let path = socket_path();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(
        WorkloadApiServer::new(bundles.clone())
            .with_svid(Arc::clone(&store))
            .shutdown_grace(Duration::from_millis(300))
            .serve(path.clone(), async {
                let _ = stopped.await;
            }),
    );
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve ends within the grace period plus a little")
        .unwrap()
        .unwrap();
    assert!(!path.exists());
    drop(silent);

    // Dropping (aborting) `serve` ends the streams of connected clients.
    let path = socket_path();
    let served = tokio::spawn(
        WorkloadApiServer::new(bundles)
            .with_svid(Arc::clone(&store))
            .serve(path.clone(), std::future::pending()),
    );
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = WorkloadApiClient::connect(&Endpoint::Unix(path.clone()))
        .await
        .unwrap();
    let mut updates = Box::pin(client.watch_x509_contexts().await.unwrap());
    assert!(tokio_stream::StreamExt::next(&mut updates)
        .await
        .unwrap()
        .is_ok());
    served.abort();
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_stream::StreamExt::next(&mut updates),
    )
    .await
    .expect("the stream ends when the server is dropped");
    assert!(
        !matches!(ended, Some(Ok(_))),
        "no more SVIDs after the server is gone"
    );
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_never_removes_a_socket_path_that_is_no_longer_its_own() {
    let path = socket_path();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(WorkloadApiServer::new(BundleSet::new()).serve(
        path.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Someone replaces the path (a successor's socket, an operator's file).
    if let Err(e) = std::fs::remove_file(&path) {
        // Seen once in CI (NotFound): say what the server did, to find out why.
        let finished = served.is_finished();
        let _ = stop.send(());
        panic!(
            "the socket vanished before the test removed it ({e}); the server had {}: {:?}",
            if finished { "ended" } else { "not ended" },
            served.await
        );
    }
    std::fs::write(&path, b"successor").unwrap();
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"successor");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_drops_its_identity_when_the_agent_says_none_is_issued() {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundle = X509Bundle::from_authorities(td, ca.root().cloned()).unwrap();
    let svid = ca.issue(&id("spiffe://example.org/web"), HOUR).unwrap();
    let path = socket_path();
    let server = scripted_server(
        &path,
        vec![
            Ok(message_for(&svid, &bundle)),
            Err(tonic::Status::permission_denied("no identity issued")),
        ],
    );
    let source = X509Source::new(
        Endpoint::Unix(path.clone()),
        X509SourceOptions::default().backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Each reconnection gets the SVID again, then the refusal: wait for a refusal to land.
    while source.status().reconnects == 0 || source.is_healthy() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            source.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(source
        .status()
        .last_error
        .unwrap()
        .contains("no identity issued"));
    source.shutdown().await;
    server.abort();
    let _ = std::fs::remove_file(&path);
}

// ---- The acceptance rule against a hostile agent (tests/common/hostile.rs) ----

use hostile::{Hostile, Pki, Step};

/// Waits up to `within` for `done`.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_serves_until_the_earliest_not_after_of_the_whole_chain() {
    let pki = Pki::new();
    // The leaf is good for an hour, its intermediate for 2 to 3 more seconds.
    let until = hostile::at(std::time::SystemTime::now() + Duration::from_secs(3));
    let svid = pki.under_intermediate_until("spiffe://example.org/web", until);
    let message = pki.message(&[("spiffe://example.org/web", &svid)]);
    let agent = Hostile::start(&socket_path(), move |_| {
        vec![Step::Message(message.clone())]
    });
    let source = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default(),
    )
    .await
    .unwrap();
    assert!(source.is_healthy());
    assert_eq!(
        source.status().not_after,
        Some(until),
        "judged by the intermediate"
    );
    let wait = until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    assert!(
        source.x509_svid().is_none(),
        "an SVID whose intermediate expired is not served"
    );
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_with_any_svid_that_does_not_verify_is_refused_whole() {
    let pki = Pki::new();
    let web = pki.good("spiffe://example.org/web");
    let db = pki.expired("spiffe://example.org/db");
    let message = pki.message(&[
        ("spiffe://example.org/web", &web),
        ("spiffe://example.org/db", &db),
    ]);
    let agent = Hostile::start(&socket_path(), move |_| {
        vec![Step::Message(message.clone())]
    });
    let err = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default().initial_sync_timeout(Duration::from_millis(800)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, WorkloadApiError::InitialSyncTimeout { last_error: Some(e), .. }
            if e.contains("spiffe://example.org/db") && e.contains("expired")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bundles_for_one_trust_domain_make_an_update_inconsistent() {
    let pki = Pki::new();
    let other = Pki::new();
    let web = pki.good("spiffe://example.org/web");
    let db = pki.good("spiffe://example.org/db");
    let good = pki.message(&[("spiffe://example.org/web", &web)]);
    let mut mixed = pki.message(&[
        ("spiffe://example.org/web", &web),
        ("spiffe://example.org/db", &db),
    ]);
    // The same trust domain, but the second SVID names another root as its bundle.
    mixed.svids[1].bundle = other.bundle();
    let script_mixed = mixed.clone();
    let agent = Hostile::start(&socket_path(), move |_| {
        vec![Step::Message(script_mixed.clone())]
    });
    let mut client = WorkloadApiClient::connect(&Endpoint::parse(&agent.endpoint()).unwrap())
        .await
        .unwrap();
    let err = client.fetch_x509_context().await.unwrap_err();
    assert!(
        matches!(&err, WorkloadApiError::InconsistentBundles { trust_domain } if trust_domain == "example.org"),
        "{err}"
    );
    drop(agent);
    // A source holding a good state keeps it.
    let agent = Hostile::start(&socket_path(), move |_| {
        vec![Step::Message(good.clone()), Step::Message(mixed.clone())]
    });
    let source = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default(),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "the mixed update was never refused",
        || source.status().rejected >= 1,
    )
    .await;
    assert_eq!(source.x509_svid().unwrap().leaf(), &web.chain[0]);
    assert!(source.status().last_error.unwrap().contains("inconsistent"));
    source.shutdown().await;
}

/// A gRPC prefix announcing a 1000-byte message, and 10 bytes of it.
fn cut_short() -> Vec<u8> {
    let mut raw = vec![0, 0, 0, 0x03, 0xe8];
    raw.extend_from_slice(&[0x0a; 10]);
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_mid_message_is_left_and_reconnected_to() {
    let pki = Pki::new();
    let first = pki.good("spiffe://example.org/web");
    let second = pki.good("spiffe://example.org/web");
    let (m1, m2) = (
        pki.message(&[("spiffe://example.org/web", &first)]),
        pki.message(&[("spiffe://example.org/web", &second)]),
    );
    // The client alone: a message begun and never finished ends the call.
    let agent = Hostile::start(&socket_path(), |_| vec![Step::Raw(cut_short())]);
    let mut client = WorkloadApiClient::connect(&Endpoint::parse(&agent.endpoint()).unwrap())
        .await
        .unwrap()
        .with_message_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), client.fetch_x509_context())
        .await
        .expect("the stall is bounded")
        .unwrap_err();
    assert!(matches!(err, WorkloadApiError::Stalled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(agent);

    // A source: the first stream stalls after one good message; it reconnects and takes
    // the next.
    let agent = Hostile::start(&socket_path(), move |n| {
        if n == 0 {
            vec![Step::Message(m1.clone()), Step::Raw(cut_short())]
        } else {
            vec![Step::Message(m2.clone())]
        }
    });
    let source = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default()
            .message_timeout(Duration::from_millis(500))
            .backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    eventually(
        Duration::from_secs(5),
        "never reconnected after the stall",
        || {
            source
                .x509_svid()
                .is_some_and(|s| s.leaf() == &second.chain[0])
        },
    )
    .await;
    assert!(agent.calls() >= 2);
    // Idle between messages is not a stall: the second stream stays open.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(agent.calls(), 2, "{:?}", source.status());
    assert!(source.status().connected);
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_resolves_with_the_reason_when_the_server_refuses_for_good() {
    let pki = Pki::new();
    let svid = pki.good("spiffe://example.org/web");
    let message = pki.message(&[("spiffe://example.org/web", &svid)]);
    let agent = Hostile::start(&socket_path(), move |_| {
        vec![
            Step::Message(message.clone()),
            Step::Sleep(Duration::from_millis(300)),
            Step::Status(tonic::Code::Unimplemented, "X509 is gone".into()),
        ]
    });
    let source = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default(),
    )
    .await
    .unwrap();
    let why = tokio::time::timeout(Duration::from_secs(5), source.stopped())
        .await
        .expect("stopped() resolves");
    assert!(why.contains("X509 is gone"), "{why}");
    assert!(source.status().stopped);
    // Once stopped, it resolves at once.
    assert!(source.stopped().await.contains("X509 is gone"));
}

/// The field case: short SVIDs and an agent away for a while. The reconnection backoff
/// (2 s doubling here) would outlive the SVID held; capped by half of what is left of it,
/// the source is back before the SVID expires, and serves something all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_reconnects_before_the_svid_it_holds_expires() {
    let pki = Pki::new();
    let started = std::time::Instant::now();
    // Valid for 10 s; the agent is away from 0.3 s to 7 s.
    let until = hostile::at(std::time::SystemTime::now() + Duration::from_secs(11));
    let first = pki.good_until("spiffe://example.org/web", until);
    let fresh = pki.good("spiffe://example.org/web");
    let (m_first, m_fresh) = (
        pki.message(&[("spiffe://example.org/web", &first)]),
        pki.message(&[("spiffe://example.org/web", &fresh)]),
    );
    let agent = Hostile::start(&socket_path(), move |n| {
        if n == 0 {
            vec![
                Step::Message(m_first.clone()),
                Step::Sleep(Duration::from_millis(300)),
                Step::Status(tonic::Code::Unavailable, "agent restarting".into()),
            ]
        } else if started.elapsed() < Duration::from_secs(7) {
            vec![Step::Status(
                tonic::Code::Unavailable,
                "agent restarting".into(),
            )]
        } else {
            vec![Step::Message(m_fresh.clone())]
        }
    });
    let source = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default().backoff(Duration::from_secs(2), Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let held = source.x509_svid();
        assert!(
            held.is_some(),
            "the SVID expired before the source reconnected: {:?} after {:?}",
            source.status(),
            started.elapsed()
        );
        if held.is_some_and(|s| s.leaf() == &fresh.chain[0]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "recovered after {:?}, {} calls",
        started.elapsed(),
        agent.calls()
    );
    source.shutdown().await;
}

// ---- Readiness, SPIFFE_ENDPOINT_SOCKET, and the options' setters ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_a_lost_identity_to_come_back_and_fails_once_the_source_stops() {
    let pki = Pki::new();
    let svid = pki.good("spiffe://example.org/web");
    let message = pki.message(&[("spiffe://example.org/web", &svid)]);
    let denied = || Step::Status(tonic::Code::PermissionDenied, "no identity issued".into());
    // The identity, then none; back after a while, then none again; then stopped for good.
    let agent = Hostile::start(&socket_path(), move |call| match call {
        0 => vec![
            Step::Message(message.clone()),
            Step::Sleep(Duration::from_millis(200)),
            denied(),
        ],
        1 => vec![
            Step::Sleep(Duration::from_millis(600)),
            Step::Message(message.clone()),
            Step::Sleep(Duration::from_millis(300)),
            denied(),
        ],
        _ => vec![Step::Status(
            tonic::Code::Unimplemented,
            "X509 is gone".into(),
        )],
    });
    let source = X509Source::new(
        Endpoint::parse(&agent.endpoint()).unwrap(),
        X509SourceOptions::default().backoff(Duration::from_millis(20), Duration::from_millis(50)),
    )
    .await
    .unwrap();
    // Ready at once after `new`, with the SVID served.
    let held = source.ready().await.unwrap();
    assert!(Arc::ptr_eq(&held, &source.x509_svid().unwrap()));
    eventually(Duration::from_secs(5), "the identity is taken away", || {
        !source.is_healthy()
    })
    .await;
    // Not ready while none is held...
    assert!(
        tokio::time::timeout(Duration::from_millis(100), source.ready())
            .await
            .is_err(),
        "{:?}",
        source.status()
    );
    // ...and ready again once an update brings it back.
    let back = tokio::time::timeout(Duration::from_secs(5), source.ready())
        .await
        .expect("ready again")
        .unwrap();
    assert_eq!(back.id().as_str(), "spiffe://example.org/web");
    eventually(Duration::from_secs(5), "taken away again", || {
        !source.is_healthy()
    })
    .await;
    let err = tokio::time::timeout(Duration::from_secs(5), source.ready())
        .await
        .expect("ready() fails once the source stops")
        .unwrap_err();
    let WorkloadApiError::Stopped { reason } = &err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("X509 is gone"), "{reason}");
}

/// Set in the environment of this executable when the test below runs it as a child.
const FROM_ENV_CHILD: &str = "MESHID_TEST_FROM_ENV_CHILD";

/// Not a test on its own: what the test below runs (this executable, with
/// `MESHID_TEST_FROM_ENV_CHILD` set): `X509Source::from_env()` in a process of its own, so
/// that no other test's threads see the environment change. Prints `child ready <id>`,
/// `child invalid <problem>` or `child error <error>`.
#[test]
fn from_env_child() {
    if std::env::var_os(FROM_ENV_CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match X509Source::from_env().await {
            Ok(source) => println!("child ready {}", source.ready().await.unwrap().id()),
            Err(WorkloadApiError::InvalidEndpoint { problem, .. }) => {
                println!("child invalid {problem}");
            }
            Err(e) => println!("child error {e}"),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_source_from_env_follows_spiffe_endpoint_socket() {
    let agent = Agent::start(&["spiffe://example.org/web"], HOUR).await;
    let child = |socket: Option<String>| {
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", "from_env_child", "--nocapture"])
                .env(FROM_ENV_CHILD, "1");
            match socket {
                Some(socket) => cmd.env("SPIFFE_ENDPOINT_SOCKET", socket),
                None => cmd.env_remove("SPIFFE_ENDPOINT_SOCKET"),
            };
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("child ").map(str::to_owned))
                .unwrap_or_else(|| panic!("no answer from the child: {out:?}"))
        })
    };
    assert_eq!(
        child(Some(agent.endpoint())).await.unwrap(),
        "ready spiffe://example.org/web"
    );
    let unset = child(None).await.unwrap();
    assert!(
        unset.starts_with("invalid ") && unset.contains("not set"),
        "{unset}"
    );
    let bad = child(Some("localhost:8081".into())).await.unwrap();
    assert!(bad.starts_with("invalid "), "{bad}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_verified_with_the_algorithms_the_options_give() {
    let agent = Agent::start(&["spiffe://example.org/web"], HOUR).await;
    let endpoint = Endpoint::parse(&agent.endpoint()).unwrap();
    // No algorithm at all: no update verifies, so the source never gets an SVID.
    let err = X509Source::new(
        endpoint.clone(),
        X509SourceOptions::default()
            .algorithms(&[])
            .initial_sync_timeout(Duration::from_millis(800)),
    )
    .await
    .unwrap_err();
    let WorkloadApiError::InitialSyncTimeout { last_error, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        last_error
            .as_deref()
            .unwrap_or_default()
            .contains("does not verify"),
        "{err}"
    );
    // Another set that covers P-256: accepted.
    let source = X509Source::new(
        endpoint,
        X509SourceOptions::default().algorithms(webpki::ALL_VERIFICATION_ALGS),
    )
    .await
    .unwrap();
    assert!(source.is_healthy());
    source.shutdown().await;
    agent.shutdown().await;
}
