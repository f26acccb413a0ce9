//! meshid's CA under a real SPIRE server (v1.13.3, `tests/peers/spire.sh`; see
//! `common/spire.rs`), and bundles crossing between them:
//!
//! - SPIRE's `disk` UpstreamAuthority pointed at a root made by `meshid ca init`, and at an
//!   intermediate made by `meshid ca intermediate`: SPIRE's SVIDs verify against the meshid
//!   root alone (`verify_x509_svid`, `meshid verify`), and a workload holding a SPIRE SVID
//!   and one holding a meshid SVID of the same trust domain do mTLS both ways.
//! - `spire-server bundle show -format spiffe` read as a meshid `SpiffeBundle`; a bundle
//!   written by `meshid ca init` for another trust domain set with `spire-server bundle
//!   set -format spiffe`, and delivered by SPIRE's agent, X.509 and JWT, to a workload whose
//!   entry federates with it, where meshid's client and validator use it.

#![cfg(all(unix, feature = "workload-api", feature = "cli"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshid::workload::{Endpoint, WorkloadApiClient, X509Context};
use meshid::{
    authorize, tls, Authority, BundleSet, JwtValidator, SpiffeBundle, SpiffeId, TrustDomain,
    X509Bundle,
};

#[path = "common/mtls.rs"]
mod mtls;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/spire.rs"]
mod spire;

use spire::{ServerConfig, Spire, Upstream};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

/// A scratch directory for meshid's CA files, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `meshid ARGS` in `dir`, which must succeed; its standard output.
fn meshid(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(MESHID)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshid {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn fetch_context(spire: &Spire) -> X509Context {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let endpoint = Endpoint::parse(&spire.endpoint()).unwrap();
        let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
        client.fetch_x509_context().await.unwrap()
    })
}

