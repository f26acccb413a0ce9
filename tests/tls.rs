//! meshid::tls in real handshakes: who is accepted and refused (and with which error),
//! resumption off, rotation under concurrent load, hostile peers, and issuers that fail.

#[path = "common/certs.rs"]
mod certs;
#[path = "common/handshake.rs"]
mod handshake;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use meshid::tls::{self, PeerRejected, SpiffeServerCertVerifier};
use meshid::{
    authorize, Authority, Authorizer, Issuer, KeyType, RotationPolicy, Rotator, RotatorConfig,
    SpiffeId, SvidError, SvidSource, SvidStore, TrustDomain, VerifyError, X509Bundle, X509Svid,
};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection, SignatureScheme,
};

use handshake::{handshake, handshake_to, server_name};

const HOUR: Duration = Duration::from_secs(3600);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

/// A CA for a trust domain and the bundle that trusts it.
struct Domain {
    ca: Arc<Authority>,
    bundle: Arc<X509Bundle>,
}

impl Domain {
    fn new(name: &str) -> Self {
        let ca = Authority::new_root(td(name), HOUR, KeyType::P256).unwrap();
        let bundle = X509Bundle::from_authorities(td(name), ca.root().cloned()).unwrap();
        Self {
            ca: Arc::new(ca),
            bundle: Arc::new(bundle),
        }
    }

    fn svid(&self, s: &str) -> Arc<X509Svid> {
        Arc::new(self.ca.issue(&id(s), HOUR).unwrap())
    }

    fn server(
        &self,
        svid: impl SvidSource + 'static,
        allow: impl Authorizer + 'static,
    ) -> Arc<ServerConfig> {
        Arc::new(tls::server_config(provider(), svid, Arc::clone(&self.bundle), allow).unwrap())
    }

    fn client(
        &self,
        svid: impl SvidSource + 'static,
        allow: impl Authorizer + 'static,
    ) -> Arc<ClientConfig> {
        Arc::new(tls::client_config(provider(), svid, Arc::clone(&self.bundle), allow).unwrap())
    }
}

#[test]
fn both_sides_learn_the_peer_id_and_only_tls13_or_12_is_spoken() {
    let d = Domain::new("example.org");
    let server = d.server(
        d.svid("spiffe://example.org/backend"),
        authorize::exact(id("spiffe://example.org/frontend")),
    );
    let client = d.client(
        d.svid("spiffe://example.org/frontend"),
        authorize::exact(id("spiffe://example.org/backend")),
    );
    let out = handshake(&client, &server);
    assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
    assert_eq!(
        tls::peer_id(&out.server).unwrap().as_str(),
        "spiffe://example.org/frontend"
    );
    assert_eq!(
        tls::peer_id(&out.client).unwrap().as_str(),
        "spiffe://example.org/backend"
    );
    assert_eq!(
        out.client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    // TLS 1.2 is allowed too.
    let mut only12 = (*client).clone();
    only12.alpn_protocols.clear();
    let only12 = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(
                d.bundle.clone(),
                authorize::any(),
                provider(),
            )))
            .with_client_cert_resolver(Arc::new(tls::SvidResolver::new(
                d.svid("spiffe://example.org/frontend"),
                provider(),
            ))),
    );
    let out = handshake(&only12, &server);
    assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
    assert_eq!(
        out.server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        tls::peer_id(&out.server).unwrap().as_str(),
        "spiffe://example.org/frontend"
    );
    // Before a handshake there is no peer.
    let fresh = ServerConnection::new(server).unwrap();
    assert!(tls::peer_id(&fresh).is_none());
}

#[test]
fn a_client_from_an_unknown_trust_domain_is_refused() {
    let d = Domain::new("example.org");
    let other = Domain::new("other.org");
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let client = d.client(other.svid("spiffe://other.org/frontend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(!out.ok());
    assert!(
        matches!(out.server_rejection(), PeerRejected::Verify(VerifyError::NoBundle { trust_domain }) if trust_domain.name() == "other.org"),
        "{:?}",
        out.server_rejection()
    );
    // The client hears a certificate_unknown alert (rustls's alert for a custom error).
    assert!(
        matches!(
            out.client_error,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateUnknown
            ))
        ),
        "{:?}",
        out.client_error
    );
}

#[test]
fn a_server_from_an_unknown_trust_domain_is_refused() {
    let d = Domain::new("example.org");
    let other = Domain::new("other.org");
    let server = other.server(other.svid("spiffe://other.org/backend"), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(matches!(
        out.client_rejection(),
        PeerRejected::Verify(VerifyError::NoBundle { .. })
    ));
}

#[test]
fn a_chain_from_a_different_root_of_the_same_trust_domain_is_refused() {
    let d = Domain::new("example.org");
    let rogue = Domain::new("example.org");
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let client = d.client(
        rogue.svid("spiffe://example.org/frontend"),
        authorize::any(),
    );
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::UnknownIssuer)
        ),
        "{:?}",
        out.server_rejection()
    );
    // And the other way round.
    let server = rogue.server(rogue.svid("spiffe://example.org/backend"), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(matches!(
        out.client_rejection(),
        PeerRejected::Verify(VerifyError::UnknownIssuer)
    ));
}

