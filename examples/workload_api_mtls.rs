//! Two workloads fed only by the SPIFFE Workload API, doing mTLS through meshid's rustls
//! integration across rotations.
//!
//! ```text
//! cargo run --features workload-api --example workload_api_mtls
//! # or against a running agent that serves both IDs, e.g.
//! #   meshid serve workload-api --socket /tmp/api.sock --ca ca \
//! #       --id spiffe://example.org/frontend --id spiffe://example.org/backend --ttl 10s
//! cargo run --features workload-api --example workload_api_mtls -- --endpoint unix:///tmp/api.sock
//! ```
//!
//! Without `--endpoint` it starts its own Workload API server (an in-memory CA, SVIDs
//! living 4 s) on a temporary socket. Each workload gets its identity from an
//! [`X509Source`] that picks its own SPIFFE ID; the frontend calls the backend every
//! 250 ms for `--duration` seconds (default 10) and prints what each side saw. Exits 1 if
//! any request failed.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshid::workload::{Endpoint, Pick, WorkloadApiServer, X509Source, X509SourceOptions};
use meshid::{
    authorize, tls, Authority, BundleSet, KeyType, Rotator, RotatorConfig, SpiffeId, SvidSource,
    SvidStore, TrustDomain, X509Bundle,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    match run() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("workload_api_mtls: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<u64, Error> {
    let mut endpoint = None;
    let mut duration = Duration::from_secs(10);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => endpoint = Some(Endpoint::parse(&value)?),
            "--duration" => duration = Duration::from_secs(value.parse()?),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Our own agent, unless one was given.
    let agent = match endpoint {
        Some(_) => None,
        None => Some(runtime.block_on(start_agent())?),
    };
    let endpoint =
        endpoint.unwrap_or_else(|| Endpoint::Unix(agent.as_ref().unwrap().socket.clone()));
    println!("Workload API at {endpoint}");

    let frontend_id = SpiffeId::new("spiffe://example.org/frontend")?;
    let backend_id = SpiffeId::new("spiffe://example.org/backend")?;
    let source = |id: &SpiffeId| {
        let options = X509SourceOptions::default().pick(Pick::Id(id.clone()));
        runtime.block_on(X509Source::new(endpoint.clone(), options))
    };
    let frontend = Arc::new(source(&frontend_id)?);
    let backend = Arc::new(source(&backend_id)?);

    // Each side's identity and trust come from its source alone.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = Arc::new(tls::server_config(
        Arc::clone(&provider),
        Arc::clone(&backend),
        Arc::clone(&backend),
        authorize::exact(frontend_id),
    )?);
    let client = Arc::new(tls::client_config(
        provider,
        Arc::clone(&frontend),
        Arc::clone(&frontend),
        authorize::exact(backend_id),
    )?);
    let addr = serve(server)?;

    let (mut requests, mut failures) = (0u64, 0u64);
    let mut serials = std::collections::BTreeSet::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        requests += 1;
        match request(&client, addr) {
            Ok(line) => println!("request {requests}: {line}"),
            Err(e) => {
                failures += 1;
                println!("request {requests}: FAILED: {e}");
            }
        }
        for source in [&frontend, &backend] {
            if let Some(svid) = source.x509_svid() {
                serials.insert(svid.leaf().to_vec());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "requests={requests} failures={failures} svids_seen={} frontend_updates={} backend_updates={}",
        serials.len(),
        frontend.status().updates,
        backend.status().updates
    );
    if let Some(agent) = agent {
        runtime.block_on(agent.stop());
    }
    Ok(failures + u64::from(requests == 0))
}

/// An embedded Workload API server for both IDs, SVIDs living 4 s.
struct Agent {
    socket: std::path::PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<(), meshid::serve::ServeError>>,
    rotators: Vec<Rotator>,
}

impl Agent {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.served.await;
        for r in self.rotators {
            r.stop();
        }
    }
}

async fn start_agent() -> Result<Agent, Error> {
    let td = TrustDomain::new("example.org")?;
    let ca = Arc::new(Authority::new_root(
        td.clone(),
        Duration::from_secs(3600),
        KeyType::P256,
    )?);
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned())?]
        .into_iter()
        .collect();
    let mut api = WorkloadApiServer::new(bundles.clone());
    let mut rotators = Vec::new();
    for id in [
        "spiffe://example.org/frontend",
        "spiffe://example.org/backend",
    ] {
        let store = Arc::new(SvidStore::new());
        let config = RotatorConfig::new(SpiffeId::new(id)?, ca.clone(), Arc::clone(&store))?;
        rotators.push(Rotator::start(config.ttl(meshid::Authority::MIN_SVID_TTL)));
        tokio::time::timeout(Duration::from_secs(10), store.ready()).await?;
        api = api.with_svid(store);
    }
    let socket = std::env::temp_dir().join(format!("meshid-example-{}.sock", std::process::id()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(api.serve(socket.clone(), async {
        let _ = stopped.await;
    }));
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Agent {
        socket,
        stop,
        served,
        rotators,
    })
}

/// The backend: answers each connection's line with the peer's ID.
fn serve(config: Arc<rustls::ServerConfig>) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let answer = || -> Result<(), Error> {
                    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut tls = StreamOwned::new(ServerConnection::new(config)?, tcp);
                    let mut line = String::new();
                    BufReader::new(&mut tls).read_line(&mut line)?;
                    let peer = tls::peer_id(&tls.conn).ok_or("no peer ID")?;
                    writeln!(tls, "backend saw {peer}")?;
                    tls.conn.send_close_notify();
                    tls.flush()?;
                    Ok(())
                };
                if let Err(e) = answer() {
                    println!("backend: connection failed: {e}");
                }
            });
        }
    });
    Ok(addr)
}

fn request(config: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<String, Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("backend")?;
    let mut tls = StreamOwned::new(ClientConnection::new(Arc::clone(config), name)?, tcp);
    writeln!(tls, "hello")?;
    tls.flush()?;
    let mut reply = String::new();
    BufReader::new(&mut tls).read_line(&mut reply)?;
    let peer = tls::peer_id(&tls.conn).ok_or("no peer ID")?;
    Ok(format!("peer {peer}; {}", reply.trim_end()))
}
