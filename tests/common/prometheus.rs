//! Prometheus and promtool for the tests: Debian bookworm's `prometheus` package (2.42),
//! downloaded and unpacked (not installed) on first use by `tests/peers/prometheus.sh` into
//! the peer cache, or the directory named by `MESHID_PROMETHEUS_DIR` (holding `prometheus`
//! and `promtool`).
//!
//! Included with `#[path = "common/prometheus.rs"] mod prometheus;`, beside
//! `#[path = "common/peers.rs"] mod peers;` at the test's root.

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