#[test]
fn an_id_the_authorizer_refuses_is_refused_with_the_reason() {
    let d = Domain::new("example.org");
    let server = d.server(
        d.svid("spiffe://example.org/backend"),
        authorize::exact(id("spiffe://example.org/frontend")),
    );
    let client = d.client(d.svid("spiffe://example.org/intruder"), authorize::any());
    let out = handshake(&client, &server);
    let PeerRejected::Unauthorized(why) = out.server_rejection() else {
        panic!("{:?}", out.server_rejection())
    };
    assert_eq!(why.id().as_str(), "spiffe://example.org/intruder");
    assert!(out
        .server_rejection()
        .to_string()
        .contains("not authorized"));

    // A client refusing the server's ID.
    let server = d.server(d.svid("spiffe://example.org/impostor"), authorize::any());
    let client = d.client(
        d.svid("spiffe://example.org/frontend"),
        authorize::exact(id("spiffe://example.org/backend")),
    );
    let out = handshake(&client, &server);
    assert!(matches!(
        out.client_rejection(),
        PeerRejected::Unauthorized(_)
    ));
}

/// A client that presents exactly `chain` with `key` (no checks on our side).
#[derive(Debug)]
struct Presents(Arc<CertifiedKey>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn presenting(
    d: &Domain,
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Vec<u8>,
) -> Arc<ClientConfig> {
    let key = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8)))
        .unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(
                d.bundle.clone(),
                authorize::any(),
                provider(),
            )))
            .with_client_cert_resolver(Arc::new(Presents(Arc::new(CertifiedKey::new(chain, key))))),
    )
}

/// A client leaf from an rcgen CA that the server trusts, with `edit` applied to a
/// profile-conforming leaf's parameters.
fn rcgen_client(edit: impl FnOnce(&mut rcgen::CertificateParams)) -> (Domain, Arc<ClientConfig>) {
    let root = certs::Ca::root("example.org");
    let mut params = certs::leaf_params("spiffe://example.org/frontend");
    edit(&mut params);
    let key = certs::key(certs::Curve::P256);
    let leaf = root.sign(&params, &key);
    let bundle =
        X509Bundle::from_authorities(td("example.org"), [root.root_der().clone()]).unwrap();
    let d = Domain {
        ca: Arc::new(root.authority()),
        bundle: Arc::new(bundle),
    };
    let client = presenting(&d, vec![leaf], key.serialize_der());
    (d, client)
}

#[test]
fn an_expired_client_is_refused() {
    let (d, client) = rcgen_client(|p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Expired { .. })
        ),
        "{:?}",
        out.server_rejection()
    );
}

#[test]
fn an_expired_server_is_refused() {
    // Our own server SVID expires (the shortest TTL, 5 s) while the client keeps verifying
    // by its clock.
    let d = Domain::new("example.org");
    let short = Arc::new(
        d.ca.issue(&id("spiffe://example.org/backend"), Authority::MIN_SVID_TTL)
            .unwrap(),
    );
    let server = d.server(short.clone(), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let wait = short
        .not_after()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    thread::sleep(wait + Duration::from_millis(1100));
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.client_rejection(),
            PeerRejected::Verify(VerifyError::Expired { .. })
        ),
        "{:?}",
        out.client_rejection()
    );
}

#[test]
fn leaf_rule_violations_are_refused_naming_the_rule() {
    // No URI SAN at all.
    let (d, client) =
        rcgen_client(|p| p.subject_alt_names = vec![certs::dns("frontend.example.org")]);
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Profile(SvidError::NoUriSan))
        ),
        "{:?}",
        out.server_rejection()
    );
    // Two URI SANs.
    let (d, client) = rcgen_client(|p| {
        p.subject_alt_names
            .push(certs::uri("spiffe://example.org/other"));
    });
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Profile(SvidError::MultipleUriSans { .. }))
        ),
        "{:?}",
        out.server_rejection()
    );
    // A CA certificate as the leaf.
    let (d, client) =
        rcgen_client(|p| p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained));
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Profile(SvidError::LeafIsCa))
        ),
        "{:?}",
        out.server_rejection()
    );
    // A trust-domain ID (no path) as the leaf's ID.
    let (d, client) =
        rcgen_client(|p| p.subject_alt_names = vec![certs::uri("spiffe://example.org")]);
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Profile(SvidError::LeafIdHasNoPath { .. }))
        ),
        "{:?}",
        out.server_rejection()
    );
    // A client-certificate verifier checks for clientAuth: a serverAuth-only leaf is refused.
    let (d, client) = rcgen_client(|p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(
        matches!(out.server_rejection(), PeerRejected::Verify(_)),
        "{:?}",
        out.server_rejection()
    );
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let d = Domain::new("example.org");
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let client = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerCertVerifier::new(
                d.bundle.clone(),
                authorize::any(),
                provider(),
            )))
            .with_no_client_auth(),
    );
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_error,
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "{:?}",
        out.server_error
    );
}

