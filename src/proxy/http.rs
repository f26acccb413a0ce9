//! HTTP/1 forwarding that tells the application who called: the verified caller's SPIFFE ID
//! in an `x-forwarded-client-cert` header (Envoy's name and `URI=` element), on every
//! request, replacing whatever the caller sent in that header.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

use crate::SpiffeId;

/// The header the caller's ID goes in: `x-forwarded-client-cert: URI=spiffe://...`.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The longest request head (request line and headers) accepted from a caller: 64 KiB.
const MAX_HEAD: usize = 64 * 1024;

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves HTTP/1 on `downstream` (the caller's decrypted stream) and forwards each request
/// to the target, over connections `connect` opens (one at a time, a new one only when the
/// target closed the last, as an HTTP/1.0 server does after each response), with the
/// `x-forwarded-client-cert` header set to `URI=<peer>` (removed when there is no peer, so a
/// caller can never forge it). A request the target cannot be reached for is answered
/// `502 Bad Gateway`. A caller must send its request head within `header_timeout`.
pub async fn forward_http<D, U, C, F>(
    downstream: D,
    peer: Option<&SpiffeId>,
    connect: C,
    header_timeout: Duration,
) -> Result<(), hyper::Error>
where
    D: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Fn() -> F + Send + Sync + 'static,
    F: Future<Output = io::Result<U>> + Send,
{
    let value = peer.and_then(|id| HeaderValue::try_from(format!("URI={id}")).ok());
    let upstream = Arc::new(Upstream {
        connect,
        sender: Mutex::new(None),
    });
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let upstream = Arc::clone(&upstream);
        let value = value.clone();
        async move { Ok::<_, Infallible>(upstream.forward(request, value).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(downstream), service)
        .await
}

struct Upstream<C> {
    connect: C,
    sender: Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>,
}

impl<C, F, U> Upstream<C>
where
    C: Fn() -> F,
    F: Future<Output = io::Result<U>>,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        value: Option<HeaderValue>,
    ) -> Response<Body> {
        let headers = request.headers_mut();
        headers.remove(XFCC);
        if let Some(value) = value {
            headers.insert(XFCC, value);
        }
        let mut sender = self.sender.lock().await;
        let ready = match sender.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !ready {
            match self.open().await {
                Ok(fresh) => *sender = Some(fresh),
                Err(e) => {
                    tracing::debug!(error = %e, "proxy: the HTTP target cannot be reached");
                    return bad_gateway();
                }
            }
        }
        let Some(s) = sender.as_mut() else {
            return bad_gateway();
        };
        match s.send_request(request).await {
            Ok(response) => response.map(BodyExt::boxed),
            Err(e) => {
                tracing::debug!(error = %e, "proxy: the HTTP target failed the request");
                bad_gateway()
            }
        }
    }

    async fn open(&self) -> io::Result<hyper::client::conn::http1::SendRequest<Incoming>> {
        let stream = (self.connect)().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "proxy: HTTP target connection ended");
            }
        });
        sender.ready().await.map_err(io::Error::other)?;
        Ok(sender)
    }
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(b"bad gateway\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
