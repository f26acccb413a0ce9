//! `meshid proxy inbound|outbound` run as an operator runs it, in front of and behind real
//! peers (issue 16, "Prove"): a Python `http.server` app and a Python PROXY protocol v2
//! parser behind `proxy inbound`, `curl`, `openssl s_client` and Python's `ssl` as callers,
//! `openssl s_server` behind `proxy outbound`; the two ways chained across SVID rotations
//! with continuous traffic; permissive mode; `--tls web` and `--tls file`; graceful shutdown.
//!
//! Every process is killed when its guard drops, on every path out of a test. The only
//! time bounds asserted are generous ones.

#[path = "common/http.rs"]
mod http;
#[path = "common/peers.rs"]
mod peers;
#[path = "common/serve_cli.rs"]
mod serve_cli;
#[path = "common/workloads.rs"]
#[allow(unused_imports)] // its re-exports from root.rs are for tests/agent.rs
mod workloads;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serve_cli::{run_within, Ran, Scratch};
use workloads::{sha256_hex, transcripts, Proc, MESHID};

const CLIENT: &str = "spiffe://example.org/client";
const SERVER: &str = "spiffe://example.org/server";
/// How long a process may take to start, or a peer to finish: far more than it needs.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The pieces: files, processes, peers.

/// The path of `rel` in the scratch directory, as an argument.
fn at(dir: &Path, rel: &str) -> String {
    dir.join(rel).display().to_string()
}

fn meshid(dir: &Path, args: &[&str]) {
    let out = Command::new(MESHID)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshid {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `meshid issue --ca CA --id ID --out-dir OUT`: OUT/svid.pem, svid.key, bundle.pem.
fn issue(dir: &Path, ca: &str, id: &str, out: &str) {
    meshid(dir, &["issue", "--ca", ca, "--id", id, "--out-dir", out]);
}

fn run(program: &str, args: &[&str]) -> Ran {
    run_within(Path::new(program), args, WAIT)
}

/// `curl -sS` with `args`.
fn curl(args: &[&str]) -> Ran {
    run("curl", &[&["-sS", "--max-time", "20"], args].concat())
}

/// `curl ARGS` with `who`'s SVID as the client certificate; the server's certificate is
/// not verified (an SVID has no DNS name for curl to match; the chain is checked with
/// `openssl s_client` instead).
fn curl_as(dir: &Path, who: &str, args: &[&str]) -> Ran {
    let cert = at(dir, &format!("{who}/svid.pem"));
    let key = at(dir, &format!("{who}/svid.key"));
    curl(&[&["-k", "--cert", &cert, "--key", &key], args].concat())
}

fn python_apps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/proxy_apps.py")
}

/// A running `tests/python/proxy_apps.py` server.
struct App {
    proc: Proc,
    addr: SocketAddr,
}

fn app(mode: &str) -> App {
    let mut cmd = Command::new("python3");
    cmd.arg(python_apps()).arg(mode);
    let proc = Proc::spawn(format!("proxy_apps.py {mode}"), cmd);
    let line = proc.expect_line_that(
        "`listening on PORT`",
        |l| l.starts_with("listening on "),
        WAIT,
        &[],
    );
    let port: u16 = line["listening on ".len()..].parse().unwrap();
    App {
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

type Headers = Vec<(String, String)>;

impl App {
    /// The next request the HTTP app got: its path and headers (names lower-cased).
    fn next_request(&self, others: &[&Proc]) -> (String, Headers) {
        let line = self.proc.expect_line_that(
            "`request PATH HEADERS`",
            |l| l.starts_with("request "),
            WAIT,
            others,
        );
        let (path, json) = line["request ".len()..].split_once(' ').unwrap();
        (path.to_owned(), serde_json::from_str(json).unwrap())
    }

    /// The next connection the PROXY v2 app parsed.
    fn next_pp2(&self, others: &[&Proc]) -> serde_json::Value {
        let line =
            self.proc
                .expect_line_that("`pp2 JSON`", |l| l.starts_with("pp2 "), WAIT, others);
        serde_json::from_str(&line["pp2 ".len()..]).unwrap()
    }
}

/// The values of `name` among `headers`.
fn values<'a>(headers: &'a Headers, name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A running `meshid proxy`, with its metrics served on a port of its own.
struct Proxy {
    proc: Proc,
    addr: SocketAddr,
    metrics: SocketAddr,
}

/// Starts `meshid proxy WAY --listen 127.0.0.1:0 --metrics 127.0.0.1:0 ARGS` in `dir` and
/// reads the addresses it took from its first lines.
fn proxy(dir: &Path, way: &str, args: &[&str]) -> Proxy {
    let mut cmd = Command::new(MESHID);
    cmd.current_dir(dir)
        .args(["proxy", way, "--listen", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--log-level", "debug"])
        .args(args);
    let proc = Proc::spawn(format!("meshid proxy {way} {}", args.join(" ")), cmd);
    let mut metrics = None;
    loop {
        let Some(line) = proc.next_line(WAIT) else {
            panic!("no `listening on` line\n{}", proc.transcript());
        };
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = Some(rest.trim_end_matches("/metrics").parse().unwrap());
        } else if let Some(rest) = line.strip_prefix("listening on ") {
            let addr = rest.parse().unwrap();
            let metrics =
                metrics.unwrap_or_else(|| panic!("no `metrics on` line\n{}", proc.transcript()));
            return Proxy {
                proc,
                addr,
                metrics,
            };
        }
    }
}

impl Proxy {
    fn port(&self) -> String {
        self.addr.port().to_string()
    }

    fn metric_now(&self, series: &str) -> Option<f64> {
        let (status, text) = http::get(self.metrics, "/metrics", None)?;
        assert_eq!(status, 200, "{text}");
        http::sample(&text, series)
    }

    /// Waits (at most 10 s: the counters move as connections end, just after the caller
    /// saw the end) for the sample `series` to satisfy `check`, and returns it.
    fn metric_that(&self, series: &str, check: impl Fn(f64) -> bool, others: &[&Proc]) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.metric_now(series);
            if let Some(v) = value.filter(|v| check(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {value:?}\n{}",
                transcripts(&self.proc, others)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metric_is(&self, series: &str, expected: f64, others: &[&Proc]) {
        #[allow(clippy::float_cmp)] // counters: whole numbers, exactly represented
        self.metric_that(series, |v| v == expected, others);
    }
}

/// A plain TCP echo server in this process (a thread per connection; the write side closed
/// when the caller's is), stopped when dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut tcp) = tcp else { continue };
                std::thread::spawn(move || {
                    let Ok(mut back) = tcp.try_clone() else {
                        return;
                    };
                    let _ = io::copy(&mut tcp, &mut back);
                    let _ = back.shutdown(Shutdown::Write);
                });
            }
        });
        Self { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop up
    }
}

/// One connection: `payload` sent, the write side closed, everything read back until the
/// other side closes; an error unless exactly `payload` came back.
fn echo_once(addr: SocketAddr, payload: &[u8]) -> Result<(), String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(payload).map_err(|e| format!("write: {e}"))?;
    tcp.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut back = Vec::new();
    tcp.read_to_end(&mut back)
        .map_err(|e| format!("read after {} bytes: {e}", back.len()))?;
    if back == payload {
        Ok(())
    } else {
        Err(format!(
            "sent {} bytes, got {} back{}",
            payload.len(),
            back.len(),
            if back.len() == payload.len() {
                " (different)"
            } else {
                ""
            }
        ))
    }
}

/// A connection kept open: each `round` sends a line and reads its echo.
struct Long {
    tcp: TcpStream,
    rounds: usize,
    /// Bytes sent (and echoed back) so far.
    bytes: u64,
}

impl Long {
    fn open(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            tcp,
            rounds: 0,
            bytes: 0,
        }
    }

    fn round(&mut self) -> Result<(), String> {
        self.rounds += 1;
        let line = format!("round {} of the long connection\n", self.rounds);
        self.tcp
            .write_all(line.as_bytes())
            .map_err(|e| format!("round {}: write: {e}", self.rounds))?;
        let mut back = vec![0; line.len()];
        self.tcp
            .read_exact(&mut back)
            .map_err(|e| format!("round {}: read: {e}", self.rounds))?;
        if back == line.as_bytes() {
            self.bytes += line.len() as u64;
            Ok(())
        } else {
            Err(format!("round {}: got {back:?}", self.rounds))
        }
    }
}