#[test]
fn garbage_or_oversized_chains_fail_cleanly() {
    let d = Domain::new("example.org");
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let key = KeyPairDer::new();
    // Not DER at all.
    let client = presenting(
        &d,
        vec![CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])],
        key.0.clone(),
    );
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Profile(_))
        ),
        "{:?}",
        out.server_error
    );
    // A real leaf followed by 60 redundant copies of a CA certificate (~30 KB): extra
    // certificates are allowed (RFC 8446 §4.4.2), each is profile-checked, and path building
    // is bounded, so this verifies, and quickly.
    let svid = d.svid("spiffe://example.org/frontend");
    let mut chain = svid.chain().to_vec();
    chain.extend(std::iter::repeat_n(d.ca.root().unwrap().clone(), 60));
    let client = presenting(&d, chain, svid.private_key().secret_pkcs8_der().to_vec());
    let started = Instant::now();
    let out = handshake(&client, &server);
    assert!(out.ok(), "{:?}", out.server_error);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The same with a broken certificate among them: refused, naming the certificate.
    let mut chain = svid.chain().to_vec();
    chain.extend(std::iter::repeat_n(d.ca.root().unwrap().clone(), 30));
    chain.push(CertificateDer::from(vec![0x30, 0x00]));
    let client = presenting(&d, chain, svid.private_key().secret_pkcs8_der().to_vec());
    let out = handshake(&client, &server);
    assert!(
        matches!(
            out.server_rejection(),
            PeerRejected::Verify(VerifyError::Profile(SvidError::MalformedCertificate {
                index: 31,
                ..
            }))
        ),
        "{:?}",
        out.server_error
    );
    // Past rustls's 64 KiB handshake message limit: refused before our verifier runs.
    let mut chain = svid.chain().to_vec();
    chain.extend(std::iter::repeat_n(
        CertificateDer::from(vec![0x30; 16 * 1024]),
        8,
    ));
    let client = presenting(&d, chain, svid.private_key().secret_pkcs8_der().to_vec());
    let out = handshake(&client, &server);
    assert!(!out.ok());
    // The server config still serves good clients.
    let good = d.client(svid, authorize::any());
    assert!(handshake(&good, &server).ok());
}

/// A PKCS#8 P-256 key with no certificate behind it.
struct KeyPairDer(Vec<u8>);

impl KeyPairDer {
    fn new() -> Self {
        Self(certs::key(certs::Curve::P256).serialize_der())
    }
}

#[test]
fn session_resumption_is_off_and_the_test_would_see_it_on() {
    let d = Domain::new("example.org");
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    for _ in 0..3 {
        let out = handshake(&client, &server);
        assert!(out.ok());
        assert_eq!(out.client.handshake_kind(), Some(HandshakeKind::Full));
        assert_eq!(out.server.handshake_kind(), Some(HandshakeKind::Full));
    }
    // Control: the same configs with resumption switched back on do resume, so the
    // assertion above can fail.
    let mut server_on = (*server).clone();
    server_on.session_storage = ServerSessionMemoryCache::new(16);
    server_on.send_tls13_tickets = 2;
    let mut client_on = (*client).clone();
    client_on.resumption = Resumption::in_memory_sessions(16);
    let (server_on, client_on) = (Arc::new(server_on), Arc::new(client_on));
    assert!(handshake(&client_on, &server_on).ok());
    let second = handshake(&client_on, &server_on);
    assert!(second.ok());
    assert_eq!(second.client.handshake_kind(), Some(HandshakeKind::Resumed));
}

