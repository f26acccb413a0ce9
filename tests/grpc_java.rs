//! `meshid serve workload-api` against grpc-java (Netty over epoll Unix domain sockets): the
//! stack of java-spiffe, the SPIFFE Workload API client for the JVM. Over a `unix:` target
//! grpc-java sends the socket path itself as `:authority` (`/tmp/…/api.sock`), which a strict
//! HTTP/2 server may refuse; the server must serve such a client all the same.
//!
//! Proven with the peer `tests/peers/grpc-java` (installed on first use by
//! `tests/peers/grpc-java.sh`) in two ways: java-spiffe's own `DefaultWorkloadApiClient`
//! fetches, parses and verifies the SVIDs and bundle; a plain grpc-netty call of
//! `FetchX509SVID` (no authority override) gets the SVID with the security header and
//! `INVALID_ARGUMENT` without it. The server is the CLI, run as an operator runs it.

#[path = "common/peers.rs"]
mod peers;
#[path = "common/serve_cli.rs"]
mod serve_cli;

use serve_cli::{run_within, serve, Ran, Scratch};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn grpc_java() -> PathBuf {
    peers::peer("grpc-java").join("grpc-java-peer")
}

/// Runs the peer; it gives up by itself after 30 s (exit 3), and is killed after 45.
fn run(peer: &Path, args: &[&str]) -> Ran {
    run_within(peer, args, Duration::from_secs(45))
}

#[test]
fn java_spiffe_fetches_and_verifies_every_svid_and_the_bundle() {
    let peer = grpc_java();
    let scratch = Scratch::new("gjava-spiffe");
    let server = serve(
        &scratch,
        &["spiffe://example.org/web", "spiffe://example.org/db"],
        "1h",
    );
    let addr = format!("unix:{}", server.socket.display());
    let ran = run(&peer, &["spiffe-fetch", &addr]);
    assert!(ran.success(), "{ran}");
    // java-spiffe 0.8.11 keeps only the first SVID of those sharing a hint, the empty
    // hint included (go-spiffe ignores empty hints): it sees the default SVID only, which
    // is the first the server sends.
    assert_eq!(
        ran.lines(),
        [
            "svid spiffe://example.org/web chain 1 key EC verified yes".to_owned(),
            "bundle example.org authorities 1".to_owned(),
            format!("  authority sha256 {}", scratch.ca_sha256()),
        ],
        "{ran}"
    );
}

#[test]
fn grpc_java_fetch_x509_svid_with_the_header_gets_the_svid() {
    let peer = grpc_java();
    let scratch = Scratch::new("gjava-raw");
    let server = serve(&scratch, &["spiffe://example.org/web"], "1h");
    let socket = server.socket.to_str().unwrap();
    let ran = run(&peer, &["raw-fetch", socket]);
    assert!(ran.success(), "{ran}");
    // svid <id> chain <n> x509_svid_der <n> key_der <n> bundle_der <n> hint <hint>
    let lines = ran.lines();
    assert_eq!(lines.len(), 2, "{ran}");
    let svid: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(svid.len(), 12, "{ran}");
    assert_eq!(
        svid[..4],
        ["svid", "spiffe://example.org/web", "chain", "1"],
        "{ran}"
    );
    let number = |at: usize, name: &str| -> usize {
        assert_eq!(svid[at], name, "{ran}");
        svid[at + 1].parse().unwrap()
    };
    assert!(number(4, "x509_svid_der") > 100, "{ran}");
    // A PKCS#8 EC private key is well over 100 bytes.
    assert!(number(6, "key_der") > 100, "{ran}");
    // The bundle in the SVID message is the CA certificate's DER.
    assert_eq!(number(8, "bundle_der"), scratch.ca_der().len(), "{ran}");
    assert_eq!(lines[1], "crls 0 federated_bundles 0", "{ran}");
}

#[test]
fn grpc_java_fetch_x509_svid_without_the_header_is_invalid_argument() {
    let peer = grpc_java();
    let scratch = Scratch::new("gjava-nohdr");
    let server = serve(&scratch, &["spiffe://example.org/web"], "1h");
    let socket = server.socket.to_str().unwrap();
    let ran = run(&peer, &["raw-fetch", socket, "--no-header"]);
    // Exit 4: the call ended with a gRPC status, printed as "status <code> <description>".
    assert_eq!(ran.code(), Some(4), "{ran}");
    let lines = ran.lines();
    assert_eq!(lines.len(), 1, "{ran}");
    assert!(lines[0].starts_with("status INVALID_ARGUMENT "), "{ran}");
    assert!(lines[0].contains("security header"), "{ran}");
}
