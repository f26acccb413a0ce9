//! An axum service over SPIFFE mTLS, and a hyper client calling it: the handler sees the
//! caller's verified SPIFFE ID.
//!
//! ```text
//! cargo run --features proxy --example axum_mtls
//! ```
//!
//! Self-contained: an in-memory CA for `example.org` issues rotating SVIDs to the service
//! (`/api`) and two callers (`/frontend`, allowed; `/intruder`, not). The service accepts
//! TLS connections with [`meshid::proxy::Acceptor`], which yields each stream with the
//! caller's SPIFFE ID, and serves the axum router on it with hyper, the ID in a request
//! extension. The frontend calls `/whoami` three times with [`meshid::proxy::Connector`]
//! (which checks the server's ID) and prints what each side saw; the intruder is refused
//! during the handshake. Exits 0 when all of that happened, 1 otherwise.
//!
//! Under a SPIRE agent (or `meshid serve agent`), replace the CA, store and rotator by
//! `Arc::new(X509Source::from_env().await?)` (feature `workload-api`): it is the SVID and
//! the bundles at once.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use meshid::proxy::{Acceptor, Connector, ProxyError};
use meshid::tls::{self, rustls, PeerRejected};
use meshid::{
    authorize, Authority, KeyType, Rotator, RotatorConfig, SpiffeId, SvidStore, TrustDomain,
    X509Bundle,
};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("axum_mtls: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_mtls: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The caller's SPIFFE ID, as the handler gets it.
#[derive(Clone)]
struct Caller(SpiffeId);

async fn whoami(Extension(Caller(caller)): Extension<Caller>) -> String {
    format!("hello {caller}")
}

/// A workload's rotating SVID from the in-process CA, once the first one is in.
async fn workload(ca: &Arc<Authority>, id: &SpiffeId) -> Result<(Arc<SvidStore>, Rotator), Error> {
    let store = Arc::new(SvidStore::new());
    let config = RotatorConfig::new(id.clone(), Arc::clone(ca), Arc::clone(&store))?;
    let rotator = Rotator::start(config.ttl(Duration::from_secs(600)));
    tokio::time::timeout(Duration::from_secs(10), store.ready()).await?;
    Ok((store, rotator))
}

async fn run() -> Result<(), Error> {
    let td = TrustDomain::new("example.org")?;
    let ca = Arc::new(Authority::new_root(
        td.clone(),
        Duration::from_secs(3600),
        KeyType::P256,
    )?);
    // What every workload verifies its peers against: the CA's root, for example.org.
    let bundles = Arc::new(X509Bundle::from_authorities(
        td.clone(),
        ca.root().cloned(),
    )?);
    let api = td.id().join("api")?;
    let frontend = td.id().join("frontend")?;
    let intruder = td.id().join("intruder")?;
    let (api_svid, api_rotator) = workload(&ca, &api).await?;
    let (frontend_svid, frontend_rotator) = workload(&ca, &frontend).await?;
    let (intruder_svid, intruder_rotator) = workload(&ca, &intruder).await?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // The service: only the frontend may call it; HTTP/2 or HTTP/1.1 by ALPN.
    let mut api_tls = tls::server_config(
        Arc::clone(&provider),
        api_svid,
        Arc::clone(&bundles),
        authorize::exact(frontend.clone()),
    )?;
    api_tls.alpn_protocols = vec![tls::ALPN_H2.to_vec(), tls::ALPN_HTTP11.to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/whoami", get(whoami));
    let (refusals, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let served = tokio::spawn(serve(
        listener,
        Acceptor::new(Arc::new(api_tls)),
        app,
        refusals,
    ));
    println!("service {api} on https://{addr}, allowing {frontend}");

    // The frontend: it accepts only the service's ID as its server.
    let client = |svid: Arc<SvidStore>| -> Result<Connector, Error> {
        let mut config = tls::client_config(
            Arc::clone(&provider),
            svid,
            Arc::clone(&bundles),
            authorize::exact(api.clone()),
        )?;
        config.alpn_protocols = vec![tls::ALPN_HTTP11.to_vec()];
        Ok(Connector::new(Arc::new(config)))
    };
    let caller = client(frontend_svid)?;
    for n in 1..=3 {
        let (answered_by, status, body) = call(&caller, addr, "/whoami").await?;
        println!("request {n}: server {answered_by} answered {status}: {body}");
        if status != hyper::StatusCode::OK || body != format!("hello {frontend}") {
            return Err(format!("request {n}: unexpected answer {status} {body:?}").into());
        }
    }

    // The intruder has a valid SVID of the same trust domain, but not an allowed ID: its
    // request fails (with TLS 1.3 the service's refusal, an alert, arrives with the first
    // read), and the service's acceptor says why.
    if let Ok(answer) = call(&client(intruder_svid)?, addr, "/whoami").await {
        return Err(format!("the intruder was served: {answer:?}").into());
    }
    match tokio::time::timeout(Duration::from_secs(10), refused.recv()).await {
        Ok(Some(e @ ProxyError::Rejected(PeerRejected::Unauthorized(_)))) => {
            println!("intruder {intruder} refused: {e}");
        }
        other => return Err(format!("the intruder was not refused as expected: {other:?}").into()),
    }

    served.abort();
    // Non-blocking: safe on a runtime worker.
    for rotator in [api_rotator, frontend_rotator, intruder_rotator] {
        rotator.stop();
    }
    Ok(())
}

/// Accepts connections, completing each TLS handshake in a task of its own (a slow or
/// refused client never holds up the others), and serves `app` on each with the caller's
/// ID as a request extension. Refused handshakes go to `refused`.
async fn serve(
    listener: TcpListener,
    acceptor: Acceptor,
    app: Router,
    refused: tokio::sync::mpsc::UnboundedSender<ProxyError>,
) -> Result<(), Error> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, app, refused) = (acceptor.clone(), app.clone(), refused.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = refused.send(e);
                    return;
                }
            };
            // The acceptor requires a SPIFFE ID by default: every stream has one.
            let Some(caller) = stream.peer_id().cloned() else {
                return;
            };
            let service = TowerToHyperService::new(app.layer(Extension(Caller(caller))));
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("service: connection: {e}");
            }
        });
    }
}

/// One request on a new connection: the server's SPIFFE ID, the status and the body.
async fn call(
    connector: &Connector,
    addr: SocketAddr,
    path: &str,
) -> Result<(SpiffeId, hyper::StatusCode, String), Error> {
    let stream = connector.connect(TcpStream::connect(addr).await?).await?;
    let server = stream
        .peer_id()
        .cloned()
        .ok_or("the server has no SPIFFE ID")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "api.example.org")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((server, status, String::from_utf8_lossy(&body).into_owned()))
}