#[test]
fn a_server_holding_no_svid_fails_closed() {
    let d = Domain::new("example.org");
    let empty = Arc::new(SvidStore::new());
    let server = d.server(Arc::clone(&empty), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let out = handshake(&client, &server);
    assert!(!out.ok());
    assert!(out.server_error.is_some());
    // Publishing an SVID makes the same config work, with no rebuild.
    empty.publish((*d.svid("spiffe://example.org/backend")).clone());
    assert!(handshake(&client, &server).ok());
}

/// An issuer that works for the first `good` calls, then fails (or hangs, until released).
struct Flaky {
    ca: Arc<Authority>,
    good: u64,
    calls: AtomicU64,
    hang: Option<Mutex<mpsc::Receiver<()>>>,
}

impl Issuer for Flaky {
    fn issue_svid(
        &self,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<X509Svid, Box<dyn std::error::Error + Send + Sync>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.good {
            return Ok(self.ca.issue(id, ttl)?);
        }
        if let Some(rx) = &self.hang {
            let _ = rx.lock().unwrap().recv();
        }
        Err("upstream CA unavailable".into())
    }
}

fn rotator(
    d: &Domain,
    issuer: Arc<dyn Issuer>,
    who: &str,
    ttl: Duration,
) -> (Rotator, Arc<SvidStore>) {
    let store = Arc::new(SvidStore::new());
    let rotator = Rotator::start(RotatorConfig {
        id: id(who),
        ttl,
        policy: RotationPolicy {
            min_interval: Duration::from_millis(50),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            ..RotationPolicy::default()
        },
        issuer,
        bundles: d.bundle.clone(),
        algorithms: meshid::ring_algorithms(),
        store: Arc::clone(&store),
    });
    assert_ne!(
        store.wait_for_change(0, Duration::from_secs(10)),
        0,
        "first SVID"
    );
    (rotator, store)
}

#[test]
fn a_failing_issuer_keeps_the_last_good_svid_serving_then_fails_closed() {
    let d = Domain::new("example.org");
    let issuer = Arc::new(Flaky {
        ca: d.ca.clone(),
        good: 1,
        calls: AtomicU64::new(0),
        hang: None,
    });
    let (rot, store) = rotator(
        &d,
        issuer,
        "spiffe://example.org/backend",
        Authority::MIN_SVID_TTL,
    );
    let server = d.server(Arc::clone(&store), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    // Renewal fails from the first attempt on; handshakes go on with the last good SVID.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rot.status().failures < 2 {
        assert!(
            Instant::now() < deadline,
            "no failed renewal: {:?}",
            rot.status()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        handshake(&client, &server).ok(),
        "last good SVID still serves"
    );
    let status = rot.status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("upstream CA unavailable"),
        "{status:?}"
    );
    assert!(status.consecutive_failures >= 2);
    // Past its NotAfter the store is cleared and handshakes fail closed.
    while store.x509_svid().is_some() {
        assert!(
            Instant::now() < deadline,
            "never cleared: {:?}",
            rot.status()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let out = handshake(&client, &server);
    assert!(!out.ok());
    rot.stop();
}

#[test]
fn a_hanging_issuer_never_blocks_handshakes() {
    let d = Domain::new("example.org");
    let (release, rx) = mpsc::channel();
    let issuer = Arc::new(Flaky {
        ca: d.ca.clone(),
        good: 1,
        calls: AtomicU64::new(0),
        hang: Some(Mutex::new(rx)),
    });
    let (rot, store) = rotator(
        &d,
        issuer.clone(),
        "spiffe://example.org/backend",
        Duration::from_secs(30),
    );
    rot.renew_now();
    // Wait until the issuer is stuck in its second call.
    let deadline = Instant::now() + Duration::from_secs(10);
    while issuer.calls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(10));
    }
    let server = d.server(Arc::clone(&store), authorize::any());
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let started = Instant::now();
    for _ in 0..20 {
        assert!(handshake(&client, &server).ok());
    }
    // Twenty handshakes while the issuer hangs; generous bound for a loaded debug build.
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(rot); // never blocks, even with the issuer stuck
    release.send(()).unwrap();
}

/// The server side of the load test: one thread per connection, recording client serials.
fn serve(
    config: Arc<ServerConfig>,
    seen: Arc<Mutex<BTreeSet<Vec<u8>>>>,
    failures: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(mut tcp) = tcp else { continue };
            let (config, seen, failures) = (
                Arc::clone(&config),
                Arc::clone(&seen),
                Arc::clone(&failures),
            );
            thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut conn = ServerConnection::new(config).unwrap();
                let result = conn.complete_io(&mut tcp).and_then(|_| {
                    let leaf = conn
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    seen.lock().unwrap().insert(leaf.unwrap_or_default());
                    conn.writer().write_all(b"k")?;
                    conn.complete_io(&mut tcp).map(|_| ())
                });
                if let Err(e) = result {
                    eprintln!("server handshake failed: {e}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    addr
}

/// One connection, one full handshake, one byte: the server certificate it saw.
fn request(
    client: &Arc<ClientConfig>,
    addr: SocketAddr,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut conn = ClientConnection::new(Arc::clone(client), server_name())?;
    let mut byte = [0u8; 1];
    rustls::Stream::new(&mut conn, &mut tcp).read_exact(&mut byte)?;
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no server cert")?;
    if tls::peer_id(&conn).map(|p| p.to_string()).as_deref() != Some("spiffe://example.org/backend")
    {
        return Err("wrong peer".into());
    }
    Ok(leaf.to_vec())
}

#[test]
fn handshakes_never_fail_while_both_sides_rotate_every_100ms() {
    let d = Domain::new("example.org");
    let ttl = Duration::from_secs(60);
    let issuer: Arc<dyn Issuer> = d.ca.clone();
    let (server_rot, server_store) =
        rotator(&d, Arc::clone(&issuer), "spiffe://example.org/backend", ttl);
    let (client_rot, client_store) = rotator(&d, issuer, "spiffe://example.org/frontend", ttl);
    let server = d.server(
        Arc::clone(&server_store),
        authorize::exact(id("spiffe://example.org/frontend")),
    );
    let client = d.client(
        Arc::clone(&client_store),
        authorize::exact(id("spiffe://example.org/backend")),
    );

    let client_serials = Arc::new(Mutex::new(BTreeSet::new()));
    let server_failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = serve(
        server,
        Arc::clone(&client_serials),
        Arc::clone(&server_failures),
        Arc::clone(&stop),
    );

    let run_for = Duration::from_secs(5);
    let rotating = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(100));
                server_rot.renew_now();
                client_rot.renew_now();
            }
            (server_rot, client_rot)
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                let (mut ok, mut failed, mut serials) = (0u64, Vec::new(), BTreeSet::new());
                while started.elapsed() < run_for {
                    let result = request(&client, addr);
                    match result {
                        Ok(leaf) => {
                            ok += 1;
                            serials.insert(leaf);
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed, serials)
            })
        })
        .collect();
    let (mut ok, mut failed, mut server_serials) = (0, Vec::new(), BTreeSet::new());
    for w in workers {
        let (o, f, s) = w.join().unwrap();
        ok += o;
        failed.extend(f);
        server_serials.extend(s);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr); // wake the accept loop
    let (server_rot, client_rot) = rotating.join().unwrap();
    let (server_status, client_status) = (server_rot.status(), client_rot.status());
    server_rot.stop();
    client_rot.stop();
    thread::sleep(Duration::from_millis(200)); // let the last server threads finish

    assert!(
        failed.is_empty(),
        "{} failed handshakes: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(server_failures.load(Ordering::Relaxed), 0);
    assert!(ok >= 100, "only {ok} handshakes");
    // Both sides really rotated, and old and new certificates were in use.
    assert!(server_status.successes >= 20, "{server_status:?}");
    assert!(client_status.successes >= 20, "{client_status:?}");
    assert!(
        server_serials.len() >= 10,
        "clients saw {} server certificates",
        server_serials.len()
    );
    let client_serials = client_serials.lock().unwrap();
    assert!(
        client_serials.len() >= 10,
        "server saw {} client certificates",
        client_serials.len()
    );
    eprintln!(
        "{ok} handshakes, {} server and {} client rotations, {} and {} certificates seen",
        server_status.successes - 1,
        client_status.successes - 1,
        server_serials.len(),
        client_serials.len()
    );
}

