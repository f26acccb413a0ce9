//! See `tests/checks/workload_message.rs` for the invariants this target asserts; its corpus
//! in `corpus/workload_message/` is replayed by the root crate's
//! `cargo test --all-features` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/workload_message.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
