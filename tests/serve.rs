//! The serving layer every meshid server shares, seen through both servers: admission by
//! peer credentials on SDS as on the Workload API, TCP listeners, and a connection whose
//! HTTP/2 bytes cannot be rewritten (no preface, a broken header block) closed alone while
//! the server goes on serving others.

#![cfg(all(unix, feature = "sds", feature = "workload-api", feature = "ca"))]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use meshid::sds::SdsServer;
use meshid::serve::{ServeError, ServeLimits};
use meshid::workload::{Endpoint, WorkloadApiClient, WorkloadApiError, WorkloadApiServer};
use meshid::{Authority, BundleSet, KeyType, SpiffeId, SvidStore, TrustDomain, X509Bundle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uds::unix_channel;

#[path = "common/uds.rs"]
mod uds;

struct Fixture {
    dir: PathBuf,
    bundles: BundleSet,
    store: Arc<SvidStore>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-serve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
        let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
            .into_iter()
            .collect();
        let store = Arc::new(SvidStore::new());
        let id = SpiffeId::new("spiffe://example.org/web").unwrap();
        store.publish(ca.issue(&id, Duration::from_secs(600)).unwrap());
        Self {
            dir,
            bundles,
            store,
        }
    }

    /// Our own uid, as the kernel reports it for a file we created.
    fn uid(&self) -> u32 {
        std::fs::metadata(&self.dir).unwrap().uid()
    }

    fn sds(&self) -> SdsServer {
        SdsServer::for_store(Arc::clone(&self.store), self.bundles.clone())
    }

    fn workload(&self) -> WorkloadApiServer {
        WorkloadApiServer::new(self.bundles.clone()).with_svid(Arc::clone(&self.store))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Served = (oneshot::Sender<()>, JoinHandle<Result<(), ServeError>>);

/// Starts a server future with a stop switch, waiting for `socket` (if any) to appear.
async fn start<F>(serve: impl FnOnce(oneshot::Receiver<()>) -> F, socket: Option<&Path>) -> Served
where
    F: std::future::Future<Output = Result<(), ServeError>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    let served = tokio::spawn(serve(stopped));
    if let Some(socket) = socket {
        for _ in 0..500 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(socket.exists(), "the socket never appeared");
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (stop, served)
}

async fn stop((stop, served): Served) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

async fn fetch_default(channel: Channel) -> Result<usize, tonic::Status> {
    let mut client = SecretDiscoveryServiceClient::new(channel);
    let request = DiscoveryRequest {
        resource_names: vec!["default".to_owned()],
        ..Default::default()
    };
    client
        .fetch_secrets(request)
        .await
        .map(|r| r.into_inner().resources.len())
}

#[tokio::test]
async fn sds_admits_callers_by_uid_as_the_workload_api_does() {
    let f = Fixture::new("sds-uids");
    let me = f.uid();
    for (allowed, admitted) in [(me, true), (me.wrapping_add(1), false)] {
        let socket = f.dir.join(format!("sds-{admitted}.sock"));
        let server = f.sds().allow_uids([allowed]);
        let path = socket.clone();
        let running = start(
            move |stopped| server.serve(path, async move { drop(stopped.await) }),
            Some(&socket),
        )
        .await;
        let got = fetch_default(unix_channel(&socket).await).await;
        if admitted {
            assert_eq!(got.unwrap(), 1);
        } else {
            let status = got.unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        }
        stop(running).await;
    }
}

#[tokio::test]
async fn both_servers_serve_tcp_and_refuse_tcp_callers_when_uids_are_required() {
    let f = Fixture::new("tcp");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    // Workload API over tcp://, through meshid's client.
    for require_uid in [false, true] {
        let addr = free();
        let server = if require_uid {
            f.workload().allow_uids([f.uid()])
        } else {
            f.workload()
        };
        let running = start(
            move |stopped| server.serve_tcp(addr, async move { drop(stopped.await) }),
            None,
        )
        .await;
        let endpoint = Endpoint::parse(&format!("tcp://{addr}")).unwrap();
        let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
        match client.fetch_x509_context().await {
            Ok(context) if !require_uid => {
                assert_eq!(
                    context.default_svid().id().as_str(),
                    "spiffe://example.org/web"
                );
            }
            Err(WorkloadApiError::Status(s)) if require_uid => {
                assert_eq!(s.code(), tonic::Code::PermissionDenied);
            }
            other => panic!("require_uid {require_uid}: {other:?}"),
        }
        stop(running).await;
    }
    // SDS over TCP, through tonic.
    let addr = free();
    let server = f.sds();
    let running = start(
        move |stopped| server.serve_tcp(addr, async move { drop(stopped.await) }),
        None,
    )
    .await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(fetch_default(channel).await.unwrap(), 1);
    stop(running).await;
}

#[tokio::test]
async fn a_connection_that_cannot_be_rewritten_is_closed_alone() {
    let f = Fixture::new("broken");
    let socket = f.dir.join("api.sock");
    let server = f.sds();
    let path = socket.clone();
    let running = start(
        move |stopped| server.serve(path, async move { drop(stopped.await) }),
        Some(&socket),
    )
    .await;
    // A healthy connection opened first stays usable throughout.
    let healthy = unix_channel(&socket).await;
    assert_eq!(fetch_default(healthy.clone()).await.unwrap(), 1);
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // 1. Not HTTP/2 at all. 2. A header block with index 0 (an HPACK error).
    // 3. A header block interrupted by a DATA frame.
    let broken: [Vec<u8>; 3] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [preface, &[0, 0, 1, 0x1, 0x4, 0, 0, 0, 1, 0x80]].concat(),
        [
            preface,
            &[0, 0, 1, 0x1, 0x0, 0, 0, 0, 1, 0x83],
            &[0, 0, 1, 0x0, 0x0, 0, 0, 0, 1, 0x00],
        ]
        .concat(),
    ];
    for bytes in broken {
        let mut raw = tokio::net::UnixStream::connect(&socket).await.unwrap();
        raw.write_all(&bytes).await.unwrap();
        // The server closes it: reads end (after whatever it wrote first) within 5 s.
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "a broken connection was left open");
        assert_eq!(fetch_default(healthy.clone()).await.unwrap(), 1);
        assert_eq!(fetch_default(unix_channel(&socket).await).await.unwrap(), 1);
    }
    drop(healthy);
    stop(running).await;
}

