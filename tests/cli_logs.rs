//! Issue 15 (observability): the CLI's logs. `--log-level` and `--log-format`, and the
//! secrets check: a whole flow (`ca init`, `issue`, `serve workload-api` rotating,
//! `fetch x509`, `fetch jwt`, SIGTERM) at `--log-level trace`, in JSON and in text, leaves
//! no private key and no JWT-SVID in any log line.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use p256::pkcs8::DecodePrivateKey;

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");
const ID: &str = "spiffe://example.org/a";

/// `meshid ARGS` in `dir`, with `RUST_LOG` set to `rust_log` (or unset).
fn meshid_env(dir: &Path, args: &[&str], rust_log: Option<&str>) -> Output {
    let mut cmd = Command::new(MESHID);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    cmd.output().unwrap()
}

fn meshid(dir: &Path, args: &[&str]) -> Output {
    meshid_env(dir, args, None)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{:?}\n{}{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// The secret detector.

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What must never be logged, each with what it is (for the failure message).
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, what: &str, needle: String) {
        assert!(
            !needle.is_empty(),
            "{what}: an empty needle finds everything"
        );
        self.0.push((what.to_owned(), needle));
    }

    /// A PKCS#8 private key (PEM) in every form a log could carry it: the PEM, its body
    /// in one piece (the DER's base64), each body line of 40 characters or more that
    /// encodes part of the private scalar, the DER as base64url, and the raw private
    /// scalar as hex (both cases), base64, base64url (a JWK's `d`) and as `Debug` shows
    /// bytes.
    ///
    /// Lines holding only the public key (the last of a P-256 key's three) are not
    /// secrets: the same bytes are in the certificate and the bundle, and their base64
    /// there lines up with the PEM line one time in three.
    fn add_key(&mut self, what: &str, pem: &str) {
        let pem = pem.trim();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{what}: not PKCS#8"
        );
        self.add(&format!("{what} (PEM)"), pem.to_owned());
        let body: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let joined = body.concat();
        self.add(&format!("{what} (PEM body)"), joined.clone());
        let der = Base64::decode_vec(&joined).unwrap();
        self.add(
            &format!("{what} (DER base64url)"),
            Base64UrlUnpadded::encode_string(&der),
        );
        let scalar: Vec<u8> = if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
            key.to_bytes().to_vec()
        } else if let Ok(key) = p384::SecretKey::from_pkcs8_pem(pem) {
            key.to_bytes().to_vec()
        } else {
            panic!("{what}: neither a P-256 nor a P-384 PKCS#8 key");
        };
        let at = der
            .windows(scalar.len())
            .position(|w| w == scalar.as_slice())
            .unwrap_or_else(|| panic!("{what}: the scalar is not in the DER"));
        let private = at..at + scalar.len();
        let mut start = 0; // the first DER byte the line encodes
        for line in &body {
            let end = start + line.trim_end_matches('=').len() * 3 / 4;
            if line.len() >= 40 && start < private.end && private.start < end {
                self.add(&format!("{what} (PEM line)"), (*line).to_owned());
            }
            start = end;
        }
        let hex = hex(&scalar);
        self.add(&format!("{what} (scalar hex)"), hex.to_uppercase());
        self.add(&format!("{what} (scalar hex)"), hex);
        self.add(
            &format!("{what} (scalar base64)"),
            Base64::encode_string(&scalar),
        );
        self.add(
            &format!("{what} (scalar base64url)"),
            Base64UrlUnpadded::encode_string(&scalar),
        );
        // As `{:?}` of the bytes prints them, inside a longer list too (the DER of the key,
        // a buffer): the scalar's run of numbers without the brackets.
        let listed = format!("{scalar:?}");
        self.add(
            &format!("{what} (scalar bytes)"),
            listed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }

    /// A JWT-SVID, a bearer credential: the token, and its signature alone (which with
    /// the public header and claims is the token again).
    fn add_token(&mut self, what: &str, token: &str) {
        self.add(what, token.to_owned());
        let signature = token.rsplit('.').next().unwrap();
        self.add(&format!("{what} (signature)"), signature.to_owned());
    }

    /// What `line` gives away, if anything.
    fn found_in(&self, line: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, needle)| line.contains(needle.as_str()))
            .map(|(what, _)| what.as_str())
    }

    fn key_files(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.key_files(&path);
            } else if path.extension().is_some_and(|e| e == "key") {
                let pem = std::fs::read_to_string(&path).unwrap();
                self.add_key(&path.display().to_string(), &pem);
            }
        }
    }
}

