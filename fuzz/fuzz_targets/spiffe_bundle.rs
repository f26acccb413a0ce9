//! Bundle loading: no panic, and every invariant in `tests/checks/spiffe_bundle.rs` holds
//! (`SpiffeBundle` JSON round trip as a fixed point, sequence and refresh hint kept, every
//! X.509 authority a certificate, `X509Bundle` PEM/DER round trips, `load` agreeing with
//! `parse_pem`/`parse_der`).
//!
//! Run: `cargo +nightly fuzz run spiffe_bundle` from `fuzz/`. The seed corpus in
//! `corpus/spiffe_bundle/` is replayed by the root crate's `cargo test` (tests/fuzz_corpus.rs).
#![no_main]

#[path = "../../tests/checks/spiffe_bundle.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
