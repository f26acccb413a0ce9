//! meshid::proxy over real sockets: the typed refusals of `Acceptor`/`Connector`, and the
//! `Proxy` server's connection limit, PROXY protocol header, permissive mode, Unix sockets,
//! events and graceful shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshid::authorize::{self, Unauthorized};
use meshid::proxy::{
    Acceptor, Address, Connector, ForwardId, Kind, Limits, Proxy, ProxyError, ProxyEvent,
    ProxyObserver, Refusal, PP2_TYPE_SPIFFE_ID,
};
use meshid::tls::{self, PeerRejected};
use meshid::{Authority, KeyType, SpiffeId, TrustDomain, X509Bundle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const HOUR: Duration = Duration::from_secs(3600);

struct Pki {
    ca: Authority,
    bundle: Arc<X509Bundle>,
    provider: Arc<tls::rustls::crypto::CryptoProvider>,
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn pki() -> Pki {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundle = Arc::new(X509Bundle::from_authorities(td, ca.root().cloned()).unwrap());
    Pki {
        ca,
        bundle,
        provider: Arc::new(tls::rustls::crypto::ring::default_provider()),
    }
}

impl Pki {
    fn acceptor(&self, me: &str, allow: &str) -> Acceptor {
        let svid = Arc::new(self.ca.issue(&id(me), HOUR).unwrap());
        let config = tls::server_config(
            self.provider.clone(),
            svid,
            self.bundle.clone(),
            authorize::exact(id(allow)),
        )
        .unwrap();
        Acceptor::new(Arc::new(config))
    }

    fn connector(&self, me: &str, expect: &str) -> Connector {
        let svid = Arc::new(self.ca.issue(&id(me), HOUR).unwrap());
        let config = tls::client_config(
            self.provider.clone(),
            svid,
            self.bundle.clone(),
            authorize::exact(id(expect)),
        )
        .unwrap();
        Connector::new(Arc::new(config))
    }
}

/// The server's and the client's results of one handshake over loopback TCP.
async fn handshake(
    acceptor: Acceptor,
    connector: Connector,
) -> (
    Result<Option<SpiffeId>, ProxyError>,
    Result<Option<SpiffeId>, ProxyError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|s| s.peer_id().cloned())
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = connector.connect(tcp).await.map(|s| s.peer_id().cloned());
    (server.await.unwrap(), client)
}

fn unauthorized(error: &ProxyError) -> Option<&Unauthorized> {
    match error {
        ProxyError::Rejected(PeerRejected::Unauthorized(u)) => Some(u),
        _ => None,
    }
}

#[tokio::test]
async fn each_side_gets_the_peer_id_or_the_typed_reason_it_refused() {
    let pki = pki();
    let (server, client) = handshake(
        pki.acceptor(
            "spiffe://example.org/backend",
            "spiffe://example.org/frontend",
        ),
        pki.connector(
            "spiffe://example.org/frontend",
            "spiffe://example.org/backend",
        ),
    )
    .await;
    assert_eq!(server.unwrap(), Some(id("spiffe://example.org/frontend")));
    assert_eq!(client.unwrap(), Some(id("spiffe://example.org/backend")));

    // The server refuses an ID it does not allow, and says why.
    let (server, client) = handshake(
        pki.acceptor(
            "spiffe://example.org/backend",
            "spiffe://example.org/frontend",
        ),
        pki.connector(
            "spiffe://example.org/intruder",
            "spiffe://example.org/backend",
        ),
    )
    .await;
    let server = server.unwrap_err();
    assert_eq!(
        unauthorized(&server).map(Unauthorized::id),
        Some(&id("spiffe://example.org/intruder")),
        "{server}"
    );
    assert_eq!(server.refusal(), Refusal::Rejected);
    // (With TLS 1.3 the client may finish before the server's verdict; it learns of it
    // as an alert on its first read.)
    drop(client);

    // The client refuses a server that is not the expected one, and says why.
    let (_, client) = handshake(
        pki.acceptor(
            "spiffe://example.org/impostor",
            "spiffe://example.org/frontend",
        ),
        pki.connector(
            "spiffe://example.org/frontend",
            "spiffe://example.org/backend",
        ),
    )
    .await;
    let client = client.unwrap_err();
    assert_eq!(
        unauthorized(&client).map(Unauthorized::id),
        Some(&id("spiffe://example.org/impostor")),
        "{client}"
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let pki = pki();
    let acceptor = pki
        .acceptor(
            "spiffe://example.org/backend",
            "spiffe://example.org/frontend",
        )
        .handshake_timeout(Duration::from_millis(300));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let started = Instant::now();
    let error = acceptor.accept(tcp).await.unwrap_err();
    assert!(matches!(error, ProxyError::HandshakeTimeout(_)), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Records every event.
#[derive(Default)]
struct Events(Mutex<Vec<ProxyEvent>>);

impl ProxyObserver for Events {
    fn observe(&self, event: ProxyEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    fn count(&self, f: impl Fn(&ProxyEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| f(e)).count()
    }
}

/// A target app: reads what comes, answers "got N bytes: <first 200 bytes escaped>" when
/// the caller half-closes.
async fn app() -> (Address, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = Address::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = tcp.read_to_end(&mut got).await;
                let _ = tcp.write_all(&got).await;
            });
        }
    });
    (address, accepted)
}