/// The negative control: the detector finds a key and a token in the forms a careless
/// log line would carry them, and nothing in a line without them.
#[test]
fn the_secret_detector_finds_what_it_looks_for() {
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = key.serialize_pem();
    let mut secrets = Secrets::default();
    secrets.add_key("test key", &pem);
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.c2lnbmF0dXJlLW9mLWVub3VnaC1sZW5ndGgtdG8tbWF0dGVy";
    secrets.add_token("test token", token);

    let pkcs8 = p256::SecretKey::from_pkcs8_pem(&pem).unwrap();
    let scalar = pkcs8.to_bytes();
    let hex = hex(&scalar);
    let pem_line = pem.lines().nth(1).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let escaped_pem = pem.replace('\n', "\\n");
    let json_pem = serde_json::json!({ "level": "DEBUG", "key": pem }).to_string();
    let leaks = [
        format!("2026-01-01T00:00:00Z DEBUG loaded key={pem}"),
        format!("INFO key=\"{escaped_pem}\""),
        json_pem,
        format!("{{\"message\":\"x\",\"line\":\"{pem_line}\"}}"),
        format!("DEBUG der={der_b64}"),
        format!("TRACE scalar={}", hex.to_uppercase()),
        format!("TRACE scalar={hex}"),
        format!("TRACE d={}", Base64UrlUnpadded::encode_string(&scalar)),
        format!("TRACE key={:?}", scalar.to_vec()),
        format!("INFO token={token}"),
        format!("INFO sig={}", token.rsplit('.').next().unwrap()),
    ];
    for leak in &leaks {
        assert!(secrets.found_in(leak).is_some(), "missed: {leak}");
    }
    let clean =
        "2026-01-01T00:00:00Z  INFO rotated X509-SVID id=spiffe://example.org/a serial=4f00";
    assert_eq!(secrets.found_in(clean), None);
    // The last line of a P-256 key's PEM is public key only (in every certificate for it).
    let last = pem.lines().rfind(|l| !l.starts_with("-----")).unwrap();
    assert_eq!(secrets.found_in(&format!("x5c={last}")), None);
}

// ---------------------------------------------------------------------------------------
// The flow.

/// Every line a child writes to stderr (and stdout, kept apart), read as it comes so the
/// pipes never fill.
struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    from: impl Read + Send + 'static,
    into: &Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    let into = Arc::clone(into);
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    })
}

impl Running {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(MESHID)
            .current_dir(dir)
            .args(args)
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            // --log-level must win over it.
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stderr.take().unwrap(), &stderr),
            collect(child.stdout.take().unwrap(), &stdout),
        ];
        Self {
            child,
            stderr,
            stdout,
            readers,
        }
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit and every line written.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stderr = self.stderr_lines();
        let stdout = self.stdout.lock().unwrap().clone();
        (exit, stderr, stdout)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Is `line` an event saying that `ID` was rotated, in `format`?
fn is_rotation(format: &str, line: &str) -> bool {
    if format == "json" {
        serde_json::from_str::<serde_json::Value>(line)
            .is_ok_and(|v| v["message"] == "rotated X509-SVID" && v["id"] == ID)
    } else {
        line.contains("rotated X509-SVID") && line.contains(&format!("id={ID}"))
    }
}

/// Every process's stderr lines, by process.
type Logged = Vec<(String, Vec<String>)>;

/// Runs the whole flow with `--log-format format` at `--log-level trace` and checks its
/// logs: no secret in any line, and what should be there is.
fn flow(format: &str) {
    let scratch = Scratch::new(format);
    let (logged, tokens) = run_flow(format, &scratch.0);
    check_logs(format, &scratch.0, &logged, &tokens);
}

