//! Registration entries (`meshid::agent::Registry::parse`) on arbitrary text: see
//! `tests/checks/entries.rs` for the invariants. Its corpus in `corpus/entries/` is replayed
//! by the root crate's `cargo test` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/entries.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
