//! Prometheus and promtool for the tests: Debian bookworm's `prometheus` package (2.42),
//! downloaded and unpacked (not installed) on first use by `tests/peers/prometheus.sh` into
//! the peer cache, or the directory named by `MESHID_PROMETHEUS_DIR` (holding `prometheus`
//! and `promtool`).
//!
//! Included with `#[path = "common/prometheus.rs"] mod prometheus;`, beside
//! `#[path = "common/peers.rs"] mod peers;` and `#[path = "common/http.rs"] mod http;` at
//! the test's root. [`Server`] runs the Prometheus server itself.

#![allow(dead_code)]

use std::path::PathBuf;

use crate::peers;

/// The directory holding `prometheus` and `promtool`: `MESHID_PROMETHEUS_DIR`, else the
/// peer installed by `tests/peers/prometheus.sh`.
///
/// # Panics
/// If the peer cannot be installed (with the installer's output): never a silent skip.
pub fn prometheus_dir() -> PathBuf {
    match std::env::var_os("MESHID_PROMETHEUS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => peers::peer("prometheus"),
    }
}

/// The `promtool` binary.
///
/// # Panics
/// As [`prometheus_dir`].
pub fn promtool() -> PathBuf {
    prometheus_dir().join("promtool")
}

/// The `prometheus` server binary.
///
/// # Panics
/// As [`prometheus_dir`].
pub fn prometheus() -> PathBuf {
    prometheus_dir().join("prometheus")
}

/// A running Prometheus server on loopback, killed (by its PID) when dropped.
pub struct Server {
    child: std::process::Child,
    /// Where its web API listens.
    pub addr: std::net::SocketAddr,
    log: PathBuf,
}

/// How long Prometheus gets to start, scrape and evaluate (two busy cores).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(90);

impl Server {
    /// Starts `prometheus` with `config`, its data and log under `dir`, on a free port;
    /// waits until it is ready.
    ///
    /// # Panics
    /// If it cannot be started or does not become ready within [`WAIT`].
    pub fn start(dir: &std::path::Path, config: &std::path::Path) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let binary = prometheus();
        let child = std::process::Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let server = Self { child, addr, log };
        server.wait_for("/-/ready", "readiness", |_| true);
        server
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The body of `GET path` if it answered 200.
    pub fn get(&self, path: &str) -> Option<String> {
        let (status, body) = crate::http::get(self.addr, path, None)?;
        (status == 200).then_some(body)
    }

    /// Polls `GET path` until `done` holds for its body; panics with `what`, the last
    /// body and the log after [`WAIT`].
    pub fn wait_for(&self, path: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        let mut last = None;
        while start.elapsed() < WAIT {
            last = self.get(path);
            if last.as_deref().is_some_and(&done) {
                return last.unwrap_or_default();
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        panic!(
            "Prometheus: no {what} within {WAIT:?}; last GET {path}: {last:?}\n--- log\n{}",
            self.log()
        );
    }

    /// The value of an instant query's first sample (`None`: no sample).
    pub fn value(&self, query: &str) -> Option<f64> {
        let body = self.get(&format!("/api/v1/query?query={}", encode(query)))?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query for a URL.
pub fn encode(query: &str) -> String {
    use std::fmt::Write as _;
    query.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}
