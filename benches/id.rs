//! SPIFFE ID parsing: meshid against the `spiffe` crate 0.19, in the same run.
//!
//! `cargo bench --bench id`; compare the two lines of each group (a ratio, not absolute
//! times: the machines are shared). Both parsers are given `&str` and return an owned ID.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::fmt::Write as _;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// `spiffe://example.org/` followed by 23-byte segments, cut to exactly `len` bytes.
fn long_id(len: usize) -> String {
    let mut s = String::from("spiffe://example.org");
    let mut i = 0;
    while s.len() < len {
        let _ = write!(s, "/segment-{i:04}-abcdefgh");
        i += 1;
    }
    s.truncate(len);
    if s.ends_with('/') {
        s.pop();
        s.push('x');
    }
    s
}

fn parse(c: &mut Criterion) {
    let short = "spiffe://example.org/ns/default/sa/web".to_owned();
    let path200 = long_id(20 + 200);
    let max = long_id(meshid::MAX_ID_LEN);
    for input in [&short, &path200, &max] {
        assert!(meshid::SpiffeId::new(input).is_ok(), "{input}");
        assert!(spiffe::SpiffeId::new(input).is_ok(), "{input}");
    }

    let mut group = c.benchmark_group("parse");
    for (name, input) in [("short", &short), ("path200", &path200), ("max2048", &max)] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new("meshid", name), input, |b, s| {
            b.iter(|| meshid::SpiffeId::new(black_box(s)).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("spiffe", name), input, |b, s| {
            b.iter(|| spiffe::SpiffeId::new(black_box(s)).unwrap());
        });
    }
    group.finish();
}

fn accessors(c: &mut Criterion) {
    let id = meshid::SpiffeId::new("spiffe://example.org/ns/default/sa/web").unwrap();
    let theirs = spiffe::SpiffeId::new("spiffe://example.org/ns/default/sa/web").unwrap();
    // Clone an ID and get an owned trust domain from it, as a verifier keying bundles by
    // trust domain does: `spiffe` lends `&TrustDomain`, so owning it takes a clone there.
    let mut group = c.benchmark_group("clone_and_trust_domain");
    group.bench_function("meshid", |b| {
        b.iter(|| black_box(black_box(&id).clone()).trust_domain());
    });
    group.bench_function("spiffe", |b| {
        b.iter(|| black_box(black_box(&theirs).clone()).trust_domain().clone());
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = parse, accessors
}
criterion_main!(benches);