/// `GET / HTTP/1.0` over plain TCP (through an outbound proxy): what came back until the
/// connection closed, or the error that ended it.
fn get_through(addr: SocketAddr) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut page = Vec::new();
    match tcp.read_to_end(&mut page) {
        Ok(_) => Ok(String::from_utf8_lossy(&page).into_owned()),
        Err(e) => Err(format!(
            "read after {:?}: {e}",
            String::from_utf8_lossy(&page)
        )),
    }
}

/// `openssl s_server -www` on a free port with `args`, once it accepts.
fn s_server(dir: &Path, args: &[&str]) -> (Proc, SocketAddr) {
    let addr = http::free_addr();
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["s_server", "-accept", &addr.to_string(), "-www"])
        .args(args);
    let proc = Proc::spawn("openssl s_server", cmd);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match proc.next_line(left) {
            Some(line) if line == "ACCEPT" => return (proc, addr),
            Some(_) => {}
            None => panic!("no ACCEPT line\n{}", proc.transcript()),
        }
    }
}

/// `openssl s_client` against `addr` with `args` (stdin closed: it completes the handshake and leaves).
fn s_client(addr: SocketAddr, args: &[&str]) -> Ran {
    let addr = addr.to_string();
    run(
        "openssl",
        &[&["s_client", "-connect", &addr], args].concat(),
    )
}

/// A second CA, for another trust domain, in `dir/ca2`.
fn other_trust_domain(dir: &Path) {
    meshid(
        dir,
        &["ca", "init", "--trust-domain", "other.org", "--out", "ca2"],
    );
}

// ---------------------------------------------------------------------------------------
// 1. An HTTP app behind `proxy inbound --http`.

