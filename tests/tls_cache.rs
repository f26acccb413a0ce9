//! The verified-chain cache in real (in-memory) rustls handshakes: a repeat peer is a hit on
//! both sides, the authorizer is asked on every handshake and its change of mind is obeyed at
//! once, a peer presenting a cached chain without its private key is refused (the
//! CertificateVerify signature is never skipped), and a rotated bundle is obeyed at once.

#[path = "common/handshake.rs"]
mod handshake;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use handshake::handshake;
use meshid::tls::{self, PeerRejected, SpiffeClientCertVerifier, SpiffeServerCertVerifier};
use meshid::{
    authorize, Authority, Authorizer, BundleSet, BundleSource, KeyType, SpiffeId, TrustDomain,
    VerifiedChainCache, VerifyError, X509Bundle, X509Svid,
};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};

const HOUR: Duration = Duration::from_secs(3600);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

/// A bundle source a test can swap, as a Workload API source's updates.
struct Swappable(RwLock<BundleSet>);

impl Swappable {
    fn new(bundle: X509Bundle) -> Arc<Self> {
        Arc::new(Self(RwLock::new(std::iter::once(bundle).collect())))
    }

    fn set(&self, bundle: X509Bundle) {
        *self.0.write().unwrap() = std::iter::once(bundle).collect();
    }
}

impl BundleSource for Swappable {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        self.0.read().unwrap().x509_bundle(trust_domain)
    }
}

struct Mesh {
    ca: Authority,
    /// What the server verifies its clients against (a test swaps it).
    bundles: Arc<Swappable>,
    /// What the clients verify the server against (never swapped).
    client_bundle: X509Bundle,
    server_svid: Arc<X509Svid>,
    client_svid: Arc<X509Svid>,
}

impl Mesh {
    fn new() -> Self {
        let ca = Authority::new_root(td(), HOUR, KeyType::P256).unwrap();
        let bundle = X509Bundle::from_authorities(td(), ca.root().cloned()).unwrap();
        Self {
            server_svid: Arc::new(ca.issue(&id("spiffe://example.org/db"), HOUR).unwrap()),
            client_svid: Arc::new(ca.issue(&id("spiffe://example.org/web"), HOUR).unwrap()),
            bundles: Swappable::new(bundle.clone()),
            client_bundle: bundle,
            ca,
        }
    }

    fn server(
        &self,
        allow: impl Authorizer + 'static,
    ) -> (Arc<ServerConfig>, Arc<SpiffeClientCertVerifier>) {
        let verifier = Arc::new(SpiffeClientCertVerifier::new(
            self.bundles.clone(),
            allow,
            provider(),
        ));
        let config = tls::server_config_with_verifier(
            provider(),
            Arc::clone(&self.server_svid),
            verifier.clone(),
        )
        .unwrap();
        (Arc::new(config), verifier)
    }

    fn client(&self) -> (Arc<ClientConfig>, Arc<SpiffeServerCertVerifier>) {
        let verifier = Arc::new(SpiffeServerCertVerifier::new(
            Arc::new(self.client_bundle.clone()),
            authorize::exact(id("spiffe://example.org/db")),
            provider(),
        ));
        let config = tls::client_config_with_verifier(
            provider(),
            Arc::clone(&self.client_svid),
            verifier.clone(),
        )
        .unwrap();
        (Arc::new(config), verifier)
    }
}

fn hits(cache: Option<&Arc<VerifiedChainCache>>) -> u64 {
    cache.expect("a cache by default").stats().hits
}

#[test]
fn a_repeat_peer_is_a_hit_on_both_sides() {
    let mesh = Mesh::new();
    let (server, server_verifier) = mesh.server(authorize::any());
    let (client, client_verifier) = mesh.client();
    for _ in 0..5 {
        let outcome = handshake(&client, &server);
        assert!(
            outcome.ok(),
            "{:?} {:?}",
            outcome.client_error,
            outcome.server_error
        );
        assert_eq!(
            tls::peer_id(&outcome.server),
            Some(id("spiffe://example.org/web"))
        );
    }
    assert_eq!(hits(server_verifier.cache()), 4);
    assert_eq!(hits(client_verifier.cache()), 4);
}

