//! `meshid proxy inbound` against the TLS terminators a user would pick instead, in one run:
//!
//! ```text
//! cargo bench --all-features --bench proxy
//! MESHID_PROXY_BENCH_QUICK=1 cargo bench --all-features --bench proxy   # a short smoke run
//! ```
//!
//! (`MESHID_PROXY_BENCH_ROUNDS=N` sets the number of rounds, 5; 1 quick.
//! `MESHID_PROXY_BENCH_QUIET_WAIT=S` the most seconds to wait for a quiet machine before each
//! proxy's turn, 60; 5 quick. `MESHID_PROXY_BENCH_ATTEMPTS=N` how often a noisy turn is
//! tried in all, 3; 1 quick. `MESHID_PROXY_BENCH_ONLY=meshid,envoy` runs only those;
//! `MESHID_PROXY_BENCH_MIB=N` echoes N MiB in the throughput run, 1024; 64 quick.)
//! A plain program rather than
//! criterion: it runs other programs and reports throughput, rates, latency distributions
//! and memory. Needs two CPUs (0 and 1), `taskset`, and the peers below, installed on first
//! use. Nothing here asserts a time: it prints figures, to be read as ratios within a run.
//!
//! The three proxies, each in turn the only one running, each pinned to CPU 0
//! (`taskset -c 0`), each terminating SPIFFE mTLS (client certificate required and verified
//! against the CA of `meshid ca init`) in front of the same plaintext backend:
//! - `meshid`: `meshid proxy inbound --listen 127.0.0.1:0 --target BACKEND --allow CLIENT_ID
//!   --ca DIR --id spiffe://example.org/proxy` (the binary of this build).
//! - `envoy`: the official Envoy 1.40 of the Python test peer (`tests/peers/python.sh`, or
//!   `MESHID_ENVOY`), `--concurrency 1`, a listener with `tcp_proxy` whose certificate and
//!   roots (`default`, `ROOTCA`) come from `meshid serve sds --ca DIR --id
//!   spiffe://example.org/envoy` (running on CPU 1, not counted in Envoy's memory; its own
//!   RSS is printed once) and that matches the client's URI SAN exactly, as meshid's
//!   `--allow` does.
//! - `stunnel`: Debian bookworm's stunnel4 5.68 over the system's OpenSSL 3
//!   (`tests/peers/stunnel.sh`, or `MESHID_STUNNEL`), with an SVID from `meshid issue`,
//!   `verifyChain` and `requireCert`. stunnel cannot match a URI SAN, so it lets any SVID of
//!   the trust domain in: it does a little less work per handshake than the other two (the
//!   bench checks and prints which proxies refuse a client of another ID).
//!
//! The load generator and the backend run in this process, pinned to CPU 1: a tokio echo
//! server (one current-thread runtime on its own thread) and rustls clients (another
//! current-thread runtime) built by `meshid::tls::client_config` with an SVID for
//! `spiffe://example.org/client` issued by the same CA through the library's `Authority`,
//! expecting each proxy's own SPIFFE ID. The client offers TLS 1.3 with
//! TLS_AES_128_GCM_SHA256 and X25519 only, so that all three proxies run the same cipher
//! (the negotiated suite is printed); sessions are never resumed, so every connection is a
//! full handshake with ECDSA P-256 SVIDs on both sides.
//!
//! Measured per proxy, in rounds (the proxies' order rotated each round; each proxy started
//! afresh every round), medians over the rounds:
//! - **throughput**: one mTLS connection echoes `N` bytes (1 GiB; 64 MiB quick) back, the
//!   client writing and reading at once in 64 KiB writes; MB/s is payload bytes (10^6) each
//!   way per second of wall time.
//! - **handshakes**: short connections, 16 in flight, for a fixed time (5 s; 1 s quick):
//!   each a new TCP connection and full mTLS handshake, one 64-byte request echoed, then
//!   close_notify and close. Failures are counted and printed.
//! - **added latency**: 64-byte ping-pongs over one established connection through the
//!   proxy (20,000; 2,000 quick), minus the same straight to the backend in plaintext
//!   (interleaved with them, one each in turn, so that both see the same noise), at p50 and
//!   p99: the proxied percentile minus the direct one. It includes the client's own TLS
//!   work.
//! - **RSS**: VmRSS of the proxy's process tree (`/proc/PID/status`) once started and
//!   warmed up by a few connections, and with 1,000 idle established mTLS connections
//!   (each of which has echoed one request, so the upstream side is open too).
//!
//! With the load generator on one core the client side can be the bottleneck, not the
//! proxy: the proxy's CPU time (utime + stime of its process tree, from `/proc/PID/stat`)
//! is measured over the throughput and handshake runs, and the table shows both the rates
//! and the rates per CPU-second of the proxy (what "per core" means), with the proxy's CPU
//! use in percent of one core.
//!
//! On a shared machine other programs take CPU time from both sides. Before each proxy's
//! turn the bench waits (up to `MESHID_PROXY_BENCH_QUIET_WAIT`) until other programs used
//! less than a fifth of a core for a second, and it prints, per turn and as a median, how
//! much CPU other programs used while it measured (`/proc/stat` busy time minus this
//! process tree's): a turn with a high figure is noise, not a result. A turn during which
//! they took more than a quarter of a core is run again (up to the attempts), and the
//! quietest attempt is the one that counts.
#![allow(missing_docs)] // a bench target; nothing here is public API
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // figures for printing