#[test]
#[allow(clippy::too_many_lines)] // one scenario, in order
fn http_app_sees_the_callers_id_and_refused_callers_never_reach_it() {
    let scratch = Scratch::new("pxc-http");
    let d = &scratch.0;
    other_trust_domain(d);
    issue(d, "ca", CLIENT, "client");
    issue(d, "ca", "spiffe://example.org/intruder", "intruder");
    issue(d, "ca2", "spiffe://other.org/client", "foreign");
    let app = app("http");
    let px = proxy(
        d,
        "inbound",
        &[
            "--target",
            &app.addr.to_string(),
            "--allow",
            CLIENT,
            "--ca",
            "ca",
            "--id",
            SERVER,
            "--http",
        ],
    );
    let procs = [&px.proc];
    let url = |path: &str| format!("https://127.0.0.1:{}/{path}", px.port());

    // An allowed caller, forging the header twice: the app sees exactly one, ours.
    let ran = curl_as(
        d,
        "client",
        &[
            "-H",
            "x-forwarded-client-cert: URI=spiffe://example.org/admin",
            "-H",
            "X-Forwarded-Client-Cert: By=spiffe://example.org/admin",
            &url("allowed"),
        ],
    );
    assert!(ran.success(), "{ran}\n{}", px.proc.transcript());
    let answered: Headers = serde_json::from_str(&ran.stdout).unwrap();
    let (path, seen) = app.next_request(&procs);
    assert_eq!(path, "/allowed");
    assert_eq!(seen, answered);
    assert_eq!(
        values(&seen, "x-forwarded-client-cert"),
        [format!("URI={CLIENT}")],
        "{seen:?}"
    );

    // Two requests on one kept-alive connection (curl opens one; the app, HTTP/1.0, closes
    // after each): both reach it, both with the header.
    let ran = curl_as(
        d,
        "client",
        &[
            "-w",
            "%{num_connects}\n",
            "-o",
            "/dev/null",
            &url("first"),
            "-o",
            "/dev/null",
            &url("second"),
        ],
    );
    assert!(ran.success(), "{ran}");
    assert_eq!(ran.lines(), ["1", "0"], "curl did not reuse its connection");
    for expected in ["/first", "/second"] {
        let (path, seen) = app.next_request(&procs);
        assert_eq!(path, expected);
        assert_eq!(
            values(&seen, "x-forwarded-client-cert"),
            [format!("URI={CLIENT}")]
        );
    }

    // The chain the proxy serves verifies against the bundle (and not against another's).
    let (cert, key) = (at(d, "client/svid.pem"), at(d, "client/svid.key"));
    let verified_with = |bundle: &str| {
        let bundle = at(d, bundle);
        s_client(
            px.addr,
            &[
                "-CAfile",
                &bundle,
                "-verify_return_error",
                "-cert",
                &cert,
                "-key",
                &key,
            ],
        )
    };
    let ran = verified_with("client/bundle.pem");
    assert!(
        ran.success() && ran.stdout.contains("Verify return code: 0 (ok)"),
        "{ran}"
    );
    let ran = verified_with("foreign/bundle.pem");
    assert!(
        !ran.success() && !ran.stdout.contains("Verify return code: 0 (ok)"),
        "the proxy's chain verified against another trust domain's bundle\n{ran}"
    );

    // Refused: an ID not allowed, a trust domain we hold no bundle for, no certificate.
    for (who, path) in [("intruder", "intruder"), ("foreign", "foreign")] {
        let ran = curl_as(d, who, &[&url(path)]);
        assert!(!ran.success(), "{who} got through\n{ran}");
    }
    let ran = curl(&["-k", &url("anonymous")]);
    assert!(
        !ran.success(),
        "a caller without a certificate got through\n{ran}"
    );
    // The next request the app sees is the next allowed one: none of those reached it.
    let ran = curl_as(d, "client", &["-o", "/dev/null", &url("after")]);
    assert!(ran.success(), "{ran}");
    assert_eq!(app.next_request(&procs).0, "/after");

    // A 3 MB body streams through whole (the app answers its length and SHA-256).
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| u8::try_from(i.wrapping_mul(2_654_435_761) >> 24).unwrap())
        .collect();
    let file = d.join("body.bin");
    std::fs::write(&file, &body).unwrap();
    let upload = format!("@{}", file.display());
    let ran = curl_as(d, "client", &["--data-binary", &upload, &url("upload")]);
    assert!(ran.success(), "{ran}");
    let answer: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(answer["length"], body.len(), "{answer}");
    assert_eq!(answer["sha256"], sha256_hex(&file), "{answer}");
    assert_eq!(app.next_request(&procs).0, "/upload");

    px.metric_is(
        r#"meshid_tls_handshakes_total{side="server",result="not_authorized"}"#,
        1.0,
        &[],
    );
    px.metric_is(
        r#"meshid_tls_handshakes_total{side="server",result="untrusted_trust_domain"}"#,
        1.0,
        &[],
    );
    px.metric_is(
        r#"meshid_proxy_refused_total{way="inbound",reason="rejected"}"#,
        2.0,
        &[],
    );
    // allowed, the kept-alive pair (one connection), the s_client that verified, after,
    // upload.
    px.metric_is(
        r#"meshid_proxy_connections_total{way="inbound",kind="mtls"}"#,
        5.0,
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// 2. PROXY protocol v2 to a TCP app.

#[test]
fn proxy_protocol_app_reads_the_callers_id_and_address() {
    let scratch = Scratch::new("pxc-pp2");
    let d = &scratch.0;
    issue(d, "ca", CLIENT, "client");
    issue(d, "ca", "spiffe://example.org/intruder", "intruder");
    let app = app("pp2");
    let px = proxy(
        d,
        "inbound",
        &[
            "--target",
            &app.addr.to_string(),
            "--allow",
            CLIENT,
            "--ca",
            "ca",
            "--id",
            SERVER,
            "--proxy-protocol",
        ],
    );
    let procs = [&px.proc];
    let apps = python_apps().display().to_string();
    let call_with = |who: &str, version: &str| {
        run(
            "python3",
            &[
                &apps,
                "tls-client",
                "127.0.0.1",
                &px.port(),
                &at(d, &format!("{who}/svid.pem")),
                &at(d, &format!("{who}/svid.key")),
                &at(d, "client/bundle.pem"),
                version,
            ],
        )
    };
    let call = |who: &str| call_with(who, "any");
    let answered = |ran: &Ran| -> (u16, serde_json::Value) {
        assert!(ran.success(), "{ran}\n{}", px.proc.transcript());
        let lines = ran.lines();
        let local = lines[0].strip_prefix("local ").unwrap().parse().unwrap();
        (local, serde_json::from_str(lines[1]).unwrap())
    };

    let (local, answer) = answered(&call("client"));
    let parsed = app.next_pp2(&procs);
    assert_eq!(answer, parsed);
    assert!(parsed.get("error").is_none(), "{parsed}");
    assert_eq!(parsed["id"], CLIENT, "{parsed}");
    assert_eq!(parsed["family"], 0x11, "TCP over IPv4: {parsed}");
    assert_eq!(parsed["src"], format!("127.0.0.1:{local}"), "{parsed}");
    assert_eq!(parsed["dst"], px.addr.to_string(), "{parsed}");
    // PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS, verified.
    assert_eq!(parsed["ssl_client"], 7, "{parsed}");
    assert_eq!(parsed["ssl_verify"], 0, "{parsed}");
    assert_eq!(parsed["ssl_version"], "TLSv1.3", "{parsed}");
    // The caller's bytes follow the header untouched.
    assert_eq!(parsed["payload"], "hello", "{parsed}");

    // A TLS 1.2 caller: told so in the SSL TLV.
    let (local, _) = answered(&call_with("client", "tls1.2"));
    let parsed = app.next_pp2(&procs);
    assert_eq!(parsed["src"], format!("127.0.0.1:{local}"), "{parsed}");
    assert_eq!(parsed["id"], CLIENT, "{parsed}");
    assert_eq!(parsed["ssl_version"], "TLSv1.2", "{parsed}");

    let ran = call("intruder");
    assert!(!ran.success(), "{ran}");
    let (local, _) = answered(&call("client"));
    let parsed = app.next_pp2(&procs);
    assert_eq!(
        parsed["src"],
        format!("127.0.0.1:{local}"),
        "the app saw another connection first: {parsed}"
    );
    px.metric_is(
        r#"meshid_proxy_refused_total{way="inbound",reason="rejected"}"#,
        1.0,
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// 3. `proxy outbound` in front of `openssl s_server -Verify`.

#[test]
fn outbound_presents_our_svid_to_openssl_and_refuses_an_unexpected_server() {
    let scratch = Scratch::new("pxc-out");
    let d = &scratch.0;
    issue(d, "ca", SERVER, "server");
    let (server, target) = s_server(
        d,
        &[
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            "server/bundle.pem",
            "-cert",
            "server/svid.pem",
            "-key",
            "server/svid.key",
        ],
    );
    let target = target.to_string();
    let common = ["--target", &target, "--ca", "ca", "--id", CLIENT];
    let px = proxy(
        d,
        "outbound",
        &[&common[..], &["--expect", SERVER]].concat(),
    );
    let page = get_through(px.addr)
        .unwrap_or_else(|e| panic!("{e}\n{}", transcripts(&px.proc, &[&server])));
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    // s_server verified our chain against the bundle and shows our SVID.
    assert!(page.contains("Verify return code: 0 (ok)"), "{page}");
    assert!(page.contains(&format!("URI:{CLIENT}")), "{page}");
    px.metric_is(
        r#"meshid_tls_handshakes_total{side="client",result="accepted"}"#,
        1.0,
        &[],
    );
    px.metric_is(
        r#"meshid_proxy_connections_total{way="outbound",kind="mtls"}"#,
        1.0,
        &[],
    );

    let wrong = proxy(
        d,
        "outbound",
        &[&common[..], &["--expect", "spiffe://example.org/billing"]].concat(),
    );
    match get_through(wrong.addr) {
        Ok(page) => assert!(page.is_empty(), "the client got {page:?}"),
        Err(e) => assert!(e.contains("\"\""), "the client got something: {e}"),
    }
    wrong.metric_is(
        r#"meshid_tls_handshakes_total{side="client",result="not_authorized"}"#,
        1.0,
        &[],
    );
    wrong.metric_is(
        r#"meshid_proxy_refused_total{way="outbound",reason="rejected"}"#,
        1.0,
        &[],
    );
    wrong.metric_is(
        r#"meshid_proxy_connections_total{way="outbound",kind="mtls"}"#,
        0.0,
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// 4. Both ways chained, across rotations, with continuous traffic.

#[test]
#[allow(clippy::too_many_lines)] // one scenario, in order
fn outbound_to_inbound_across_rotations_loses_no_connection() {
    let scratch = Scratch::new("pxc-rot");
    let d = &scratch.0;
    let echo = Echo::start();
    let inbound = proxy(
        d,
        "inbound",
        &[
            "--target",
            &echo.addr.to_string(),
            "--allow",
            CLIENT,
            "--ca",
            "ca",
            "--id",
            SERVER,
            "--ttl",
            "5s",
        ],
    );
    let inbound_addr = inbound.addr.to_string();
    let outbound = proxy(
        d,
        "outbound",
        &[
            "--target",
            &inbound_addr,
            "--expect",
            SERVER,
            "--ca",
            "ca",
            "--id",
            CLIENT,
            "--ttl",
            "5s",
        ],
    );
    let procs = [&inbound.proc];
    let entry = outbound.addr;

    // Three SVID lifetimes: every handshake after the first 5 s needs a renewed SVID on
    // both sides (an expired one is refused), so zero failures means rotation worked.
    let run_for = Duration::from_secs(15);
    let deadline = Instant::now() + run_for;
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut long = Long::open(entry);
    let long_thread = {
        let failures = Arc::clone(&failures);
        std::thread::spawn(move || {
            while Instant::now() < deadline {
                if let Err(e) = long.round() {
                    failures.lock().unwrap().push(format!("long: {e}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (long.rounds, long.bytes) // and the connection closed
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let failures = Arc::clone(&failures);
            let done = Arc::clone(&done);
            let echoed = Arc::clone(&echoed);
            std::thread::spawn(move || {
                let mut n = 0u32;
                while Instant::now() < deadline {
                    n += 1;
                    // 1 to 64 KiB, different each time.
                    let len = 1024 * (1 + (n as usize * 7 + worker) % 64);
                    let payload: Vec<u8> = (0..len)
                        .map(|i| u8::try_from((i * 31 + n as usize) % 251).unwrap())
                        .collect();
                    let at = Instant::now();
                    match echo_once(entry, &payload) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::SeqCst);
                            echoed.fetch_add(len as u64, Ordering::SeqCst);
                        }
                        Err(e) => failures.lock().unwrap().push(format!(
                            "worker {worker} connection {n} ({len} bytes, {:?} in): {e}",
                            run_for.saturating_sub(deadline.saturating_duration_since(at))
                        )),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (long_rounds, long_bytes) = long_thread.join().unwrap();
    let failures = failures.lock().unwrap().clone();
    let done = done.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} failed connections ({done} succeeded): {failures:#?}\n{}",
        failures.len(),
        transcripts(&outbound.proc, &procs)
    );
    assert!(done >= 10, "only {done} connections in {run_for:?}");
    assert!(
        long_rounds >= 10,
        "only {long_rounds} rounds on the long one"
    );

    // Renewals (the first issuance counts as one): at least three rotations each.
    let renewed = |px: &Proxy, id: &str| {
        let series =
            format!(r#"meshid_svid_renewals_total{{spiffe_id="{id}",result="ok",reason="none"}}"#);
        px.metric_that(&series, |v| v >= 4.0, &[])
    };
    let client_renewals = renewed(&outbound, CLIENT);
    let server_renewals = renewed(&inbound, SERVER);
    // Every connection, the long one too, was one handshake the inbound proxy accepted.
    let connections = f64::from(u32::try_from(done + 1).unwrap());
    inbound.metric_is(
        r#"meshid_proxy_connections_total{way="inbound",kind="mtls"}"#,
        connections,
        &[],
    );
    outbound.metric_is(
        r#"meshid_proxy_connections_total{way="outbound",kind="mtls"}"#,
        connections,
        &[],
    );
    // Every byte counted once each way, each proxy, once every connection has closed.
    let bytes = echoed.load(Ordering::SeqCst) + long_bytes;
    let bytes = f64::from(u32::try_from(bytes).unwrap());
    for (px, way) in [(&inbound, "inbound"), (&outbound, "outbound")] {
        px.metric_is(
            &format!(r#"meshid_proxy_open_connections{{way="{way}"}}"#),
            0.0,
            &[],
        );
        for direction in ["to_target", "to_caller"] {
            px.metric_is(
                &format!(r#"meshid_proxy_bytes_total{{way="{way}",direction="{direction}"}}"#),
                bytes,
                &[],
            );
        }
    }
    eprintln!(
        "{done} connections and {long_rounds} rounds on a long one in {run_for:?}; \
         renewals: client {client_renewals}, server {server_renewals}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Permissive mode.

#[test]
fn permissive_serves_plaintext_and_mtls_on_one_port_and_closes_a_silent_client() {
    let scratch = Scratch::new("pxc-perm");
    let d = &scratch.0;
    issue(d, "ca", CLIENT, "client");
    let app = app("http");
    let target = app.addr.to_string();
    let common = [
        "--target", &target, "--allow", CLIENT, "--ca", "ca", "--id", SERVER, "--http",
    ];
    let px = proxy(
        d,
        "inbound",
        &[&common[..], &["--permissive", "--detect-timeout", "1s"]].concat(),
    );
    let procs = [&px.proc];

    // Plaintext: served, and a header it forges is removed (no ID was proved).
    let forged = "x-forwarded-client-cert: URI=spiffe://example.org/admin";
    let ran = curl(&[
        "-H",
        forged,
        &format!("http://127.0.0.1:{}/plain", px.port()),
    ]);
    assert!(ran.success(), "{ran}\n{}", px.proc.transcript());
    let (path, seen) = app.next_request(&procs);
    assert_eq!(path, "/plain");
    assert!(
        values(&seen, "x-forwarded-client-cert").is_empty(),
        "{seen:?}"
    );
    // mTLS on the same port.
    let url = format!("https://127.0.0.1:{}/mtls", px.port());
    let ran = curl_as(d, "client", &["-H", forged, &url]);
    assert!(ran.success(), "{ran}\n{}", px.proc.transcript());
    let (path, seen) = app.next_request(&procs);
    assert_eq!(path, "/mtls");
    assert_eq!(
        values(&seen, "x-forwarded-client-cert"),
        [format!("URI={CLIENT}")]
    );

    // A client that sends nothing is closed after the detection timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(px.addr).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let read = silent.read(&mut [0; 64]);
    let took = started.elapsed();
    match read {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("the silent client read {other:?} after {took:?}"),
    }
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_secs(10),
        "closed after {took:?}, with --detect-timeout 1s"
    );

    px.metric_is(
        r#"meshid_proxy_connections_total{way="inbound",kind="plaintext"}"#,
        1.0,
        &[],
    );
    px.metric_is(
        r#"meshid_proxy_connections_total{way="inbound",kind="mtls"}"#,
        1.0,
        &[],
    );
    px.metric_is(
        r#"meshid_proxy_refused_total{way="inbound",reason="detect_timeout"}"#,
        1.0,
        &[],
    );

    // Strict (the default): the plaintext client is refused and never reaches the app.
    let strict = proxy(d, "inbound", &common);
    let ran = curl(&[&format!("http://127.0.0.1:{}/plain", strict.port())]);
    assert!(!ran.success(), "strict mode served plaintext\n{ran}");
    let url = format!("https://127.0.0.1:{}/strict-mtls", strict.port());
    let ran = curl_as(d, "client", &["-o", "/dev/null", &url]);
    assert!(ran.success(), "{ran}");
    assert_eq!(app.next_request(&[&strict.proc]).0, "/strict-mtls");
    strict.metric_is(
        r#"meshid_proxy_connections_total{way="inbound",kind="plaintext"}"#,
        0.0,
        &[],
    );
    strict.metric_is(
        r#"meshid_proxy_refused_total{way="inbound",reason="handshake"}"#,
        1.0,
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// 6. `--tls web` outbound.

#[test]
fn outbound_tls_web_verifies_the_server_name() {
    let scratch = Scratch::new("pxc-web");
    let d = &scratch.0;
    let made = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &at(d, "web.key"),
            "-out",
            &at(d, "web.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );
    assert!(made.success(), "{made}");
    issue(d, "ca", CLIENT, "client");
    // Asks for a client certificate without requiring one, and shows it when it comes.
    let (server, target) = s_server(d, &["-cert", "web.pem", "-key", "web.key", "-verify", "1"]);
    let target = target.to_string();
    let web = |extra: &[&str]| {
        proxy(
            d,
            "outbound",
            &[&["--target", &target, "--tls", "web"], extra].concat(),
        )
    };
    let ca_file = at(d, "web.pem");

    let px = web(&["--server-name", "localhost", "--ca-file", &ca_file]);
    let page = get_through(px.addr).unwrap_or_else(|e| panic!("{e}\n{}", px.proc.transcript()));
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.contains("no client certificate available"), "{page}");
    px.metric_is(
        r#"meshid_proxy_connections_total{way="outbound",kind="tls"}"#,
        1.0,
        &[],
    );

    // --client-cert svid: our SVID, offered when asked.
    let px = web(&[
        "--server-name",
        "localhost",
        "--ca-file",
        &ca_file,
        "--client-cert",
        "svid",
        "--ca",
        "ca",
        "--id",
        CLIENT,
    ]);
    let page = get_through(px.addr).unwrap_or_else(|e| panic!("{e}\n{}", px.proc.transcript()));
    assert!(page.contains(&format!("URI:{CLIENT}")), "{page}");

    // A name the certificate is not for, and a CA that did not issue it (the built-in Web
    // PKI roots): refused.
    for wrong in [
        web(&["--server-name", "wrong.example", "--ca-file", &ca_file]),
        web(&["--server-name", "localhost"]),
    ] {
        match get_through(wrong.addr) {
            Ok(page) => assert!(page.is_empty(), "the client got {page:?}"),
            Err(e) => assert!(e.contains("\"\""), "the client got something: {e}"),
        }
        wrong.metric_is(
            r#"meshid_proxy_refused_total{way="outbound",reason="handshake"}"#,
            1.0,
            &[&server],
        );
        wrong.metric_is(
            r#"meshid_proxy_connections_total{way="outbound",kind="tls"}"#,
            0.0,
            &[],
        );
    }
}

// ---------------------------------------------------------------------------------------
// 7. `--tls file` inbound.

/// A certificate for `localhost` signed by `dir/webca.pem` with `serial`, in
/// `dir/NAME.pem` and `dir/NAME.key`.
fn localhost_cert(dir: &Path, name: &str, serial: &str) {
    let ok = |ran: Ran| assert!(ran.success(), "{ran}");
    if !dir.join("webca.pem").exists() {
        ok(run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &at(dir, "webca.key"),
                "-out",
                &at(dir, "webca.pem"),
                "-days",
                "1",
                "-subj",
                "/CN=meshid test web CA",
            ],
        ));
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
    }
    ok(run(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &at(dir, &format!("{name}.key")),
            "-out",
            &at(dir, &format!("{name}.csr")),
            "-subj",
            "/CN=localhost",
        ],
    ));
    ok(run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &at(dir, &format!("{name}.csr")),
            "-CA",
            &at(dir, "webca.pem"),
            "-CAkey",
            &at(dir, "webca.key"),
            "-set_serial",
            serial,
            "-days",
            "1",
            "-extfile",
            &at(dir, "leaf.ext"),
            "-out",
            &at(dir, &format!("{name}.pem")),
        ],
    ));
}

/// The serial number (`serial=HEX`) of the first certificate in `pem`.
fn serial_of(dir: &Path, pem: &str) -> String {
    let file = dir.join("served.pem");
    std::fs::write(&file, pem).unwrap();
    let ran = run(
        "openssl",
        &[
            "x509",
            "-in",
            &file.display().to_string(),
            "-noout",
            "-serial",
        ],
    );
    assert!(ran.success(), "{ran}");
    ran.stdout.trim().to_owned()
}

/// The serial of the certificate `addr` serves for `localhost`, verified against
/// `webca.pem` and the name.
fn served_serial(dir: &Path, addr: SocketAddr) -> String {
    let ran = s_client(
        addr,
        &[
            "-servername",
            "localhost",
            "-verify_hostname",
            "localhost",
            "-CAfile",
            &at(dir, "webca.pem"),
            "-verify_return_error",
            "-showcerts",
        ],
    );
    assert!(ran.success(), "{ran}");
    let begin = ran.stdout.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = ran.stdout[begin..]
        .find("-----END CERTIFICATE-----")
        .unwrap();
    serial_of(dir, &ran.stdout[begin..begin + end + 25])
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, in order
fn inbound_tls_file_serves_a_reloaded_certificate_and_can_require_client_certificates() {
    let scratch = Scratch::new("pxc-file");
    let d = &scratch.0;
    localhost_cert(d, "first", "1001");
    localhost_cert(d, "second", "2002");
    for ext in ["pem", "key"] {
        std::fs::copy(d.join(format!("first.{ext}")), d.join(format!("tls.{ext}"))).unwrap();
    }
    let first = serial_of(d, &std::fs::read_to_string(d.join("first.pem")).unwrap());
    let second = serial_of(d, &std::fs::read_to_string(d.join("second.pem")).unwrap());
    assert_ne!(first, second);
    let app = app("http");
    let target = app.addr.to_string();
    let files = [
        "--target", &target, "--tls", "file", "--cert", "tls.pem", "--key", "tls.key",
    ];
    let px = proxy(d, "inbound", &files);
    let procs = [&px.proc];
    let webca = at(d, "webca.pem");
    let https = |px: &Proxy, path: &str| {
        let resolve = format!("localhost:{}:127.0.0.1", px.port());
        let url = format!("https://localhost:{}/{path}", px.port());
        (resolve, url)
    };

    // Real verification (the CA and the name), no client certificate.
    let (resolve, url) = https(&px, "one-way");
    let ran = curl(&["--cacert", &webca, "--resolve", &resolve, &url]);
    assert!(ran.success(), "{ran}\n{}", px.proc.transcript());
    assert_eq!(app.next_request(&procs).0, "/one-way");
    assert_eq!(served_serial(d, px.addr), first);
    px.metric_that(
        r#"meshid_proxy_connections_total{way="inbound",kind="tls"}"#,
        |v| v >= 1.0,
        &[],
    );

    // New files (the key first, then the certificate, each renamed into place): served
    // from a handshake at least a second later.
    for ext in ["key", "pem"] {
        let tmp = d.join(format!("tls.{ext}.new"));
        std::fs::copy(d.join(format!("second.{ext}")), &tmp).unwrap();
        std::fs::rename(&tmp, d.join(format!("tls.{ext}"))).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        std::thread::sleep(Duration::from_millis(1100));
        let served = served_serial(d, px.addr);
        if served == second {
            break;
        }
        assert_eq!(served, first, "neither certificate served");
        assert!(
            Instant::now() < deadline,
            "the replaced certificate files were never served\n{}",
            px.proc.transcript()
        );
    }
    let (resolve, url) = https(&px, "reloaded");
    let ran = curl(&["--cacert", &webca, "--resolve", &resolve, &url]);
    assert!(ran.success(), "{ran}");
    assert_eq!(app.next_request(&procs).0, "/reloaded");

    // --client-ca: a client certificate from that CA is required. With --http, its URI is
    // never passed on as the caller's SPIFFE ID: no SPIFFE verifier checked it.
    issue(d, "ca", CLIENT, "client");
    other_trust_domain(d);
    issue(d, "ca2", "spiffe://other.org/client", "foreign");
    let bundle = at(d, "client/bundle.pem");
    let px = proxy(
        d,
        "inbound",
        &[&files[..], &["--client-ca", &bundle, "--http"]].concat(),
    );
    let (resolve, url) = https(&px, "anonymous");
    let ran = curl(&["--cacert", &webca, "--resolve", &resolve, &url]);
    assert!(
        !ran.success(),
        "no client certificate, and it got through\n{ran}"
    );
    let (resolve, url) = https(&px, "foreign");
    let ran = curl(&[
        "--cacert",
        &webca,
        "--resolve",
        &resolve,
        "--cert",
        &at(d, "foreign/svid.pem"),
        "--key",
        &at(d, "foreign/svid.key"),
        &url,
    ]);
    assert!(
        !ran.success(),
        "a client certificate of another CA got through\n{ran}"
    );
    let (resolve, url) = https(&px, "with-cert");
    let ran = curl(&[
        "--cacert",
        &webca,
        "--resolve",
        &resolve,
        "--cert",
        &at(d, "client/svid.pem"),
        "--key",
        &at(d, "client/svid.key"),
        &url,
    ]);
    assert!(ran.success(), "{ran}\n{}", px.proc.transcript());
    let (path, seen) = app.next_request(&[&px.proc]);
    assert_eq!(path, "/with-cert");
    assert!(
        values(&seen, "x-forwarded-client-cert").is_empty(),
        "a URI no SPIFFE verifier checked was passed on as the caller's ID: {seen:?}"
    );
    px.metric_is(
        r#"meshid_proxy_refused_total{way="inbound",reason="handshake"}"#,
        2.0,
        &[],
    );
}

// ---------------------------------------------------------------------------------------
// 8. Graceful shutdown.

/// Sends SIGTERM and waits for `stopping`.
fn terminate(px: &Proxy) {
    px.proc.signal("TERM");
    px.proc.expect_line("stopping", WAIT, &[]);
}

/// After shutdown began: new connections get nothing through `addr`; the listener ends
/// up closed if `closes` (the proxy's own port).
fn refuses_new_connections(addr: SocketAddr, closes: bool) {
    let got = echo_once(addr, b"a new connection\n");
    assert!(got.is_err(), "a new connection was served after SIGTERM");
    if closes {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                other => assert!(
                    Instant::now() < deadline,
                    "still accepting after SIGTERM: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, in order
fn sigterm_drains_open_connections_and_exits_zero() {
    let scratch = Scratch::new("pxc-stop");
    let d = &scratch.0;
    let echo = Echo::start();
    let echo_addr = echo.addr.to_string();
    let inbound = proxy(
        d,
        "inbound",
        &[
            "--target",
            &echo_addr,
            "--allow",
            CLIENT,
            "--ca",
            "ca",
            "--id",
            SERVER,
            "--shutdown-timeout",
            "2m",
        ],
    );
    let inbound_addr = inbound.addr.to_string();
    let mut outbound = proxy(
        d,
        "outbound",
        &[
            "--target",
            &inbound_addr,
            "--expect",
            SERVER,
            "--ca",
            "ca",
            "--id",
            CLIENT,
            "--shutdown-timeout",
            "2s",
        ],
    );

    // The inbound proxy stops while a connection through it is open: that one keeps
    // working, new ones are refused, and it exits (0) once that one closes, long before
    // its 2-minute drain limit.
    let mut long = Long::open(outbound.addr);
    long.round().unwrap();
    terminate(&inbound);
    refuses_new_connections(inbound.addr, true);
    refuses_new_connections(outbound.addr, false);
    for _ in 0..5 {
        long.round()
            .unwrap_or_else(|e| panic!("{e}\n{}", transcripts(&inbound.proc, &[&outbound.proc])));
    }
    long.tcp.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    long.tcp.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let mut inbound = inbound;
    let status = inbound.proc.wait(WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "inbound: {status:?}\n{}",
        inbound.proc.transcript()
    );

    // The outbound proxy stops with a connection that stays open: refused for new ones;
    // the open one works until the 2 s drain limit, then is closed; exit 0.
    let inbound = proxy(
        d,
        "inbound",
        &[
            "--target", &echo_addr, "--allow", CLIENT, "--ca", "ca", "--id", SERVER,
        ],
    );
    drop(outbound);
    outbound = proxy(
        d,
        "outbound",
        &[
            "--target",
            &inbound.addr.to_string(),
            "--expect",
            SERVER,
            "--ca",
            "ca",
            "--id",
            CLIENT,
            "--shutdown-timeout",
            "2s",
        ],
    );
    let mut long = Long::open(outbound.addr);
    long.round().unwrap();
    let stopped = Instant::now();
    terminate(&outbound);
    refuses_new_connections(outbound.addr, true);
    long.round()
        .unwrap_or_else(|e| panic!("{e}\n{}", outbound.proc.transcript()));
    let mut rest = Vec::new();
    let end = long.tcp.read_to_end(&mut rest);
    let closed = stopped.elapsed();
    assert!(
        matches!(&end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset),
        "{end:?} {rest:?}"
    );
    assert!(
        closed >= Duration::from_millis(1500) && closed <= Duration::from_secs(20),
        "the open connection was closed {closed:?} after SIGTERM (--shutdown-timeout 2s)"
    );
    let status = outbound.proc.wait(WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "outbound: {status:?}\n{}",
        outbound.proc.transcript()
    );
}

// ---------------------------------------------------------------------------------------
// 9. Who may use an outbound proxy.

#[test]
fn an_outbound_proxy_listens_only_where_this_host_alone_can_reach_it() {
    let scratch = Scratch::new("pxc-remote");
    let d = &scratch.0;
    let ca = at(d, "ca"); // made by Scratch::new
    let outbound = |listen: &str, extra: &[&str]| {
        let args = [
            &[
                "proxy",
                "outbound",
                "--listen",
                listen,
                "--target",
                "127.0.0.1:9",
                "--expect",
                SERVER,
                "--ca",
                &ca,
                "--id",
                CLIENT,
            ][..],
            extra,
        ]
        .concat();
        run_within(Path::new(MESHID), &args, Duration::from_secs(3))
    };
    // Reachable by other hosts: refused before anything is bound or issued (exit 2).
    let ran = outbound("0.0.0.0:0", &[]);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(2), "{ran}");
    assert!(ran.stderr.contains("--allow-remote"), "{ran}");
    // Said so explicitly, or loopback: it runs (until the deadline kills it).
    for (listen, extra) in [("0.0.0.0:0", &["--allow-remote"][..]), ("127.0.0.1:0", &[])] {
        let ran = outbound(listen, extra);
        assert!(ran.status.is_none(), "{listen} {extra:?}: {ran}");
        assert!(ran.stdout.contains("listening on"), "{ran}");
    }
    // A Unix socket is made owner-only.
    let sock = d.join("out.sock");
    let listen = format!("unix:{}", sock.display());
    let mut cmd = Command::new(MESHID);
    cmd.args([
        "proxy",
        "outbound",
        "--listen",
        &listen,
        "--target",
        "127.0.0.1:9",
        "--expect",
        SERVER,
        "--ca",
        &ca,
        "--id",
        CLIENT,
    ]);
    let proc = Proc::spawn("meshid proxy outbound (unix)", cmd);
    let deadline = Instant::now() + WAIT;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "{}", proc.transcript());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions())
            & 0o777;
    assert_eq!(mode, 0o600, "the outbound proxy's socket is mode {mode:o}");
}
