//! `--metrics ADDR` on the `serve` commands, run as a black box: `/readyz` follows the
//! SVID (not ready before the first, ready while one is valid, not ready once it expires
//! with its source down), `/healthz` and `/metrics` answer, `promtool check metrics` (the
//! Debian Prometheus peer) accepts the exposition, and what the server does is counted.

#[path = "common/http.rs"]
mod http;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/prometheus.rs"]
mod prometheus;
#[path = "common/serve_cli.rs"]
mod serve_cli;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serve_cli::Scratch;

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");

/// A `meshid` process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, args: &[&str]) -> Running {
    Running(
        Command::new(MESHID)
            .current_dir(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls `GET path` until `done` says so (at most `within`); the last answer.
fn until(
    addr: SocketAddr,
    path: &str,
    within: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let answer = http::get(addr, path, None);
        if let Some((status, body)) = &answer {
            if done(*status, body) {
                return (*status, body.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never became what was expected; last: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn readyz(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/readyz is not JSON ({e}): {body}"))
}

#[test]
fn readyz_is_ready_only_while_a_valid_svid_is_held_and_the_socket_bound() {
    let scratch = Scratch::new("mreadyz");
    let dir = &scratch.0;
    let upstream = dir.join("up.sock");
    let addr = http::free_addr();
    // SDS bridged from a Workload API that is not there yet: no SVID, no socket.
    let _sds = spawn(
        dir,
        &[
            "serve",
            "sds",
            "--socket",
            dir.join("sds.sock").to_str().unwrap(),
            "--workload-api",
            upstream.to_str().unwrap(), // a path, as --socket takes it
            "--metrics",
            &addr.to_string(),
        ],
    );
    let (_, ok) = until(addr, "/healthz", Duration::from_secs(10), |s, _| s == 200);
    assert_eq!(ok, "ok\n");
    let (status, body) = until(addr, "/readyz", Duration::from_secs(5), |_, _| true);
    assert_eq!(status, 503, "{body}");
    let json = readyz(&body);
    assert_eq!(json["ready"], false, "{body}");
    let reasons = json["reasons"].to_string();
    assert!(reasons.contains("no X509-SVID yet"), "{body}");
    assert!(reasons.contains("sds.sock not bound"), "{body}");
    let metrics = http::get(addr, "/metrics", None).unwrap().1;
    assert_eq!(
        http::sample(&metrics, "meshid_ready"),
        Some(0.0),
        "{metrics}"
    );

    // The Workload API appears (SVIDs of 6 s): ready.
    let up = spawn(
        dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            upstream.to_str().unwrap(),
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/envoy",
            "--ttl",
            "6s",
        ],
    );
    let (_, body) = until(addr, "/readyz", Duration::from_secs(15), |s, _| s == 200);
    assert_eq!(
        readyz(&body),
        serde_json::json!({"ready": true, "reasons": []})
    );
    let metrics = http::get(addr, "/metrics", None).unwrap().1;
    assert_eq!(
        http::sample(&metrics, "meshid_ready"),
        Some(1.0),
        "{metrics}"
    );
    let expiry = http::sample(
        &metrics,
        "meshid_svid_expiry_timestamp_seconds{spiffe_id=\"spiffe://example.org/envoy\"}",
    )
    .unwrap_or_else(|| panic!("{metrics}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now && expiry <= now + 7.0, "{expiry} vs {now}");

    // The source goes down: once the held SVID expires, not ready, saying why.
    drop(up);
    let (status, body) = until(addr, "/readyz", Duration::from_secs(15), |s, _| s == 503);
    assert_eq!(status, 503);
    assert!(
        readyz(&body)["reasons"]
            .to_string()
            .contains("no valid X509-SVID from the Workload API"),
        "{body}"
    );
    assert!(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            >= expiry,
        "not ready only once the SVID expired"
    );
}

#[test]
fn metrics_endpoints_answer_promtool_accepts_them_and_the_server_s_work_is_counted() {
    let scratch = Scratch::new("mcount");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let addr = http::free_addr();
    let _server = spawn(
        dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            socket.to_str().unwrap(),
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--metrics",
            &addr.to_string(),
        ],
    );
    until(addr, "/readyz", Duration::from_secs(15), |s, _| s == 200);
    // A watcher holds one connection and one stream while it watches.
    let watcher = spawn(
        dir,
        &[
            "fetch",
            "x509",
            "--watch",
            "--socket",
            socket.to_str().unwrap(),
        ],
    );
    until(addr, "/metrics", Duration::from_secs(10), |_, text| {
        http::sample(
            text,
            "meshid_serve_streams{server=\"workload_api\",stream=\"x509_svid\"}",
        ) == Some(1.0)
            && http::sample(text, "meshid_serve_connections{server=\"workload_api\"}") == Some(1.0)
    });
    drop(watcher);
    let fetched = Command::new(MESHID)
        .args(["fetch", "x509", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");

    // Counted: the issuance, the renewal, one stream and its push; the stream and the
    // connection closed again once the client left.
    let (_, text) = until(addr, "/metrics", Duration::from_secs(10), |_, text| {
        http::sample(
            text,
            "meshid_serve_streams{server=\"workload_api\",stream=\"x509_svid\"}",
        ) == Some(0.0)
            && http::sample(text, "meshid_serve_connections{server=\"workload_api\"}") == Some(0.0)
    });
    for (series, value) in [
        ("meshid_ca_issued_total{kind=\"x509_svid\"}", 1.0),
        (
            "meshid_svid_renewals_total{spiffe_id=\"spiffe://example.org/web\",result=\"ok\",reason=\"none\"}",
            1.0,
        ),
        (
            "meshid_serve_pushes_total{server=\"workload_api\",stream=\"x509_svid\"}",
            2.0,
        ),
        ("meshid_ready", 1.0),
    ] {
        assert_eq!(http::sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(!text.contains("serial"), "{text}");

    // The classic text format by default, which promtool lints and accepts...
    let mut check = Command::new(prometheus::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with_stdin(text.as_bytes());
    assert!(
        check.status.success(),
        "promtool check metrics: {}",
        check.describe()
    );
    check = Command::new(prometheus::promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .output_with_stdin(b"meshid_x_total{a=\"b\"} 1\n");
    assert!(
        !check.status.success(),
        "the lint can fail (a counter without HELP): {}",
        check.describe()
    );
    // ... and OpenMetrics to whoever asks for it (Prometheus does).
    let (status, om) = http::get(
        addr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE meshid_svid_renewals counter"), "{om}");

    assert_eq!(http::get(addr, "/nope", None).unwrap().0, 404);
    assert_eq!(
        http::request(addr, "POST", "/metrics", None).unwrap().0,
        405
    );
}

#[test]
fn refused_callers_are_counted_by_reason_and_a_bad_metrics_address_is_a_usage_error() {
    let scratch = Scratch::new("mrefuse");
    let dir = &scratch.0;
    let socket = dir.join("api.sock");
    let addr = http::free_addr();
    // Admits one uid that is not ours.
    let stranger = (std::fs::metadata(dir).map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
        + 4242)
        .to_string();
    let _server = spawn(
        dir,
        &[
            "serve",
            "workload-api",
            "--socket",
            socket.to_str().unwrap(),
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--allow-uid",
            &stranger,
            "--metrics",
            &addr.to_string(),
        ],
    );
    until(addr, "/readyz", Duration::from_secs(15), |s, _| s == 200);
    let fetched = Command::new(MESHID)
        .args(["fetch", "x509", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!fetched.status.success(), "{fetched:?}");
    let (_, text) = until(addr, "/metrics", Duration::from_secs(10), |_, text| {
        http::sample(
            text,
            "meshid_serve_refused_total{server=\"workload_api\",reason=\"uid_not_allowed\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });
    assert!(!text.contains(&format!("uid=\"{stranger}\"")), "{text}");

    // The metrics address is taken: refused before anything is served, exit 2.
    let taken = Command::new(MESHID)
        .current_dir(dir)
        .args([
            "serve",
            "workload-api",
            "--socket",
            dir.join("other.sock").to_str().unwrap(),
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/web",
            "--metrics",
            &addr.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(2), "{taken:?}");
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains(&format!("--metrics {addr}")),
        "{taken:?}"
    );
    assert!(!dir.join("other.sock").exists());
    let malformed = Command::new(MESHID)
        .args([
            "serve",
            "sds",
            "--socket",
            "/tmp/x.sock",
            "--ca",
            "ca",
            "--id",
            "spiffe://example.org/a",
            "--metrics",
            "localhost",
        ])
        .output()
        .unwrap();
    assert_eq!(malformed.status.code(), Some(2), "{malformed:?}");
}

/// Runs a command with `input` on its standard input.
trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> Ran;
}

struct Ran {
    status: std::process::ExitStatus,
    out: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!("{}: {}", self.status, self.out)
    }
}

impl WithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> Ran {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        Ran {
            status: out.status,
            out: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

#[test]
fn an_agent_reports_each_entry_s_svid_and_is_ready_while_every_entry_holds_one() {
    let scratch = Scratch::new("magent");
    let dir = &scratch.0;
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir).unwrap());
    std::fs::write(
        dir.join("entries.toml"),
        format!(
            "[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = [\"unix:uid:{uid}\"]\n\n\
             [[entry]]\nspiffe_id = \"spiffe://example.org/b\"\nselectors = [\"unix:uid:{uid}\"]\nttl = \"6s\"\n"
        ),
    )
    .unwrap();
    let socket = dir.join("agent.sock");
    let addr = http::free_addr();
    let _agent = spawn(
        dir,
        &[
            "serve",
            "agent",
            "--socket",
            socket.to_str().unwrap(),
            "--entries",
            "entries.toml",
            "--ca",
            "ca",
            "--metrics",
            &addr.to_string(),
        ],
    );
    until(addr, "/readyz", Duration::from_secs(20), |s, _| s == 200);
    // Both entries, by SPIFFE ID; b (6 s) renewed again and again.
    let (_, text) = until(addr, "/metrics", Duration::from_secs(15), |_, text| {
        http::sample(
            text,
            "meshid_svid_renewals_total{spiffe_id=\"spiffe://example.org/b\",result=\"ok\",reason=\"none\"}",
        )
        .is_some_and(|n| n >= 2.0)
    });
    for id in ["spiffe://example.org/a", "spiffe://example.org/b"] {
        let series = format!("meshid_svid_expiry_timestamp_seconds{{spiffe_id=\"{id}\"}}");
        assert!(
            http::sample(&text, &series).is_some(),
            "{series} in\n{text}"
        );
    }
    assert!(
        text.contains("meshid_bundle_root_expiry_timestamp_seconds{trust_domain=\"example.org\"}"),
        "{text}"
    );
    let issued = http::sample(&text, "meshid_ca_issued_total{kind=\"x509_svid\"}").unwrap_or(0.0);
    assert!(issued >= 3.0, "{text}");
    // A caller of the agent's socket: its SVIDs pushed on one stream.
    let fetched = Command::new(MESHID)
        .args(["fetch", "x509", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");
    until(addr, "/metrics", Duration::from_secs(10), |_, text| {
        http::sample(
            text,
            "meshid_serve_pushes_total{server=\"workload_api\",stream=\"x509_svid\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });
}