#[test]
fn handshakes_never_fail_across_rotations_at_the_minimum_ttl() {
    // Both sides keep SVIDs of the shortest TTL the CA issues, renewed by the default
    // policy alone (no renew_now), while clients handshake without pause: no handshake may
    // fail at a rotation. MESHID_ROTATION_SOAK_SECS runs it longer (default 8 s, about
    // three rotations per side).
    let run_for = Duration::from_secs(
        std::env::var("MESHID_ROTATION_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(8),
    );
    let d = Domain::new("example.org");
    let start = |who: &str| {
        let store = Arc::new(SvidStore::new());
        let rotator = Rotator::start(RotatorConfig {
            id: id(who),
            ttl: Authority::MIN_SVID_TTL,
            policy: RotationPolicy::default(),
            issuer: d.ca.clone(),
            bundles: d.bundle.clone(),
            algorithms: meshid::ring_algorithms(),
            store: Arc::clone(&store),
        });
        assert_ne!(store.wait_for_change(0, Duration::from_secs(10)), 0);
        (rotator, store)
    };
    let (server_rot, server_store) = start("spiffe://example.org/backend");
    let (client_rot, client_store) = start("spiffe://example.org/frontend");
    let server = d.server(
        Arc::clone(&server_store),
        authorize::exact(id("spiffe://example.org/frontend")),
    );
    let client = d.client(
        Arc::clone(&client_store),
        authorize::exact(id("spiffe://example.org/backend")),
    );
    let client_serials = Arc::new(Mutex::new(BTreeSet::new()));
    let server_failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = serve(
        server,
        Arc::clone(&client_serials),
        Arc::clone(&server_failures),
        Arc::clone(&stop),
    );
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let client = Arc::clone(&client);
            thread::spawn(move || {
                let (mut ok, mut failed, mut serials) = (0u64, Vec::new(), BTreeSet::new());
                while started.elapsed() < run_for {
                    match request(&client, addr) {
                        Ok(leaf) => {
                            ok += 1;
                            serials.insert(leaf);
                        }
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed, serials)
            })
        })
        .collect();
    let (mut ok, mut failed, mut server_serials) = (0, Vec::new(), BTreeSet::new());
    for w in workers {
        let (o, f, s) = w.join().unwrap();
        ok += o;
        failed.extend(f);
        server_serials.extend(s);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr); // wake the accept loop
    let (server_status, client_status) = (server_rot.status(), client_rot.status());
    server_rot.stop();
    client_rot.stop();
    thread::sleep(Duration::from_millis(200)); // let the last server threads finish
    let client_serials = client_serials.lock().unwrap().len();
    eprintln!(
        "{ok} handshakes, {} failed, {} server-side failures, {} server and {} client \
         rotations at TTL {:?}",
        failed.len(),
        server_failures.load(Ordering::Relaxed),
        server_status.successes - 1,
        client_status.successes - 1,
        Authority::MIN_SVID_TTL
    );
    assert!(
        failed.is_empty(),
        "{} of {} handshakes failed: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
    assert_eq!(server_failures.load(Ordering::Relaxed), 0);
    assert_eq!(server_status.failures + client_status.failures, 0);
    // Each side rotated at least twice, and handshakes used old and new certificates.
    assert!(server_status.successes >= 3, "{server_status:?}");
    assert!(client_status.successes >= 3, "{client_status:?}");
    assert!(server_serials.len() >= 3, "{}", server_serials.len());
    assert!(client_serials >= 3, "{client_serials}");
}

#[test]
fn a_chain_under_an_expired_root_is_refused_naming_the_rule() {
    // A bundle root that has expired anchors nothing, though the server's leaf is still
    // valid: rustls gets the rule back from the verifier.
    let now = SystemTime::now();
    let mut p = certs::ca_params("spiffe://example.org");
    p.not_before = (now - 30 * 24 * HOUR).into();
    p.not_after = (now - HOUR).into();
    let root = certs::Ca::root_with(p, certs::Curve::P256);
    let leaf = root.leaf(&certs::leaf_params("spiffe://example.org/backend"));
    let bundle =
        Arc::new(X509Bundle::from_authorities(td("example.org"), [root.der.clone()]).unwrap());
    let verifier = SpiffeServerCertVerifier::new(bundle, authorize::any(), provider());
    let err = rustls::client::danger::ServerCertVerifier::verify_server_cert(
        &verifier,
        &leaf,
        &[],
        &server_name(),
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .unwrap_err();
    assert!(
        matches!(
            tls::rejection(&err),
            Some(PeerRejected::Verify(VerifyError::ExpiredAnchor { .. }))
        ),
        "{err:?}"
    );
}

#[test]
fn hostile_bytes_on_the_wire_do_not_stop_the_server() {
    let d = Domain::new("example.org");
    let server = d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let serials = Arc::new(Mutex::new(BTreeSet::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = serve(server, serials, Arc::clone(&failures), Arc::clone(&stop));
    // Garbage, a truncated ClientHello, a record header announcing 16 MB, and a hang-up.
    for junk in [
        vec![0xde; 4096],
        vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
        vec![0x16, 0x03, 0x03, 0xff, 0xff],
        vec![],
    ] {
        let mut tcp = TcpStream::connect(addr).unwrap();
        let _ = tcp.write_all(&junk);
        drop(tcp);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures.load(Ordering::Relaxed) < 4 {
        assert!(
            Instant::now() < deadline,
            "server threads did not finish: {}",
            failures.load(Ordering::Relaxed)
        );
        thread::sleep(Duration::from_millis(20));
    }
    // A good client is still served.
    let client = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut conn = ClientConnection::new(client, server_name()).unwrap();
    let mut byte = [0u8; 1];
    rustls::Stream::new(&mut conn, &mut tcp)
        .read_exact(&mut byte)
        .unwrap();
    assert_eq!(&byte, b"k");
    stop.store(true, Ordering::Relaxed);
}

/// Over a socket, rustls's `Stream` (as tokio-rustls's streams do) reports a refused
/// handshake as an `io::Error` wrapping the rustls error: `tls::io_rejection` gets the
/// reason back out, and finds none in an unrelated I/O error.
#[test]
fn a_refusal_is_found_inside_the_io_error_a_stream_returns() {
    let d = Domain::new("example.org");
    let server = d.server(d.svid("spiffe://example.org/impostor"), authorize::any());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_thread = thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut conn = ServerConnection::new(server).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let _ = tls.read(&mut [0u8; 16]);
    });
    let client = d.client(
        d.svid("spiffe://example.org/frontend"),
        authorize::exact(id("spiffe://example.org/backend")),
    );
    let mut tcp = TcpStream::connect(addr).unwrap();
    let mut conn = ClientConnection::new(client, server_name()).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let err = tls.write_all(b"hello").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err:?}");
    let Some(PeerRejected::Unauthorized(why)) = tls::io_rejection(&err) else {
        panic!("no refusal in {err:?}")
    };
    assert_eq!(why.id().as_str(), "spiffe://example.org/impostor");
    drop(tcp);
    server_thread.join().unwrap();
    let unrelated = std::io::Error::new(std::io::ErrorKind::InvalidData, "not TLS");
    assert!(tls::io_rejection(&unrelated).is_none());
    assert!(tls::io_rejection(&std::io::Error::from(std::io::ErrorKind::BrokenPipe)).is_none());
}

/// The re-exported rustls is the one the configurations are built with: its types are
/// the configurations' types.
#[test]
fn the_re_exported_rustls_is_the_one_the_configurations_use() {
    let d = Domain::new("example.org");
    let server: Arc<tls::rustls::ServerConfig> =
        d.server(d.svid("spiffe://example.org/backend"), authorize::any());
    let client: Arc<tls::rustls::ClientConfig> =
        d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    assert!(handshake(&client, &server).ok());
}

// ---- One-way TLS, the Web PKI beside SPIFFE, and ALPN ----

/// A Web PKI CA (no SPIFFE ID anywhere) made with rcgen, and server certificates from it.
struct WebPki {
    root: certs::Ca,
}

impl WebPki {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("web root {}", NEXT.fetch_add(1, Ordering::Relaxed)),
        );
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        Self {
            root: certs::Ca::root_with(p, certs::Curve::P256),
        }
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.root_der().clone()).unwrap();
        Arc::new(roots)
    }

    /// A server certificate for the DNS name `name`, as a resolver.
    fn server_cert(&self, name: &str) -> Arc<dyn rustls::server::ResolvesServerCert> {
        let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = certs::key(certs::Curve::P256);
        let leaf = self.root.sign(&p, &key);
        let signing = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                key.serialize_der(),
            )))
            .unwrap();
        Arc::new(rustls::sign::SingleCertAndKey::from(CertifiedKey::new(
            vec![leaf],
            signing,
        )))
    }

    /// A plain HTTPS server with `name`'s certificate, asking for no client certificate.
    fn plain_server(&self, name: &str) -> Arc<ServerConfig> {
        Arc::new(
            ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(self.server_cert(name)),
        )
    }
}

