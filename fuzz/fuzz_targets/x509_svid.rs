//! See `tests/checks/x509_svid.rs` for the invariants this target asserts; its corpus in
//! `corpus/x509_svid/` is replayed by the root crate's `cargo test` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/x509_svid.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