#[path = "../tests/common/envoy.rs"]
mod envoy;
// `envoy.rs` brings its own copy of `peers.rs` along, and so does this one.
#[allow(clippy::duplicate_mod)]
#[path = "../tests/common/stunnel.rs"]
mod stunnel;

use std::fmt::Write as _;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::tls::rustls::crypto::{ring as ring_provider, CryptoProvider};
use meshid::tls::rustls::pki_types::ServerName;
use meshid::tls::rustls::version::TLS13;
use meshid::tls::rustls::ClientConfig;
use meshid::tls::SpiffeServerCertVerifier;
use meshid::{authorize, tls, Authority, BundleSet, SpiffeId, SvidStore, X509Bundle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

const MESHID: &str = env!("CARGO_BIN_EXE_meshid");
/// Where the proxies run, and where this process (load generator and backend) runs.
const PROXY_CPU: &str = "0";
const LOAD_CPU: &str = "1";
const CLIENT_ID: &str = "spiffe://example.org/client";
const INTRUDER_ID: &str = "spiffe://example.org/intruder";
const DAY: Duration = Duration::from_secs(86_400);
/// The request of the handshake and latency runs, echoed back.
const MESSAGE: [u8; 64] = [0x5a; 64];
const HANDSHAKE_CONCURRENCY: usize = 16;
/// How long a proxy gets to start and serve its first mTLS request.
const START: Duration = Duration::from_secs(60);
/// A turn during which other programs took more than this share of a core (in percent) is
/// run again.
const NOISY: f64 = 25.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proxy {
    Meshid,
    Envoy,
    Stunnel,
}

impl Proxy {
    const ALL: [Self; 3] = [Self::Meshid, Self::Envoy, Self::Stunnel];

    fn name(self) -> &'static str {
        match self {
            Self::Meshid => "meshid",
            Self::Envoy => "envoy",
            Self::Stunnel => "stunnel",
        }
    }

    /// The SPIFFE ID the proxy presents (and the client expects).
    fn server_id(self) -> SpiffeId {
        SpiffeId::new(&format!("spiffe://example.org/{}", self.name())).unwrap()
    }
}

struct Params {
    rounds: usize,
    throughput_bytes: u64,
    handshake_time: Duration,
    latency_samples: usize,
    idle_conns: usize,
    /// How long to wait for a quiet machine before each proxy's turn.
    quiet_wait: Duration,
    /// How many times a noisy turn is tried in all.
    attempts: usize,
}

impl Params {
    fn from_env() -> Self {
        let quick = std::env::var_os("MESHID_PROXY_BENCH_QUICK").is_some_and(|v| v != "0");
        let mut params = if quick {
            Self {
                rounds: 1,
                throughput_bytes: 64 << 20,
                handshake_time: Duration::from_secs(1),
                latency_samples: 2_000,
                idle_conns: 1_000,
                quiet_wait: Duration::from_secs(5),
                attempts: 1,
            }
        } else {
            Self {
                rounds: 5,
                throughput_bytes: 1 << 30,
                handshake_time: Duration::from_secs(5),
                latency_samples: 20_000,
                idle_conns: 1_000,
                quiet_wait: Duration::from_secs(60),
                attempts: 3,
            }
        };
        if let Some(rounds) = std::env::var("MESHID_PROXY_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
        {
            params.rounds = rounds;
        }
        if let Some(mib) = std::env::var("MESHID_PROXY_BENCH_MIB")
            .ok()
            .and_then(|r| r.parse::<u64>().ok())
        {
            params.throughput_bytes = mib << 20;
        }
        if let Some(attempts) = std::env::var("MESHID_PROXY_BENCH_ATTEMPTS")
            .ok()
            .and_then(|r| r.parse().ok())
        {
            params.attempts = attempts;
        }
        if let Some(secs) = std::env::var("MESHID_PROXY_BENCH_QUIET_WAIT")
            .ok()
            .and_then(|r| r.parse().ok())
        {
            params.quiet_wait = Duration::from_secs(secs);
        }
        params
    }
}

// ---------------------------------------------------------------------------------------
// Processes: pinning, CPU time and memory of a process tree.

/// Pins this process (before it starts any thread, so every thread inherits it) to
/// `LOAD_CPU`.
fn pin_self() {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", LOAD_CPU])
        .arg(std::process::id().to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run taskset: {e}"));
    assert!(
        out.status.success(),
        "taskset -p -c {LOAD_CPU} failed (this bench needs CPUs {PROXY_CPU} and {LOAD_CPU}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fields of `/proc/PID/stat` after the command name (field 3, the state, first).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(p) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            if let Some(fields) = stat_fields(p) {
                parents.push((p, fields[1] as u32));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// CPU time (user + system) of `pid`'s process tree so far.
fn cpu_time(pid: u32) -> Duration {
    let ticks: u64 = tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| f[11] + f[12])
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// VmRSS of `pid`'s process tree, in KiB.
fn rss_kib(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// Busy time of all CPUs so far (user, nice, system, irq, softirq, steal: `/proc/stat`).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map_or(0, |l| {
            l.split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0))
                .enumerate()
                // user nice system idle iowait irq softirq steal
                .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
                .map(|(_, v)| v)
                .sum()
        });
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// CPU time of everything this bench runs (this process and its children: the SDS server
/// and the proxy) and of everything else on the machine, so far.
fn ours_and_others() -> (Duration, Duration) {
    let ours = cpu_time(std::process::id());
    (ours, machine_busy().saturating_sub(ours))
}

/// Waits, at most `max`, until the machine is quiet: over one second, other programs kept
/// the CPUs busy for less than a fifth of one core. Returns how long it waited and the
/// share of one core the others used in the last second.
fn wait_quiet(max: Duration) -> (Duration, f64) {
    let start = Instant::now();
    loop {
        let (_, before) = ours_and_others();
        std::thread::sleep(Duration::from_secs(1));
        let (_, after) = ours_and_others();
        let busy = after.saturating_sub(before).as_secs_f64();
        if busy < 0.2 || start.elapsed() >= max {
            return (start.elapsed(), busy);
        }
    }
}

/// A child process, killed (by its PID) when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let out =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    let err = out.try_clone().unwrap();
    (Stdio::from(out), Stdio::from(err))
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], envoy::free_port()))
}

