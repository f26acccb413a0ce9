//! `meshid serve workload-api --ca DIR` serving JWT-SVIDs to clients nobody here wrote:
//! the `spiffe` crate's Workload API client, its `JwtSource` and its verifier; and
//! `meshid fetch jwt` against the same server.

#![cfg(unix)]

use std::process::Command;

#[path = "common/serve_cli.rs"]
mod serve_cli;

use serve_cli::{serve, Scratch};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");
const WEB: &str = "spiffe://example.org/web";
const DB: &str = "spiffe://example.org/db";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spiffe_crate_fetches_and_verifies_meshid_jwt_svids() {
    let scratch = Scratch::new("jwt-spiffe");
    let serving = serve(&scratch, &[WEB, DB], "1h");
    let endpoint = format!("unix://{}", serving.socket.display());
    let client = spiffe::WorkloadApiClient::connect_to(&endpoint)
        .await
        .unwrap();

    let svid = client.fetch_jwt_svid(["api"], None).await.unwrap();
    assert_eq!(
        svid.spiffe_id().to_string(),
        WEB,
        "the default identity first"
    );
    assert_eq!(svid.audience(), ["api"]);
    let db = spiffe::SpiffeId::new(DB).unwrap();
    let picked = client.fetch_jwt_svid(["api"], Some(&db)).await.unwrap();
    assert_eq!(picked.spiffe_id(), &db);

    // The bundles it fetches are the CA directory's bundle.json's JWT keys, and its
    // verifier accepts meshid's tokens with them.
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = bundles.get(&td).expect("example.org's JWT bundle");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.0.join("ca/bundle.json")).unwrap()).unwrap();
    let kid = on_disk["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["use"] == "jwt-svid")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(bundle.find_jwt_authority(&kid).is_some(), "kid {kid}");
    let verified = spiffe::JwtSvid::parse_and_validate(svid.token(), &bundles, &["api"]).unwrap();
    assert_eq!(verified.spiffe_id().to_string(), WEB);
    assert!(spiffe::JwtSvid::parse_and_validate(svid.token(), &bundles, &["other"]).is_err());

    // Server-side validation through its client.
    let validated = client
        .validate_jwt_token("api", svid.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id().to_string(), WEB);
    assert!(client
        .validate_jwt_token("nope", svid.token())
        .await
        .is_err());

    // Its JwtSource: bundles kept from the stream, tokens fetched through it.
    let source = spiffe::JwtSource::builder()
        .endpoint(&endpoint)
        .build()
        .await
        .unwrap();
    let from_source = source.fetch_jwt_svid(["api", "more"]).await.unwrap();
    assert_eq!(from_source.spiffe_id().to_string(), WEB);
    let set = source.bundle_set().unwrap();
    assert!(set.get(&td).is_some());
    spiffe::JwtSvid::parse_and_validate(from_source.token(), &source, &["more"]).unwrap();
    source.shutdown().await;
}

#[test]
fn meshid_fetch_jwt_prints_one_token_per_line_and_the_bundles() {
    let scratch = Scratch::new("jwt-fetch");
    let serving = serve(&scratch, &[WEB, DB], "1h");
    let socket = format!("unix://{}", serving.socket.display());
    let run = |args: &[&str]| {
        let out = Command::new(MESHID)
            .args(["fetch", "jwt", "--socket", &socket, "--timeout", "20s"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--audience", "a", "--audience", "b"]);
    assert_eq!(code, Some(0), "{err}");
    let tokens: Vec<&str> = out.lines().collect();
    assert_eq!(tokens.len(), 2);
    // Each validates with `meshid jwt validate` against the CA directory's bundle.json.
    for (token, want) in tokens.iter().zip([WEB, DB]) {
        let out = Command::new(MESHID)
            .args([
                "jwt",
                "validate",
                "--trust-domain",
                "example.org",
                "--bundle",
            ])
            .arg(scratch.0.join("ca/bundle.json"))
            .args(["--audience", "b", token])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(want));
    }
    let (code, out, _) = run(&["--audience", "a", "--spiffe-id", DB]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 1);
    let (code, _, err) = run(&["--audience", "a", "--spiffe-id", "spiffe://example.org/x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no identity issued"), "{err}");
    let (code, out, err) = run(&["--bundles"]);
    assert_eq!(code, Some(0), "{err}");
    let (td, json) = out.trim_end().split_once(' ').unwrap();
    assert_eq!(td, "spiffe://example.org");
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["use"] == "jwt-svid"));
    // No audience and no --bundles: a usage error.
    let (code, _, _) = run(&[]);
    assert_eq!(code, Some(2));
}
