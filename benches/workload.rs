//! Workload API latency and memory measurements: `cargo bench --features workload-api --bench workload`
//! (`-- --rotations N --clients N` to change the defaults, 200 and 200; `--only latency` runs
//! measurement 1 alone, `--only fanout` the combined run of measurement 2 alone, with
//! `--fanout-rotations N` rotations pushed to all clients, 5 by default).
//!
//! A plain program rather than criterion: the results are latency distributions and memory
//! figures, not per-iteration times. Everything runs over a Unix socket on loopback against
//! meshid's own `WorkloadApiServer`; absolute numbers drift on shared machines.
//!
//! 1. Rotation latency: a server serving one `Arc<SvidStore>`, an `X509Source` connected to
//!    it. Each rotation publishes a pre-issued SVID and times until the source's
//!    `updated()` fires (server watch channel → stream → client decode and checks → verify
//!    against the bundle → swap → notify), then checks the source serves that leaf. The
//!    goal is p99 < 10 ms. The same loop then runs against a bare `WorkloadApiClient`
//!    stream (decode and checks, no verify) and a raw tonic/prost stream (no meshid
//!    decoding at all), and the CPU cost of each step of one update is timed on its own,
//!    to show where the time goes.
//! 2. Memory per connected client, in fresh child processes (so memory the allocator kept
//!    from earlier phases cannot be reused and hide growth):
//!    - combined: server and C clients in one process, each client holding an open
//!      `FetchX509SVID` stream that has delivered its first message; VmRSS growth / C is
//!      the cost of both ends of one connection. Then rotations pushed to all C clients
//!      (time to deliver to each and to all), and the time for a server shutdown to end
//!      every stream and finish the server task.
//!    - split: the server in one process, the C clients in another; each process's VmRSS
//!      growth / C is its own side's cost.
#![allow(missing_docs)] // a bench target; nothing here is public API

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshid::serve::ServeLimits;
use meshid::workload::proto::{self, X509SvidMessage, X509SvidResponse};
use meshid::workload::{
    Endpoint, WorkloadApiClient, WorkloadApiServer, X509Context, X509Source, X509SourceOptions,
};
use meshid::{
    Authority, BundleSet, KeyType, SpiffeId, SvidSource, SvidStore, TrustDomain, X509Bundle,
    X509Svid,
};
use p256::pkcs8::DecodePrivateKey as _;
use prost::Message as _;
use rustls_pki_types::CertificateDer;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, Error>;

const HOUR: Duration = Duration::from_secs(3600);
/// Time between rotations in the latency loops.
const SPACING: Duration = Duration::from_millis(5);
/// Rotations before the measured ones in each latency loop (first-use costs).
const WARMUP: usize = 10;
/// Rotations pushed to all clients in the combined memory run, unless
/// `--fanout-rotations` says otherwise.
const FANOUT_ROTATIONS: usize = 5;
/// Iterations of each CPU step timed in the breakdown.
const CPU_ITERATIONS: usize = 300;
/// How long the program waits for any one event before calling it lost.
const PATIENCE: Duration = Duration::from_secs(10);
/// The server's connection cap here: above any `--clients` the runs use.
const MAX_CONNECTIONS: usize = 4096;
/// Let the process settle before reading its RSS.
const SETTLE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The default: runs measurement 1 here and measurement 2 in child processes.
    Main,
    /// Child: server and clients in one process.
    Combined,
    /// Child: the server only, driven over stdin/stdout.
    Server,
    /// Child: the clients only, against `--socket`.
    Clients,
}

/// Which measurements the main role runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    /// Everything.
    All,
    /// Measurement 1: rotation latency and the CPU breakdown.
    Latency,
    /// The combined child of measurement 2 alone: fan-out of rotations to all clients.
    Fanout,
}

