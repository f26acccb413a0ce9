//! A tonic gRPC server and client over SPIFFE mTLS, HTTP/2 agreed by ALPN (`h2`): the
//! handler sees the caller's verified SPIFFE ID, the client checks the server's.
//!
//! ```text
//! cargo run --features proxy --example tonic_mtls
//! ```
//!
//! Self-contained: an in-memory CA for `example.org` issues rotating SVIDs to the server
//! (`/greeter`) and its client (`/frontend`). The server accepts TLS connections with
//! [`meshid::proxy::Acceptor`] and hands tonic each stream with the caller's ID, which
//! tonic puts in every request's extensions ([`Connected`]). The client's channel connects
//! through [`meshid::proxy::Connector`], which checks the server's ID. Three calls, each
//! answered with the caller's ID; a client of another trust domain is refused. Exits 0 when
//! all of that happened, 1 otherwise.
//!
//! The `Greeter` service is written out by hand below, as `tonic-build` would generate it
//! from a `.proto`, so that the example needs no `protoc`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use meshid::proxy::{Acceptor, Connector, PeerStream, ProxyError};
use meshid::tls::{self, rustls, PeerRejected};
use meshid::{
    authorize, Authority, KeyType, Rotator, RotatorConfig, SpiffeId, SvidStore, TrustDomain,
    VerifyError, X509Bundle,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::server::Connected;
use tonic::transport::{Endpoint, Uri};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tonic_mtls: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tonic_mtls: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- The service, as tonic-build generates it from:
//   service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//   message HelloRequest { string name = 1; }
//   message HelloReply { string message = 1; string caller = 2; }

/// The request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who says hello.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// The answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The caller's SPIFFE ID, as the server saw it.
    #[prost(string, tag = "2")]
    pub caller: String,
}

const SAY_HELLO: &str = "/example.Greeter/SayHello";

/// The server side: routes `SayHello` to [`say_hello`].
#[derive(Clone)]
struct GreeterServer;

impl tonic::server::NamedService for GreeterServer {
    const NAME: &'static str = "example.Greeter";
}

impl Service<http::Request<tonic::body::Body>> for GreeterServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != SAY_HELLO {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(SayHello, request).await)
        })
    }
}

struct SayHello;

impl tonic::server::UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<tonic::Response<HelloReply>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        Box::pin(async move { say_hello(request) })
    }
}

/// The handler: the caller's ID is in the request's extensions.
fn say_hello(
    request: tonic::Request<HelloRequest>,
) -> Result<tonic::Response<HelloReply>, tonic::Status> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .map(|Caller(id)| id.clone())
        .ok_or_else(|| tonic::Status::unauthenticated("no SPIFFE ID"))?;
    let name = request.into_inner().name;
    Ok(tonic::Response::new(HelloReply {
        message: format!("hello {name}"),
        caller: caller.to_string(),
    }))
}

/// The client side: `SayHello` on a channel.
async fn say_hello_on(
    channel: tonic::transport::Channel,
    name: &str,
) -> Result<HelloReply, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = tonic::Request::new(HelloRequest { name: name.into() });
    let path = http::uri::PathAndQuery::from_static(SAY_HELLO);
    let reply = grpc
        .unary(request, path, tonic_prost::ProstCodec::default())
        .await?;
    Ok(reply.into_inner())
}

// ---- meshid mTLS under tonic

/// The caller's SPIFFE ID, as tonic puts it in each request's extensions.
#[derive(Clone)]
struct Caller(SpiffeId);

/// An accepted mTLS connection for tonic: the stream, and the caller's ID as its
/// [`Connected::ConnectInfo`].
struct MtlsConnection<S>(PeerStream<S>);

