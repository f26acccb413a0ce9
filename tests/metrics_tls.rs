//! Handshake metrics over real TLS connections: a refused peer shows up under its reason
//! (a trust domain we hold no bundle for, an ID the authorizer refuses, an expired SVID),
//! an accepted one under `accepted`, on the side that decided.

#[path = "common/mtls.rs"]
mod mtls;

use std::sync::Arc;
use std::time::Duration;

use meshid::metrics::TlsMetrics;
use meshid::tls::{SpiffeClientCertVerifier, SpiffeServerCertVerifier};
use meshid::{authorize, Authority, BundleSet, KeyType, SpiffeId, TrustDomain, X509Bundle};
use prometheus_client::registry::Registry;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn ca(td: &str) -> Authority {
    Authority::new_root(
        TrustDomain::new(td).unwrap(),
        Duration::from_secs(600),
        KeyType::P256,
    )
    .unwrap()
}

fn bundles(cas: &[&Authority]) -> BundleSet {
    cas.iter()
        .map(|ca| {
            X509Bundle::from_authorities(ca.trust_domain().clone(), ca.root().cloned()).unwrap()
        })
        .collect()
}

/// The count of the sample `name{labels}` in `text` (0 when absent).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The count of `meshid_tls_handshakes_total{side,result}` in `text`.
fn handshakes(text: &str, side: &str, result: &str) -> u64 {
    sample(
        text,
        &format!("meshid_tls_handshakes_total{{side=\"{side}\",result=\"{result}\"}}"),
    )
}

/// The registry once the server side has decided `n` handshakes among `results` (a
/// server decides after its client's handshake has failed; at most 10 s).
fn after_server_verdicts(registry: &Registry, results: &[&str], n: u64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(registry);
        let decided: u64 = results.iter().map(|r| handshakes(&text, "server", r)).sum();
        if decided >= n || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client configuration presenting `svid`, trusting `cas` and any server ID, its
/// verifier counted by `metrics`.
fn client_config(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    cas: &[&Authority],
    svid: meshid::X509Svid,
    metrics: &TlsMetrics,
) -> Arc<rustls::ClientConfig> {
    let verifier = SpiffeServerCertVerifier::new(
        Arc::new(bundles(cas)),
        authorize::any(),
        Arc::clone(provider),
    );
    Arc::new(
        meshid::tls::client_config_with_verifier(
            Arc::clone(provider),
            Arc::new(svid),
            metrics.client_verifier(Arc::new(verifier)),
        )
        .unwrap(),
    )
}

#[test]
fn refused_peers_are_counted_by_reason_and_accepted_ones_as_accepted() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let example = ca("example.org");
    let other = ca("other.org");
    let mut registry = Registry::default();
    let metrics = TlsMetrics::register(&mut registry);

    // The server trusts example.org only, and admits only spiffe://example.org/frontend.
    let server_svid = Arc::new(
        example
            .issue(
                &id("spiffe://example.org/backend"),
                Duration::from_secs(300),
            )
            .unwrap(),
    );
    let server_verifier = SpiffeClientCertVerifier::new(
        Arc::new(bundles(&[&example])),
        authorize::exact(id("spiffe://example.org/frontend")),
        Arc::clone(&provider),
    );
    let server = meshid::tls::server_config_with_verifier(
        Arc::clone(&provider),
        server_svid,
        metrics.server_verifier(Arc::new(server_verifier)),
    )
    .unwrap();
    let addr = mtls::echo_server(Arc::new(server));

    // Clients trust both trust domains and any server ID; each decorated as the client
    // side, so the server's certificate is counted there.
    let client = |svid| client_config(&provider, &[&example, &other], svid, &metrics);
    let frontend = client(
        example
            .issue(
                &id("spiffe://example.org/frontend"),
                Duration::from_secs(300),
            )
            .unwrap(),
    );
    let intruder = client(
        example
            .issue(
                &id("spiffe://example.org/intruder"),
                Duration::from_secs(300),
            )
            .unwrap(),
    );
    let stranger = client(
        other
            .issue(&id("spiffe://other.org/frontend"), Duration::from_secs(300))
            .unwrap(),
    );

    for _ in 0..3 {
        assert_eq!(
            mtls::request(&frontend, addr).unwrap(),
            "spiffe://example.org/frontend -> spiffe://example.org/backend"
        );
    }
    for _ in 0..2 {
        mtls::request(&intruder, addr).unwrap_err();
    }
    mtls::request(&stranger, addr).unwrap_err();

    let text = after_server_verdicts(
        &registry,
        &["accepted", "not_authorized", "untrusted_trust_domain"],
        6,
    );
    let series = |side: &str, result: &str| handshakes(&text, side, result);
    assert_eq!(series("server", "accepted"), 3, "{text}");
    assert_eq!(series("server", "not_authorized"), 2, "{text}");
    assert_eq!(series("server", "untrusted_trust_domain"), 1, "{text}");
    assert_eq!(series("server", "unknown_issuer"), 0, "{text}");
    // Every client accepted the server's SVID.
    assert_eq!(series("client", "accepted"), 6, "{text}");
    assert_eq!(
        sample(
            &text,
            "meshid_tls_verification_duration_seconds_count{side=\"server\"}"
        ),
        6,
        "{text}"
    );
    // No peer's ID or serial is a label.
    assert!(
        !text.contains("intruder") && !text.contains("other.org"),
        "{text}"
    );
}

