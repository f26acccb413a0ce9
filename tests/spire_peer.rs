//! SPIRE's own Workload API tools (`spire-agent api ...` of SPIRE v1.13.3, go-spiffe v2
//! over grpc-go; `tests/peers/spire.sh`) as clients of `meshid serve workload-api`, run as
//! an operator runs it: `fetch x509 -write` (the files it writes accepted by
//! `openssl verify`), `watch` across rotations, `fetch jwt` and `validate jwt`; and of
//! `meshid serve agent`, which attests SPIRE's tool as it attests any caller.

#![cfg(all(unix, feature = "cli"))]

#[path = "common/peers.rs"]
mod peers;
#[path = "common/serve_cli.rs"]
mod serve_cli;
#[path = "common/spire.rs"]
mod spire;
// Not every helper of it is used here.
#[allow(unused_imports)]
#[path = "common/workloads.rs"]
mod workloads;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serve_cli::{run_within, serve, Ran, Scratch};

fn spire_agent() -> PathBuf {
    spire::spire_dir().join("spire-agent")
}

/// `spire-agent api ARGS -socketPath SOCKET`, bounded in time.
fn api(socket: &Path, args: &[&str], limit: Duration) -> Ran {
    let socket = socket.to_str().unwrap();
    let mut all: Vec<&str> = vec!["api"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-socketPath", socket]);
    run_within(&spire_agent(), &all, limit)
}

/// The values of `SPIFFE ID:` lines in SPIRE's pretty output.
fn spiffe_ids(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SPIFFE ID:"))
        .map(str::trim)
        .collect()
}

fn openssl_verify(bundle: &Path, chain: &Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(bundle)
        .arg(chain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        chain.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spire_agent_fetches_x509_svids_from_meshid_and_openssl_accepts_what_it_writes() {
    let scratch = Scratch::new("spx-fetch");
    let ids = ["spiffe://example.org/web", "spiffe://example.org/db"];
    let server = serve(&scratch, &ids, "1h");
    let out = scratch.0.join("written");
    std::fs::create_dir(&out).unwrap();
    let ran = api(
        &server.socket,
        &["fetch", "x509", "-write", out.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(ran.success(), "{ran}");
    assert_eq!(spiffe_ids(&ran.stdout), ids, "{ran}");
    // One chain, key and bundle per SVID, as SPIRE names them; each chain verifies
    // against the bundle written beside it, and the key matches the leaf.
    for i in 0..ids.len() {
        let (svid, key, bundle) = (
            out.join(format!("svid.{i}.pem")),
            out.join(format!("svid.{i}.key")),
            out.join(format!("bundle.{i}.pem")),
        );
        openssl_verify(&bundle, &svid);
        let pubkey = |args: &[&str], file: &Path| {
            let out = Command::new("openssl")
                .args(args)
                .arg(file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        assert_eq!(
            pubkey(&["pkey", "-pubout", "-in"], &key),
            pubkey(&["x509", "-noout", "-pubkey", "-in"], &svid),
            "svid.{i}.key does not match svid.{i}.pem"
        );
    }
    assert_eq!(
        std::fs::read(out.join("bundle.0.pem")).unwrap(),
        std::fs::read(scratch.0.join("ca/ca.pem")).unwrap(),
        "the bundle SPIRE wrote is not the CA meshid serves"
    );
}

#[test]
fn spire_agent_watches_meshid_rotate() {
    let scratch = Scratch::new("spx-watch");
    // Renewed at about half of 6 s: at least three updates in 12 s.
    let server = serve(&scratch, &["spiffe://example.org/web"], "6s");
    let ran = api(&server.socket, &["watch"], Duration::from_secs(12));
    // `watch` runs until killed: the deadline ends it.
    assert!(ran.status.is_none(), "watch exited early: {ran}");
    let updates = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("Received "))
        .count();
    assert!(updates >= 3, "{updates} updates in 12 s\n{ran}");
    let valid_after: BTreeSet<&str> = ran
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SVID Valid After:"))
        .collect();
    assert!(valid_after.len() >= 2, "no new SVID seen\n{ran}");
    assert!(
        spiffe_ids(&ran.stdout)
            .iter()
            .all(|id| *id == "spiffe://example.org/web"),
        "{ran}"
    );
}

#[test]
fn spire_agent_fetches_and_validates_meshid_jwt_svids() {
    let scratch = Scratch::new("spx-jwt");
    let server = serve(&scratch, &["spiffe://example.org/web"], "1h");
    let ran = api(
        &server.socket,
        &["fetch", "jwt", "-audience", "spire-tool"],
        Duration::from_secs(30),
    );
    assert!(ran.success(), "{ran}");
    // token(spiffe://example.org/web):\n\t<token>\nbundle(spiffe://example.org):\n\t<jwks>
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "token(spiffe://example.org/web):")
        .unwrap_or_else(|| panic!("no token for web\n{ran}"));
    let token = lines[at + 1].trim();
    assert_eq!(token.split('.').count(), 3, "{ran}");
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "bundle(spiffe://example.org):"),
        "{ran}"
    );

    let ok = api(
        &server.socket,
        &["validate", "jwt", "-audience", "spire-tool", "-svid", token],
        Duration::from_secs(30),
    );
    assert!(ok.success(), "{ok}");
    assert!(ok.stdout.contains("SVID is valid."), "{ok}");
    assert!(
        ok.stdout.contains("spiffe://example.org/web"),
        "validated for the wrong ID\n{ok}"
    );

    // Another audience, and a token with one signature byte changed, are refused.
    let wrong = api(
        &server.socket,
        &[
            "validate",
            "jwt",
            "-audience",
            "someone-else",
            "-svid",
            token,
        ],
        Duration::from_secs(30),
    );
    assert!(!wrong.success(), "{wrong}");
    assert!(format!("{wrong}").contains("audience"), "{wrong}");
    let mut forged = token.to_owned().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let bad = api(
        &server.socket,
        &[
            "validate",
            "jwt",
            "-audience",
            "spire-tool",
            "-svid",
            &forged,
        ],
        Duration::from_secs(30),
    );
    assert!(!bad.success(), "{bad}");
    assert!(format!("{bad}").contains("signature"), "{bad}");
}

#[test]
fn spire_agent_is_attested_by_meshid_serve_agent() {
    let scratch = workloads::Scratch::new("spx-agent");
    let uid = workloads::effective_uid();
    // One entry for the uid SPIRE's tool runs as, one for another: only the first is its.
    scratch.write_entries(&format!(
        r#"
[[entry]]
spiffe_id = "spiffe://example.org/spire-tool"
selectors = ["unix:uid:{uid}"]

[[entry]]
spiffe_id = "spiffe://example.org/someone-else"
selectors = ["unix:uid:{}"]
"#,
        uid + 4242
    ));
    let _agent = workloads::start_agent(&scratch, 2);
    let socket = scratch.socket();
    let ran = api(&socket, &["fetch", "x509"], Duration::from_secs(30));
    assert!(ran.success(), "{ran}");
    assert_eq!(
        spiffe_ids(&ran.stdout),
        ["spiffe://example.org/spire-tool"],
        "{ran}"
    );
    let jwt = api(
        &socket,
        &["fetch", "jwt", "-audience", "attested"],
        Duration::from_secs(30),
    );
    assert!(jwt.success(), "{jwt}");
    assert!(
        jwt.stdout
            .contains("token(spiffe://example.org/spire-tool):")
            && !jwt.stdout.contains("someone-else"),
        "{jwt}"
    );
    // Asking for the other entry's token is refused.
    let other = api(
        &socket,
        &[
            "fetch",
            "jwt",
            "-audience",
            "attested",
            "-spiffeID",
            "spiffe://example.org/someone-else",
        ],
        Duration::from_secs(30),
    );
    assert!(!other.success(), "{other}");
    assert!(format!("{other}").contains("PermissionDenied"), "{other}");
}
