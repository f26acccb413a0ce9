//! `examples/prometheus/` checked by Prometheus' own tools, for real: Debian bookworm's
//! Prometheus 2.42 and promtool, a test peer (`tests/peers/prometheus.sh`).
//!
//! `promtool check config` and `check rules` accept the scrape config and the alerting
//! rules; `promtool test rules` runs `rules_test.yml`, where each alert fires when it should
//! and not when it should not. Negative controls prove both able to fail: a broken copy of
//! the rules fails `check rules`, and copies with one alert's expression changed fail that
//! alert's unit tests (and only its). Prometheus itself, scraping the real `meshid serve
//! --metrics` with these rules, is in `tests/prometheus_live.rs`.

#[path = "common/http.rs"]
mod http;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every alert of `rules.yml`.
const ALERTS: [&str; 5] = [
    "MeshidSvidExpiresSoon",
    "MeshidSvidRenewalsFailing",
    "MeshidSdsNacks",
    "MeshidNoReadyAgent",
    "MeshidBundleRootExpiresSoon",
];

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// What a command did: its exit status and output, shown in assertion messages.
struct Ran {
    command: String,
    output: Output,
}

impl Ran {
    fn ok(&self) -> bool {
        self.output.status.success()
    }

    /// Standard output and error together (promtool reports on both).
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
}

/// Runs `promtool ARGS` in `dir`.
fn promtool(dir: &Path, args: &[&str]) -> Ran {
    let tool = prometheus::promtool();
    let command = format!(
        "{} {} (in {})",
        tool.display(),
        args.join(" "),
        dir.display()
    );
    let output = Command::new(&tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    Ran { command, output }
}

/// A fresh directory under the temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("meshid-prom-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Self(dir)
    }

    /// A subdirectory holding `rules.yml` (as given) and the example's `rules_test.yml`.
    fn rules_dir(&self, name: &str, rules: &str) -> PathBuf {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        write(&dir.join("rules.yml"), rules);
        write(
            &dir.join("rules_test.yml"),
            &read(&example_dir().join("rules_test.yml")),
        );
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn promtool_accepts_the_scrape_config_and_every_rule() {
    let dir = example_dir();
    let found = format!("SUCCESS: {} rules found", ALERTS.len());

    let config = promtool(&dir, &["check", "config", "prometheus.yml"]);
    assert!(config.ok(), "{config}");
    for expected in [
        "SUCCESS: 1 rule files found",
        "SUCCESS: prometheus.yml is valid prometheus config file syntax",
        "Checking rules.yml",
        &found,
    ] {
        assert!(
            config.text().contains(expected),
            "no {expected:?} in {config}"
        );
    }

    let rules = promtool(&dir, &["check", "rules", "rules.yml"]);
    assert!(rules.ok(), "{rules}");
    assert!(rules.text().contains(&found), "no {found:?} in {rules}");

    // The rules are the ones named here, and each has unit tests.
    let rules_yml = read(&dir.join("rules.yml"));
    let tests_yml = read(&dir.join("rules_test.yml"));
    for alert in ALERTS {
        assert_eq!(
            rules_yml.matches(&format!("- alert: {alert}\n")).count(),
            1,
            "rules.yml should define {alert} once"
        );
        assert!(
            tests_yml.contains(&format!("alertname: {alert}\n")),
            "rules_test.yml has no test of {alert}"
        );
    }
}

#[test]
fn promtool_unit_tests_of_every_alert_pass() {
    let ran = promtool(&example_dir(), &["test", "rules", "rules_test.yml"]);
    assert!(ran.ok(), "{ran}");
    assert!(ran.text().contains("SUCCESS"), "no SUCCESS in {ran}");
}

/// The negative control of `check rules`: the same check fails a rule file whose
/// expression does not parse (and passes the unchanged copy beside it).
#[test]
fn promtool_check_fails_a_broken_copy_of_the_rules() {
    let scratch = Scratch::new("broken");
    let rules = read(&example_dir().join("rules.yml"));
    let good = scratch.rules_dir("good", &rules);
    let ran = promtool(&good, &["check", "rules", "rules.yml"]);
    assert!(ran.ok(), "the unchanged copy should pass: {ran}");

    let intact = r#"(increase(meshid_sds_responses_total{result="nack"}[5m])) > 0"#;
    assert_eq!(
        rules.matches(intact).count(),
        1,
        "rules.yml changed: update this test"
    );
    let broken = scratch.rules_dir(
        "broken",
        &rules.replace(
            intact,
            r#"(increase(meshid_sds_responses_total{result="nack"}[5m]) > 0"#,
        ),
    );
    let ran = promtool(&broken, &["check", "rules", "rules.yml"]);
    assert!(
        !ran.ok(),
        "a rule that does not parse passed the check: {ran}"
    );
    assert!(
        ran.text().contains("FAILED") && ran.text().contains("MeshidSdsNacks"),
        "the failure should name the broken rule: {ran}"
    );
}

/// One wrong version of one alert: `from` (found once in rules.yml) replaced by `to`.
struct Mutation {
    alert: &'static str,
    from: &'static str,
    to: &'static str,
    /// What would go wrong, for the message.
    why: &'static str,
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        alert: "MeshidSvidExpiresSoon",
        from: "meshid_svid_not_before_timestamp_seconds) / 3",
        to: "meshid_svid_not_before_timestamp_seconds) / 2",
        why: "firing at half the lifetime, when renewal is merely due",
    },
    Mutation {
        alert: "MeshidSvidExpiresSoon",
        from: "for: 1m",
        to: "for: 0m",
        why: "firing at the first evaluation past two thirds",
    },
    Mutation {
        alert: "MeshidSvidRenewalsFailing",
        from: "unless on (job, instance, spiffe_id)\n          sum by (job, instance, spiffe_id) (increase(meshid_svid_renewals_total{result=\"ok\"}[5m])) > 0",
        to: "and on (job, instance, spiffe_id)\n          sum by (job, instance, spiffe_id) (increase(meshid_svid_renewals_total{result=\"ok\"}[5m])) == 0",
        why: "`and ... == 0` never firing for an ID that has never renewed (no ok series)",
    },
    Mutation {
        alert: "MeshidSvidRenewalsFailing",
        from: "for: 5m",
        to: "for: 3m",
        why: "firing after 4 minutes of failures",
    },
    Mutation {
        alert: "MeshidSdsNacks",
        from: "{result=\"nack\"}[5m]",
        to: "{result=\"nack\"}[1m]",
        why: "forgetting a NACK after a minute",
    },
    Mutation {
        alert: "MeshidNoReadyAgent",
        from: "sum(meshid_ready{job=\"meshid\"}) == 0",
        to: "min(meshid_ready{job=\"meshid\"}) == 0",
        why: "firing while another instance is ready",
    },
    Mutation {
        alert: "MeshidNoReadyAgent",
        from: "\n          or\n          absent(meshid_ready{job=\"meshid\"})",
        to: "",
        why: "silent when no meshid is scraped at all",
    },
    Mutation {
        alert: "MeshidBundleRootExpiresSoon",
        from: "min by (trust_domain)",
        to: "min by (trust_domain, instance)",
        why: "one alert per instance rather than per trust domain",
    },
    Mutation {
        alert: "MeshidBundleRootExpiresSoon",
        from: "30 * 24 * 3600",
        to: "10 * 24 * 3600",
        why: "silent 20 days before a root expires",
    },
];

