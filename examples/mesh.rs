//! The main job on an embedded default: an in-memory CA for `example.org`, two workloads
//! (`/frontend`, `/backend`) whose SVIDs live seconds and rotate, and the frontend calling
//! the backend over mTLS on loopback while both rotate.
//!
//! ```text
//! cargo run --example mesh                          # about 15 s, SVIDs living 6 s
//! cargo run --example mesh -- --duration 30 --ttl 5
//! ```
//!
//! Prints every rotation (workload, serial, not_after) and every request (the peer's
//! SPIFFE ID and certificate serial as each side saw them), then
//! `requests=N failures=F rotations=M`; exits 1 if any request failed.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use meshid::{
    authorize, tls, Authority, CertificateInfo, KeyType, Rotator, RotatorConfig, SpiffeId,
    SvidSource, SvidStore, TrustDomain, X509Bundle,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    duration: Duration,
    ttl: Duration,
    interval: Duration,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => return ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("mesh: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(why) => {
            eprintln!("mesh: {why}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: mesh [--duration SECONDS] [--ttl SECONDS] [--interval MILLISECONDS]
  --duration  how long the frontend sends requests (default 15)
  --ttl       lifetime of every SVID, at least 5; each is renewed at about half of it (default 6)
  --interval  pause between requests (default 250)";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        duration: Duration::from_secs(15),
        ttl: Duration::from_secs(6),
        interval: Duration::from_millis(250),
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            return Ok(None);
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number: u64 = value
            .trim_end_matches(['s', 'm'])
            .parse()
            .map_err(|_| format!("{flag}: '{value}' is not a whole number"))?;
        match flag.as_str() {
            "--duration" => options.duration = Duration::from_secs(number),
            "--ttl" if number >= meshid::Authority::MIN_SVID_TTL.as_secs() => {
                options.ttl = Duration::from_secs(number);
            }
            "--ttl" => {
                return Err(format!(
                    "--ttl must be at least {} seconds",
                    meshid::Authority::MIN_SVID_TTL.as_secs()
                ))
            }
            "--interval" => options.interval = Duration::from_millis(number),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Some(options))
}

/// One workload: its rotating SVID and the rotator that keeps it fresh.
struct Workload {
    name: &'static str,
    store: Arc<SvidStore>,
    rotator: Rotator,
}

fn run(options: &Options) -> Result<u64, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let td = TrustDomain::new("example.org")?;
    let ca = Arc::new(Authority::new_root(
        td.clone(),
        Duration::from_secs(3600),
        KeyType::P256,
    )?);
    let bundle = Arc::new(X509Bundle::from_authorities(
        td.clone(),
        ca.root().cloned(),
    )?);
    let frontend_id = td.id().join("frontend")?;
    let backend_id = td.id().join("backend")?;
    println!(
        "mesh: CA for {td}; SVIDs live {} s; requests for {} s",
        options.ttl.as_secs(),
        options.duration.as_secs()
    );

    // The authority issues, and its root is what each new SVID is verified against.
    let start = |name, id: &SpiffeId| -> Result<Workload, Error> {
        let store = Arc::new(SvidStore::new());
        let config = RotatorConfig::new(id.clone(), ca.clone(), Arc::clone(&store))?;
        let rotator = Rotator::start(config.ttl(options.ttl));
        Ok(Workload {
            name,
            store,
            rotator,
        })
    };
    let workloads = [
        start("frontend", &frontend_id)?,
        start("backend", &backend_id)?,
    ];
    let done = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = workloads
        .iter()
        .map(|w| watch(w.name, Arc::clone(&w.store), Arc::clone(&done)))
        .collect();
    for w in &workloads {
        if let Err(e) = w.store.wait_ready(Duration::from_secs(10)) {
            return Err(format!("{}: {e}: {:?}", w.name, w.rotator.status()).into());
        }
    }
    let [frontend, backend] = &workloads;

    let server = tls::server_config(
        Arc::clone(&provider),
        Arc::clone(&backend.store),
        Arc::clone(&bundle),
        authorize::exact(frontend_id),
    )?;
    let client = tls::client_config(
        Arc::clone(&provider),
        Arc::clone(&frontend.store),
        Arc::clone(&bundle),
        authorize::exact(backend_id),
    )?;
    let addr = serve(Arc::new(server))?;
    println!("backend: listening on {addr}");

    let client = Arc::new(client);
    let (mut requests, mut failures) = (0u64, 0u64);
    let deadline = Instant::now() + options.duration;
    while Instant::now() < deadline {
        requests += 1;
        match request(&client, addr, requests) {
            Ok(line) => println!("request {requests}: {line}"),
            Err(why) => {
                failures += 1;
                println!("request {requests}: FAILED: {why}");
            }
        }
        thread::sleep(options.interval);
    }
    done.store(true, Ordering::Relaxed);
    for watcher in watchers {
        let _ = watcher.join();
    }
    let rotations: u64 = workloads
        .iter()
        .map(|w| w.rotator.status().successes.saturating_sub(1))
        .sum();
    for w in &workloads {
        let status = w.rotator.status();
        println!(
            "{}: {} rotations, {} failed renewals",
            w.name,
            status.successes.saturating_sub(1),
            status.failures
        );
    }
    println!("requests={requests} failures={failures} rotations={rotations}");
    for w in workloads {
        w.rotator.stop();
    }
    Ok(failures + u64::from(requests == 0))
}