fn dns_name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// Two handshakes with the same configs are both full ones: no session resumed.
fn never_resumes(name: &str, client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    for _ in 0..2 {
        let out = handshake_to(dns_name(name), client, server);
        assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
        assert_eq!(out.client.handshake_kind(), Some(HandshakeKind::Full));
        assert_eq!(out.server.handshake_kind(), Some(HandshakeKind::Full));
    }
}

#[test]
fn one_way_tls_verifies_the_server_s_svid_and_asks_the_client_for_nothing() {
    let d = Domain::new("example.org");
    let backend = "spiffe://example.org/backend";
    let server = Arc::new(tls::tls_server_config(provider(), d.svid(backend)).unwrap());
    let client = Arc::new(
        tls::tls_client_config(provider(), d.bundle.clone(), authorize::exact(id(backend)))
            .unwrap(),
    );
    let out = handshake(&client, &server);
    assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
    assert_eq!(tls::peer_id(&out.client).unwrap().as_str(), backend);
    assert!(out.server.peer_certificates().is_none());
    never_resumes("backend", &client, &server);

    // The server asks for no certificate: an mTLS client holding an SVID sends none (and
    // the same client does send it to a server that asks).
    let holder = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let out = handshake(&holder, &server);
    assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
    assert!(out.server.peer_certificates().is_none());
    assert!(tls::peer_id(&out.server).is_none());
    let mtls_server = d.server(d.svid(backend), authorize::any());
    let out = handshake(&holder, &mtls_server);
    assert!(tls::peer_id(&out.server).is_some());

    // The client presents nothing: a server requiring a client SVID refuses it.
    let out = handshake(&client, &mtls_server);
    assert!(
        matches!(
            out.server_error,
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "{:?}",
        out.server_error
    );

    // The client still verifies its server: an ID the authorizer refuses, and a server of
    // another trust domain, are refused.
    let impostor = Arc::new(
        tls::tls_server_config(provider(), d.svid("spiffe://example.org/impostor")).unwrap(),
    );
    let out = handshake(&client, &impostor);
    assert!(matches!(
        out.client_rejection(),
        PeerRejected::Unauthorized(_)
    ));
    let other = Domain::new("other.org");
    let foreign = Arc::new(
        tls::tls_server_config(provider(), other.svid("spiffe://other.org/backend")).unwrap(),
    );
    let out = handshake(&client, &foreign);
    assert!(matches!(
        out.client_rejection(),
        PeerRejected::Verify(VerifyError::NoBundle { .. })
    ));
}

#[test]
fn a_web_pki_server_takes_spiffe_clients_and_its_name_is_checked() {
    let d = Domain::new("example.org");
    let web = WebPki::new();
    let frontend = "spiffe://example.org/frontend";
    let server = Arc::new(
        tls::mtls_web_server_config(
            provider(),
            web.server_cert("api.example.com"),
            d.bundle.clone(),
            authorize::exact(id(frontend)),
        )
        .unwrap(),
    );
    let svid: Arc<dyn SvidSource> = Arc::new(d.svid(frontend));
    let client = Arc::new(tls::web_client_config(provider(), web.roots(), Some(svid)).unwrap());
    let out = handshake_to(dns_name("api.example.com"), &client, &server);
    assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
    assert_eq!(tls::peer_id(&out.server).unwrap().as_str(), frontend);
    assert!(
        tls::peer_id(&out.client).is_none(),
        "a Web PKI certificate names no SPIFFE ID"
    );
    never_resumes("api.example.com", &client, &server);

    // The server's certificate is checked as any HTTPS client checks it: its name...
    let out = handshake_to(dns_name("other.example.com"), &client, &server);
    assert!(
        matches!(
            out.client_error,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{:?}",
        out.client_error
    );
    // ...and its root: a client trusting another Web PKI root refuses it.
    let stranger = Arc::new(
        tls::web_client_config(
            provider(),
            WebPki::new().roots(),
            Some(Arc::new(d.svid(frontend))),
        )
        .unwrap(),
    );
    let out = handshake_to(dns_name("api.example.com"), &stranger, &server);
    assert!(
        matches!(out.client_error, Some(rustls::Error::InvalidCertificate(_))),
        "{:?}",
        out.client_error
    );

    // Clients are verified by the SPIFFE rules: an ID the authorizer refuses, one of a
    // trust domain without a bundle, and no certificate at all are refused.
    let impostor = Arc::new(
        tls::web_client_config(
            provider(),
            web.roots(),
            Some(Arc::new(d.svid("spiffe://example.org/impostor"))),
        )
        .unwrap(),
    );
    let out = handshake_to(dns_name("api.example.com"), &impostor, &server);
    assert!(matches!(
        out.server_rejection(),
        PeerRejected::Unauthorized(_)
    ));
    let foreign = Arc::new(
        tls::web_client_config(
            provider(),
            web.roots(),
            Some(Arc::new(
                Domain::new("other.org").svid("spiffe://other.org/frontend"),
            )),
        )
        .unwrap(),
    );
    let out = handshake_to(dns_name("api.example.com"), &foreign, &server);
    assert!(matches!(
        out.server_rejection(),
        PeerRejected::Verify(VerifyError::NoBundle { .. })
    ));
    let anonymous = Arc::new(tls::web_client_config(provider(), web.roots(), None).unwrap());
    let out = handshake_to(dns_name("api.example.com"), &anonymous, &server);
    assert!(
        matches!(
            out.server_error,
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "{:?}",
        out.server_error
    );
}

#[test]
fn a_web_client_offers_its_svid_only_when_asked_and_never_without_one() {
    let d = Domain::new("example.org");
    let web = WebPki::new();
    let plain = web.plain_server("localhost");
    let svid: Arc<dyn SvidSource> = Arc::new(d.svid("spiffe://example.org/frontend"));
    let with_svid = Arc::new(tls::web_client_config(provider(), web.roots(), Some(svid)).unwrap());
    let without = Arc::new(tls::web_client_config(provider(), web.roots(), None).unwrap());
    // A server that does not ask gets no certificate from either.
    for client in [&with_svid, &without] {
        let out = handshake_to(dns_name("localhost"), client, &plain);
        assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
        assert!(out.server.peer_certificates().is_none());
    }
    never_resumes("localhost", &without, &plain);
    // One that asks (for any certificate: a SPIFFE-verifying server here) gets the SVID
    // from the client holding one.
    let asks = Arc::new(
        tls::mtls_web_server_config(
            provider(),
            web.server_cert("localhost"),
            d.bundle.clone(),
            authorize::any(),
        )
        .unwrap(),
    );
    let out = handshake_to(dns_name("localhost"), &with_svid, &asks);
    assert_eq!(
        tls::peer_id(&out.server).unwrap().as_str(),
        "spiffe://example.org/frontend"
    );
    // The name is checked for a plain client too.
    let out = handshake_to(dns_name("example.com"), &without, &plain);
    assert!(
        matches!(
            out.client_error,
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{:?}",
        out.client_error
    );
    // An SVID store holding nothing yet: the client offers no certificate, and the
    // server that requires one refuses (fail closed).
    let empty: Arc<dyn SvidSource> = Arc::new(SvidStore::new());
    let waiting = Arc::new(tls::web_client_config(provider(), web.roots(), Some(empty)).unwrap());
    let out = handshake_to(dns_name("localhost"), &waiting, &asks);
    assert!(!out.ok());
    assert!(out.server_error.is_some(), "{:?}", out.client_error);
    // No roots: nothing could ever verify, so the configuration is refused (no panic).
    let err = tls::web_client_config(provider(), Arc::new(rustls::RootCertStore::empty()), None)
        .unwrap_err();
    assert!(matches!(err, rustls::Error::Other(_)), "{err:?}");
}

#[test]
fn alpn_h2_is_agreed_when_both_sides_set_it_and_a_mismatch_is_refused() {
    let d = Domain::new("example.org");
    let mut server = (*d.server(d.svid("spiffe://example.org/backend"), authorize::any())).clone();
    server.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    let server = Arc::new(server);
    let plain = d.client(d.svid("spiffe://example.org/frontend"), authorize::any());
    let mut h2 = (*plain).clone();
    h2.alpn_protocols = vec![tls::ALPN_H2.to_vec(), tls::ALPN_HTTP11.to_vec()];
    let out = handshake(&Arc::new(h2), &server);
    assert!(out.ok(), "{:?} / {:?}", out.client_error, out.server_error);
    assert_eq!(out.client.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(out.server.alpn_protocol(), Some(&b"h2"[..]));
    // The configurations offer none by themselves: no protocol is agreed.
    let out = handshake(&plain, &server);
    assert!(out.ok());
    assert_eq!(out.server.alpn_protocol(), None);
    // A client offering only HTTP/1.1 to an h2-only server is refused.
    let mut http11 = (*plain).clone();
    http11.alpn_protocols = vec![tls::ALPN_HTTP11.to_vec()];
    let out = handshake(&Arc::new(http11), &server);
    assert!(
        matches!(out.server_error, Some(rustls::Error::NoApplicationProtocol)),
        "{:?}",
        out.server_error
    );
}
