//! `meshid serve workload-api` and `meshid fetch x509`, run as an operator runs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

fn meshid(dir: &Path, args: &[&str]) -> Output {
    Command::new(MESHID)
        .current_dir(dir)
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A scratch directory with a CA, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-cliwl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = meshid(
            &dir,
            &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
        );
        assert!(out.status.success(), "{}", text(&out));
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `meshid serve workload-api`, killed if the test ends early.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, socket: &Path, extra: &[&str]) -> Serving {
    let child = Command::new(MESHID)
        .current_dir(dir)
        .args(["serve", "workload-api", "--socket"])
        .arg(socket)
        .args(["--ca", "ca", "--id", "spiffe://example.org/web"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    Serving(child)
}

#[test]
fn fetch_prints_and_writes_what_serve_serves_and_sigterm_stops_it_cleanly() {
    let scratch = Scratch::new("serve");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let mut server = serve(
        dir,
        &socket,
        &["--id", "spiffe://example.org/db", "--ttl", "10m"],
    );
    let endpoint = format!("unix://{}", socket.display());

    let out = meshid(
        dir,
        &["fetch", "x509", "--socket", &endpoint, "--out-dir", "got"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "svid spiffe://example.org/web");
    assert_eq!(lines[1], "  chain_length 1");
    assert!(lines[2].starts_with("  not_after 20"), "{stdout}");
    assert_eq!(lines[3], "svid spiffe://example.org/db");
    assert!(stdout.contains("\nbundles example.org\n"), "{stdout}");
    // The files written verify with the CLI against the bundle written beside them.
    let out = meshid(
        dir,
        &[
            "verify",
            "--bundle",
            "example.org=got/bundle.pem",
            "got/svid.pem",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("spiffe://example.org/web"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("got/svid.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The same from $SPIFFE_ENDPOINT_SOCKET.
    let out = Command::new(MESHID)
        .current_dir(dir)
        .args(["fetch", "x509"])
        .env("SPIFFE_ENDPOINT_SOCKET", &endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // SIGTERM: exits 0 and removes its socket.
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists(), "socket left behind");
}

#[test]
fn fetch_watch_prints_each_rotation() {
    let scratch = Scratch::new("watch");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let _server = serve(dir, &socket, &["--ttl", "5s"]);
    let mut watch = Serving(
        Command::new(MESHID)
            .current_dir(dir)
            .args(["fetch", "x509", "--watch", "--socket"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = watch.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut expiries = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while expiries.len() < 3 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("three different SVIDs within 15 s");
        if let Some(t) = line.strip_prefix("  not_after ") {
            expiries.insert(t.to_owned());
        }
    }
}

#[test]
fn fetch_errors_have_the_documented_exit_codes() {
    let scratch = Scratch::new("errors");
    let dir = &scratch.0;
    // A bad endpoint, or none: usage error, exit 2.
    let out = meshid(dir, &["fetch", "x509", "--socket", "/no/scheme.sock"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("the scheme must be unix or tcp"));
    let out = meshid(dir, &["fetch", "x509"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("SPIFFE_ENDPOINT_SOCKET is not set"));
    // Nobody listening: exit 1 with the reason.
    let out = meshid(
        dir,
        &[
            "fetch",
            "x509",
            "--socket",
            "unix:///nonexistent/meshid.sock",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot connect"), "{}", text(&out));
    // A server that accepts and never answers: exit 1 after --timeout, not a hang.
    let silent = dir.join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let held = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(5));
        drop(conn);
    });
    let started = Instant::now();
    let out = meshid(
        dir,
        &[
            "fetch",
            "x509",
            "--timeout",
            "1s",
            "--socket",
            &format!("unix://{}", silent.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no answer from"), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(held);
    // serve refuses a socket path that is a regular file, and leaves it.
    std::fs::write(dir.join("file"), b"keep").unwrap();
    let out = meshid(
        dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            "file",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not a socket"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.join("file")).unwrap(), b"keep");
}
