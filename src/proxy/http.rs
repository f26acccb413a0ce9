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
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use hyper::{Request, Response, StatusCode, Version};
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
///
/// When `shutdown` completes, the connection shuts down gracefully: a request in flight is
/// answered, an idle kept-alive connection is closed at once.
pub async fn forward_http<D, U, C, F>(
    downstream: D,
    peer: Option<&SpiffeId>,
    connect: C,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
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
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(downstream), service);
    tokio::pin!(connection);
    tokio::pin!(shutdown);
    let mut draining = false;
    loop {
        tokio::select! {
            done = connection.as_mut() => return done,
            () = &mut shutdown, if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
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
            Ok(mut response) => {
                // The caller's connection is ours, not the target's (RFC 9110, 6.2 and
                // 7.6.1): answered in our own version (hyper downgrades it for an HTTP/1.0
                // caller), without the target's hop-by-hop headers. Passed through, an
                // HTTP/1.0 target's version closed the caller's connection after each
                // response.
                *response.version_mut() = Version::HTTP_11;
                remove_hop_by_hop(response.headers_mut());
                response.map(BodyExt::boxed)
            }
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

/// Removes the headers that describe one connection only: `Connection`, those it names,
/// `Keep-Alive` and `Proxy-Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        HeaderName::from_static("keep-alive"),
        PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
}

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(b"bad gateway\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    /// An HTTP/1.0 target: answers one request `ok` with `Connection: close` and closes.
    fn http10_target() -> tokio::io::DuplexStream {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if theirs.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let answer = b"HTTP/1.0 200 OK\r\nConnection: close, x-hop\r\nx-hop: 1\r\n\
                Keep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok";
            let _ = theirs.write_all(answer).await;
        });
        ours
    }

    /// Reads one response with a `content-length` body: its head (lower-cased) and body.
    async fn response<R: tokio::io::AsyncBufRead + Unpin>(from: &mut R) -> (String, String) {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(
                from.read_line(&mut line).await.unwrap() > 0,
                "closed: {head}"
            );
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        from.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[tokio::test]
    async fn an_http10_target_does_not_close_the_callers_connection() {
        let (caller, downstream) = tokio::io::duplex(4096);
        let served = tokio::spawn(forward_http(
            downstream,
            None,
            || async { Ok::<_, io::Error>(http10_target()) },
            Duration::from_secs(5),
            std::future::pending(),
        ));
        let (read, mut write) = tokio::io::split(caller);
        let mut read = BufReader::new(read);
        for _ in 0..2 {
            write
                .write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
                .await
                .unwrap();
            let (head, body) = response(&mut read).await;
            assert!(head.starts_with("http/1.1 200"), "{head}");
            for hop in ["connection: close", "x-hop", "keep-alive"] {
                assert!(!head.contains(hop), "{head}");
            }
            assert_eq!(body, "ok");
        }
        drop(write);
        drop(read);
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_an_idle_kept_alive_connection_at_once() {
        let (caller, downstream) = tokio::io::duplex(4096);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(forward_http(
            downstream,
            None,
            || async { Ok::<_, io::Error>(http10_target()) },
            Duration::from_secs(3600),
            async {
                let _ = stopped.await;
            },
        ));
        let (read, mut write) = tokio::io::split(caller);
        let mut read = BufReader::new(read);
        write
            .write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
            .await
            .unwrap();
        let (_, body) = response(&mut read).await;
        assert_eq!(body, "ok");
        // The caller keeps its connection open and idle; shutdown closes it anyway.
        stop.send(()).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(10), served).await;
        assert!(
            done.is_ok(),
            "an idle kept-alive connection held the shutdown"
        );
        let mut rest = Vec::new();
        let _ = read.read_to_end(&mut rest).await;
        drop(write);
    }
}