#[test]
fn spire_server_issues_under_a_meshid_root() {
    let dir = Dir::new("up-root");
    meshid(
        &dir.0,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    let upstream = Upstream {
        cert: dir.0.join("ca/ca.pem"),
        key: dir.0.join("ca/ca.key"),
        bundle: None,
    };
    under_meshid_ca("up-root", &dir.0, upstream, &dir.0.join("ca/ca.pem"), 2);
}

#[test]
fn spire_server_issues_under_a_meshid_intermediate() {
    let dir = Dir::new("up-int");
    meshid(
        &dir.0,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    meshid(
        &dir.0,
        &["ca", "intermediate", "--ca", "ca", "--out", "int"],
    );
    let upstream = Upstream {
        cert: dir.0.join("int/ca.pem"),
        key: dir.0.join("int/ca.key"),
        bundle: Some(dir.0.join("int/bundle.pem")),
    };
    // meshid's own workload is issued by the intermediate too: its chain for the
    // Authority is the intermediate, then the root.
    let chain = dir.0.join("int-chain.pem");
    let mut pem = std::fs::read(dir.0.join("int/ca.pem")).unwrap();
    pem.extend(std::fs::read(dir.0.join("int/bundle.pem")).unwrap());
    std::fs::write(&chain, pem).unwrap();
    under_meshid_ca("up-int", &dir.0, upstream, &chain, 3);
}

/// SPIRE with `upstream`; `issuer_chain` (with the `key` of `upstream`) is the meshid CA
/// issuing meshid's own workload; `dir/ca/ca.pem` is the root both chain to; SPIRE's SVIDs
/// come with `chain_len` certificates.
fn under_meshid_ca(
    tag: &str,
    dir: &Path,
    upstream: Upstream,
    issuer_chain: &Path,
    chain_len: usize,
) {
    let root_pem = std::fs::read(dir.join("ca/ca.pem")).unwrap();
    let root = X509Bundle::parse_pem(td("example.org"), &root_pem).unwrap();
    let key_pem = std::fs::read(&upstream.key).unwrap();
    let spire = Spire::start(
        tag,
        &ServerConfig {
            upstream: Some(upstream),
            ..ServerConfig::default()
        },
    );
    let spire_id = SpiffeId::new(&spire.entry("/spire-workload", 300, &[])).unwrap();
    spire.wait_for_ids(&[spire_id.as_str()]);

    // SPIRE's SVID chains to the meshid root, and SPIRE publishes that root.
    let ctx = fetch_context(&spire);
    let svid = ctx.svid_for(&spire_id).expect("SPIRE's SVID").clone();
    // The leaf, SPIRE's server CA, and the meshid intermediate when there is one.
    assert_eq!(svid.chain().len(), chain_len, "SPIRE's chain");
    let spire_bundle = ctx.bundles().get(&td("example.org")).unwrap();
    assert!(
        spire_bundle.contains(&root.authorities()[0]),
        "SPIRE's bundle lacks the meshid root"
    );
    let mut meshid_bundles = BundleSet::new();
    meshid_bundles.insert(root.clone());
    let verified = meshid::verify_x509_svid(
        svid.chain(),
        &meshid_bundles,
        SystemTime::now(),
        meshid::ring_algorithms(),
    )
    .unwrap_or_else(|e| panic!("SPIRE's SVID does not verify against the meshid root: {e}"));
    assert_eq!(verified.id(), &spire_id);
    // ... and so says the CLI, given only the meshid root.
    let chain_file = dir.join(format!("{tag}-spire-svid.pem"));
    std::fs::write(&chain_file, svid.chain_pem()).unwrap();
    let printed = meshid(
        dir,
        &[
            "verify",
            "--bundle",
            "example.org=ca/ca.pem",
            chain_file.to_str().unwrap(),
        ],
    );
    assert!(printed.contains(spire_id.as_str()), "{printed}");

    // A meshid workload of the same trust domain, issued by the meshid CA directly.
    let ca = Authority::from_pem(&std::fs::read(issuer_chain).unwrap(), &key_pem, None).unwrap();
    let meshid_id = SpiffeId::new("spiffe://example.org/meshid-workload").unwrap();
    let meshid_svid = Arc::new(ca.issue(&meshid_id, Duration::from_secs(600)).unwrap());
    let spire_svid = Arc::new(svid.as_ref().clone());
    let spire_bundles = ctx.bundles().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // The SPIRE workload calls the meshid workload, and the other way round; each trusts
    // only its own side's bundle.
    let meshid_server = mtls::echo_server(Arc::new(
        tls::server_config(
            Arc::clone(&provider),
            Arc::clone(&meshid_svid),
            meshid_bundles.clone(),
            authorize::exact(spire_id.clone()),
        )
        .unwrap(),
    ));
    let spire_client = Arc::new(
        tls::client_config(
            Arc::clone(&provider),
            Arc::clone(&spire_svid),
            spire_bundles.clone(),
            authorize::exact(meshid_id.clone()),
        )
        .unwrap(),
    );
    assert_eq!(
        mtls::request(&spire_client, meshid_server).unwrap(),
        format!("{spire_id} -> {meshid_id}")
    );
    let spire_server = mtls::echo_server(Arc::new(
        tls::server_config(
            Arc::clone(&provider),
            spire_svid,
            spire_bundles,
            authorize::exact(meshid_id.clone()),
        )
        .unwrap(),
    ));
    let meshid_client = Arc::new(
        tls::client_config(
            provider,
            meshid_svid,
            meshid_bundles,
            authorize::exact(spire_id.clone()),
        )
        .unwrap(),
    );
    assert_eq!(
        mtls::request(&meshid_client, spire_server).unwrap(),
        format!("{meshid_id} -> {spire_id}")
    );
}

#[test]
fn bundles_cross_between_spire_and_meshid() {
    let spire = Spire::start("bundles", &ServerConfig::default());

    // SPIRE's own bundle, as a SPIFFE bundle document, read by meshid: the same roots as
    // its PEM form, and its JWT keys.
    let json = spire.server_ok(&["bundle", "show", "-format", "spiffe"]);
    let shown = SpiffeBundle::parse(td("example.org"), json.as_bytes())
        .unwrap_or_else(|e| panic!("SPIRE's bundle refused: {e}\n{json}"));
    let pem = spire.server_ok(&["bundle", "show", "-format", "pem"]);
    let roots = X509Bundle::parse_pem(td("example.org"), pem.as_bytes()).unwrap();
    assert_eq!(shown.x509_authorities(), roots.authorities());
    assert!(!shown.jwt_authorities().is_empty(), "{json}");
    let spire_json = spire.dir.join("spire-bundle.json");
    std::fs::write(&spire_json, &json).unwrap();

    // A bundle meshid wrote for other.org, set into SPIRE as a federated bundle.
    let dir = Dir::new("bundles");
    meshid(
        &dir.0,
        &[
            "ca",
            "init",
            "--trust-domain",
            "other.org",
            "--out",
            "other",
        ],
    );
    let ours = std::fs::read(dir.0.join("other/bundle.json")).unwrap();
    let ours = SpiffeBundle::parse(td("other.org"), &ours).unwrap();
    spire.server_ok(&[
        "bundle",
        "set",
        "-format",
        "spiffe",
        "-id",
        "spiffe://other.org",
        "-path",
        dir.0.join("other/bundle.json").to_str().unwrap(),
    ]);
    let listed = spire.server_ok(&[
        "bundle",
        "list",
        "-format",
        "spiffe",
        "-id",
        "spiffe://other.org",
    ]);
    let listed = SpiffeBundle::parse(td("other.org"), listed.as_bytes())
        .unwrap_or_else(|e| panic!("SPIRE's copy of our bundle refused: {e}\n{listed}"));
    assert_eq!(listed.x509_authorities(), ours.x509_authorities());
    assert_eq!(listed.jwt_authorities(), ours.jwt_authorities());

    // A workload whose entry federates with other.org receives it from SPIRE's agent.
    let id = spire.entry("/federated", 300, &["-federatesWith", "spiffe://other.org"]);
    spire.wait_for_ids(&[&id]);
    let ctx = fetch_context(&spire);
    let delivered = ctx
        .bundles()
        .get(&td("other.org"))
        .expect("SPIRE did not deliver the federated bundle");
    assert_eq!(delivered.authorities(), ours.x509_authorities());
    assert_eq!(
        ctx.bundles().get(&td("example.org")).unwrap().authorities(),
        roots.authorities()
    );
    // `meshid verify` takes SPIRE's bundle document as it is.
    let chain = dir.0.join("federated.pem");
    std::fs::write(&chain, ctx.default_svid().chain_pem()).unwrap();
    let bundle_arg = format!("example.org={}", spire_json.display());
    let printed = meshid(
        &dir.0,
        &["verify", "--bundle", &bundle_arg, chain.to_str().unwrap()],
    );
    assert!(printed.contains(&id), "{printed}");

    // Its JWT key too: a token `meshid jwt mint` signed for other.org validates with
    // meshid's validator against the JWT bundles SPIRE's agent delivered.
    let token = meshid(
        &dir.0,
        &[
            "jwt",
            "mint",
            "--ca",
            "other",
            "--id",
            "spiffe://other.org/caller",
            "--audience",
            "spire-fed",
        ],
    );
    let token = token.trim();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jwt_bundles = rt.block_on(async {
        let endpoint = Endpoint::parse(&spire.endpoint()).unwrap();
        let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
        client.fetch_jwt_bundles().await.unwrap()
    });
    let validated = JwtValidator::new("spire-fed", meshid::ring_algorithms())
        .validate(token, &jwt_bundles, SystemTime::now())
        .unwrap_or_else(|e| panic!("a meshid token refused against SPIRE's bundles: {e}"));
    assert_eq!(validated.id().as_str(), "spiffe://other.org/caller");
}