#[tokio::test]
async fn refused_callers_share_a_few_connections_and_cannot_fill_the_cap() {
    let f = Fixture::new("strangers");
    let socket = f.dir.join("api.sock");
    // We are not among the allowed uids: every connection of ours is a stranger's.
    let server = f
        .workload()
        .allow_uids([f.uid().wrapping_add(1)])
        .limits(ServeLimits::default().idle_timeout(Duration::MAX));
    let path = socket.clone();
    let running = start(
        move |stopped| server.serve(path, async move { drop(stopped.await) }),
        Some(&socket),
    )
    .await;
    let mut held = Vec::new();
    let mut closed = 0;
    for _ in 0..10 {
        let mut raw = tokio::net::UnixStream::connect(&socket).await.unwrap();
        // A held connection gets the server's SETTINGS and waits for our preface; a
        // refused one is closed at once.
        let mut sink = Vec::new();
        match tokio::time::timeout(Duration::from_millis(200), raw.read_to_end(&mut sink)).await {
            Ok(_) => closed += 1,
            Err(_) => held.push(raw),
        }
    }
    assert_eq!((held.len(), closed), (4, 6));
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // With the slots free again, a refused caller still hears why.
    let endpoint = Endpoint::parse(&format!("unix://{}", socket.display())).unwrap();
    let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
    match client.fetch_x509_context().await {
        Err(WorkloadApiError::Status(s)) => assert_eq!(s.code(), tonic::Code::PermissionDenied),
        other => panic!("{other:?}"),
    }
    stop(running).await;
}

/// Whether the server closes `conn` at once (a read ends within 2 s).
async fn closed(conn: &mut tokio::net::UnixStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test]
async fn one_uid_cannot_hold_more_connections_than_its_cap() {
    let f = Fixture::new("per-uid");
    let socket = f.dir.join("api.sock");
    let server = f
        .workload()
        .limits(ServeLimits::default().max_connections_per_uid(3));
    let path = socket.clone();
    let running = start(
        move |stopped| server.serve(path, async move { drop(stopped.await) }),
        Some(&socket),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::UnixStream::connect(&socket).await.unwrap());
    }
    let mut fourth = tokio::net::UnixStream::connect(&socket).await.unwrap();
    assert!(
        closed(&mut fourth).await,
        "a fourth connection of one uid is closed"
    );
    assert!(
        !closed(&mut held[0]).await,
        "the three within the cap are kept"
    );
    // One given back: the uid may connect again, and a client is served.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let endpoint = Endpoint::parse(&format!("unix://{}", socket.display())).unwrap();
    let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
    assert_eq!(
        client.fetch_x509_context().await.unwrap().svids().count(),
        1
    );
    drop(held);
    stop(running).await;
}
