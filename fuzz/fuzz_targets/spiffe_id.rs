//! SPIFFE ID parsing: no panic, and every invariant in `tests/checks/spiffe_id.rs` holds (verdict
//! equal to a naive reading of the standard, display/parse identity, idempotent
//! normalization, `from_segments` round-trip, error offsets pointing at the offending byte).
//!
//! Run: `cargo +nightly fuzz run spiffe_id` from `fuzz/`. The seed corpus in
//! `corpus/spiffe_id/` is replayed by the root crate's `cargo test` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/spiffe_id.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
