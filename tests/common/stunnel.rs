//! stunnel for the `proxy` bench: Debian bookworm's `stunnel4` (5.68), downloaded and
//! unpacked (not installed) on first use by `tests/peers/stunnel.sh` into the peer cache, or
//! the binary named by `MESHID_STUNNEL`.
//!
//! Included with `#[path = "common/stunnel.rs"] mod stunnel;` (from `benches/`, with
//! `#[path = "../tests/common/stunnel.rs"]`); it brings `peers.rs` along.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "peers.rs"]
mod peers;

/// The stunnel binary: `MESHID_STUNNEL`, else the wrapper `tests/peers/stunnel.sh` installs
/// (it runs the unpacked `stunnel4` with the unpacked `libwrap0` on its library path, and
/// `exec`s it: the PID is stunnel's).
///
/// # Panics
/// If the peer cannot be installed (with the installer's output): never a silent skip.
pub fn stunnel_binary() -> PathBuf {
    match std::env::var_os("MESHID_STUNNEL") {
        Some(path) => PathBuf::from(path),
        None => peers::peer("stunnel").join("stunnel"),
    }
}

/// A configuration for stunnel as a TLS terminator in the foreground: accepts TLS on
/// `127.0.0.1:port` with the certificate chain `cert` and key `key`, requires a client
/// certificate that verifies against `ca_file` (stunnel cannot match a URI SAN: any
/// certificate from that CA is let through), and forwards the plaintext to
/// `127.0.0.1:backend`. Logs at `warning` and up to stderr; no PID file.
pub fn server_config(port: u16, backend: u16, cert: &Path, key: &Path, ca_file: &Path) -> String {
    format!(
        "foreground = yes
pid =
debug = warning

[inbound]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{backend}
cert = {cert}
key = {key}
CAfile = {ca_file}
verifyChain = yes
requireCert = yes
",
        cert = cert.display(),
        key = key.display(),
        ca_file = ca_file.display()
    )
}
