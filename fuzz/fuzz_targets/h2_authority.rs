//! See `tests/checks/h2_authority.rs` for the invariants this target asserts (the serving
//! layer's `:authority` rewriter against a reference HPACK decoder); its corpus in
//! `corpus/h2_authority/` is replayed by the root crate's `cargo test --all-features`
//! (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/h2_authority.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
