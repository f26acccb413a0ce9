#![no_main]

#[path = "../../tests/checks/sds_request.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
