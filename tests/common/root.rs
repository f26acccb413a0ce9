//! Tests that need root: whether they may run (they fail unless root, or skip when told
//! to with `MESHID_SKIP_ROOT_TESTS=1`). Included by `common/agent.rs` and
//! `common/workloads.rs`.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt as _;

/// The effective uid of this process (the owner of `/proc/self`).
pub fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .expect("/proc/self: these tests need Linux's /proc")
        .uid()
}

/// Whether a test that needs root (`why`: what for) may run: as root, yes. Otherwise it
/// fails, saying why, unless `MESHID_SKIP_ROOT_TESTS=1`: then it prints that it was
/// skipped and returns `false`.
///
/// # Panics
/// When not root and not told to skip.
pub fn root_or_skip(test: &str, why: &str) -> bool {
    let euid = effective_uid();
    if euid == 0 {
        return true;
    }
    if std::env::var_os("MESHID_SKIP_ROOT_TESTS").is_some_and(|v| v == "1") {
        eprintln!(
            "SKIPPED {test}: it {why}, which needs root (euid {euid}); MESHID_SKIP_ROOT_TESTS=1"
        );
        return false;
    }
    panic!(
        "{test}: it {why}, and must run as root (euid is {euid}); \
         run the tests as root, or set MESHID_SKIP_ROOT_TESTS=1 to skip the tests that need it"
    );
}