#[derive(Debug)]
struct Args {
    rotations: usize,
    clients: usize,
    fanout_rotations: usize,
    role: Role,
    only: Only,
    socket: Option<PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        rotations: 200,
        clients: 200,
        fanout_rotations: FANOUT_ROTATIONS,
        role: Role::Main,
        only: Only::All,
        socket: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rotations" => args.rotations = value("--rotations")?.parse()?,
            "--clients" => args.clients = value("--clients")?.parse()?,
            "--fanout-rotations" => {
                args.fanout_rotations = value("--fanout-rotations")?.parse()?;
            }
            "--only" => {
                args.only = match value("--only")?.as_str() {
                    "latency" => Only::Latency,
                    "fanout" => Only::Fanout,
                    other => return Err(format!("unknown --only {other}").into()),
                }
            }
            "--socket" => args.socket = Some(value("--socket")?.into()),
            "--role" => {
                args.role = match value("--role")?.as_str() {
                    "combined" => Role::Combined,
                    "server" => Role::Server,
                    "clients" => Role::Clients,
                    other => return Err(format!("unknown role {other}").into()),
                }
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "--help" | "-h" => {
                println!(
                    "usage: cargo bench --bench workload -- [--rotations N] [--clients N] \
                     [--fanout-rotations N] [--only latency|fanout]"
                );
                std::process::exit(0);
            }
            other => eprintln!("workload bench: ignoring argument {other:?}"),
        }
    }
    if args.rotations == 0 || args.clients == 0 || args.fanout_rotations == 0 {
        return Err("--rotations, --clients and --fanout-rotations must be at least 1".into());
    }
    if args.clients > MAX_CONNECTIONS {
        return Err(format!("--clients must be at most {MAX_CONNECTIONS}").into());
    }
    Ok(args)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.role {
        Role::Main => run_main(&args, &runtime),
        Role::Combined => runtime.block_on(combined(args.clients, args.fanout_rotations)),
        Role::Server => server_child(&runtime),
        Role::Clients => {
            let socket = args.socket.ok_or("--role clients needs --socket")?;
            runtime.block_on(clients_child(&socket, args.clients))
        }
    }
}

