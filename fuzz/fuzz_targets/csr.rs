//! See `tests/checks/csr.rs` for the invariants this target asserts; its corpus in
//! `corpus/csr/` is replayed by the root crate's `cargo test` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/csr.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
