//! A real Prometheus (Debian's 2.42, a test peer) scraping a real `meshid serve
//! workload-api --metrics` with the shipped scrape config and alerting rules: the expiry
//! gauge moves forward across rotations, `renewals_total{result="ok"}` grows, and once the
//! CA is gone (made with a 40 s lifetime, it expires under the server) the renewals fail,
//! `MeshidSvidRenewalsFailing` fires for the SPIFFE ID, and so does `MeshidNoReadyAgent`
//! once the last SVID has expired.
//!
//! The rules are the shipped `examples/prometheus/rules.yml` with their time windows
//! scaled from minutes to seconds (`[5m]` to `[20s]`, `for: 5m` to `for: 5s`, ...), so
//! the run takes about a minute and a half; the expressions are untouched. Their
//! minute-scale behaviour is unit-tested by `promtool test rules`
//! (`tests/prometheus_rules.rs`).

#[path = "common/http.rs"]
mod http;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");
const ID: &str = "spiffe://example.org/web";

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/prometheus")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with each `(from, to)` replaced; each must occur (else the example changed and
/// this test must follow).
fn scaled(mut text: String, replacements: &[(&str, &str)]) -> String {
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{from:?} is no longer in the example: update this test"
        );
        text = text.replace(from, to);
    }
    text
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Polls `f` until it returns `Some` (at most `within`).
fn eventually<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_sees_rotations_and_alerts_when_renewals_fail() {
    let dir = Scratch(std::env::temp_dir().join(format!("meshid-promlive-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let init = Command::new(MESHID)
        .current_dir(&dir.0)
        .args([
            "ca",
            "init",
            "--trust-domain",
            "example.org",
            "--out",
            "ca",
            "--ttl",
            "40s",
        ])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let ca_expires = now() + 40.0;

    let metrics = http::free_addr();
    let socket = dir.0.join("api.sock");
    let mut server = Command::new(MESHID);
    server
        .current_dir(&dir.0)
        .args(["serve", "workload-api", "--socket"])
        .arg(&socket)
        .args(["--ca", "ca", "--id", ID, "--ttl", "8s", "--metrics"])
        .arg(metrics.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = Running(server.spawn().unwrap());

    let prom = prometheus_for(&dir.0, metrics);

    // Scraped (OpenMetrics, as Prometheus asks), and every rule evaluates.
    let expiry_query =
        format!("meshid_svid_expiry_timestamp_seconds{{spiffe_id=\"{ID}\",job=\"meshid\"}}");
    let first = eventually("the first expiry sample", prometheus::WAIT, || {
        prom.value(&expiry_query)
    });
    assert!(first > now() && first < now() + 9.0, "{first}");
    let rules = prom.wait_for("/api/v1/rules", "evaluation of every rule", |b| {
        b.matches(r#""health":"ok""#).count() == 5
    });
    assert!(!rules.contains(r#""health":"err""#), "{rules}");

    // Rotations: the expiry moves forward, the successful renewals add up.
    let ok_query = format!("meshid_svid_renewals_total{{spiffe_id=\"{ID}\",result=\"ok\"}}");
    let ok_first = eventually("an ok renewal count", prometheus::WAIT, || {
        prom.value(&ok_query)
    });
    let later = eventually(
        "the expiry to move forward",
        Duration::from_secs(20),
        || prom.value(&expiry_query).filter(|v| *v > first),
    );
    let ok_later = eventually("more ok renewals", Duration::from_secs(20), || {
        prom.value(&ok_query).filter(|v| *v > ok_first)
    });
    assert!(later > first && ok_later > ok_first);
    assert!(
        now() < ca_expires - 2.0,
        "the rotations were seen too late to tell them from the CA's end; the machine is too slow"
    );

    // The CA expires: every renewal fails (the issuer refuses), the alerts fire.
    let alerts = prom.wait_for("/api/v1/alerts", "MeshidSvidRenewalsFailing firing", |b| {
        firing(b, "MeshidSvidRenewalsFailing")
    });
    assert!(
        alerts.contains(&format!(r#""spiffe_id":"{ID}""#)),
        "{alerts}"
    );
    assert!(now() > ca_expires, "fired before the CA expired: {alerts}");
    let errors = prom
        .value(&format!(
            "meshid_svid_renewals_total{{spiffe_id=\"{ID}\",result=\"error\",reason=\"issuer\"}}"
        ))
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "{errors}");
    prom.wait_for("/api/v1/alerts", "MeshidNoReadyAgent firing", |b| {
        firing(b, "MeshidNoReadyAgent")
    });
    assert_eq!(prom.value("meshid_ready"), Some(0.0));
    let (status, body) = http::get(metrics, "/readyz", None).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("no valid X509-SVID for {ID}")),
        "{body}"
    );
}

/// Prometheus scraping `metrics` with the example's config and its rules, time-scaled.
fn prometheus_for(dir: &Path, metrics: std::net::SocketAddr) -> prometheus::Server {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        scaled(
            example("prometheus.yml"),
            &[("127.0.0.1:9464", &metrics.to_string()), ("15s", "1s")],
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.yml"),
        scaled(
            example("rules.yml"),
            &[
                ("[5m]", "[20s]"),
                ("for: 5m", "for: 5s"),
                ("for: 2m", "for: 2s"),
                ("for: 1m", "for: 1s"),
                ("for: 10m", "for: 2s"),
            ],
        ),
    )
    .unwrap();
    prometheus::Server::start(dir, &config)
}

/// Whether Prometheus' `/api/v1/alerts` answer has `alert` firing.
fn firing(body: &str, alert: &str) -> bool {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    json["data"]["alerts"].as_array().is_some_and(|alerts| {
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == alert && a["state"] == "firing")
    })
}