struct Running {
    address: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(proxy: Proxy) -> Running {
    let listener = Address::parse("127.0.0.1:0").unwrap().bind().await.unwrap();
    let address = listener.local_address().unwrap().to_string();
    let (stop, stopped) = oneshot::channel();
    let done = tokio::spawn(proxy.serve(listener, async {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop: Some(stop),
        done,
    }
}

/// Sends `payload` over mTLS through `address`, half-closes, returns what came back.
async fn call(connector: &Connector, address: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector.connect(tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(payload).await.map_err(|e| e.to_string())?;
    tls.shutdown().await.map_err(|e| e.to_string())?;
    let mut back = Vec::new();
    tls.read_to_end(&mut back)
        .await
        .map_err(|e| e.to_string())?;
    Ok(back)
}

#[tokio::test]
async fn inbound_forwards_the_caller_id_in_a_proxy_v2_header() {
    let pki = pki();
    let (target, _) = app().await;
    let events = Arc::new(Events::default());
    let running = start(
        Proxy::inbound(
            pki.acceptor(
                "spiffe://example.org/backend",
                "spiffe://example.org/frontend",
            ),
            target,
        )
        .forward_id(ForwardId::ProxyV2)
        .observer(events.clone()),
    )
    .await;
    let connector = pki.connector(
        "spiffe://example.org/frontend",
        "spiffe://example.org/backend",
    );
    let back = call(&connector, &running.address, b"payload")
        .await
        .unwrap();
    // The echo is the PROXY v2 header the app got, then the payload.
    assert!(
        back.starts_with(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"),
        "{back:?}"
    );
    let len = usize::from(u16::from_be_bytes([back[14], back[15]]));
    let (header, rest) = back.split_at(16 + len);
    assert_eq!(rest, b"payload");
    let id = b"spiffe://example.org/frontend";
    let tlv = [
        &[PP2_TYPE_SPIFFE_ID, 0, u8::try_from(id.len()).unwrap()][..],
        id,
    ]
    .concat();
    assert!(
        header.ends_with(&tlv),
        "the ID TLV ends the header: {header:?}"
    );
    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Opened {
                kind: Kind::Mtls,
                ..
            }
        )),
        1
    );
    // Bytes are counted both ways: the payload in, header + payload back.
    let bytes = |to_target| {
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                ProxyEvent::Bytes {
                    to_target: t,
                    bytes,
                    ..
                } if *t == to_target => Some(*bytes),
                _ => None,
            })
            .sum::<u64>()
    };
    assert_eq!(bytes(true), 7);
    assert_eq!(bytes(false), back.len() as u64);
}

