//! Replays every fuzz corpus under `fuzz/corpus/` through the same checks the fuzz targets
//! run, so CI exercises them on stable Rust without cargo-fuzz.

#[path = "checks/spiffe_id.rs"]
mod spiffe_id_checks;

mod common;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>/`; returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "corpus file {} fails", path.display());
        n += 1;
    }
    n
}

#[test]
fn spiffe_id_corpus() {
    assert!(replay("spiffe_id", spiffe_id_checks::check) >= 30);
}

#[test]
fn spiffe_id_checks_hold_on_the_case_table() {
    for case in common::load_cases() {
        spiffe_id_checks::check(&case.input);
    }
}

#[test]
fn the_reference_oracle_is_not_trivial() {
    // A checker whose oracle always agreed would prove nothing: pin it on known cases.
    use spiffe_id_checks::reference_is_valid as ok;
    assert!(ok(b"spiffe://td/a"));
    assert!(ok(b"spiffe://td"));
    assert!(!ok(b"spiffe://td/"));
    assert!(!ok(b"spiffe://Td/a"));
    assert!(!ok(b"spiffe://td/a/.."));
    assert!(!ok(b"spiffe://td//a"));
    assert!(!ok(b"spiffe://"));
    assert!(!ok(b"spiffe://td/a%20"));
}
