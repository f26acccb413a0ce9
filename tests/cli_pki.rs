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
            "--dns", "db.local",
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

/// Runs meshid in `dir` under `sh -c` with `setup` (umask, ulimit, traps) first.
#[cfg(unix)]
fn meshid_sh(dir: &Path, setup: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg(format!("{setup}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_meshid"))
        .args(args)
        .output()
        .unwrap()
}

/// Whether DIR/ca.pem (+ bundle.pem) and DIR/ca.key load as one CA: the key matches.
fn ca_loads(dir: &Path) -> Result<(), String> {
    let mut chain = std::fs::read(dir.join("ca.pem")).map_err(|e| e.to_string())?;
    if let Ok(bundle) = std::fs::read(dir.join("bundle.pem")) {
        chain.extend(bundle);
    }
    let key = std::fs::read(dir.join("ca.key")).map_err(|e| e.to_string())?;
    meshid::Authority::from_pem(&chain, &key, None)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Item 3: two `ca init` (or an init and an intermediate) racing into one directory: one
/// wins, the other is refused, and the CA left is whole.
#[test]
fn concurrent_ca_runs_into_one_dir_exactly_one_wins() {
    let d = scratch("race");
    ok(&meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "parent",
        ],
    ));
    let bin = env!("CARGO_BIN_EXE_meshid");
    for round in 0..20 {
        let out = format!("r{round}");
        let init = ["ca", "init", "--trust-domain", "example.org", "--out", &out];
        let intermediate = ["ca", "intermediate", "--ca", "parent", "--out", &out];
        let second: &[&str] = if round % 2 == 0 { &init } else { &intermediate };
        let children: Vec<_> = [&init[..], second]
            .into_iter()
            .map(|args| {
                Command::new(bin)
                    .current_dir(&d)
                    .args(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let codes: Vec<Option<i32>> = outputs.iter().map(|o| o.status.code()).collect();
        let winners = codes.iter().filter(|c| **c == Some(0)).count();
        assert_eq!(
            winners,
            1,
            "round {round}: exit codes {codes:?}: {}",
            outputs.iter().map(text).collect::<String>()
        );
        let loser = outputs.iter().find(|o| !o.status.success()).unwrap();
        assert_eq!(loser.status.code(), Some(1), "{}", text(loser));
        assert!(
            text(loser).contains("refusing to overwrite"),
            "{}",
            text(loser)
        );
        ca_loads(&d.join(&out)).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let leftovers: Vec<String> = std::fs::read_dir(d.join(&out))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
    }
}

/// Item 3: a run whose ca.pem cannot be written (the file-size limit, as on a full disk)
/// leaves nothing that blocks a retry.
#[cfg(unix)]
#[test]
fn a_failed_ca_write_leaves_nothing_that_blocks_a_retry() {
    let d = scratch("failed-write");
    // 512 bytes (dash counts in 512-byte blocks): room for the key, not for ca.pem. The
    // signal is ignored so the write fails with EFBIG instead of killing the process.
    let o = meshid_sh(
        &d,
        "trap '' XFSZ; ulimit -f 1",
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for name in ["ca.key", "ca.pem", "bundle.pem"] {
        assert!(!d.join("ca").join(name).exists(), "{name} left behind");
    }
    ok(&meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    ca_loads(&d.join("ca")).unwrap();
    let o = meshid_sh(
        &d,
        "trap '' XFSZ; ulimit -f 1",
        &["ca", "intermediate", "--ca", "ca", "--out", "int"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    ok(&meshid(
        &d,
        &["ca", "intermediate", "--ca", "ca", "--out", "int"],
    ));
    ca_loads(&d.join("int")).unwrap();
}

/// Item 4: while `issue` rewrites an SVID directory over and over, a reader opening
/// svid.pem then svid.key never gets a certificate with another version's key (a read
/// during which svid.pem changed is discarded, as a watching reader would), and only the
/// current version is kept.
#[cfg(unix)]
#[test]
fn a_reader_never_sees_a_new_certificate_with_the_old_key() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let d = scratch("atomic-set");
    ok(&meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    let issue = [
        "issue",
        "--ca",
        "ca",
        "--id",
        "spiffe://example.org/web",
        "--out-dir",
        "w",
    ];
    ok(&meshid(&d, &issue));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, w) = (Arc::clone(&done), d.join("w"));
        std::thread::spawn(move || {
            let mut pairs = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let (Ok(pem), Ok(key), Ok(again)) = (
                    std::fs::read(w.join("svid.pem")),
                    std::fs::read(w.join("svid.key")),
                    std::fs::read(w.join("svid.pem")),
                ) else {
                    continue;
                };
                if pem == again && pairs.last() != Some(&(pem.clone(), key.clone())) {
                    pairs.push((pem, key));
                }
            }
            pairs
        })
    };
    for _ in 0..40 {
        ok(&meshid(&d, &issue));
    }
    done.store(true, Ordering::Relaxed);
    let pairs = reader.join().unwrap();
    assert!(pairs.len() > 1, "the reader saw {} versions", pairs.len());
    let mismatched = pairs
        .iter()
        .filter(|(pem, key)| meshid::X509Svid::parse_pem(pem, key).is_err())
        .count();
    assert_eq!(
        mismatched,
        0,
        "{mismatched} of {} pairs mismatched",
        pairs.len()
    );
    // The public names stay; the current version and the one before it are kept.
    let names: Vec<String> = std::fs::read_dir(d.join("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in ["svid.pem", "svid.key", "bundle.pem"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }
    assert_eq!(
        names.iter().filter(|n| n.starts_with("..v")).count(),
        2,
        "{names:?}"
    );
    assert_eq!(mode(&d.join("w/svid.key")), 0o600);
    ok(&meshid(
        &d,
        &[
            "verify",
            "--bundle",
            "example.org=w/bundle.pem",
            "w/svid.pem",
        ],
    ));
}

/// Item 5: under umask 000, CA and SVID directories are still 0700, and an existing
/// directory others may write is refused, naming the problem.
#[cfg(unix)]
#[test]
fn key_directories_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("umask");
    ok(&meshid_sh(
        &d,
        "umask 000",
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    ok(&meshid_sh(
        &d,
        "umask 000",
        &["ca", "intermediate", "--ca", "ca", "--out", "sub/int"],
    ));
    ok(&meshid_sh(
        &d,
        "umask 000",
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/w",
            "--out-dir",
            "w",
        ],
    ));
    for dir in ["ca", "sub", "sub/int", "w"] {
        assert_eq!(mode(&d.join(dir)), 0o700, "{dir}");
    }
    for key in ["ca/ca.key", "sub/int/ca.key", "w/svid.key"] {
        assert_eq!(mode(&d.join(key)), 0o600, "{key}");
    }
    for open in ["open-ca", "open-w"] {
        std::fs::create_dir(d.join(open)).unwrap();
        std::fs::set_permissions(d.join(open), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for args in [
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "open-ca",
        ][..],
        &["ca", "intermediate", "--ca", "ca", "--out", "open-ca"][..],
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/w",
            "--out-dir",
            "open-w",
        ][..],
    ] {
        let o = meshid(&d, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("writable by other users (mode 0777)"),
            "{args:?}: {}",
            text(&o)
        );
    }
    for open in ["open-ca", "open-w"] {
        assert_eq!(
            std::fs::read_dir(d.join(open)).unwrap().count(),
            0,
            "{open}"
        );
    }
}

/// Item 6: `ca sign` grants the DNS names the operator names with --dns, none of the
/// CSR's by themselves, and wildcards only with --allow-wildcard-dns.
#[test]
fn ca_sign_grants_only_the_dns_names_the_operator_names() {
    let d = scratch("dns");
    ok(&meshid(
        &d,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    ok(&meshid(
        &d,
        &[
            "csr",
            "--id",
            "spiffe://example.org/web",
            "--key-out",
            "web.key",
            "--out",
            "web.csr",
            "--dns",
            "web.example.org",
            "--dns",
            "*.google.com",
        ],
    ));
    let sign = |out: &str, extra: &[&str]| {
        let mut args = vec!["ca", "sign", "--ca", "ca", "--csr", "web.csr", "--out", out];
        args.extend(extra);
        meshid(&d, &args)
    };
    let dns_of = |file: &str| -> Vec<String> {
        let pem = std::fs::read(d.join(file)).unwrap();
        let certs = meshid::parse_certificates(&pem).unwrap();
        meshid::CertificateInfo::from_der(&certs[0])
            .unwrap()
            .dns_names()
            .to_vec()
    };
    let o = sign("none.pem", &[]);
    ok(&o);
    assert_eq!(dns_of("none.pem"), Vec::<String>::new());
    assert!(text(&o).contains("not granted"), "{}", text(&o));
    assert!(text(&o).contains("*.google.com"), "{}", text(&o));

    ok(&sign("one.pem", &["--dns", "a.example.org"]));
    assert_eq!(dns_of("one.pem"), ["a.example.org"]);

    let o = sign("wild.pem", &["--dns", "*.example.org"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--allow-wildcard-dns"), "{}", text(&o));
    assert!(!d.join("wild.pem").exists());
    ok(&sign(
        "wild.pem",
        &["--dns", "*.example.org", "--allow-wildcard-dns"],
    ));
    assert_eq!(dns_of("wild.pem"), ["*.example.org"]);

    let o = meshid(&d, &["ca", "sign", "--help"]);
    ok(&o);
    let help = text(&o);
    for words in ["--dns <NAME>", "--allow-wildcard-dns", "never granted"] {
        assert!(help.contains(words), "{words}: {help}");
    }
}

/// Every `<DURATION>` in a help text is explained with its units.
fn assert_durations_explained(help: &str) {
    let flags = help.matches("<DURATION>").count();
    let explained = help.matches("(30s, 5m, 1h, 365d)").count();
    assert!(flags > 0 && explained >= flags, "{help}");
}

/// Issue 15 (5, 6, 11): duration flags say their units; help texts name only placeholders
/// that are flags' value names; `ca`'s about says what it does.
#[test]
fn pki_help_names_units_and_its_own_placeholders() {
    let d = scratch("help");
    let top = text(&meshid(&d, &["--help"]));
    assert!(!top.contains("Run a local certificate authority"), "{top}");
    assert!(
        top.contains("local certificate authority kept in files"),
        "{top}"
    );
    for args in [
        &["ca", "init", "--help"][..],
        &["ca", "intermediate", "--help"],
        &["ca", "sign", "--help"],
        &["issue", "--help"],
    ] {
        let o = meshid(&d, args);
        ok(&o);
        let help = text(&o);
        assert_durations_explained(&help);
        for stray in ["DIR2", "CHAIN", "<IDS>", "<DNS>"] {
            assert!(!help.contains(stray), "{args:?}: {stray}: {help}");
        }
    }
    let help = text(&meshid(&d, &["ca", "intermediate", "--help"]));
    assert!(
        help.contains("--ca <PARENT>")
            && help.contains("--out <DIR>")
            && help.contains("DIR/ca.pem"),
        "{help}"
    );
    let help = text(&meshid(&d, &["issue", "--help"]));
    assert!(
        help.contains("--out-dir <DIR>") && help.contains("--force"),
        "{help}"
    );
    let help = text(&meshid(&d, &["verify", "--help"]));
    assert!(help.contains("--bundle <TD=FILE>"), "{help}");
}

/// Issue 15 (7): a TTL past the CA's expiry is capped, and said so on stderr (asked and
/// granted), exit 0; by `issue`, `ca sign` and `ca intermediate`. A TTL within says nothing.
#[test]
fn a_ttl_capped_at_the_ca_s_expiry_is_said_on_stderr() {
    let d = scratch("capped");
    ok(&meshid(
        &d,
        &[
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "ca",
            "--ttl",
            "2d",
        ],
    ));
    let o = meshid(
        &d,
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--out-dir",
            "w",
            "--ttl",
            "1h",
        ],
    );
    ok(&o);
    assert!(o.stderr.is_empty(), "{}", text(&o));
    let o = meshid(
        &d,
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--out-dir",
            "w",
            "--ttl",
            "800d",
        ],
    );
    ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "--ttl 800d is past the CA's expiry: the SVID's lifetime is capped at 1d23h59m"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(until 20"), "{stderr}");
    let o = meshid(
        &d,
        &[
            "ca",
            "intermediate",
            "--ca",
            "ca",
            "--out",
            "int",
            "--ttl",
            "800d",
        ],
    );
    ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "--ttl 800d is past the CA's expiry: the intermediate's lifetime is capped at 1d23h59m"
        ),
        "{stderr}"
    );
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
        ],
    ));
    let o = meshid(
        &d,
        &[
            "ca", "sign", "--ca", "int", "--csr", "db.csr", "--out", "db.pem", "--ttl", "3d",
        ],
    );
    ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "--ttl 3d is past the CA's expiry: the SVID's lifetime is capped at 1d23h59m"
        ),
        "{stderr}"
    );
}

/// Issue 15 (8): `issue` renews the SVID an out-dir holds (the same ID), but refuses to
/// replace another ID's SVID, or a key it cannot read, unless --force.
#[test]
fn issue_replaces_another_svid_only_with_force() {
    let d = scratch("force");
    ca_and_web_svid(&d);
    let issue = |id: &str, dir: &str, force: bool| {
        let mut args = vec!["issue", "--ca", "ca", "--id", id, "--out-dir", dir];
        if force {
            args.push("--force");
        }
        meshid(&d, &args)
    };
    let holds = |dir: &str| {
        let o = meshid(
            &d,
            &[
                "verify",
                "--bundle",
                &format!("example.org={dir}/bundle.pem"),
                &format!("{dir}/svid.pem"),
            ],
        );
        ok(&o);
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    ok(&issue("spiffe://example.org/web", "w", false));
    let o = issue("spiffe://example.org/db", "w", false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("already holds an SVID for spiffe://example.org/web"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(holds("w"), "spiffe://example.org/web");
    ok(&issue("spiffe://example.org/db", "w", true));
    assert_eq!(holds("w"), "spiffe://example.org/db");
    // A key that is not meshid's SVID: refused, left as it was.
    std::fs::create_dir(d.join("k")).unwrap();
    std::fs::write(d.join("k/svid.key"), b"someone's key").unwrap();
    let o = issue("spiffe://example.org/web", "k", false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a readable SVID"), "{}", text(&o));
    assert_eq!(
        std::fs::read(d.join("k/svid.key")).unwrap(),
        b"someone's key"
    );
    ok(&issue("spiffe://example.org/web", "k", true));
    assert_eq!(holds("k"), "spiffe://example.org/web");
}

/// Issue 15 (9): `inspect` (and `verify`) given a private key say so, printing none of it.
#[test]
fn inspect_names_a_private_key_and_prints_none_of_it() {
    let d = scratch("inspect-key");
    ca_and_web_svid(&d);
    let key = std::fs::read_to_string(d.join("w/svid.key")).unwrap();
    std::fs::write(
        d.join("ec.key"),
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let sec1 = std::fs::read_to_string(d.join("ec.key")).unwrap();
    for (file, pem, command) in [
        ("w/svid.key", &key, "inspect"),
        ("ec.key", &sec1, "inspect"),
        ("w/svid.key", &key, "verify"),
    ] {
        let mut args = vec![command, file];
        if command == "verify" {
            args = vec!["verify", "--bundle", "example.org=w/bundle.pem", file];
        }
        let o = meshid(&d, &args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(&format!(
                "{file}: this is a private key; {command} reads certificates"
            )),
            "{}",
            text(&o)
        );
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !text(&o).contains(&line[..line.len().min(16)]),
                "key material printed"
            );
        }
    }
}

/// Issue 15 (10): an empty subject is marked as SPIFFE's, and the lifetime line explains
/// the 10 s the CA backdates NotBefore.
#[test]
fn inspect_marks_the_empty_subject_and_explains_the_backdating() {
    let d = scratch("inspect-lifetime");
    ca_and_web_svid(&d);
    let o = meshid(&d, &["inspect", "w/svid.pem"]);
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("\nsubject:      (empty, as SPIFFE leaves it)\n"),
        "{out}"
    );
    assert!(
        out.contains("\nlifetime:     1h10s (1h from issuance + 10s backdated for clock skew)\n"),
        "{out}"
    );
    // The JSON keeps the subject as it is.
    let o = meshid(&d, &["inspect", "--json", "w/svid.pem"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["subject"], "");
}
