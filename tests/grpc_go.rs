//! `meshid serve workload-api` against go-spiffe v2 (over grpc-go), the Workload API client
//! most SPIFFE workloads in Go use: a one-shot `FetchX509Context` gets the SVIDs and bundle
//! the server holds, verified by go-spiffe itself, and both a `WatchX509Context` and a watching
//! `X509Source` see the server rotate the SVID. The peer is `tests/peers/go-spiffe` (installed on first use by
//! `tests/peers/go-spiffe.sh`); the server is the CLI, run as an operator runs it.
//!
//! grpc-go sends `:authority: localhost` over a `unix:` target, so this stack is the control
//! for `tests/grpc_java.rs`, whose client sends the socket path instead.

#[path = "common/peers.rs"]
mod peers;
#[path = "common/serve_cli.rs"]
mod serve_cli;

use serve_cli::{meshid_not_afters, run_within, serve, Scratch};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

fn go_spiffe() -> PathBuf {
    peers::peer("go-spiffe").join("go-spiffe-peer")
}

#[test]
fn go_spiffe_fetches_and_verifies_every_svid_and_the_bundle() {
    let peer = go_spiffe();
    let scratch = Scratch::new("ggo-fetch");
    let server = serve(
        &scratch,
        &["spiffe://example.org/web", "spiffe://example.org/db"],
        "1h",
    );
    let addr = format!("unix://{}", server.socket.display());
    let ran = run_within(
        &peer,
        &["fetch", "-addr", &addr, "-timeout", "20s"],
        Duration::from_secs(30),
    );
    assert!(ran.success(), "{ran}");

    // The same SVIDs, in the same order, as meshid's own client sees them.
    let not_afters = meshid_not_afters(&server.socket);
    assert_eq!(not_afters.len(), 2, "{not_afters:?}");
    assert_eq!(
        ran.lines(),
        [
            format!(
                "svid spiffe://example.org/web chain 1 not_after {} verified yes",
                not_afters[0]
            ),
            format!(
                "svid spiffe://example.org/db chain 1 not_after {} verified yes",
                not_afters[1]
            ),
            "bundle example.org authorities 1".to_owned(),
            format!("  authority sha256 {}", scratch.ca_sha256()),
        ],
        "{ran}"
    );
}

#[test]
fn go_spiffe_watch_sees_the_server_rotate_the_svid() {
    sees_rotation("watch");
}

#[test]
fn go_spiffe_x509_source_follows_the_server_across_a_rotation() {
    sees_rotation("x509source");
}

/// Runs the peer's `mode` (`watch`: `WatchX509Context`; `x509source`: a watching
/// `X509Source`) against a server whose SVIDs rotate, until it has seen two.
fn sees_rotation(mode: &str) {
    let peer = go_spiffe();
    let scratch = Scratch::new(&format!("ggo-{mode}"));
    // A 6 s SVID is renewed at about 3 s.
    let server = serve(&scratch, &["spiffe://example.org/web"], "6s");
    let addr = format!("unix://{}", server.socket.display());
    let ran = run_within(
        &peer,
        &[mode, "-addr", &addr, "-n", "2", "-timeout", "30s"],
        Duration::from_secs(40),
    );
    assert!(ran.success(), "{ran}");

    // update <n> id <id> serial <hex> not_after <time>
    let updates: Vec<Vec<&str>> = ran.lines().iter().map(|l| l.split(' ').collect()).collect();
    assert!(updates.len() >= 2, "{ran}");
    for (i, u) in updates.iter().enumerate() {
        assert_eq!(u.len(), 8, "{ran}");
        assert_eq!(u[0], "update", "{ran}");
        assert_eq!(u[2..4], ["id", "spiffe://example.org/web"], "{ran}");
        assert_eq!(u[4], "serial", "{ran}");
        assert_eq!(u[6], "not_after", "{ran}");
        // The count of distinct SVIDs never goes down and ends at 2.
        let seen: usize = u[1].parse().unwrap();
        assert!((1..=2).contains(&seen), "{ran}");
        if i + 1 == updates.len() {
            assert_eq!(seen, 2, "{ran}");
        }
    }
    let serials: BTreeSet<&str> = updates.iter().map(|u| u[5]).collect();
    assert_eq!(serials.len(), 2, "two distinct serials: {ran}");
    // The renewed SVID expires later than the first (RFC 3339 in UTC sorts as text).
    let first = updates.first().unwrap()[7];
    let last = updates.last().unwrap()[7];
    assert!(last > first, "{first} then {last}: {ran}");
}
