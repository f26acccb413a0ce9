//! meshid as the client of a real SPIRE (v1.13.3, `tests/peers/spire.sh`; see
//! `common/spire.rs`): meshid's `WorkloadApiClient`, `X509Source`, `JwtSource` and
//! `meshid fetch x509` against SPIRE agent's socket, and two meshid workloads identified by
//! SPIRE doing mTLS across SPIRE's rotations. `tests/spire_envoy.rs` bridges SPIRE to
//! Envoy, `tests/spire_peer.rs` runs SPIRE's tools against meshid's server, and
//! `tests/spire_upstream.rs` puts SPIRE's server under a meshid CA.

#![cfg(all(unix, feature = "workload-api", feature = "cli"))]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64ct::Encoding as _;

use meshid::workload::{
    Endpoint, JwtSource, JwtSourceOptions, Pick, WorkloadApiClient, X509Source, X509SourceOptions,
};
use meshid::{authorize, tls, JwtValidator, SpiffeId, SvidSource, TrustDomain};

#[path = "common/mtls.rs"]
mod mtls;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/spire.rs"]
mod spire;

use spire::{ServerConfig, Spire};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn endpoint(spire: &Spire) -> Endpoint {
    Endpoint::parse(&spire.endpoint()).unwrap()
}

/// A source of `id` from SPIRE's agent.
fn source(rt: &tokio::runtime::Runtime, spire: &Spire, id: &SpiffeId) -> Arc<X509Source> {
    let options = X509SourceOptions::default()
        .pick(Pick::Id(id.clone()))
        .initial_sync_timeout(Duration::from_secs(30));
    Arc::new(
        rt.block_on(X509Source::new(endpoint(spire), options))
            .unwrap(),
    )
}

