//! What the serving layer's `:authority` rewrite costs per request, against what a request
//! costs in all, in one run: `cargo bench --all-features --bench serve`.
//!
//! - `rewrite/first_request`: a new connection's preface, SETTINGS, a first gRPC request
//!   as gRPC C-core sends it over a Unix socket (Huffman-coded literals added to the
//!   dynamic table, `:authority` the percent-encoded socket path) and its DATA frame,
//!   through a fresh rewriter.
//! - `rewrite/repeat_request`: the next request on that connection (every header an
//!   index into the dynamic table) and its DATA, through the warm rewriter.
//! - `copy/*`: the same bytes copied into a buffer: the floor any wrapper of the
//!   connection pays.
//! - `round_trip/fetch_x509_bundles`: a whole `FetchX509Bundles` call (open a stream, get
//!   the first message) from meshid's client to meshid's server over a Unix socket,
//!   which includes the rewrite of its request.
//!
//! The closing note reports rewrite / round trip as the share of a request's cost.
#![allow(missing_docs)] // a bench target; nothing here is public API

#[path = "../tests/checks/h2_authority.rs"]
mod checks;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use meshid::serve::fuzzing::{self, PREFACE};
use meshid::workload::{Endpoint, WorkloadApiClient, WorkloadApiServer};
use meshid::{Authority, BundleSet, KeyType, SpiffeId, SvidStore, TrustDomain, X509Bundle};

const PATH: &[u8] = b"/SpiffeWorkloadAPI/FetchX509Bundles";

fn first_request() -> Vec<u8> {
    let settings = checks::frame(0x4, 0, 0, &[0, 2, 0, 0, 0, 0]);
    let headers = checks::grpc_request(b"tmp%2Fmeshid%2Fapi.sock", PATH, true, false);
    [
        PREFACE.to_vec(),
        settings,
        checks::frame(0x1, 0x4, 1, &headers),
        checks::frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]),
    ]
    .concat()
}

fn repeat_request() -> Vec<u8> {
    let headers = checks::grpc_request(b"", PATH, true, true);
    [
        checks::frame(0x1, 0x4, 3, &headers),
        checks::frame(0x0, 0x1, 3, &[0, 0, 0, 0, 0]),
    ]
    .concat()
}

fn rewrite(c: &mut Criterion) {
    let first = first_request();
    let repeat = repeat_request();
    // The rewrite must do its job here, or the figures measure nothing.
    let out = fuzzing::rewrite(&[first.clone(), repeat.clone()].concat(), 1 << 20).unwrap();
    let (blocks, _) = fuzzing::split_frames(&out[PREFACE.len()..]).unwrap();
    assert_eq!(blocks.len(), 2);
    let mut group = c.benchmark_group("rewrite");
    group.bench_function("first_request", |b| {
        b.iter(|| fuzzing::rewrite(black_box(&first), first.len()).unwrap());
    });
    let mut warm = fuzzing::Rewriter::new();
    let mut out = Vec::with_capacity(1024);
    warm.feed(&first, &mut out).unwrap();
    group.bench_function("repeat_request", |b| {
        b.iter(|| {
            out.clear();
            warm.feed(black_box(&repeat), &mut out).unwrap();
        });
    });
    group.finish();
    let mut group = c.benchmark_group("copy");
    group.bench_function("first_request", |b| b.iter(|| black_box(&first).clone()));
    group.bench_function("repeat_request", |b| b.iter(|| black_box(&repeat).clone()));
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256).unwrap();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let store = std::sync::Arc::new(SvidStore::new());
    let id = SpiffeId::new("spiffe://example.org/bench").unwrap();
    store.publish(ca.issue(&id, Duration::from_secs(3600)).unwrap());
    let dir = std::env::temp_dir().join(format!("meshid-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("api.sock");
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = WorkloadApiServer::new(bundles).with_svid(store);
    let serving = runtime.spawn(server.serve(socket.clone(), async {
        let _ = stop_rx.await;
    }));
    let endpoint = Endpoint::parse(&format!("unix://{}", socket.display())).unwrap();
    let mut client = runtime.block_on(async {
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        WorkloadApiClient::connect(&endpoint).await.unwrap()
    });
    c.bench_function("round_trip/fetch_x509_bundles", |b| {
        b.iter(|| runtime.block_on(client.fetch_x509_bundles()).unwrap());
    });
    let _ = stop.send(());
    let _ = runtime.block_on(serving);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, rewrite, round_trip);
criterion_main!(benches);
