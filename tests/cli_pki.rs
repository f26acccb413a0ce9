//! The PKI subcommands of `meshid`: ca init/intermediate/sign, csr, issue, verify, inspect,
//! bundle convert. Each runs the real binary; chains are also checked by `openssl verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshid"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshid-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `ca init` into d/ca, then `issue` spiffe://example.org/web into d/w.
fn ca_and_web_svid(d: &Path) {
    ok(&meshid(
        d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    ok(&meshid(
        d,
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--out-dir",
            "w",
        ],
    ));
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

#[test]
fn root_intermediate_issue_verify_and_openssl_agrees() {
    let d = scratch("flow");
    ok(&meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "root",
            "--key-type",
            "p384",
        ],
    ));
    ok(&meshid(
        &d,
        &[
            "ca",
            "intermediate",
            "--ca",
            "root",
            "--out",
            "inter",
            "--ttl",
            "7d",
        ],
    ));
    ok(&meshid(
        &d,
        &[
            "issue",
            "--ca",
            "inter",
            "--id",
            "spiffe://example.org/web",
            "--out-dir",
            "w",
            "--ttl",
            "10m",
        ],
    ));
    #[cfg(unix)]
    {
        assert_eq!(mode(&d.join("root/ca.key")), 0o600);
        assert_eq!(mode(&d.join("inter/ca.key")), 0o600);
        assert_eq!(mode(&d.join("w/svid.key")), 0o600);
    }
    let o = meshid(
        &d,
        &[
            "verify",
            "--bundle",
            "example.org=w/bundle.pem",
            "w/svid.pem",
        ],
    );
    ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "spiffe://example.org/web"
    );

    // openssl builds the same path: leaf, the intermediate as untrusted, the root as anchor.
    let svid = std::fs::read_to_string(d.join("w/svid.pem")).unwrap();
    let split = svid.match_indices("-----BEGIN").nth(1).unwrap().0;
    std::fs::write(d.join("leaf.pem"), &svid[..split]).unwrap();
    std::fs::write(d.join("rest.pem"), &svid[split..]).unwrap();
    let o = Command::new("openssl")
        .current_dir(&d)
        .args([
            "verify",
            "-x509_strict",
            "-CAfile",
            "w/bundle.pem",
            "-untrusted",
            "rest.pem",
            "leaf.pem",
        ])
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn verify_refusals_name_the_rule_and_exit_one() {
    let d = scratch("refuse");
    ca_and_web_svid(&d);
    let o = meshid(
        &d,
        &["verify", "--bundle", "other.org=w/bundle.pem", "w/svid.pem"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("no X.509 bundle for trust domain example.org"),
        "{}",
        text(&o)
    );
    let o = meshid(
        &d,
        &[
            "verify",
            "--bundle",
            "example.org=w/bundle.pem",
            "w/svid.pem",
            "--at",
            "2099-01-01T00:00:00Z",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("expired"), "{}", text(&o));
    // Another root of the same trust domain.
    ok(&meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "ca2",
        ],
    ));
    let o = meshid(
        &d,
        &["verify", "--bundle", "example.org=ca2/ca.pem", "w/svid.pem"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("does not lead to an authority"),
        "{}",
        text(&o)
    );
}

#[test]
fn csr_and_ca_sign() {
    let d = scratch("csr");
    ok(&meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    ok(&meshid(
        &d,
        &[
            "csr",
            "--id",
            "spiffe://example.org/db",
            "--key-out",
            "db.key",
            "--out",
            "db.csr",
            "--dns",
            "db.local",
        ],
    ));
    #[cfg(unix)]
    assert_eq!(mode(&d.join("db.key")), 0o600);
    let o = Command::new("openssl")
        .current_dir(&d)
        .args(["req", "-verify", "-noout", "-in", "db.csr"])
        .output()
        .unwrap();
    assert!(text(&o).contains("verify OK"), "{}", text(&o));
    ok(&meshid(
        &d,
        &[
            "ca", "sign", "--ca", "ca", "--csr", "db.csr", "--out", "db.pem", "--ttl", "5m",
        ],
    ));
    let o = meshid(&d, &["inspect", "db.pem"]);
    ok(&o);
    assert!(
        text(&o).contains("spiffe_id:    spiffe://example.org/db"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("dns:          db.local"), "{}", text(&o));
    // The authority's decision, --id, wins; an ID of another trust domain is refused and
    // leaves no file behind.
    ok(&meshid(
        &d,
        &[
            "ca",
            "sign",
            "--ca",
            "ca",
            "--csr",
            "db.csr",
            "--out",
            "other.pem",
            "--id",
            "spiffe://example.org/decided",
        ],
    ));
    assert!(text(&meshid(&d, &["inspect", "other.pem"])).contains("spiffe://example.org/decided"));
    let o = meshid(
        &d,
        &[
            "ca",
            "sign",
            "--ca",
            "ca",
            "--csr",
            "db.csr",
            "--out",
            "evil.pem",
            "--id",
            "spiffe://evil.org/x",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("outside trust domain"), "{}", text(&o));
    assert!(!d.join("evil.pem").exists());
    assert!(std::fs::read_dir(&d).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp-")));
}

#[test]
fn inspect_warns_where_a_certificate_breaks_a_rule() {
    let d = scratch("inspect");
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-spiffe/x509svid");
    let o = meshid(
        &d,
        &[
            "inspect",
            vectors.join("wrong-leaf-ca-true.pem").to_str().unwrap(),
        ],
    );
    ok(&o);
    assert!(
        text(&o).contains("warning:") && text(&o).contains("CA flag"),
        "{}",
        text(&o)
    );
    let o = meshid(
        &d,
        &[
            "inspect",
            "--json",
            vectors.join("good-leaf-only.pem").to_str().unwrap(),
        ],
    );
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["spiffe_id"], "spiffe://example.org/workload-1");
    assert_eq!(v["trust_domain"], "example.org");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0);
    assert!(v["serial"].as_str().is_some_and(|s| !s.is_empty()));
    let o = meshid(
        &d,
        &[
            "inspect",
            vectors.join("corrupt-cert.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn bundle_convert_round_trips_between_pem_and_json() {
    let d = scratch("bundle");
    ca_and_web_svid(&d);
    ok(&meshid(
        &d,
        &[
            "bundle",
            "convert",
            "--trust-domain",
            "example.org",
            "w/bundle.pem",
            "b.json",
        ],
    ));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("b.json")).unwrap()).unwrap();
    assert_eq!(json["keys"][0]["use"], "x509-svid");
    ok(&meshid(
        &d,
        &[
            "bundle",
            "convert",
            "--trust-domain",
            "example.org",
            "b.json",
            "back.pem",
        ],
    ));
    assert_eq!(
        std::fs::read(d.join("back.pem")).unwrap(),
        std::fs::read(d.join("w/bundle.pem")).unwrap()
    );
    let o = meshid(
        &d,
        &["verify", "--bundle", "example.org=b.json", "w/svid.pem"],
    );
    ok(&o);
}

#[test]
fn usage_errors_exit_two_and_bad_files_never_panic() {
    let d = scratch("usage");
    for args in [
        &["ca", "init", "--trust-domain", "Example.org", "--out", "x"][..],
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "x",
            "--ttl",
            "10y",
        ],
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "x",
            "--key-type",
            "rsa",
        ],
        &["verify", "--bundle", "example.org", "chain.pem"],
        &["verify", "chain.pem"],
        &[
            "issue",
            "--ca",
            "x",
            "--id",
            "spiffe://td/",
            "--out-dir",
            "y",
        ],
        &[
            "verify",
            "--bundle",
            "td=b.pem",
            "c.pem",
            "--at",
            "yesterday",
        ],
    ] {
        let o = meshid(&d, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    std::fs::write(
        d.join("junk.pem"),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(d.join("big.pem"), vec![b'A'; 1 << 20]).unwrap();
    for file in ["junk.pem", "big.pem", "missing.pem"] {
        for args in [
            vec!["inspect", file],
            vec!["verify", "--bundle", "td=junk.pem", file],
            vec![
                "bundle",
                "convert",
                "--trust-domain",
                "td",
                file,
                "out.json",
            ],
        ] {
            let o = meshid(&d, &args);
            assert!(
                matches!(o.status.code(), Some(1 | 2)),
                "{args:?}: {}",
                text(&o)
            );
        }
    }
    assert!(!d.join("out.json").exists());
}

#[test]
fn a_ca_is_never_overwritten() {
    let d = scratch("overwrite");
    ok(&meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "a"],
    ));
    let key = std::fs::read(d.join("a/ca.key")).unwrap();
    let o = meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "a"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("refusing to overwrite"), "{}", text(&o));
    let o = meshid(&d, &["ca", "intermediate", "--ca", "a", "--out", "a"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        std::fs::read(d.join("a/ca.key")).unwrap(),
        key,
        "the root key is intact"
    );
}

#[test]
fn huge_ttls_are_refusals_never_panics() {
    let d = scratch("ttl");
    let o = meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "td",
            "--out",
            "x",
            "--ttl",
            "18446744073709551615s",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("TTL is out of range"), "{}", text(&o));
    ok(&meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "td",
            "--out",
            "ca",
            "--ttl",
            "1d",
        ],
    ));
    // A leaf TTL past the CA's is capped at the CA's NotAfter.
    ok(&meshid(
        &d,
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            "spiffe://td/w",
            "--out-dir",
            "w",
            "--ttl",
            "213503982334601d",
        ],
    ));
}