#[test]
fn meshid_client_fetches_and_verifies_spire_svids_and_jwt_svids() {
    let spire = Spire::start("client", &ServerConfig::default());
    let frontend = spire.entry("/frontend", 60, &[]);
    let backend = spire.entry("/backend", 60, &[]);
    spire.wait_for_ids(&[&frontend, &backend]);
    let (frontend, backend) = (id(&frontend), id(&backend));
    let rt = runtime();

    // X.509: both SVIDs, each verifying against the bundle SPIRE sent with it (meshid's
    // client verifies before it accepts; this checks again, by the public API).
    let ctx = rt.block_on(async {
        let mut client = WorkloadApiClient::connect(&endpoint(&spire)).await.unwrap();
        client.fetch_x509_context().await.unwrap()
    });
    let served: BTreeSet<String> = ctx.svids().map(|s| s.id().to_string()).collect();
    assert_eq!(
        served,
        BTreeSet::from([frontend.to_string(), backend.to_string()])
    );
    let td = TrustDomain::new("example.org").unwrap();
    assert!(
        ctx.bundles().get(&td).is_some(),
        "no bundle for example.org"
    );
    for svid in ctx.svids() {
        let verified = meshid::verify_x509_svid(
            svid.chain(),
            ctx.bundles(),
            SystemTime::now(),
            meshid::ring_algorithms(),
        )
        .unwrap();
        assert_eq!(verified.id(), svid.id());
    }

    jwt_svids_from_spire(&rt, &spire, &frontend, &backend);

    // The CLI: `meshid fetch x509` prints both IDs and writes the default SVID, which
    // openssl verifies against the bundle it wrote.
    let out_dir = spire.dir.join("fetched");
    let out = Command::new(MESHID)
        .args(["fetch", "x509", "--socket", &spire.endpoint(), "--out-dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in [&frontend, &backend] {
        assert!(stdout.contains(&format!("svid {id}")), "{stdout}");
    }
    let verify = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(out_dir.join("bundle.pem"))
        .arg(out_dir.join("svid.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn two_meshid_workloads_identified_by_spire_keep_mtls_across_its_rotations() {
    let spire = Spire::start("mtls", &ServerConfig::default());
    // 20 s, backdated 10 s by SPIRE: renewed at each of the agent's syncs (every 5 s).
    let frontend = spire.entry("/frontend", 20, &[]);
    let backend = spire.entry("/backend", 20, &[]);
    spire.wait_for_ids(&[&frontend, &backend]);
    let (frontend, backend) = (id(&frontend), id(&backend));
    let rt = runtime();
    let client_source = source(&rt, &spire, &frontend);
    let server_source = source(&rt, &spire, &backend);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = Arc::new(
        tls::server_config(
            Arc::clone(&provider),
            Arc::clone(&server_source),
            Arc::clone(&server_source),
            authorize::exact(frontend.clone()),
        )
        .unwrap(),
    );
    let client = Arc::new(
        tls::client_config(
            provider,
            Arc::clone(&client_source),
            Arc::clone(&client_source),
            authorize::exact(backend.clone()),
        )
        .unwrap(),
    );
    let addr = mtls::echo_server(server);

    // Requests until each side has held at least four SVIDs (three SPIRE rotations).
    let (mut requests, mut failures) = (0u32, Vec::new());
    let (mut client_serials, mut server_serials) = (BTreeSet::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    while client_serials.len() < 4 || server_serials.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "SPIRE rotated too few SVIDs in 90 s: client {}, server {} ({requests} requests)\n{}",
            client_serials.len(),
            server_serials.len(),
            spire.log_tail("agent.log")
        );
        requests += 1;
        match mtls::request(&client, addr) {
            Ok(line) => assert_eq!(line, format!("{frontend} -> {backend}")),
            Err(e) => failures.push(e),
        }
        client_serials.insert(client_source.x509_svid().unwrap().leaf().to_vec());
        server_serials.insert(server_source.x509_svid().unwrap().leaf().to_vec());
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{requests} requests, {} client and {} server SVIDs from SPIRE",
        client_serials.len(),
        server_serials.len()
    );
    assert!(failures.is_empty(), "failed handshakes: {failures:?}");
    assert!(client_source.status().rejected == 0 && server_source.status().rejected == 0);
}

/// SPIRE's JWT-SVIDs validate with meshid's validator against the JWT bundles SPIRE
/// publishes; SPIRE's ValidateJWTSVID agrees, and a `JwtSource` does the same.
fn jwt_svids_from_spire(
    rt: &tokio::runtime::Runtime,
    spire: &Spire,
    frontend: &SpiffeId,
    backend: &SpiffeId,
) {
    let audience = vec!["spire-test".to_owned()];
    let (token, bundles, (validated_by_spire, _claims)) = rt.block_on(async {
        let mut client = WorkloadApiClient::connect(&endpoint(spire)).await.unwrap();
        let tokens = client
            .fetch_jwt_svids(&audience, Some(frontend))
            .await
            .unwrap();
        assert_eq!(tokens.len(), 1);
        let bundles = client.fetch_jwt_bundles().await.unwrap();
        let token = tokens[0].token().to_owned();
        let by_spire = client
            .validate_jwt_svid(&token, "spire-test")
            .await
            .unwrap();
        (token, bundles, by_spire)
    });
    assert_eq!(&validated_by_spire, frontend);
    let validator = JwtValidator::new("spire-test", meshid::ring_algorithms());
    let svid = validator
        .validate(&token, &bundles, SystemTime::now())
        .unwrap();
    assert_eq!(svid.id(), frontend);
    let other = JwtValidator::new("someone-else", meshid::ring_algorithms());
    assert!(
        other.validate(&token, &bundles, SystemTime::now()).is_err(),
        "a token for another audience was accepted"
    );
    let jwt_source = rt
        .block_on(JwtSource::new(
            endpoint(spire),
            JwtSourceOptions::default().initial_sync_timeout(Duration::from_secs(30)),
        ))
        .unwrap();
    let svid = rt
        .block_on(jwt_source.fetch_jwt_svid(&audience, Some(backend)))
        .unwrap();
    assert_eq!(svid.id(), backend);
    assert_eq!(
        jwt_source
            .validate(svid.token(), "spire-test")
            .unwrap()
            .id(),
        backend
    );
    rt.block_on(jwt_source.shutdown());

    // The CLI: `meshid jwt validate` takes the token and the JWT bundle exactly as SPIRE's
    // own `spire-agent api fetch jwt` prints them (a JWK Set whose keys have no `use`).
    let out = Command::new(spire.agent_binary())
        .args([
            "api",
            "fetch",
            "jwt",
            "-audience",
            "spire-cli",
            "-output",
            "json",
        ])
        .args(["-spiffeID", backend.as_str(), "-socketPath"])
        .arg(&spire.agent_socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = answer[0]["svids"][0]["svid"].as_str().unwrap();
    let jwks = answer[1]["bundles"]["spiffe://example.org"]
        .as_str()
        .unwrap();
    let jwks = base64ct::Base64::decode_vec(jwks).unwrap();
    assert!(!String::from_utf8_lossy(&jwks).contains("\"use\""));
    let jwks_file = spire.dir.join("spire-jwks.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    let validate = |audience: &str| {
        Command::new(MESHID)
            .args([
                "jwt",
                "validate",
                "--trust-domain",
                "example.org",
                "--bundle",
            ])
            .arg(&jwks_file)
            .args(["--audience", audience, token])
            .output()
            .unwrap()
    };
    let ok = validate("spire-cli");
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains(backend.as_str()));
    let wrong = validate("someone-else");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("audience"),
        "{wrong:?}"
    );
}