// ---------------------------------------------------------------------------------------
// The scene: a CA, SVIDs, the backend, Envoy's SDS server.

struct Scene {
    dir: PathBuf,
    backend: SocketAddr,
    /// The load generator's connector for each proxy (expecting the proxy's ID).
    connectors: Vec<(Proxy, TlsConnector)>,
    /// A client with another SPIFFE ID of the same trust domain, for each proxy.
    intruders: Vec<(Proxy, TlsConnector)>,
    /// A client that presents no certificate.
    anonymous: TlsConnector,
    sds_socket: PathBuf,
    sds: Option<Running>,
    /// Whether this build's `meshid` has `proxy inbound`.
    meshid_proxy: Result<(), String>,
}

impl Scene {
    fn connector(&self, proxy: Proxy) -> &TlsConnector {
        &self.connectors.iter().find(|(p, _)| *p == proxy).unwrap().1
    }

    fn intruder(&self, proxy: Proxy) -> &TlsConnector {
        &self.intruders.iter().find(|(p, _)| *p == proxy).unwrap().1
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.sds.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn meshid(dir: &Path, args: &[&str]) {
    let out = Command::new(MESHID)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {MESHID}: {e}"));
    assert!(
        out.status.success(),
        "meshid {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The load generator's provider: ring, TLS 1.3 with AES-128-GCM and X25519 only.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = ring_provider::default_provider();
    provider.cipher_suites = vec![ring_provider::cipher_suite::TLS13_AES_128_GCM_SHA256];
    provider.kx_groups = vec![ring_provider::kx_group::X25519];
    Arc::new(provider)
}

fn scene(backend: SocketAddr) -> Scene {
    let dir = std::env::temp_dir().join(format!("meshid-proxybench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    meshid(
        &dir,
        &["ca", "init", "--trust-domain", "example.org", "--out", "ca"],
    );
    let ca = Authority::from_pem(
        &std::fs::read(dir.join("ca/ca.pem")).unwrap(),
        &std::fs::read(dir.join("ca/ca.key")).unwrap(),
        None,
    )
    .expect("the CA of meshid ca init");
    let td = ca.trust_domain().clone();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let client_config = |id: &str, expect: SpiffeId| {
        let store = Arc::new(SvidStore::new());
        store.publish(ca.issue(&SpiffeId::new(id).unwrap(), DAY).unwrap());
        let config =
            tls::client_config(provider(), store, bundles.clone(), authorize::exact(expect))
                .unwrap();
        TlsConnector::from(Arc::new(config))
    };
    let connectors = Proxy::ALL
        .iter()
        .map(|&p| (p, client_config(CLIENT_ID, p.server_id())))
        .collect();
    let intruders = Proxy::ALL
        .iter()
        .map(|&p| (p, client_config(INTRUDER_ID, p.server_id())))
        .collect();
    let verifier = SpiffeServerCertVerifier::new(
        Arc::new(bundles.clone()),
        authorize::member_of(ca.trust_domain().clone()),
        provider(),
    );
    let mut anonymous = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    anonymous.resumption = meshid::tls::rustls::client::Resumption::disabled();

    stunnel_files(&dir, backend);
    let sds_socket = dir.join("sds.sock");
    let sds = sds_server(&dir, &sds_socket);
    let meshid_proxy = Command::new(MESHID)
        .args(["proxy", "inbound", "--help"])
        .output()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            if out.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                Err(stderr.lines().next().unwrap_or_default().to_owned())
            }
        });

    Scene {
        dir,
        backend,
        connectors,
        intruders,
        anonymous: TlsConnector::from(Arc::new(anonymous)),
        sds_socket,
        sds: Some(sds),
        meshid_proxy,
    }
}

/// stunnel's SVID (from `meshid issue`) and its configuration, with port 0 to replace.
fn stunnel_files(dir: &Path, backend: SocketAddr) {
    meshid(
        dir,
        &[
            "issue",
            "--ca",
            "ca",
            "--id",
            Proxy::Stunnel.server_id().as_str(),
            "--out-dir",
            "stunnel",
            "--ttl",
            "1d",
        ],
    );
    std::fs::write(
        dir.join("stunnel.conf"),
        stunnel::server_config(
            0, // replaced per start
            backend.port(),
            &dir.join("stunnel/svid.pem"),
            &dir.join("stunnel/svid.key"),
            &dir.join("stunnel/bundle.pem"),
        ),
    )
    .unwrap();
}

/// Envoy's SDS server, on this process's CPU.
fn sds_server(dir: &Path, sds_socket: &Path) -> Running {
    let sds_log = dir.join("sds.log");
    let (out, err) = log_file(&sds_log);
    let child = Command::new(MESHID)
        .current_dir(dir)
        .args(["serve", "sds", "--socket"])
        .arg(sds_socket)
        .args(["--ca", "ca", "--ttl", "1d", "--id"])
        .arg(Proxy::Envoy.server_id().as_str())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let mut sds = Running {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        log: sds_log,
    };
    let deadline = Instant::now() + START;
    while !sds_socket.exists() {
        if let Ok(Some(exit)) = sds.child.try_wait() {
            panic!("meshid serve sds exited ({exit}): {}", sds.log_tail());
        }
        assert!(Instant::now() < deadline, "no SDS socket");
        std::thread::sleep(Duration::from_millis(20));
    }

    sds
}

/// The plaintext backend: an echo server on its own thread and current-thread runtime.
fn backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((mut tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        let (read, mut write) = tcp.split();
                        let mut read = tokio::io::BufReader::with_capacity(64 << 10, read);
                        let _ = tokio::io::copy_buf(&mut read, &mut write).await;
                    });
                }
            });
        })
        .unwrap();
    addr
}