#[test]
fn an_expired_server_svid_is_counted_as_expired_on_the_client_side() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let example = ca("example.org");
    let mut registry = Registry::default();
    let metrics = TlsMetrics::register(&mut registry);
    // Issued for the minimum lifetime, presented after it ends (a store hides an
    // expired SVID; a bare one keeps presenting it).
    let short = example
        .issue(&id("spiffe://example.org/backend"), Authority::MIN_SVID_TTL)
        .unwrap();
    let server = meshid::tls::server_config(
        Arc::clone(&provider),
        Arc::new(short),
        bundles(&[&example]),
        authorize::any(),
    )
    .unwrap();
    let addr = mtls::echo_server(Arc::new(server));
    let client = client_config(
        &provider,
        &[&example],
        example
            .issue(
                &id("spiffe://example.org/frontend"),
                Duration::from_secs(300),
            )
            .unwrap(),
        &metrics,
    );
    mtls::request(&client, addr).unwrap();
    std::thread::sleep(Authority::MIN_SVID_TTL + Duration::from_secs(1));
    mtls::request(&client, addr).unwrap_err();
    let text = scrape(&registry);
    assert_eq!(
        sample(
            &text,
            "meshid_tls_handshakes_total{side=\"client\",result=\"accepted\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "meshid_tls_handshakes_total{side=\"client\",result=\"expired\"}"
        ),
        1,
        "{text}"
    );
}

/// Presents a chain with a key that is not its own: what anyone holding a copy of the
/// (public) chain can try.
#[derive(Debug)]
struct Stolen(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Stolen {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[test]
fn a_chain_presented_without_its_key_is_counted_as_a_bad_signature_not_accepted() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let example = ca("example.org");
    let mut registry = Registry::default();
    let metrics = TlsMetrics::register(&mut registry);
    let server_verifier = SpiffeClientCertVerifier::new(
        Arc::new(bundles(&[&example])),
        authorize::any(),
        Arc::clone(&provider),
    );
    let server = meshid::tls::server_config_with_verifier(
        Arc::clone(&provider),
        Arc::new(
            example
                .issue(
                    &id("spiffe://example.org/backend"),
                    Duration::from_secs(300),
                )
                .unwrap(),
        ),
        metrics.server_verifier(Arc::new(server_verifier)),
    )
    .unwrap();
    let addr = mtls::echo_server(Arc::new(server));

    // The frontend's chain, signed for with another SVID's key.
    let victim = example
        .issue(
            &id("spiffe://example.org/frontend"),
            Duration::from_secs(300),
        )
        .unwrap();
    let thief = example
        .issue(&id("spiffe://example.org/thief"), Duration::from_secs(300))
        .unwrap();
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
            thief.private_key().secret_pkcs8_der().to_vec().into(),
        ))
        .unwrap();
    let stolen = rustls::sign::CertifiedKey::new(victim.chain().to_vec(), key);
    let verifier = SpiffeServerCertVerifier::new(
        Arc::new(bundles(&[&example])),
        authorize::any(),
        Arc::clone(&provider),
    );
    let client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(metrics.client_verifier(Arc::new(verifier)))
        .with_client_cert_resolver(Arc::new(Stolen(Arc::new(stolen))));
    let client = Arc::new(client);
    mtls::request(&client, addr).unwrap_err();
    // The honest frontend, for contrast.
    let honest = client_config(&provider, &[&example], victim, &metrics);
    mtls::request(&honest, addr).unwrap();

    let text = after_server_verdicts(&registry, &["bad_signature", "accepted"], 2);
    let series = |side: &str, result: &str| handshakes(&text, side, result);
    assert_eq!(series("server", "bad_signature"), 1, "{text}");
    assert_eq!(
        series("server", "accepted"),
        1,
        "only the honest one: {text}"
    );
    // The chain itself verified both times.
    assert_eq!(
        sample(
            &text,
            "meshid_tls_verification_duration_seconds_count{side=\"server\"}"
        ),
        2,
        "{text}"
    );
    // Both clients saw the real server.
    assert_eq!(series("client", "accepted"), 2, "{text}");
}