fn run_main(args: &Args, runtime: &tokio::runtime::Runtime) -> Res<()> {
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "meshid Workload API measurements: {} rotations, {} clients, {cpus} CPUs, tokio \
         multi-thread runtime, Unix socket",
        args.rotations, args.clients
    );
    println!();
    if args.only != Only::Fanout {
        runtime.block_on(latency(args.rotations))?;
        println!();
    }
    if args.only == Only::Latency {
        println!("total run time {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    println!("== 2. Memory per connected client ==");
    let exe = std::env::current_exe()?;
    let status = Command::new(&exe)
        .args(["--role", "combined", "--clients"])
        .arg(args.clients.to_string())
        .arg("--fanout-rotations")
        .arg(args.fanout_rotations.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("combined child failed: {status}").into());
    }
    if args.only == Only::All {
        split(&exe, args.clients)?;
    }
    println!();
    println!("total run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Shared set-up

/// A CA, a store and a running server on a socket in a directory of its own.
struct Agent {
    ca: Authority,
    id: SpiffeId,
    bundles: BundleSet,
    store: Arc<SvidStore>,
    dir: PathBuf,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<(), meshid::serve::ServeError>>>,
}

impl Agent {
    async fn start() -> Res<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let td = TrustDomain::new("example.org")?;
        let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256)?;
        let id = SpiffeId::new("spiffe://example.org/ns/bench/sa/workload")?;
        let mut bundles = BundleSet::new();
        bundles.insert(X509Bundle::from_authorities(td, ca.root().cloned())?);
        let store = Arc::new(SvidStore::new());
        store.publish(ca.issue(&id, HOUR)?);
        let dir = std::env::temp_dir().join(format!(
            "meshid-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("agent.sock");
        // Room for every client of the largest runs (the default cap is 512 connections).
        let api = WorkloadApiServer::new(bundles.clone())
            .with_svid(Arc::clone(&store))
            .limits(ServeLimits::default().max_connections(MAX_CONNECTIONS));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(api.serve(path.clone(), async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + PATIENCE;
        while !path.exists() {
            if Instant::now() > deadline {
                return Err("the server did not create its socket".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self {
            ca,
            id,
            bundles,
            store,
            dir,
            path,
            stop: Some(stop),
            served: Some(served),
        })
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.path.clone())
    }

    fn issue(&self) -> Res<X509Svid> {
        Ok(self.ca.issue(&self.id, HOUR)?)
    }

    fn issue_many(&self, n: usize) -> Res<Vec<X509Svid>> {
        (0..n).map(|_| self.issue()).collect()
    }

    /// Sends the shutdown signal; how long the server task took to finish.
    async fn shutdown(&mut self) -> Res<Duration> {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            tokio::time::timeout(PATIENCE, served)
                .await
                .map_err(|_| "the server did not finish within 10 s of shutdown")???;
        }
        let took = started.elapsed();
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(took)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rss_kib(pid: &str) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/*/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS line")?
        .parse()?)
}

fn own_rss() -> Res<u64> {
    rss_kib("self")
}

// ---------------------------------------------------------------------------------------
// Statistics and formatting

#[allow(clippy::cast_precision_loss)] // counts and KiB far below 2^52
fn as_f64(n: u64) -> f64 {
    n as f64
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A duration in the unit that reads best.
fn fmt_d(d: Duration) -> String {
    if d < Duration::from_micros(1) {
        format!("{} ns", d.as_nanos())
    } else if d < Duration::from_micros(100) {
        format!("{:.1} us", us(d))
    } else if d < Duration::from_millis(1) {
        format!("{:.0} us", us(d))
    } else if d < Duration::from_secs(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Nearest-rank percentile (`per_mille` of 1000) of sorted samples.
fn pct(sorted: &[Duration], per_mille: usize) -> Duration {
    let rank = (sorted.len() * per_mille).div_ceil(1000).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// `n=… p50=… p90=… p99=… max=…` of `samples`.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort_unstable();
    format!(
        "n={} p50={} p90={} p99={} max={}",
        samples.len(),
        fmt_d(pct(samples, 500)),
        fmt_d(pct(samples, 900)),
        fmt_d(pct(samples, 990)),
        fmt_d(samples.last().copied().unwrap_or_default())
    )
}

fn per_client_kib(before: u64, after: u64, clients: usize) -> String {
    let growth = as_f64(after) - as_f64(before);
    format!(
        "{before} KiB -> {after} KiB (+{growth:.0} KiB): {:.1} KiB per client",
        growth / as_f64(clients as u64)
    )
}

// ---------------------------------------------------------------------------------------
// Measurement 1: rotation latency

/// Outcome of one latency loop.
#[derive(Default)]
struct Loop {
    latencies: Vec<Duration>,
    lost: usize,
    mismatches: usize,
}

impl Loop {
    fn record(&mut self, warm: bool, latency: Option<Duration>, leaf_ok: bool) {
        if !warm {
            return;
        }
        match latency {
            Some(l) => self.latencies.push(l),
            None => self.lost += 1,
        }
        if !leaf_ok {
            self.mismatches += 1;
        }
    }

    fn report(mut self, what: &str) -> Duration {
        let line = summary(&mut self.latencies);
        let p99 = pct(&self.latencies, 990);
        println!("  {what}");
        println!(
            "      {line}  (lost {}, leaf mismatches {})",
            self.lost, self.mismatches
        );
        p99
    }
}

/// Publishes each SVID and times until the source says it updated.
async fn source_loop(agent: &Agent, source: &X509Source, svids: Vec<X509Svid>) -> Loop {
    let mut out = Loop::default();
    for (i, svid) in svids.into_iter().enumerate() {
        let expected = svid.leaf().clone();
        let seen = source.generation();
        let t0 = Instant::now();
        agent.store.publish(svid);
        let latency = match tokio::time::timeout(PATIENCE, source.changes().changed(seen)).await {
            Ok(_) => Some(t0.elapsed()),
            _ => None,
        };
        let leaf_ok = source
            .x509_svid()
            .is_some_and(|held| held.leaf() == &expected);
        out.record(i >= WARMUP, latency, leaf_ok);
        tokio::time::sleep(SPACING).await;
    }
    out
}

type LeafStream = Pin<Box<dyn Stream<Item = Option<CertificateDer<'static>>> + Send>>;

/// Publishes each SVID and times until `stream` yields the next message.
async fn stream_loop(agent: &Agent, stream: &mut LeafStream, svids: Vec<X509Svid>) -> Loop {
    let mut out = Loop::default();
    for (i, svid) in svids.into_iter().enumerate() {
        let expected = svid.leaf().clone();
        let t0 = Instant::now();
        agent.store.publish(svid);
        let (latency, leaf_ok) = match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(leaf)) => (Some(t0.elapsed()), leaf.as_ref() == Some(&expected)),
            _ => (None, false),
        };
        out.record(i >= WARMUP, latency, leaf_ok);
        tokio::time::sleep(SPACING).await;
    }
    out
}

/// `FetchX509SVID` through `WorkloadApiClient`: each message decoded into an
/// `X509Context` (every field checked), not verified.
async fn context_stream(endpoint: &Endpoint) -> Res<LeafStream> {
    let mut client = WorkloadApiClient::connect(endpoint).await?;
    let stream = client.watch_x509_contexts().await?;
    let mut stream: LeafStream = Box::pin(stream.map(move |context| {
        let _client = &client; // keep the channel for as long as the stream
        context.ok().map(|c| c.default_svid().leaf().clone())
    }));
    stream.next().await.flatten().ok_or("no first message")?;
    Ok(stream)
}

/// `FetchX509SVID` straight through tonic and prost: the transport floor, no meshid
/// decoding (the leaf is cut from the concatenated DER by its length header).
async fn raw_stream(path: &Path) -> Res<LeafStream> {
    let path = path.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://workload-api.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let mut request = tonic::Request::new(proto::X509SvidRequest {});
    request.metadata_mut().insert(
        proto::SECURITY_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let codec = tonic_prost::ProstCodec::<proto::X509SvidRequest, X509SvidResponse>::default();
    let response = grpc
        .server_streaming(
            request,
            tonic::codegen::http::uri::PathAndQuery::from_static(proto::FETCH_X509_SVID),
            codec,
        )
        .await?;
    let mut stream: LeafStream = Box::pin(response.into_inner().map(|message| {
        let message = message.ok()?;
        first_der(&message.svids.first()?.x509_svid)
    }));
    stream.next().await.flatten().ok_or("no first message")?;
    Ok(stream)
}

/// The first DER element of `bytes` (definite lengths only, as DER has).
fn first_der(bytes: &[u8]) -> Option<CertificateDer<'static>> {
    let first = *bytes.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        let len = bytes
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    Some(CertificateDer::from(bytes.get(..header + len)?.to_vec()))
}

/// The message the server sends for `svid` (built as the server builds it).
fn message_for(svid: &X509Svid, bundles: &BundleSet) -> X509SvidResponse {
    let td = svid.id().trust_domain();
    let bundle = bundles
        .get(&td)
        .map(|b| {
            b.authorities()
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect()
        })
        .unwrap_or_default();
    X509SvidResponse {
        svids: vec![X509SvidMessage {
            spiffe_id: svid.id().to_string(),
            x509_svid: svid
                .chain()
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect(),
            x509_svid_key: svid.private_key().secret_pkcs8_der().to_vec(),
            bundle,
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: HashMap::new(),
    }
}

/// Times `step` `CPU_ITERATIONS` times: `p50 (p99)`.
fn time_cpu(mut step: impl FnMut()) -> String {
    let mut samples: Vec<Duration> = (0..CPU_ITERATIONS)
        .map(|_| {
            let t0 = Instant::now();
            step();
            t0.elapsed()
        })
        .collect();
    samples.sort_unstable();
    format!(
        "p50 {:>7} (p99 {})",
        fmt_d(pct(&samples, 500)),
        fmt_d(pct(&samples, 990))
    )
}

fn cpu_breakdown(agent: &Agent) -> Res<()> {
    let svid = agent.issue()?;
    let message = message_for(&svid, &agent.bundles);
    let encoded = message.encode_to_vec();
    let context = X509Context::from_message(&message)?;
    let algorithms = meshid::ring_algorithms();
    println!(
        "  CPU of one update, each step alone ({CPU_ITERATIONS} runs, one thread; message {} \
         bytes):",
        encoded.len()
    );
    println!(
        "    server: build the message           {}",
        time_cpu(|| {
            std::hint::black_box(message_for(&svid, &agent.bundles));
        })
    );
    println!(
        "    prost encode                        {}",
        time_cpu(|| {
            std::hint::black_box(message.encode_to_vec());
        })
    );
    println!(
        "    prost decode                        {}",
        time_cpu(|| {
            std::hint::black_box(X509SvidResponse::decode(encoded.as_slice()).ok());
        })
    );
    println!(
        "    X509Context::from_message           {}",
        time_cpu(|| {
            std::hint::black_box(X509Context::from_message(&message).ok());
        })
    );
    let m = &message.svids[0];
    let chain = vec![svid.leaf().clone()];
    println!(
        "      of which X509Svid::from_der       {}",
        time_cpu(|| {
            std::hint::black_box(X509Svid::from_der(chain.clone(), &m.x509_svid_key).ok());
        })
    );
    let secret = p256::SecretKey::from_pkcs8_der(&m.x509_svid_key)?;
    println!(
        "        key check: p256 PKCS#8 parse  {}",
        time_cpu(|| {
            std::hint::black_box(p256::SecretKey::from_pkcs8_der(&m.x509_svid_key)).ok();
        })
    );
    println!(
        "        key check: public key derive  {}",
        time_cpu(|| {
            std::hint::black_box(secret.public_key());
        })
    );
    let td = svid.id().trust_domain();
    println!(
        "      of which X509Bundle::parse_der    {}",
        time_cpu(|| {
            std::hint::black_box(X509Bundle::parse_der(td.clone(), &m.bundle).ok());
        })
    );
    println!(
        "    verify_x509_svid (ring)             {}",
        time_cpu(|| {
            std::hint::black_box(
                meshid::verify_x509_svid(
                    context.default_svid().chain(),
                    context.bundles(),
                    SystemTime::now(),
                    algorithms,
                )
                .ok(),
            );
        })
    );
    println!(
        "    bundle set clone (source keeps one) {}",
        time_cpu(|| {
            std::hint::black_box(context.bundles().clone());
        })
    );
    Ok(())
}

async fn latency(rotations: usize) -> Res<()> {
    println!("== 1. Rotation -> X509Source::updated() latency ==");
    let mut agent = Agent::start().await?;
    let endpoint = agent.endpoint();
    let per_loop = WARMUP + rotations;
    let t0 = Instant::now();
    let mut svids = agent.issue_many(3 * per_loop)?;
    println!(
        "  pre-issued {} SVIDs in {} (not measured); {WARMUP} warm-up rotations per loop \
         not counted; rotations {} apart",
        svids.len(),
        fmt_d(t0.elapsed()),
        fmt_d(SPACING)
    );
    let source = X509Source::new(endpoint.clone(), X509SourceOptions::default()).await?;
    let batch: Vec<_> = svids.drain(..per_loop).collect();
    let result = source_loop(&agent, &source, batch).await;
    let p99 = result.report(
        "X509Source: publish -> updated() fires (stream, decode, checks, verify, swap, notify)",
    );
    let status = source.status();
    println!(
        "      source status: {} updates accepted, {} rejected, {} reconnects",
        status.updates, status.rejected, status.reconnects
    );
    println!(
        "      goal p99 < 10 ms: {}",
        if p99 < Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        }
    );
    source.shutdown().await;

    println!("  where the time goes (same loop, one client alone each time):");
    let mut stream = context_stream(&endpoint).await?;
    let batch: Vec<_> = svids.drain(..per_loop).collect();
    stream_loop(&agent, &mut stream, batch)
        .await
        .report("WorkloadApiClient stream: publish -> next() (stream, decode, checks; no verify)");
    drop(stream);
    let mut stream = raw_stream(&agent.path).await?;
    stream_loop(&agent, &mut stream, svids)
        .await
        .report("raw tonic/prost stream: publish -> next() (transport only, no meshid decoding)");
    drop(stream);
    cpu_breakdown(&agent)?;
    agent.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Measurement 2: memory per client

/// What a client task reports.
enum Event {
    /// A message arrived (`leaf` is `None` for an error item).
    Message {
        at: Instant,
        leaf: Option<CertificateDer<'static>>,
    },
    /// The stream ended, cleanly or with an error.
    Ended { at: Instant, clean: bool },
}

/// Connects `n` clients one after another, each with an open `FetchX509SVID` stream that
/// has delivered its first message, then hands each stream to a task that reports every
/// message and the stream's end on the returned channel.
async fn connect_clients(
    endpoint: &Endpoint,
    n: usize,
) -> Res<(mpsc::UnboundedReceiver<Event>, Duration)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    for i in 0..n {
        let mut client = WorkloadApiClient::connect(endpoint).await?;
        let mut stream = Box::pin(client.watch_x509_contexts().await?);
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(_))) => {}
            other => {
                let what = match other {
                    Ok(Some(Err(e))) => e.to_string(),
                    Ok(None) => "stream ended".into(),
                    Err(_) => "timed out".into(),
                    Ok(Some(Ok(_))) => unreachable!(),
                };
                return Err(format!("client {i}: no first message: {what}").into());
            }
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            let _client = client; // the channel lives as long as the stream
            let mut clean = true;
            while let Some(item) = stream.next().await {
                let at = Instant::now();
                clean = item.is_ok();
                let leaf = item.ok().map(|c| c.default_svid().leaf().clone());
                if tx.send(Event::Message { at, leaf }).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Ended {
                at: Instant::now(),
                clean,
            });
        });
    }
    Ok((rx, started.elapsed()))
}

/// Waits for `n` message events: their arrival times after `t0` and how many carried
/// another leaf than `expected` (or an error).
async fn collect_messages(
    events: &mut mpsc::UnboundedReceiver<Event>,
    n: usize,
    t0: Instant,
    expected: &CertificateDer<'static>,
) -> Res<(Vec<Duration>, usize)> {
    let mut latencies = Vec::with_capacity(n);
    let mut mismatches = 0;
    while latencies.len() < n {
        match tokio::time::timeout(PATIENCE, events.recv()).await {
            Ok(Some(Event::Message { at, leaf })) => {
                latencies.push(at - t0);
                if leaf.as_ref() != Some(expected) {
                    mismatches += 1;
                }
            }
            Ok(Some(Event::Ended { .. })) => return Err("a stream ended during a rotation".into()),
            Ok(None) | Err(_) => {
                return Err(format!(
                    "only {} of {n} clients got the rotation within 10 s",
                    latencies.len()
                )
                .into())
            }
        }
    }
    Ok((latencies, mismatches))
}

/// Child: server and `n` clients in this process; `rotations` pushed to all of them.
async fn combined(n: usize, rotations: usize) -> Res<()> {
    println!("  -- combined: server and {n} clients in one fresh process --");
    let mut agent = Agent::start().await?;
    let svids = agent.issue_many(rotations)?;
    tokio::time::sleep(SETTLE).await;
    let before = own_rss()?;
    let (mut events, connecting) = connect_clients(&agent.endpoint(), n).await?;
    tokio::time::sleep(SETTLE).await;
    let connected = own_rss()?;
    println!(
        "  connected {n} clients one by one in {} ({} each), each stream past its first \
         message",
        fmt_d(connecting),
        fmt_d(connecting / u32::try_from(n).unwrap_or(u32::MAX))
    );
    println!(
        "  VmRSS {} (client and server side of each connection: both ends are in this process)",
        per_client_kib(before, connected, n)
    );

    let mut all = Vec::new();
    let mut to_all = Vec::new();
    let mut mismatches = 0;
    for svid in svids {
        let expected = svid.leaf().clone();
        let t0 = Instant::now();
        agent.store.publish(svid);
        let (latencies, bad) = collect_messages(&mut events, n, t0, &expected).await?;
        to_all.push(latencies.iter().max().copied().unwrap_or_default());
        all.extend(latencies);
        mismatches += bad;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let rotated = own_rss()?;
    let mut line = String::new();
    for d in &to_all {
        let _ = write!(line, " {}", fmt_d(*d));
    }
    println!("  {rotations} rotations pushed to all {n} clients (each decodes and checks it):");
    println!("      time until the last client has it:{line}");
    println!(
        "      time until the last client has it, over the rotations: {}",
        summary(&mut to_all)
    );
    println!(
        "      per client, publish -> message decoded: {}  (leaf mismatches {mismatches})",
        summary(&mut all)
    );
    println!(
        "      VmRSS after the rotations: {}",
        per_client_kib(connected, rotated, n)
    );

    let t0 = Instant::now();
    let server_took = agent.shutdown().await?;
    let (mut ended, mut clean, mut last) = (0, 0, Duration::ZERO);
    while ended < n {
        match tokio::time::timeout(PATIENCE, events.recv()).await {
            Ok(Some(Event::Ended { at, clean: ok })) => {
                ended += 1;
                clean += usize::from(ok);
                last = last.max(at - t0);
            }
            Ok(Some(Event::Message { .. })) => {}
            Ok(None) | Err(_) => break,
        }
    }
    println!(
        "  shutdown signal -> server task finished: {}; streams ended: {ended}/{n} ({clean} \
         cleanly), the last {} after the signal",
        fmt_d(server_took),
        fmt_d(last)
    );
    Ok(())
}

/// Child: serves until stdin says `stop` (or closes); `rotate` publishes a new SVID.
fn server_child(runtime: &tokio::runtime::Runtime) -> Res<()> {
    let mut agent = runtime.block_on(Agent::start())?;
    let mut next = agent.issue_many(FANOUT_ROTATIONS)?;
    println!("ready {}", agent.path.display());
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "rotate" => {
                agent.store.publish(next.pop().ok_or("out of SVIDs")?);
                println!("published");
            }
            "stop" => break,
            _ => {}
        }
    }
    let took = runtime.block_on(agent.shutdown())?;
    println!("stopped {}", took.as_micros());
    Ok(())
}

/// Child: `n` clients against the server at `socket`; reports on stdout.
async fn clients_child(socket: &Path, n: usize) -> Res<()> {
    tokio::time::sleep(SETTLE).await;
    let before = own_rss()?;
    let (mut events, connecting) = connect_clients(&Endpoint::Unix(socket.into()), n).await?;
    tokio::time::sleep(SETTLE).await;
    println!(
        "connected {before} {} {}",
        own_rss()?,
        connecting.as_micros()
    );
    let (mut messages, mut ended) = (0, 0);
    while ended < n {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Some(Event::Message { .. })) => {
                messages += 1;
                if messages % n == 0 {
                    tokio::time::sleep(SETTLE).await;
                    println!("received {} {}", messages / n, own_rss()?);
                }
            }
            Ok(Some(Event::Ended { .. })) => ended += 1,
            Ok(None) | Err(_) => break,
        }
    }
    println!("ended {ended}");
    Ok(())
}

/// Reads the next line of a child, which must start with `word`; the rest, split.
fn expect(reader: &mut BufReader<ChildStdout>, word: &str) -> Res<Vec<String>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace().map(str::to_owned);
    if parts.next().as_deref() != Some(word) {
        return Err(format!("expected '{word}' from a child, got {line:?}").into());
    }
    Ok(parts.collect())
}

fn field(parts: &[String], i: usize) -> Res<u64> {
    Ok(parts.get(i).ok_or("short line from a child")?.parse()?)
}

fn spawn_child(exe: &Path, args: &[&str]) -> Res<(Child, BufReader<ChildStdout>)> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let out = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
    Ok((child, out))
}

/// Server in one child process, clients in another: each side's memory on its own.
fn split(exe: &Path, n: usize) -> Res<()> {
    println!("  -- split: server in one fresh process, {n} clients in another --");
    let (mut server, mut server_out) = spawn_child(exe, &["--role", "server"])?;
    let server_pid = server.id().to_string();
    let socket = expect(&mut server_out, "ready")?.join(" ");
    std::thread::sleep(SETTLE);
    let server_before = rss_kib(&server_pid)?;
    let clients_arg = n.to_string();
    let (mut clients, mut clients_out) = spawn_child(
        exe,
        &[
            "--role",
            "clients",
            "--socket",
            &socket,
            "--clients",
            &clients_arg,
        ],
    )?;
    let connected = expect(&mut clients_out, "connected")?;
    let server_connected = rss_kib(&server_pid)?;
    let mut server_in = server.stdin.take().ok_or("no server stdin")?;
    writeln!(server_in, "rotate")?;
    expect(&mut server_out, "published")?;
    let received = expect(&mut clients_out, "received")?;
    let server_rotated = rss_kib(&server_pid)?;
    writeln!(server_in, "stop")?;
    let stopped = expect(&mut server_out, "stopped")?;
    let ended = expect(&mut clients_out, "ended")?;
    drop(server_in);
    server.wait()?;
    clients.wait()?;

    let (client_before, client_connected) = (field(&connected, 0)?, field(&connected, 1)?);
    println!(
        "  server VmRSS  {}",
        per_client_kib(server_before, server_connected, n)
    );
    println!(
        "  clients VmRSS {}",
        per_client_kib(client_before, client_connected, n)
    );
    println!(
        "  after one rotation pushed to all: server {}",
        per_client_kib(server_connected, server_rotated, n)
    );
    println!(
        "                                    clients {}",
        per_client_kib(client_connected, field(&received, 1)?, n)
    );
    println!(
        "  connecting took {}; server shutdown took {}; client streams ended: {}/{n}",
        fmt_d(Duration::from_micros(field(&connected, 2)?)),
        fmt_d(Duration::from_micros(field(&stopped, 0)?)),
        field(&ended, 0)?
    );
    Ok(())
}