impl<S> Connected for MtlsConnection<S> {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        // The acceptor requires a SPIFFE ID by default: every stream has one.
        Caller(self.0.peer_id().cloned().expect("a verified peer ID"))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MtlsConnection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MtlsConnection<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and completes each handshake in a task of its own (a slow or
/// refused client never holds up the others); what tonic serves. Refused handshakes go to
/// `refused`.
fn incoming(
    listener: TcpListener,
    acceptor: Acceptor,
    refused: tokio::sync::mpsc::UnboundedSender<ProxyError>,
) -> ReceiverStream<Result<MtlsConnection<impl AsyncRead + AsyncWrite>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx, refused) = (acceptor.clone(), tx.clone(), refused.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let _ = tx.send(Ok(MtlsConnection(stream))).await;
                    }
                    Err(e) => {
                        let _ = refused.send(e);
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Connects a tonic channel through `connector` (the server's ID checked there), and
/// reports the server's ID and the ALPN protocol agreed for each connection.
#[derive(Clone)]
struct MtlsConnector {
    connector: Connector,
    addr: SocketAddr,
    seen: tokio::sync::mpsc::UnboundedSender<(SpiffeId, Option<Vec<u8>>)>,
}

impl Service<Uri> for MtlsConnector {
    type Response = TokioIo<PeerStream<meshid::proxy::tokio_rustls::client::TlsStream<TcpStream>>>;
    type Error = Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let stream = this
                .connector
                .connect(TcpStream::connect(this.addr).await?)
                .await?;
            let server = stream.peer_id().cloned().ok_or("no server ID")?;
            let alpn = stream
                .get_ref()
                .get_ref()
                .1
                .alpn_protocol()
                .map(<[u8]>::to_vec);
            let _ = this.seen.send((server, alpn));
            Ok(TokioIo::new(stream))
        })
    }
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
    let bundles = Arc::new(X509Bundle::from_authorities(
        td.clone(),
        ca.root().cloned(),
    )?);
    let greeter = td.id().join("greeter")?;
    let frontend = td.id().join("frontend")?;
    let (greeter_svid, greeter_rotator) = workload(&ca, &greeter).await?;
    let (frontend_svid, frontend_rotator) = workload(&ca, &frontend).await?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // The server: any member of example.org may call; gRPC is HTTP/2 only, agreed by ALPN.
    let mut greeter_tls = tls::server_config(
        Arc::clone(&provider),
        greeter_svid,
        Arc::clone(&bundles),
        authorize::member_of(td.clone()),
    )?;
    greeter_tls.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (refusals, mut refused) = tokio::sync::mpsc::unbounded_channel();
    let connections = incoming(listener, Acceptor::new(Arc::new(greeter_tls)), refusals);
    let served = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GreeterServer)
            .serve_with_incoming(connections),
    );
    println!("greeter {greeter} on {addr}, allowing members of {td}");

    // The client: only the greeter's ID is accepted as the server; h2 by ALPN.
    let channel_for = |svid: Arc<SvidStore>| -> Result<_, Error> {
        let mut config = tls::client_config(
            Arc::clone(&provider),
            svid,
            Arc::clone(&bundles),
            authorize::exact(greeter.clone()),
        )?;
        config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
        let (seen, connected) = tokio::sync::mpsc::unbounded_channel();
        let connector = MtlsConnector {
            connector: Connector::new(Arc::new(config)),
            addr,
            seen,
        };
        // The URI only names the channel: the connector decides where and how to connect.
        let channel = Endpoint::from_static("http://greeter.example.org")
            .connect_timeout(Duration::from_secs(10))
            .connect_with_connector_lazy(connector);
        Ok((channel, connected))
    };
    let (channel, mut connected) = channel_for(frontend_svid)?;
    for n in 1..=3 {
        let reply = say_hello_on(channel.clone(), &format!("frontend #{n}")).await?;
        println!(
            "call {n}: {:?}, the server saw {}",
            reply.message, reply.caller
        );
        if reply.caller != frontend.as_str() || reply.message != format!("hello frontend #{n}") {
            return Err(format!("call {n}: unexpected reply {reply:?}").into());
        }
    }
    // One connection carried the three calls; the server's ID and h2 were checked there.
    let (server_id, alpn) = connected.try_recv().map_err(|_| "no connection was made")?;
    println!(
        "client: connected to {server_id}, ALPN {}",
        alpn.as_deref()
            .map_or("none".into(), String::from_utf8_lossy)
    );
    if server_id != greeter || alpn.as_deref() != Some(tls::ALPN_H2) {
        return Err(format!("unexpected server {server_id} or ALPN {alpn:?}").into());
    }

    // A workload of another trust domain (its own CA): refused at the handshake.
    let other_td = TrustDomain::new("other.org")?;
    let other_ca = Arc::new(Authority::new_root(
        other_td.clone(),
        Duration::from_secs(3600),
        KeyType::P256,
    )?);
    let stranger = other_td.id().join("frontend")?;
    let (stranger_svid, stranger_rotator) = workload(&other_ca, &stranger).await?;
    let (channel, _) = channel_for(stranger_svid)?;
    if let Ok(reply) = say_hello_on(channel, "stranger").await {
        return Err(format!("the stranger was answered: {reply:?}").into());
    }
    // Refused by the server's verifier, for the reason expected.
    match tokio::time::timeout(Duration::from_secs(10), refused.recv()).await {
        Ok(Some(e @ ProxyError::Rejected(PeerRejected::Verify(VerifyError::NoBundle { .. })))) => {
            println!("stranger {stranger} refused: {e}");
        }
        other => return Err(format!("the stranger was not refused as expected: {other:?}").into()),
    }

    served.abort();
    for rotator in [greeter_rotator, frontend_rotator, stranger_rotator] {
        rotator.stop();
    }
    Ok(())
}
