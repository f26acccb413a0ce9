//! The examples run as a user runs them: `mesh` to its summary line, `mtls_server` /
//! `mtls_client` on files written by `meshid issue`, and the tokio services `axum_mtls` and
//! `tonic_mtls` to completion.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>`, built fresh: `cargo test` only checks examples, so
/// this builds them once (the build lock is free while tests run) with every feature, as
/// `cargo test --all-features` built the library, so nothing is compiled twice.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--examples",
                "--all-features",
                "--manifest-path",
            ])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the examples failed");
    });
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// Kills the child on every path out of a test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mesh_runs_requests_across_rotations_and_prints_the_summary() {
    let out = Command::new(example("mesh"))
        .args(["--duration", "8", "--ttl", "5", "--interval", "100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap();
    let fields: Vec<(&str, u64)> = summary
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    assert_eq!(fields[0].0, "requests");
    assert!(fields[0].1 >= 10, "{summary}");
    assert_eq!(fields[1], ("failures", 0), "{stdout}");
    assert_eq!(fields[2].0, "rotations");
    // Both workloads rotated at least twice, and requests saw the peers' IDs.
    for name in ["frontend", "backend"] {
        let rotations = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("rotation: workload={name} ")))
            .count();
        assert!(rotations >= 3, "{name}: {rotations} publications\n{stdout}");
    }
    assert!(stdout.contains("peer spiffe://example.org/backend (serial "));
    assert!(stdout.contains("backend saw spiffe://example.org/frontend (serial "));
    assert!(!stdout.contains("FAILED"));
}

#[test]
fn mesh_rejects_bad_flags_with_usage() {
    let out = Command::new(example("mesh"))
        .args(["--ttl", "zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: mesh"));
}

/// Runs a self-contained example to its end (a minute at most): its stdout, once it has
/// exited 0.
fn run_to_completion(name: &str) -> String {
    let mut child = Running(
        Command::new(example(name))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{name} still running after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            pipe.read_to_string(&mut text).unwrap();
        }
        text
    };
    let stdout = read(child.0.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    let stderr = read(child.0.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    assert!(status.success(), "{name}: {status}\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn axum_mtls_serves_the_caller_its_spiffe_id_and_refuses_an_intruder() {
    let stdout = run_to_completion("axum_mtls");
    for n in 1..=3 {
        assert!(
            stdout.contains(&format!(
                "request {n}: server spiffe://example.org/api answered 200 OK: hello spiffe://example.org/frontend\n"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "intruder spiffe://example.org/intruder refused: peer refused: peer spiffe://example.org/intruder is not authorized"
        ),
        "{stdout}"
    );
}

#[test]
fn tonic_mtls_calls_over_h2_with_the_caller_s_id_and_refuses_a_stranger() {
    let stdout = run_to_completion("tonic_mtls");
    for n in 1..=3 {
        assert!(
            stdout.contains(&format!(
                "call {n}: \"hello frontend #{n}\", the server saw spiffe://example.org/frontend\n"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("client: connected to spiffe://example.org/greeter, ALPN h2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "stranger spiffe://other.org/frontend refused: peer refused: peer certificate is not a valid X509-SVID: no X.509 bundle for trust domain other.org"
        ),
        "{stdout}"
    );
}

fn meshid(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshid"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshid {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mtls_examples_talk_over_files_from_meshid_issue() {
    let dir = std::env::temp_dir().join(format!("meshid-examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    meshid(
        &dir,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    for who in ["server", "client", "stranger"] {
        meshid(
            &dir,
            &[
                "issue",
                "--ca",
                "ca",
                "--id",
                &format!("spiffe://example.org/{who}"),
                "--out-dir",
                who,
            ],
        );
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Running(
        Command::new(example("mtls_server"))
            .current_dir(&dir)
            .args(["server", &addr, "--allow", "spiffe://example.org/client"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The server's lines, read on a thread so that no read can hang the test.
    let (lines_tx, lines) = mpsc::channel();
    let server_out = BufReader::new(server.0.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in server_out.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_line = || {
        lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from the server")
    };
    assert_eq!(
        next_line(),
        format!("serving as spiffe://example.org/server on {addr}")
    );

    let client = |who: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new(example("mtls_client"))
                .current_dir(&dir)
                .args([
                    who,
                    &addr,
                    "--expect",
                    "spiffe://example.org/server",
                    "ping",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            if !text.contains("Connection refused") || Instant::now() > deadline {
                return (out.status.success(), text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (ok, text) = client("client");
    assert!(ok, "{text}");
    assert!(
        text.contains("server is spiffe://example.org/server"),
        "{text}"
    );
    assert!(
        text.contains("hello spiffe://example.org/client, you said: ping"),
        "{text}"
    );

    // A workload the server does not allow is refused, and the server says why.
    let (ok, text) = client("stranger");
    assert!(!ok, "{text}");
    let mut seen = String::new();
    while !seen.contains("not authorized") {
        seen.push_str(&next_line());
        seen.push('\n');
    }
    assert!(
        seen.contains("client spiffe://example.org/client connected"),
        "{seen}"
    );
    assert!(seen.contains("spiffe://example.org/stranger"), "{seen}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn workload_api_mtls_runs_on_the_workload_api_alone() {
    let out = Command::new(example("workload_api_mtls"))
        .args(["--duration", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap();
    assert!(summary.starts_with("requests="), "{summary}");
    assert!(summary.contains(" failures=0 "), "{summary}");
    let seen: usize = summary
        .split(' ')
        .find_map(|kv| kv.strip_prefix("svids_seen="))
        .unwrap()
        .parse()
        .unwrap();
    // Both workloads rotated at least once (SVIDs live 5 s).
    assert!(seen >= 4, "{summary}");
    assert!(stdout
        .contains("peer spiffe://example.org/backend; backend saw spiffe://example.org/frontend"));
}
