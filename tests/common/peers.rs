//! Test peers (programs nobody here wrote: Envoy, Python's gRPC stacks, go-spiffe,
//! grpc-java), installed on first use by the scripts in `tests/peers/` into a cache outside
//! the clone (`MESHID_PEER_CACHE`, else `~/.cache/meshid-peers`), keyed by version.
//!
//! A peer that cannot be installed fails the test that needs it, with the installer's
//! output: never a silent skip.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Installs (once per machine; once per test process it is checked) the peer that
/// `tests/peers/NAME.sh` provides, and returns the directory it printed.
///
/// # Panics
/// If the installer fails: the test needing the peer cannot run, and says why.
pub fn peer(name: &str) -> PathBuf {
    static DONE: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = done.get_or_insert_with(HashMap::new).get(name) {
        return path.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(format!("{name}.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "installing test peer '{name}' ({}) failed with {}; it is needed by this test.\n--- stdout\n{}\n--- stderr\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("{} printed no path", script.display()))
            .trim(),
    );
    assert!(
        dir.exists(),
        "{} printed {}, which does not exist",
        script.display(),
        dir.display()
    );
    done.get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), dir.clone());
    dir
}