/// Runs the flow in `dir`: what each process logged, and the JWT-SVIDs `fetch jwt` printed.
fn run_flow(format: &str, dir: &Path) -> (Logged, Vec<String>) {
    // `meshid ARGS` at trace, RUST_LOG=off (the flag must win), its stderr kept.
    let mut logged: Logged = Vec::new();
    let mut at_trace = |what: &str, args: &[&str]| {
        let logs = ["--log-level", "trace", "--log-format", format];
        let out = meshid_env(dir, &[args, &logs[..]].concat(), Some("off"));
        ok(&out);
        let lines = stderr(&out).lines().map(str::to_owned).collect();
        logged.push((what.to_owned(), lines));
        out
    };

    at_trace(
        "ca init",
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    assert!(
        std::fs::read_dir(dir.join("ca/jwt")).unwrap().count() > 0,
        "ca init made no JWT key"
    );
    at_trace(
        "issue",
        &["issue", "--ca", "ca", "--id", ID, "--out-dir", "issued"],
    );

    let socket = dir.join("api.sock");
    let socket = socket.to_str().unwrap();
    let server = Running::start(
        dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            socket,
            "--ca",
            "ca",
            "--id",
            ID,
            "--ttl",
            "5s",
            "--log-level",
            "trace",
            "--log-format",
            format,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(socket).exists() {
        let lines = server.stderr_lines();
        assert!(Instant::now() < deadline, "no socket: {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let fetch = ["fetch", "x509", "--socket", socket, "--out-dir"];
    at_trace("fetch x509", &[&fetch[..], &["first"]].concat());
    let out = at_trace(
        "fetch jwt",
        &["fetch", "jwt", "--socket", socket, "--audience", "x"],
    );
    let tokens: Vec<String> = stdout(&out)
        .split_whitespace()
        .filter(|w| w.starts_with("eyJ") && w.matches('.').count() == 2)
        .map(str::to_owned)
        .collect();
    assert!(!tokens.is_empty(), "no token: {}", stdout(&out));

    // Several rotations (5 s SVIDs renew at about half their life), then the SVID of the
    // moment: a key issued after the first fetch.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotations = |lines: Vec<String>| lines.iter().filter(|l| is_rotation(format, l)).count();
    while rotations(server.stderr_lines()) < 3 {
        assert!(Instant::now() < deadline, "fewer than 3 rotations in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    at_trace(
        "fetch x509 (after rotations)",
        &[&fetch[..], &["last"]].concat(),
    );

    let (exit, server_stderr, server_stdout) = server.terminate();
    assert!(exit.success(), "{exit:?}: {server_stderr:?}");
    let serving = server_stdout.iter().any(|l| l.starts_with("serving "));
    assert!(serving, "{server_stdout:?}");
    logged.push(("serve workload-api".to_owned(), server_stderr));
    (logged, tokens)
}

/// No secret in any line of `logged`, and the run's events in it.
fn check_logs(format: &str, dir: &Path, logged: &Logged, tokens: &[String]) {
    // The secrets, read from disk, and the tokens printed.
    let mut secrets = Secrets::default();
    secrets.key_files(&dir.join("ca"));
    for out_dir in ["issued", "first", "last"] {
        let pem = std::fs::read_to_string(dir.join(out_dir).join("svid.key")).unwrap();
        secrets.add_key(&format!("{out_dir}/svid.key"), &pem);
    }
    assert_ne!(
        std::fs::read(dir.join("first/svid.key")).unwrap(),
        std::fs::read(dir.join("last/svid.key")).unwrap(),
        "the SVID did not rotate between the fetches"
    );
    for token in tokens {
        secrets.add_token("JWT-SVID from fetch jwt", token);
    }
    assert!(
        secrets.0.iter().any(|(what, _)| what.contains("/jwt/")),
        "no JWT key read"
    );

    let mut lines = 0usize;
    let mut levels = std::collections::BTreeSet::new();
    for (process, stderr) in logged {
        for line in stderr {
            lines += 1;
            if let Some(what) = secrets.found_in(line) {
                panic!("{format}: {process} logged {what}: {line}");
            }
            if format == "json" {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{process}: not JSON ({e}): {line}"));
                let level = value["level"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{process}: no level: {line}"));
                levels.insert(level.to_owned());
                assert!(value["timestamp"].is_string(), "{process}: {line}");
            } else {
                // Text lines carry no control character (the escaping held).
                assert!(!line.chars().any(char::is_control), "{process}: {line:?}");
                for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] {
                    if line.split_whitespace().nth(1) == Some(level) {
                        levels.insert(level.to_owned());
                    }
                }
            }
        }
    }

    // Not vacuous: the logs did capture the run, at trace.
    let all: Vec<&str> = logged
        .iter()
        .flat_map(|(_, l)| l.iter().map(String::as_str))
        .collect();
    assert!(lines > 100, "{format}: only {lines} log lines");
    assert!(
        levels.contains("TRACE"),
        "{format}: no trace line: {levels:?}"
    );
    let rotations = all.iter().filter(|l| is_rotation(format, l)).count();
    assert!(rotations >= 3, "{format}: {rotations} rotation events");
    let has = |message: &str, field: &str, value: &str| {
        all.iter().any(|line| {
            if format == "json" {
                serde_json::from_str::<serde_json::Value>(line)
                    .is_ok_and(|v| v["message"] == message && v[field] == value)
            } else {
                line.contains(message) && line.contains(&format!("{field}={value}"))
            }
        })
    };
    assert!(
        has("issued X509-SVID", "spiffe_id", ID),
        "{format}: no X509 issuance event"
    );
    assert!(
        has("issued JWT-SVID", "spiffe_id", ID),
        "{format}: no JWT issuance event"
    );
}

#[test]
fn a_whole_flow_at_trace_logs_no_secret_in_json() {
    flow("json");
}

#[test]
fn a_whole_flow_at_trace_logs_no_secret_in_text() {
    flow("text");
}

// ---------------------------------------------------------------------------------------
// The flags.

/// A directory with a CA, for commands that log.
fn with_ca(name: &str) -> Scratch {
    let scratch = Scratch::new(name);
    ok(&meshid(
        &scratch.0,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    ));
    scratch
}

#[test]
fn a_bad_log_format_or_level_is_a_usage_error_naming_the_flag() {
    let scratch = Scratch::new("bad-flags");
    let dir = &scratch.0;
    for args in [
        &["--log-format", "yaml", "id", "check", ID][..],
        &["id", "check", ID, "--log-format", "yaml"],
        &["id", "check", ID, "--log-format", ""],
    ] {
        let out = meshid(dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--log-format"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    for level in ["deubg", "", "meshid", "meshid=loud", "warn,verbose"] {
        let out = meshid(dir, &["id", "check", ID, "--log-level", level]);
        assert_eq!(out.status.code(), Some(2), "{level:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--log-level"),
            "{level:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn help_says_what_the_log_flags_do() {
    let scratch = Scratch::new("help");
    for args in [&["--help"][..], &["serve", "workload-api", "--help"]] {
        let out = meshid(&scratch.0, args);
        ok(&out);
        let help = stdout(&out);
        for said in [
            "--log-level <LEVEL>",
            "RUST_LOG",
            "--log-format <FORMAT>",
            "json",
            "stderr",
        ] {
            assert!(help.contains(said), "{args:?}: no {said}: {help}");
        }
    }
}

/// `issue` logs its issuance at info: one JSON object per line with `--log-format json`,
/// before or after the subcommand; the flags win over RUST_LOG.
#[test]
fn log_level_and_format_work_anywhere_and_win_over_rust_log() {
    let scratch = with_ca("flags");
    let dir = &scratch.0;
    let issue = |out_dir: &str, flags: &[&str], rust_log: Option<&str>| {
        let args = [
            &["issue", "--ca", "ca", "--id", ID, "--out-dir", out_dir],
            flags,
        ]
        .concat();
        let out = meshid_env(dir, &args, rust_log);
        ok(&out);
        stderr(&out)
    };
    let issued = |format: &str, log: &str| {
        log.lines().any(|line| {
            if format == "json" {
                serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                    v["message"] == "issued X509-SVID"
                        && v["spiffe_id"] == ID
                        && v["level"] == "INFO"
                        && v["serial"].as_str().is_some_and(|s| s.len() == 32)
                        && v["not_after"].as_str().is_some_and(|s| s.starts_with("20"))
                })
            } else {
                line.contains("INFO issued X509-SVID") && line.contains(&format!("spiffe_id={ID}"))
            }
        })
    };

    let log = issue("a", &["--log-level", "debug", "--log-format", "json"], None);
    assert!(issued("json", &log), "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    // Global: before the subcommand too.
    let args = [
        "--log-format",
        "json",
        "--log-level",
        "info",
        "issue",
        "--ca",
        "ca",
        "--id",
        ID,
        "--out-dir",
        "b",
    ];
    let out = meshid(dir, &args);
    ok(&out);
    assert!(issued("json", &stderr(&out)), "{}", stderr(&out));
    // Text by default; --log-level over RUST_LOG, RUST_LOG without it, warn without either.
    let log = issue("c", &["--log-level", "info"], Some("off"));
    assert!(issued("text", &log), "{log}");
    let log = issue("d", &[], Some("info"));
    assert!(issued("text", &log), "{log}");
    let log = issue("e", &["--log-level", "warn"], Some("info"));
    assert!(log.is_empty(), "{log}");
    let log = issue("f", &[], None);
    assert!(log.is_empty(), "{log}");
    // A directive: the CA's events only.
    let log = issue("g", &["--log-level", "meshid::ca=info,off"], None);
    assert!(issued("text", &log), "{log}");
}

/// With `--log-format json`, a failed command's error is a JSON line too.
#[test]
fn a_failure_is_a_json_line_in_json_mode() {
    let scratch = Scratch::new("failure");
    let out = meshid(
        &scratch.0,
        &[
            "--log-format",
            "json",
            "issue",
            "--ca",
            "nope",
            "--id",
            ID,
            "--out-dir",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["level"], "ERROR");
    assert_eq!(v["exit_code"], 2);
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("meshid: ") && m.contains("nope")),
        "{v}"
    );
}