// ---------------------------------------------------------------------------------------
// Starting the proxies.

fn start(proxy: Proxy, scene: &Scene) -> Running {
    let log = scene.dir.join(format!("{}.log", proxy.name()));
    let (out, err) = log_file(&log);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", PROXY_CPU])
        .current_dir(&scene.dir)
        .stdin(Stdio::null());
    match proxy {
        Proxy::Meshid => {
            cmd.arg(MESHID)
                .args(["proxy", "inbound", "--listen", "127.0.0.1:0", "--target"])
                .arg(scene.backend.to_string())
                .args(["--allow", CLIENT_ID, "--ca", "ca", "--ttl", "1d", "--id"])
                .arg(proxy.server_id().as_str())
                .stdout(Stdio::piped())
                .stderr(err);
            drop(out);
            let mut child = cmd.spawn().unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            // Reads the address, then drains stdout for the process's life.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line
                        .split_whitespace()
                        .skip_while(|w| *w != "on")
                        .nth(1)
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                        .filter(|_| line.starts_with("listening on"))
                    {
                        let _ = tx.send(addr);
                    }
                }
            });
            let mut running = Running {
                child,
                addr: scene.backend,
                log,
            };
            match rx.recv_timeout(START) {
                Ok(addr) => running.addr = addr,
                Err(e) => panic!(
                    "meshid proxy inbound printed no `listening on ADDR` ({e}; {:?}): {}",
                    running.child.try_wait(),
                    running.log_tail()
                ),
            }
            running
        }
        Proxy::Envoy => {
            let (admin, port) = (envoy::free_port(), envoy::free_port());
            let config = scene.dir.join("envoy.yaml");
            std::fs::write(
                &config,
                envoy::tcp_proxy_bootstrap(
                    admin,
                    port,
                    scene.backend.port(),
                    &scene.sds_socket,
                    CLIENT_ID,
                ),
            )
            .unwrap();
            cmd.arg(envoy::envoy_binary())
                .arg("-c")
                .arg(&config)
                .args(["--disable-hot-restart", "--concurrency", "1"])
                .args(["-l", "warning"])
                .stdout(out)
                .stderr(err);
            Running {
                child: cmd.spawn().unwrap(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
            }
        }
        Proxy::Stunnel => {
            let addr = free_addr();
            let config = scene.dir.join("stunnel-run.conf");
            let template = std::fs::read_to_string(scene.dir.join("stunnel.conf")).unwrap();
            std::fs::write(
                &config,
                template.replace("accept = 127.0.0.1:0\n", &format!("accept = {addr}\n")),
            )
            .unwrap();
            cmd.arg(stunnel::stunnel_binary())
                .arg(&config)
                .stdout(out)
                .stderr(err);
            Running {
                child: cmd.spawn().unwrap(),
                addr,
                log,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The load generator.

fn server_name() -> ServerName<'static> {
    ServerName::try_from("proxy.example.org").unwrap()
}

/// The client's TLS stream. rustls reads at most 4 KiB of TLS per read (it grows its
/// buffer 4 KiB at a time); the `BufReader` under it reads the socket 64 KiB at a time, so
/// that the load generator spends fewer system calls per byte than it would.
type Tls = tokio_rustls::client::TlsStream<BufReader<TcpStream>>;

async fn connect(connector: &TlsConnector, addr: SocketAddr) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector
        .connect(server_name(), BufReader::with_capacity(64 << 10, tcp))
        .await
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> std::io::Result<()> {
    stream.write_all(&MESSAGE).await?;
    let mut back = [0u8; MESSAGE.len()];
    stream.read_exact(&mut back).await?;
    if back != MESSAGE {
        return Err(std::io::Error::other("the echo differs"));
    }
    Ok(())
}

/// A new connection, one request echoed, close_notify, close.
async fn exchange(connector: &TlsConnector, addr: SocketAddr) -> std::io::Result<()> {
    let mut tls = connect(connector, addr).await?;
    ping(&mut tls).await?;
    tls.shutdown().await
}

/// Waits until the proxy answers an mTLS request (or panics with its log).
fn wait_ready(rt: &tokio::runtime::Runtime, proxy: Proxy, running: &mut Running, scene: &Scene) {
    let deadline = Instant::now() + START;
    loop {
        let tried = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                exchange(scene.connector(proxy), running.addr),
            )
            .await
        });
        match tried {
            Ok(Ok(())) => return,
            _ if Instant::now() > deadline => panic!(
                "{} never served an mTLS request at {}: {tried:?}\n{}",
                proxy.name(),
                running.addr,
                running.log_tail()
            ),
            _ => {}
        }
        if let Ok(Some(exit)) = running.child.try_wait() {
            panic!("{} exited ({exit}): {}", proxy.name(), running.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Echoes `total` bytes over one connection; the wall time, and the negotiated suite.
async fn throughput(
    connector: &TlsConnector,
    addr: SocketAddr,
    total: u64,
) -> std::io::Result<(Duration, String)> {
    let tls = connect(connector, addr).await?;
    let (_, conn) = tls.get_ref();
    let suite = format!(
        "{:?} {:?} {:?}",
        conn.protocol_version().unwrap(),
        conn.negotiated_cipher_suite().unwrap().suite(),
        conn.negotiated_key_exchange_group()
            .map(meshid::tls::rustls::crypto::SupportedKxGroup::name)
    );
    let (mut read, mut write) = tokio::io::split(tls);
    let start = Instant::now();
    let writer = async {
        let chunk = vec![0xa5u8; 64 << 10];
        let mut sent = 0u64;
        while sent < total {
            let n = chunk.len().min((total - sent) as usize);
            write.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        write.flush().await
    };
    let reader = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0u64;
        while got < total {
            let n = read.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("closed after {got} of {total} bytes"),
                ));
            }
            got += n as u64;
        }
        Ok(())
    };
    tokio::try_join!(writer, reader)?;
    Ok((start.elapsed(), suite))
}