#[tokio::test]
async fn a_refused_caller_never_reaches_the_target_and_is_counted() {
    let pki = pki();
    let (target, accepted) = app().await;
    let events = Arc::new(Events::default());
    let running = start(
        Proxy::inbound(
            pki.acceptor(
                "spiffe://example.org/backend",
                "spiffe://example.org/frontend",
            ),
            target,
        )
        .observer(events.clone()),
    )
    .await;
    let intruder = pki.connector(
        "spiffe://example.org/intruder",
        "spiffe://example.org/backend",
    );
    assert!(call(&intruder, &running.address, b"x").await.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the target saw the intruder"
    );
    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Refused {
                reason: Refusal::Rejected,
                ..
            }
        )),
        1
    );
}

#[tokio::test]
async fn the_connection_limit_closes_one_more_and_shutdown_drains() {
    let pki = pki();
    let (target, _) = app().await;
    let events = Arc::new(Events::default());
    let mut running = start(
        Proxy::inbound(
            pki.acceptor(
                "spiffe://example.org/backend",
                "spiffe://example.org/frontend",
            ),
            target,
        )
        .limits(
            Limits::default()
                .max_connections(1)
                .shutdown_timeout(Duration::from_secs(10)),
        )
        .observer(events.clone()),
    )
    .await;
    let connector = pki.connector(
        "spiffe://example.org/frontend",
        "spiffe://example.org/backend",
    );
    // One connection held open.
    let tcp = TcpStream::connect(&running.address).await.unwrap();
    let mut held = connector.connect(tcp).await.unwrap();
    held.write_all(b"first ").await.unwrap();
    held.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more is closed at once.
    assert!(call(&connector, &running.address, b"second").await.is_err());
    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Refused {
                reason: Refusal::MaxConns,
                ..
            }
        )),
        1
    );
    // Shutdown: no new connection, the held one still finishes its exchange.
    running.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(&running.address).await.is_err(),
        "still accepting"
    );
    held.write_all(b"and last").await.unwrap();
    held.shutdown().await.unwrap();
    let mut back = Vec::new();
    held.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"first and last");
    running.done.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_closes_what_does_not_finish_in_time() {
    let pki = pki();
    let (target, _) = app().await;
    let mut running = start(
        Proxy::inbound(
            pki.acceptor(
                "spiffe://example.org/backend",
                "spiffe://example.org/frontend",
            ),
            target,
        )
        .limits(Limits::default().shutdown_timeout(Duration::from_millis(300))),
    )
    .await;
    let connector = pki.connector(
        "spiffe://example.org/frontend",
        "spiffe://example.org/backend",
    );
    let tcp = TcpStream::connect(&running.address).await.unwrap();
    let mut held = connector.connect(tcp).await.unwrap();
    held.write_all(b"x").await.unwrap();
    held.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.stop.take().unwrap().send(()).unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(5), running.done).await;
    assert!(
        finished.is_ok(),
        "the proxy waited past its shutdown timeout"
    );
    let mut back = Vec::new();
    // Closed under it: EOF or an error, never a hang.
    let _ = tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut back))
        .await
        .expect("the held connection was closed");
}

