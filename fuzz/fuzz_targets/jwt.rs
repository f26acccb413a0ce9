//! JWT-SVID validation on arbitrary bytes: no panic, and any token accepted carries a valid
//! signature over exactly its first two parts by a key of the fixed bundle, checked
//! independently with ring (see `tests/checks/jwt.rs`).
//!
//! Run: `cargo +nightly fuzz run jwt` from `fuzz/`. The seed corpus in `corpus/jwt/` is
//! replayed by the root crate's `cargo test` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/jwt.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