/// Short connections, `HANDSHAKE_CONCURRENCY` in flight, for `time`: (done, failed, wall).
async fn handshakes(
    connector: &TlsConnector,
    addr: SocketAddr,
    time: Duration,
) -> (u64, u64, Duration, Option<String>) {
    let start = Instant::now();
    let deadline = start + time;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..HANDSHAKE_CONCURRENCY {
        let connector = connector.clone();
        tasks.spawn(async move {
            let (mut ok, mut failed, mut first_error) = (0u64, 0u64, None);
            while Instant::now() < deadline {
                match exchange(&connector, addr).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            (ok, failed, first_error)
        });
    }
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    while let Some(done) = tasks.join_next().await {
        let (o, f, e) = done.unwrap();
        ok += o;
        failed += f;
        if first_error.is_none() {
            first_error = e;
        }
    }
    (ok, failed, start.elapsed(), first_error)
}

/// Round-trip times of `n` pings over each of `direct` and `proxied`, interleaved (one
/// on each in turn, so that both see the same noise), after 200 unmeasured ones on each.
async fn round_trips(
    direct: &mut TcpStream,
    proxied: &mut Tls,
    n: usize,
) -> std::io::Result<(Vec<Duration>, Vec<Duration>)> {
    for _ in 0..200 {
        ping(direct).await?;
        ping(proxied).await?;
    }
    let (mut d, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        ping(direct).await?;
        d.push(t.elapsed());
        let t = Instant::now();
        ping(proxied).await?;
        p.push(t.elapsed());
    }
    d.sort();
    p.sort();
    Ok((d, p))
}

/// `n` established mTLS connections, each having echoed one request.
async fn idle_connections(
    connector: &TlsConnector,
    addr: SocketAddr,
    n: usize,
) -> std::io::Result<Vec<Tls>> {
    let mut out = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    let mut started = 0;
    while out.len() < n {
        while started < n && tasks.len() < HANDSHAKE_CONCURRENCY {
            let connector = connector.clone();
            tasks.spawn(async move {
                let mut tls = connect(&connector, addr).await?;
                ping(&mut tls).await?;
                Ok::<_, std::io::Error>(tls)
            });
            started += 1;
        }
        out.push(tasks.join_next().await.unwrap().unwrap()?);
    }
    Ok(out)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// ---------------------------------------------------------------------------------------
// One proxy's run in one round.

#[derive(Default, Clone)]
struct Sample {
    mb_s: f64,
    mb_per_cpu_s: f64,
    tput_cpu: f64,
    hs_s: f64,
    hs_per_cpu_s: f64,
    hs_cpu: f64,
    hs_failed: f64,
    lat_p50: f64,
    lat_p99: f64,
    direct_p50: f64,
    direct_p99: f64,
    proxied_p50: f64,
    proxied_p99: f64,
    rss_idle: f64,
    rss_conns: f64,
    /// CPU the machine's other programs used during the measurements, % of one core.
    others: f64,
    /// The same in the second before this proxy's turn (after waiting for quiet).
    others_before: f64,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Warms `running` up, then its memory: at rest, and with the idle connections.
fn memory(
    rt: &tokio::runtime::Runtime,
    proxy: Proxy,
    running: &Running,
    connector: &TlsConnector,
    params: &Params,
    s: &mut Sample,
) {
    let (pid, addr) = (running.pid(), running.addr);
    rt.block_on(async {
        for _ in 0..10 {
            exchange(connector, addr).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    s.rss_idle = rss_kib(pid) as f64 / 1024.0;
    let conns = rt
        .block_on(idle_connections(connector, addr, params.idle_conns))
        .unwrap_or_else(|e| {
            panic!(
                "{}: opening {} connections: {e}\n{}",
                proxy.name(),
                params.idle_conns,
                running.log_tail()
            )
        });
    std::thread::sleep(Duration::from_secs(1));
    s.rss_conns = rss_kib(pid) as f64 / 1024.0;
    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
}

/// What the proxy at `addr` refuses: a client without a certificate, one of another ID.
fn refused(rt: &tokio::runtime::Runtime, scene: &Scene, proxy: Proxy, addr: SocketAddr) -> String {
    let refused = |connector: &TlsConnector| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), exchange(connector, addr)).await
        })
        .map_or(true, |r| r.is_err())
    };
    let yes_no = |b: bool| if b { "refused" } else { "LET IN" };
    format!(
        "no client certificate: {}; another ID of the trust domain: {}",
        yes_no(refused(&scene.anonymous)),
        yes_no(refused(scene.intruder(proxy)))
    )
}

fn run_one(
    rt: &tokio::runtime::Runtime,
    proxy: Proxy,
    scene: &Scene,
    params: &Params,
    suites: &mut Vec<(Proxy, String)>,
    refusals: &mut Vec<(Proxy, String)>,
) -> Sample {
    let mut s = Sample::default();
    let (waited, before) = wait_quiet(params.quiet_wait);
    s.others_before = 100.0 * before;
    if waited >= params.quiet_wait {
        eprintln!(
            "  {}: the machine was not quiet after {waited:.0?} (others: {:.0}% of a core); going on",
            proxy.name(),
            s.others_before
        );
    }
    let mut running = start(proxy, scene);
    wait_ready(rt, proxy, &mut running, scene);
    let pid = running.pid();
    let addr = running.addr;
    let connector = scene.connector(proxy);
    let measuring = Instant::now();
    let (_, others0) = ours_and_others();

    memory(rt, proxy, &running, connector, params, &mut s);
    if !refusals.iter().any(|(p, _)| *p == proxy) {
        refusals.push((proxy, refused(rt, scene, proxy, addr)));
    }

    // Latency: straight to the backend and through the proxy, interleaved.
    let (direct, proxied) = rt.block_on(async {
        let mut tcp = TcpStream::connect(scene.backend).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connect(connector, addr).await.unwrap();
        round_trips(&mut tcp, &mut tls, params.latency_samples)
            .await
            .unwrap()
    });
    s.direct_p50 = us(pct(&direct, 0.5));
    s.direct_p99 = us(pct(&direct, 0.99));
    s.proxied_p50 = us(pct(&proxied, 0.5));
    s.proxied_p99 = us(pct(&proxied, 0.99));
    s.lat_p50 = s.proxied_p50 - s.direct_p50;
    s.lat_p99 = s.proxied_p99 - s.direct_p99;

    // Handshakes.
    let cpu0 = cpu_time(pid);
    let (ok, failed, wall, first_error) =
        rt.block_on(handshakes(connector, addr, params.handshake_time));
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    s.hs_s = ok as f64 / wall.as_secs_f64();
    s.hs_per_cpu_s = ok as f64 / cpu.as_secs_f64().max(0.01);
    s.hs_cpu = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    s.hs_failed = failed as f64;
    if let Some(e) = first_error {
        eprintln!(
            "  {}: {failed} short connections failed, the first: {e}",
            proxy.name()
        );
    }

    // Throughput.
    let cpu0 = cpu_time(pid);
    let (wall, suite) = rt
        .block_on(throughput(connector, addr, params.throughput_bytes))
        .unwrap_or_else(|e| panic!("{}: throughput: {e}\n{}", proxy.name(), running.log_tail()));
    let cpu = cpu_time(pid).saturating_sub(cpu0);
    let mb = params.throughput_bytes as f64 / 1e6;
    s.mb_s = mb / wall.as_secs_f64();
    s.mb_per_cpu_s = mb / cpu.as_secs_f64().max(0.01);
    s.tput_cpu = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    if !suites.iter().any(|(p, _)| *p == proxy) {
        suites.push((proxy, suite));
    }

    let (_, others1) = ours_and_others();
    s.others =
        100.0 * (others1.saturating_sub(others0)).as_secs_f64() / measuring.elapsed().as_secs_f64();
    if let Ok(Some(exit)) = running.child.try_wait() {
        panic!("{} exited ({exit}): {}", proxy.name(), running.log_tail());
    }
    drop(running);
    s
}

// ---------------------------------------------------------------------------------------
// The report.

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

struct Row {
    name: &'static str,
    unit: &'static str,
    better: &'static str,
    get: fn(&Sample) -> f64,
    ratio: bool,
}

const ROWS: &[Row] = &[
    Row {
        name: "throughput, one connection",
        unit: "MB/s",
        better: "higher",
        get: |s| s.mb_s,
        ratio: true,
    },
    Row {
        name: "  per proxy CPU-second",
        unit: "MB",
        better: "higher",
        get: |s| s.mb_per_cpu_s,
        ratio: true,
    },
    Row {
        name: "  proxy CPU use",
        unit: "%",
        better: "",
        get: |s| s.tput_cpu,
        ratio: false,
    },
    Row {
        name: "short connections (handshakes)",
        unit: "conn/s",
        better: "higher",
        get: |s| s.hs_s,
        ratio: true,
    },
    Row {
        name: "  per proxy CPU-second",
        unit: "conn",
        better: "higher",
        get: |s| s.hs_per_cpu_s,
        ratio: true,
    },
    Row {
        name: "  proxy CPU use",
        unit: "%",
        better: "",
        get: |s| s.hs_cpu,
        ratio: false,
    },
    Row {
        name: "  failed",
        unit: "",
        better: "",
        get: |s| s.hs_failed,
        ratio: false,
    },
    Row {
        name: "added latency p50",
        unit: "µs",
        better: "lower",
        get: |s| s.lat_p50,
        ratio: true,
    },
    Row {
        name: "added latency p99",
        unit: "µs",
        better: "lower",
        get: |s| s.lat_p99,
        ratio: true,
    },
    Row {
        name: "  round trip p50 direct/proxied",
        unit: "µs",
        better: "",
        get: |s| s.proxied_p50,
        ratio: false,
    },
    Row {
        name: "other programs' CPU during the runs",
        unit: "% of a core",
        better: "",
        get: |s| s.others,
        ratio: false,
    },
    Row {
        name: "RSS started, warm",
        unit: "MiB",
        better: "lower",
        get: |s| s.rss_idle,
        ratio: true,
    },
    Row {
        name: "RSS, 1,000 idle mTLS connections",
        unit: "MiB",
        better: "lower",
        get: |s| s.rss_conns,
        ratio: true,
    },
    Row {
        name: "  per connection",
        unit: "KiB",
        better: "lower",
        get: |s| (s.rss_conns - s.rss_idle) * 1024.0 / 1000.0,
        ratio: true,
    },
];

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn report(samples: &[(Proxy, Vec<Sample>)], idle_conns: usize) -> String {
    let med = |proxy: Proxy, get: fn(&Sample) -> f64| {
        samples
            .iter()
            .find(|(p, v)| *p == proxy && !v.is_empty())
            .map(|(_, v)| median(v.iter().map(get).collect()))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| medians | meshid | envoy | stunnel | meshid/envoy | meshid/stunnel | better |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    for row in ROWS {
        let name = row.name.replace("1,000", &format_thousands(idle_conns));
        let cell = |p: Proxy| {
            if row.name.contains("direct/proxied") {
                let direct = med(p, |s| s.direct_p50);
                med(p, row.get).map_or("n/a".into(), |v| {
                    format!("{}/{}", fmt_value(direct.unwrap_or(0.0)), fmt_value(v))
                })
            } else {
                med(p, row.get).map_or("n/a".into(), fmt_value)
            }
        };
        let ratio = |peer: Proxy| {
            if !row.ratio {
                return String::new();
            }
            match (med(Proxy::Meshid, row.get), med(peer, row.get)) {
                (Some(m), Some(p)) if p.abs() > f64::EPSILON => format!("{:.2}", m / p),
                _ => "n/a".into(),
            }
        };
        let unit = if row.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", row.unit)
        };
        let _ = writeln!(
            out,
            "| {name}{unit} | {} | {} | {} | {} | {} | {} |",
            cell(Proxy::Meshid),
            cell(Proxy::Envoy),
            cell(Proxy::Stunnel),
            ratio(Proxy::Envoy),
            ratio(Proxy::Stunnel),
            row.better
        );
    }
    out
}

fn format_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One proxy's turn in a round: run again (up to `params.attempts` times in all) while
/// other programs took more than `NOISY` of a core during it; the quietest attempt counts.
fn turn(
    rt: &tokio::runtime::Runtime,
    proxy: Proxy,
    round: usize,
    scene: &Scene,
    params: &Params,
    suites: &mut Vec<(Proxy, String)>,
    refusals: &mut Vec<(Proxy, String)>,
) -> Sample {
    let mut best: Option<Sample> = None;
    for attempt in 1..=params.attempts.max(1) {
        let s = run_one(rt, proxy, scene, params, suites, refusals);
        println!(
            "round {} {:8} {:7.1} MB/s ({:3.0}% CPU) | {:6.0} conn/s ({:3.0}% CPU, {} failed) | +{:6.1} µs p50 +{:6.1} µs p99 | RSS {:6.1} MiB -> {:6.1} MiB | others {:3.0}% (before {:3.0}%)",
            round + 1,
            proxy.name(),
            s.mb_s,
            s.tput_cpu,
            s.hs_s,
            s.hs_cpu,
            s.hs_failed,
            s.lat_p50,
            s.lat_p99,
            s.rss_idle,
            s.rss_conns,
            s.others,
            s.others_before
        );
        let noisy = s.others > NOISY;
        if best.as_ref().is_none_or(|b| s.others < b.others) {
            best = Some(s);
        }
        if !noisy {
            break;
        }
        if attempt < params.attempts {
            println!(
                "        (other programs took more than {NOISY:.0}% of a core: this turn again)"
            );
        }
    }
    best.unwrap()
}

fn main() {
    pin_self();
    let params = Params::from_env();
    let backend = backend();
    let scene = scene(backend);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let only = std::env::var("MESHID_PROXY_BENCH_ONLY").unwrap_or_default();
    let proxies: Vec<Proxy> = Proxy::ALL
        .into_iter()
        .filter(|p| only.is_empty() || only.split(',').any(|o| o.trim() == p.name()))
        .filter(|p| match (p, &scene.meshid_proxy) {
            (Proxy::Meshid, Err(e)) => {
                println!(
                    "meshid proxy: NOT RUN, this build's `meshid proxy inbound --help` failed: {e}"
                );
                false
            }
            _ => true,
        })
        .collect();
    println!(
        "proxy bench: {} round(s), a noisy turn tried up to {} times; proxies on CPU {PROXY_CPU}, load generator and backend on CPU {LOAD_CPU}",
        params.rounds, params.attempts
    );
    println!(
        "  throughput {} MiB echoed; short connections for {:?}, {HANDSHAKE_CONCURRENCY} in flight; {} ping-pongs; {} idle connections",
        params.throughput_bytes >> 20,
        params.handshake_time,
        params.latency_samples,
        params.idle_conns
    );
    let built = std::fs::metadata(MESHID)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or_else(String::new, |age| {
            format!(" (built {} min ago)", age.as_secs() / 60)
        });
    println!("  meshid: {MESHID}{built}");
    println!("  envoy: {}", envoy::envoy_binary().display());
    println!("  stunnel: {}", stunnel::stunnel_binary().display());

    let mut samples: Vec<(Proxy, Vec<Sample>)> =
        Proxy::ALL.iter().map(|&p| (p, Vec::new())).collect();
    let mut suites = Vec::new();
    let mut refusals = Vec::new();
    for round in 0..params.rounds {
        let mut order = proxies.clone();
        order.rotate_left(round % proxies.len().max(1));
        for proxy in order {
            let s = turn(
                &rt,
                proxy,
                round,
                &scene,
                &params,
                &mut suites,
                &mut refusals,
            );
            samples
                .iter_mut()
                .find(|(p, _)| *p == proxy)
                .unwrap()
                .1
                .push(s);
        }
    }
    if let Some(sds) = &scene.sds {
        println!(
            "\nmeshid serve sds (Envoy's certificates, not counted above): RSS {:.1} MiB",
            rss_kib(sds.pid()) as f64 / 1024.0
        );
    }
    for (proxy, suite) in &suites {
        println!("{:8} negotiated {suite}", proxy.name());
    }
    for (proxy, refused) in &refusals {
        println!("{:8} {refused}", proxy.name());
    }
    println!();
    print!("{}", report(&samples, params.idle_conns));
}