#[tokio::test]
async fn permissive_serves_plaintext_and_mtls_on_one_port_over_unix_sockets() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("meshid-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The target is a Unix socket echo app.
    let target_path = dir.join("app.sock");
    let app = tokio::net::UnixListener::bind(&target_path).unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = app.accept().await.unwrap();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                let _ = s.write_all(&got).await;
            });
        }
    });
    let listen = Address::Unix(dir.join("proxy.sock"));
    let listener = listen.bind().await.unwrap();
    let events = Arc::new(Events::default());
    let proxy = Proxy::inbound(
        pki.acceptor(
            "spiffe://example.org/backend",
            "spiffe://example.org/frontend",
        ),
        Address::Unix(target_path),
    )
    .permissive(true)
    .limits(Limits::default().detect_timeout(Duration::from_millis(500)))
    .observer(events.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(proxy.serve(listener, async {
        let _ = stopped.await;
    }));
    let path = dir.join("proxy.sock");

    // Plaintext.
    let mut plain = tokio::net::UnixStream::connect(&path).await.unwrap();
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    plain.shutdown().await.unwrap();
    let mut back = Vec::new();
    plain.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"GET / HTTP/1.0\r\n\r\n");

    // mTLS on the same socket.
    let connector = pki.connector(
        "spiffe://example.org/frontend",
        "spiffe://example.org/backend",
    );
    let unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut tls = connector.connect(unix).await.unwrap();
    tls.write_all(b"secret").await.unwrap();
    tls.shutdown().await.unwrap();
    let mut back = Vec::new();
    tls.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"secret");

    // A client that sends nothing is closed after the detection timeout.
    let mut silent = tokio::net::UnixStream::connect(&path).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the silent client was not closed");
    assert!(matches!(read, Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_millis(400));

    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Opened {
                kind: Kind::Plaintext,
                ..
            }
        )),
        1
    );
    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Opened {
                kind: Kind::Mtls,
                ..
            }
        )),
        1
    );
    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Refused {
                reason: Refusal::DetectTimeout,
                ..
            }
        )),
        1
    );
    stop.send(()).unwrap();
    done.await.unwrap().unwrap();
    assert!(!path.exists(), "the listener's socket file was not removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn outbound_originates_mtls_and_refuses_an_unexpected_server() {
    let pki = pki();
    // The real server: an mTLS echo terminating with an Acceptor.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap().to_string();
    let acceptor = pki.acceptor(
        "spiffe://example.org/backend",
        "spiffe://example.org/frontend",
    );
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.peer_id().unwrap().to_string();
                let mut got = Vec::new();
                let _ = tls.read_to_end(&mut got).await;
                let _ = tls.write_all(format!("{peer}: ").as_bytes()).await;
                let _ = tls.write_all(&got).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let events = Arc::new(Events::default());
    let good = start(
        Proxy::outbound(
            pki.connector(
                "spiffe://example.org/frontend",
                "spiffe://example.org/backend",
            ),
            Address::parse(&server_addr).unwrap(),
        )
        .observer(events.clone()),
    )
    .await;
    let mut plain = TcpStream::connect(&good.address).await.unwrap();
    plain.write_all(b"hello").await.unwrap();
    plain.shutdown().await.unwrap();
    let mut back = String::new();
    plain.read_to_string(&mut back).await.unwrap();
    assert_eq!(back, "spiffe://example.org/frontend: hello");

    let wrong = start(
        Proxy::outbound(
            pki.connector(
                "spiffe://example.org/frontend",
                "spiffe://example.org/other",
            ),
            Address::parse(&server_addr).unwrap(),
        )
        .observer(events.clone()),
    )
    .await;
    let mut plain = TcpStream::connect(&wrong.address).await.unwrap();
    let _ = plain.write_all(b"hello").await;
    let mut back = Vec::new();
    let _ = plain.read_to_end(&mut back).await;
    assert!(back.is_empty(), "bytes came back from an unexpected server");
    assert_eq!(
        events.count(|e| matches!(
            e,
            ProxyEvent::Refused {
                reason: Refusal::Rejected,
                ..
            }
        )),
        1
    );
}

#[tokio::test]
async fn a_uri_no_spiffe_verifier_checked_is_never_reported_as_an_id() {
    // A server trusting client certificates by plain Web PKI rules (as `proxy inbound --tls
    // file --client-ca`): the client's certificate carries a SPIFFE URI, but no SPIFFE
    // verifier tied its chain to that trust domain's bundle, so it proves nothing.
    let pki = pki();
    let mut roots = tls::rustls::RootCertStore::empty();
    roots.add(pki.ca.root().unwrap().clone()).unwrap();
    let verifier = tls::rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        pki.provider.clone(),
    )
    .build()
    .unwrap();
    let server_svid = Arc::new(
        pki.ca
            .issue(&id("spiffe://example.org/backend"), HOUR)
            .unwrap(),
    );
    let config =
        tls::server_config_with_verifier(pki.provider.clone(), server_svid, verifier).unwrap();
    let acceptor = Acceptor::new(Arc::new(config)).without_peer_id();
    let client = pki.connector(
        "spiffe://example.org/frontend",
        "spiffe://example.org/backend",
    );
    let (server, client) = handshake(acceptor, client).await;
    assert_eq!(
        server.unwrap(),
        None,
        "a URI no SPIFFE verifier checked was reported as the caller's ID"
    );
    assert!(client.is_ok());
}