#[test]
fn the_authorizer_is_asked_on_every_handshake_and_its_change_of_mind_is_obeyed() {
    let mesh = Mesh::new();
    let allow = Arc::new(AtomicBool::new(true));
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (gate, count) = (Arc::clone(&allow), Arc::clone(&asked));
    let (server, verifier) = mesh.server(move |peer: &SpiffeId| {
        count.fetch_add(1, Ordering::SeqCst);
        if gate.load(Ordering::SeqCst) {
            Ok(())
        } else {
            authorize::exact(id("spiffe://example.org/nobody")).authorize(peer)
        }
    });
    let (client, _) = mesh.client();
    assert!(handshake(&client, &server).ok());
    assert!(handshake(&client, &server).ok());
    assert_eq!(hits(verifier.cache()), 1);

    allow.store(false, Ordering::SeqCst);
    let refused = handshake(&client, &server);
    assert!(
        matches!(refused.server_rejection(), PeerRejected::Unauthorized(u) if u.id() == &id("spiffe://example.org/web")),
        "{:?}",
        refused.server_error
    );
    assert_eq!(
        hits(verifier.cache()),
        2,
        "the chain was a hit, and still refused"
    );

    allow.store(true, Ordering::SeqCst);
    assert!(handshake(&client, &server).ok());
    assert_eq!(hits(verifier.cache()), 3);
    assert_eq!(asked.load(Ordering::SeqCst), 4, "asked on every handshake");
}

/// Presents the client SVID's chain, signing with another key: what a peer that copied a
/// certificate (public) but not its key would do.
#[derive(Debug)]
struct StolenChain(Arc<CertifiedKey>);

impl ResolvesClientCert for StolenChain {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[test]
fn a_cached_chain_without_its_private_key_is_refused() {
    let mesh = Mesh::new();
    let (server, verifier) = mesh.server(authorize::any());
    let (client, _) = mesh.client();
    assert!(handshake(&client, &server).ok()); // the chain is now cached

    let other = mesh
        .ca
        .issue(&id("spiffe://example.org/attacker"), HOUR)
        .unwrap();
    let wrong_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        other.private_key().secret_pkcs8_der().to_vec(),
    ));
    let signer = provider().key_provider.load_private_key(wrong_key).unwrap();
    let stolen = Arc::new(CertifiedKey::new(mesh.client_svid.chain().to_vec(), signer));
    let thief = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(mesh.client().1)
        .with_client_cert_resolver(Arc::new(StolenChain(stolen)));
    let outcome = handshake(&Arc::new(thief), &server);
    assert!(!outcome.ok());
    // The chain itself was a cache hit; the handshake signature is what failed.
    assert_eq!(hits(verifier.cache()), 1);
    let err = outcome.server_error.expect("the server refused");
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                | rustls::Error::PeerMisbehaved(_)
        ),
        "{err:?}"
    );
}

#[test]
fn a_rotated_bundle_is_obeyed_at_the_next_handshake() {
    let mesh = Mesh::new();
    let (server, verifier) = mesh.server(authorize::any());
    let (client, _) = mesh.client();
    assert!(handshake(&client, &server).ok());
    assert!(handshake(&client, &server).ok());
    assert_eq!(hits(verifier.cache()), 1);

    // The root retired: only a new authority is trusted now.
    let next = Authority::new_root(td(), HOUR, KeyType::P256).unwrap();
    mesh.bundles
        .set(X509Bundle::from_authorities(td(), next.root().cloned()).unwrap());
    let refused = handshake(&client, &server);
    assert!(
        matches!(
            refused.server_rejection(),
            PeerRejected::Verify(VerifyError::UnknownIssuer)
        ),
        "{:?}",
        refused.server_error
    );
    assert_eq!(hits(verifier.cache()), 1);
}

#[test]
fn without_cache_every_handshake_verifies_in_full() {
    let mesh = Mesh::new();
    let verifier =
        SpiffeClientCertVerifier::new(mesh.bundles.clone(), authorize::any(), provider())
            .without_cache();
    assert!(verifier.cache().is_none());
    let server = tls::server_config_with_verifier(
        provider(),
        Arc::clone(&mesh.server_svid),
        Arc::new(verifier),
    )
    .unwrap();
    let (client, _) = mesh.client();
    let server = Arc::new(server);
    for _ in 0..3 {
        assert!(handshake(&client, &server).ok());
    }

    // A shared cache serves several verifiers.
    let shared = Arc::new(VerifiedChainCache::default());
    let configs: Vec<_> = (0..2)
        .map(|_| {
            let v =
                SpiffeClientCertVerifier::new(mesh.bundles.clone(), authorize::any(), provider())
                    .with_cache(Arc::clone(&shared));
            Arc::new(
                tls::server_config_with_verifier(
                    provider(),
                    Arc::clone(&mesh.server_svid),
                    Arc::new(v),
                )
                .unwrap(),
            )
        })
        .collect();
    assert!(handshake(&client, &configs[0]).ok());
    assert!(handshake(&client, &configs[1]).ok());
    assert_eq!(shared.stats().hits, 1);
}
