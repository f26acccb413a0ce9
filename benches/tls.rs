//! Handshake and resolver benchmarks (being written).
fn main() {}