/// Prints every rotation of one workload until `done`.
fn watch(
    name: &'static str,
    store: Arc<SvidStore>,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut seen = 0;
        while !done.load(Ordering::Relaxed) {
            let now = store.wait_for_change(seen, Duration::from_millis(200));
            if now == seen {
                continue;
            }
            seen = now;
            match store.x509_svid() {
                Some(svid) => {
                    let (serial, not_after) = describe(svid.leaf());
                    println!(
                        "rotation: workload={name} id={} serial={serial} not_after={not_after}",
                        svid.id()
                    );
                }
                None => println!("rotation: workload={name} holds NO SVID (expired)"),
            }
        }
    })
}

fn describe(der: &[u8]) -> (String, String) {
    CertificateInfo::from_der(der).map_or_else(
        |e| (format!("<{e}>"), String::new()),
        |info| {
            let serial = info.serial_hex();
            (
                serial[serial.len().saturating_sub(8)..].to_owned(),
                info.not_after_rfc3339().to_owned(),
            )
        },
    )
}

/// The backend: answers each connection's line with who it saw.
fn serve(config: Arc<ServerConfig>) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            thread::spawn(move || {
                if let Err(why) = answer(config, stream) {
                    println!("backend: connection failed: {why}");
                }
            });
        }
    });
    Ok(addr)
}

fn answer(config: Arc<ServerConfig>, tcp: TcpStream) -> Result<(), Error> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = StreamOwned::new(ServerConnection::new(config)?, tcp);
    let mut line = String::new();
    BufReader::new(&mut tls).read_line(&mut line)?;
    let peer = tls::peer_id(&tls.conn).ok_or("no peer ID")?;
    let peer_serial = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|leaf| describe(leaf).0)
        .unwrap_or_default();
    writeln!(tls, "backend saw {peer} (serial {peer_serial})")?;
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}

/// The frontend: one connection, one full handshake, one line each way.
fn request(config: &Arc<ClientConfig>, addr: SocketAddr, n: u64) -> Result<String, Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    // SPIFFE verifies the peer's ID, not a host name; rustls still wants one.
    let name = ServerName::try_from("backend.example.org")?;
    let mut tls = StreamOwned::new(ClientConnection::new(Arc::clone(config), name)?, tcp);
    writeln!(tls, "request {n}")?;
    tls.flush()?;
    let mut reply = String::new();
    BufReader::new(&mut tls).read_line(&mut reply)?;
    let peer = tls::peer_id(&tls.conn).ok_or("no peer ID")?;
    let serial = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|leaf| describe(leaf).0)
        .unwrap_or_default();
    if reply.is_empty() {
        return Err("the backend closed without answering".into());
    }
    Ok(format!(
        "peer {peer} (serial {serial}); {}",
        reply.trim_end()
    ))
}
