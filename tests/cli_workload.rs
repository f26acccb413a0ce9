//! `meshid serve workload-api` and `meshid fetch x509`, run as an operator runs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "common/certs.rs"]
mod certs;
#[path = "common/hostile.rs"]
mod hostile;

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

/// `meshid fetch x509 --watch --socket SOCKET` in `dir`, its standard output line by line.
fn watch_lines(dir: &Path, socket: &str) -> (Serving, std::sync::mpsc::Receiver<String>) {
    let mut watch = Serving(
        Command::new(MESHID)
            .current_dir(dir)
            .args(["fetch", "x509", "--watch", "--socket", socket])
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
    (watch, rx)
}

#[test]
fn fetch_watch_prints_each_rotation() {
    let scratch = Scratch::new("watch");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let _server = serve(dir, &socket, &["--ttl", "5s"]);
    let (_watch, rx) = watch_lines(dir, &format!("unix://{}", socket.display()));
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
    let out = meshid(dir, &["fetch", "x509", "--socket", "http://x/scheme.sock"]);
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

// ---- Against a hostile agent (tests/common/hostile.rs) ----

use hostile::{Hostile, Pki, Step, Wire};

/// A runtime for the hostile agent, and the agent on `dir/agent.sock`.
fn agent(
    dir: &Path,
    script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
) -> (tokio::runtime::Runtime, Hostile) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let agent = {
        let _entered = rt.enter();
        Hostile::start(&dir.join("agent.sock"), script)
    };
    (rt, agent)
}

fn pem(wire: &Wire) -> String {
    meshid::certificates_to_pem(&wire.chain)
}

#[test]
fn fetch_refuses_svids_that_do_not_verify_with_exit_1_naming_the_rule() {
    let scratch = Scratch::new("hostile-fetch");
    let dir = &scratch.0;
    let pki = Pki::new();
    let id = "spiffe://example.org/web";
    let now = std::time::SystemTime::now();
    for (wire, rule) in [
        (pki.expired(id), "expired"),
        (pki.not_yet_valid(id), "not valid before"),
        (pki.foreign(id), "does not lead to an authority"),
        (
            pki.under_intermediate_until(id, now - Duration::from_secs(60)),
            "expired",
        ),
    ] {
        let message = pki.message(&[(id, &wire)]);
        let (_rt, agent) = agent(dir, move |_| vec![Step::Message(message.clone())]);
        let out = meshid(
            dir,
            &[
                "fetch",
                "x509",
                "--socket",
                &agent.endpoint(),
                "--out-dir",
                "got",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{rule}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("refused the Workload API update"), "{said}");
        assert!(said.contains(rule), "{rule}: {said}");
        assert!(out.stdout.is_empty(), "nothing printed: {said}");
        assert!(!dir.join("got").exists(), "nothing written");
    }
}

#[test]
fn fetch_watch_keeps_the_last_good_svid_on_disk_and_retries_as_the_standard_says() {
    let scratch = Scratch::new("hostile-watch");
    let dir = &scratch.0;
    let pki = Pki::new();
    let id = "spiffe://example.org/web";
    let (good, expired, later) = (pki.good(id), pki.expired(id), pki.good(id));
    let (m_good, m_expired, m_later) = (
        pki.message(&[(id, &good)]),
        pki.message(&[(id, &expired)]),
        pki.message(&[(id, &later)]),
    );
    // Call 0: a good SVID, then an expired one, a malformed message, and Unavailable (the
    // agent restarts); call 1: PermissionDenied (not attested yet); call 2: a good one.
    let (_rt, agent) = agent(dir, move |n| match n {
        0 => vec![
            Step::Message(m_good.clone()),
            Step::Sleep(Duration::from_millis(300)),
            Step::Message(m_expired.clone()),
            Step::Raw(vec![0, 0, 0, 0, 2, 0xff, 0xff]),
            Step::Sleep(Duration::from_millis(300)),
            Step::Status(tonic::Code::Unavailable, "agent restarting".into()),
        ],
        1 => vec![Step::Status(
            tonic::Code::PermissionDenied,
            "no identity issued".into(),
        )],
        _ => vec![Step::Message(m_later.clone())],
    });
    let mut watch = Serving(
        Command::new(MESHID)
            .current_dir(dir)
            .args(["fetch", "x509", "--watch", "--out-dir", "got", "--socket"])
            .arg(agent.endpoint())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let svid = dir.join("got/svid.pem");
    let (good, expired, later) = (pem(&good), pem(&expired), pem(&later));
    let mut seen_good = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = std::fs::read_to_string(&svid).unwrap_or_default();
        assert_ne!(
            now, expired,
            "an expired SVID replaced the good one on disk"
        );
        seen_good |= now == good;
        if now == later {
            break;
        }
        assert!(
            watch.0.try_wait().unwrap().is_none(),
            "the watch ended instead of retrying"
        );
        assert!(
            Instant::now() < deadline,
            "never recovered: {} calls",
            agent.calls()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen_good);
    assert!(agent.calls() >= 3);
    let _ = watch.0.kill();
    let _ = watch.0.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("refused"), "refusals are logged: {stderr}");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(stderr.contains("no identity issued"), "{stderr}");
}

#[test]
fn fetch_watch_reconnects_to_a_server_that_stalls_mid_message() {
    let scratch = Scratch::new("hostile-stall");
    let dir = &scratch.0;
    let pki = Pki::new();
    let id = "spiffe://example.org/web";
    let (first, second) = (pki.good(id), pki.good(id));
    let (m1, m2) = (pki.message(&[(id, &first)]), pki.message(&[(id, &second)]));
    let (_rt, agent) = agent(dir, move |n| {
        if n == 0 {
            // A prefix announcing 1000 bytes, 10 of them, then silence.
            let mut cut = vec![0, 0, 0, 0x03, 0xe8];
            cut.extend_from_slice(&[0x0a; 10]);
            vec![Step::Message(m1.clone()), Step::Raw(cut)]
        } else {
            vec![Step::Message(m2.clone())]
        }
    });
    let mut watch = Serving(
        Command::new(MESHID)
            .current_dir(dir)
            .args(["fetch", "x509", "--watch", "--message-timeout", "1s"])
            .args(["--out-dir", "got", "--socket"])
            .arg(agent.endpoint())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let second = pem(&second);
    while std::fs::read_to_string(dir.join("got/svid.pem")).unwrap_or_default() != second {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no reconnection after the stall: {} calls",
            agent.calls()
        );
        assert!(watch.0.try_wait().unwrap().is_none(), "the watch ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = watch.0.kill();
    let _ = watch.0.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("stalled"), "{stderr}");
}

#[test]
fn what_the_server_sends_is_printed_escaped() {
    let scratch = Scratch::new("hostile-escape");
    let dir = &scratch.0;
    let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}gnp.exe";
    let pki = Pki::new();
    let svid = pki.good("spiffe://example.org/web");
    let mut bad_id = pki.message(&[("spiffe://example.org/web", &svid)]);
    bad_id.svids[0].spiffe_id = format!("spiffe://example.org/{evil}");
    for step in [
        Step::Status(tonic::Code::Unavailable, format!("agent says {evil}")),
        Step::Message(bad_id),
    ] {
        let (_rt, agent) = agent(dir, move |_| vec![step.clone()]);
        let out = meshid(dir, &["fetch", "x509", "--socket", &agent.endpoint()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let output = text(&out);
        assert!(
            !output.contains('\u{1b}') && !output.contains('\u{202e}') && !output.contains('\u{7}'),
            "raw: {output:?}"
        );
        assert!(output.contains("\\u{1b}[2J"), "{output}");
        assert!(output.contains("\\u{202e}gnp.exe"), "{output}");
    }
}

/// `fetch x509 --watch --out-dir` publishes each rotation as one set, in a directory that
/// is 0700 whatever the umask; a directory others may write is refused.
#[test]
fn fetch_watch_out_dir_replaces_the_files_as_a_set() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("watch-dir");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let _server = serve(dir, &socket, &["--ttl", "5s"]);
    let endpoint = format!("unix://{}", socket.display());

    std::fs::create_dir(dir.join("open")).unwrap();
    std::fs::set_permissions(dir.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = meshid(
        dir,
        &["fetch", "x509", "--socket", &endpoint, "--out-dir", "open"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("writable by other users (mode 0777)"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_dir(dir.join("open")).unwrap().count(), 0);

    let _watch = Serving(
        Command::new("sh")
            .current_dir(dir)
            .args(["-c", "umask 000; exec \"$0\" \"$@\"", MESHID])
            .args(["fetch", "x509", "--watch", "--out-dir", "got", "--socket"])
            .arg(&endpoint)
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = dir.join("got");
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        let (Ok(pem), Ok(key), Ok(again)) = (
            std::fs::read(got.join("svid.pem")),
            std::fs::read(got.join("svid.key")),
            std::fs::read(got.join("svid.pem")),
        ) else {
            continue;
        };
        if pem == again && pairs.last().is_none_or(|(p, k)| *p != pem || *k != key) {
            pairs.push((pem, key));
        }
    }
    assert!(pairs.len() >= 2, "saw {} versions", pairs.len());
    for (pem, key) in &pairs {
        meshid::X509Svid::parse_pem(pem, key).expect("a certificate with its own key");
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&got), 0o700);
    assert_eq!(mode(&got.join("svid.key")), 0o600);
    let versions = std::fs::read_dir(&got)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("..v")
        })
        .count();
    assert!(versions <= 3, "{versions} versions kept"); // two, or three mid-write
}

/// A TTL the CA will not issue is refused at once, naming the minimum, by both servers.
#[test]
fn serve_refuses_a_ttl_under_the_minimum_at_once() {
    let scratch = Scratch::new("short-ttl");
    let dir = &scratch.0;
    for server in ["workload-api", "sds"] {
        let started = Instant::now();
        let out = meshid(
            dir,
            &[
                "serve",
                server,
                "--socket",
                "api.sock",
                "--ca",
                "ca",
                "--id",
                "spiffe://example.org/web",
                "--ttl",
                "2s",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{server}: {}", text(&out));
        assert!(text(&out).contains("5s"), "{server}: {}", text(&out));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{server}: not at once"
        );
        assert!(!dir.join("api.sock").exists());
    }
}

/// Issue 15 (1): `fetch --socket` takes the path `serve --socket` takes, as `unix://PATH`;
/// a relative path is still refused (exit 2). (2): a connection error shows its OS cause,
/// once.
#[test]
fn fetch_socket_takes_a_path_and_connection_errors_show_the_os_cause() {
    let scratch = Scratch::new("path");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let _server = serve(dir, &socket, &[]);
    for command in ["x509", "jwt"] {
        let mut args = vec!["fetch", command, "--socket", socket.to_str().unwrap()];
        if command == "jwt" {
            args.extend(["--audience", "reports"]);
        }
        let out = meshid(dir, &args);
        assert!(out.status.success(), "{command}: {}", text(&out));
    }
    let out = meshid(dir, &["fetch", "x509", "--socket", "api.sock"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let missing = dir.join("nonexistent.sock");
    for socket in [
        format!("unix://{}", missing.display()),
        missing.display().to_string(),
    ] {
        let out = meshid(dir, &["fetch", "x509", "--socket", &socket]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot connect to unix://")
                && stderr.contains("No such file or directory (os error 2)"),
            "{stderr}"
        );
        assert_eq!(stderr.matches("transport error").count(), 1, "{stderr}");
        assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
    }
}

/// Issue 15 (3): `fetch x509 --out-dir DIR --id ID` writes that SVID, not the default;
/// an ID not served is refused naming those served, and nothing is written.
#[test]
fn fetch_out_dir_writes_the_svid_id_names() {
    let scratch = Scratch::new("pick");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let _server = serve(dir, &socket, &["--id", "spiffe://example.org/db"]);
    let endpoint = format!("unix://{}", socket.display());
    let out = meshid(
        dir,
        &[
            "fetch",
            "x509",
            "--socket",
            &endpoint,
            "--out-dir",
            "db",
            "--id",
            "spiffe://example.org/db",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = meshid(
        dir,
        &[
            "verify",
            "--bundle",
            "example.org=db/bundle.pem",
            "db/svid.pem",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "spiffe://example.org/db"
    );

    let out = meshid(
        dir,
        &[
            "fetch",
            "x509",
            "--socket",
            &endpoint,
            "--out-dir",
            "none",
            "--id",
            "spiffe://example.org/nobody",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no SVID for spiffe://example.org/nobody")
            && stderr.contains("spiffe://example.org/web, spiffe://example.org/db"),
        "{stderr}"
    );
    assert!(!dir.join("none").exists());
    // --id without --out-dir is a usage error.
    let out = meshid(
        dir,
        &[
            "fetch",
            "x509",
            "--socket",
            &endpoint,
            "--id",
            "spiffe://example.org/db",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Issue 15 (4): each `--watch` block starts with `update TIME` and gives each SVID's
/// serial after the lines it had.
#[test]
fn fetch_watch_blocks_start_with_the_time_and_give_serials() {
    let scratch = Scratch::new("watchlines");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let _server = serve(dir, &socket, &["--ttl", "5s"]);
    let (_watch, rx) = watch_lines(dir, socket.to_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.starts_with("bundles "))
        .count()
        < 2
    {
        lines.push(
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("two updates within 15 s"),
        );
    }
    let blocks: Vec<&[String]> = lines
        .split_inclusive(|l| l.starts_with("bundles "))
        .collect();
    let mut serials = Vec::new();
    for block in blocks {
        let time = block[0]
            .strip_prefix("update ")
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(meshid::time::parse_rfc3339(time).is_ok(), "{lines:?}");
        assert_eq!(block[1], "svid spiffe://example.org/web", "{lines:?}");
        assert_eq!(block[2], "  chain_length 1", "{lines:?}");
        assert!(block[3].starts_with("  not_after 20"), "{lines:?}");
        let serial = block[4]
            .strip_prefix("  serial ")
            .unwrap_or_else(|| panic!("{lines:?}"));
        assert!(
            !serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
            "{lines:?}"
        );
        serials.push(serial.to_owned());
        assert_eq!(block[5], "bundles example.org", "{lines:?}");
    }
    assert_ne!(serials[0], serials[1], "{lines:?}");
}

/// Issue 15 (5, 6): every duration flag of `serve` and `fetch` says its units; `--id`
/// and `--socket` name their values as the texts do.
#[test]
fn serve_and_fetch_help_say_units_and_value_names() {
    for args in [
        &["serve", "workload-api", "--help"][..],
        &["serve", "sds", "--help"],
        &["serve", "agent", "--help"],
        &["fetch", "x509", "--help"],
        &["fetch", "jwt", "--help"],
    ] {
        let out = meshid(Path::new("."), args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let help = text(&out);
        let flags = help.matches("<DURATION>").count();
        assert!(flags > 0, "{args:?}: {help}");
        assert!(
            help.matches("(30s, 5m, 1h, 365d)").count() >= flags,
            "{args:?}: {help}"
        );
        assert!(
            !help.contains("<IDS>") && !help.contains("<ALLOW_UID"),
            "{args:?}: {help}"
        );
    }
    let help = text(&meshid(
        Path::new("."),
        &["serve", "workload-api", "--help"],
    ));
    assert!(help.contains("--id <ID>"), "{help}");
    let help = text(&meshid(Path::new("."), &["fetch", "x509", "--help"]));
    assert!(
        help.contains("--socket <ENDPOINT>")
            && help.contains("--id <ID>")
            && help.contains("absolute socket path"),
        "{help}"
    );
}

/// `--max-conns N` caps the connections `serve workload-api --id` holds: with the one slot
/// taken by a connection that sends nothing, the next is closed at once (and logged),
/// while the first stays open; 0 is refused as a usage error.
#[test]
fn serve_max_conns_caps_the_connections_held() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    let scratch = Scratch::new("max-conns");
    let dir = &scratch.0;
    let out = meshid(
        dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            "api.sock",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--max-conns",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--max-conns"), "{}", text(&out));

    let socket = dir.join("api.sock");
    let mut server = serve(dir, &socket, &["--max-conns", "1"]);
    let mut first = UnixStream::connect(&socket).unwrap();
    // Let the server accept the first before the second arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut second = UnixStream::connect(&socket).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sink = Vec::new();
    let started = Instant::now();
    // Closed by the server: the read ends (EOF or a reset), well before the 10 s preface
    // timeout would have closed it.
    let _ = second.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the connection beyond the cap was not closed at once"
    );
    // The first is still open: what the server sent (its HTTP/2 settings) is read, then
    // the read waits.
    first
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    loop {
        match first.read(&mut [0u8; 256]) {
            Ok(0) => panic!("the first connection was closed"),
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the first connection should still be open: {e}"
                );
                break;
            }
        }
    }
    let _ = server.0.kill();
    let _ = server.0.wait();
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("connection cap"), "{stderr}");
}