/// The negative control of `test rules`: each mutation must fail the unit tests of its
/// alert, and no other's. The unchanged copy passes, so the copying is not what fails.
#[test]
fn promtool_unit_tests_catch_each_changed_alert() {
    let scratch = Scratch::new("mutants");
    let rules = read(&example_dir().join("rules.yml"));
    let control = scratch.rules_dir("control", &rules);
    let ran = promtool(&control, &["test", "rules", "rules_test.yml"]);
    assert!(ran.ok(), "the unchanged copy should pass: {ran}");

    for alert in ALERTS {
        assert!(
            MUTATIONS.iter().any(|m| m.alert == alert),
            "no mutation of {alert}"
        );
    }
    for (i, m) in MUTATIONS.iter().enumerate() {
        assert_eq!(
            rules.matches(m.from).count(),
            1,
            "{:?} should occur once in rules.yml (update this test)",
            m.from
        );
        let dir = scratch.rules_dir(&format!("mutant-{i}"), &rules.replacen(m.from, m.to, 1));
        let ran = promtool(&dir, &["test", "rules", "rules_test.yml"]);
        assert!(
            !ran.ok(),
            "{} {:?} -> {:?} ({}) passed the unit tests: {ran}",
            m.alert,
            m.from,
            m.to,
            m.why
        );
        let text = ran.text();
        let failed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("alertname: "))
            .map(|l| l.split(',').next().unwrap_or(l))
            .collect();
        assert!(
            !failed.is_empty() && failed.iter().all(|a| *a == m.alert),
            "{} {:?} -> {:?} should fail only the tests of {}, failed {failed:?}: {ran}",
            m.alert,
            m.from,
            m.to,
            m.alert
        );
    }
}
