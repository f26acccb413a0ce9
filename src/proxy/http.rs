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
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE};
use hyper::{Method, Request, Response, StatusCode, Version};
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
/// caller can never forge it; removed from request trailers too). Hop-by-hop headers stay on
/// their own connection (RFC 9110, 7.6.1). A request the target cannot be reached for is
/// answered `502 Bad Gateway`, one it does not answer within `limits.response` `504
/// Gateway Timeout`; `CONNECT` and protocol upgrades `501 Not Implemented`. A caller must
/// send each request head within `limits.header`.
///
/// When `shutdown` completes, the connection shuts down gracefully: a request in flight is
/// answered, an idle kept-alive connection is closed at once.
pub async fn forward_http<D, U, C, F>(
    downstream: D,
    peer: Option<&SpiffeId>,
    connect: C,
    limits: HttpLimits,
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
        current: Mutex::new(None),
        response_timeout: limits.response,
    });
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let upstream = Arc::clone(&upstream);
        let value = value.clone();
        async move { Ok::<_, Infallible>(upstream.forward(request, value).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header)
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

/// The time limits of [`forward_http`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpLimits {
    /// How long a caller may take to send a request head, and so how long a kept-alive
    /// connection may sit idle between requests.
    pub header: Duration,
    /// How long the target may take to begin its response.
    pub response: Duration,
}

impl HttpLimits {
    /// Both limits.
    pub fn new(header: Duration, response: Duration) -> Self {
        Self { header, response }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;

/// The connection to the target: its sender and the task driving it, aborted when it is
/// replaced or the caller's connection ends, so nothing outlives the caller.
struct Current {
    sender: Sender,
    task: tokio::task::AbortHandle,
}

struct Upstream<C> {
    connect: C,
    current: Mutex<Option<Current>>,
    response_timeout: Duration,
}

impl<C> Drop for Upstream<C> {
    fn drop(&mut self) {
        if let Some(current) = self.current.get_mut().take() {
            current.task.abort();
        }
    }
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
        if request.method() == Method::CONNECT || request.headers().contains_key(UPGRADE) {
            return answer(
                StatusCode::NOT_IMPLEMENTED,
                "CONNECT and upgrades are not proxied\n",
            );
        }
        let headers = request.headers_mut();
        remove_hop_by_hop(headers);
        headers.remove(XFCC);
        if let Some(value) = value {
            headers.insert(XFCC, value);
        }
        // A trailer is a header too: the caller must not set the ID there either.
        let mut request = request.map(|body| {
            body.map_frame(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    trailers.remove(XFCC);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
            .boxed()
        });
        let mut current = self.current.lock().await;
        // One retry, on a new connection, for a request the old one never sent (the target
        // closed a kept-alive connection just then).
        for attempt in 0..2 {
            let ready = match current.as_mut() {
                Some(c) if !c.sender.is_closed() => c.sender.ready().await.is_ok(),
                _ => false,
            };
            if !ready {
                if let Some(old) = current.take() {
                    old.task.abort();
                }
                match self.open().await {
                    Ok(fresh) => *current = Some(fresh),
                    Err(e) => {
                        tracing::debug!(error = %e, "proxy: the HTTP target cannot be reached");
                        return answer(StatusCode::BAD_GATEWAY, "bad gateway\n");
                    }
                }
            }
            let Some(c) = current.as_mut() else {
                return answer(StatusCode::BAD_GATEWAY, "bad gateway\n");
            };
            let sent =
                tokio::time::timeout(self.response_timeout, c.sender.try_send_request(request))
                    .await;
            match sent {
                Err(_) => {
                    tracing::debug!(timeout = ?self.response_timeout, "proxy: the HTTP target did not answer in time");
                    if let Some(old) = current.take() {
                        old.task.abort();
                    }
                    return answer(StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n");
                }
                Ok(Ok(mut response)) => {
                    // The caller's connection is ours, not the target's (RFC 9110, 6.2 and
                    // 7.6.1): answered in our own version (hyper downgrades it for an
                    // HTTP/1.0 caller), without the target's hop-by-hop headers. Passed
                    // through, an HTTP/1.0 target's version closed the caller's connection
                    // after each response.
                    *response.version_mut() = Version::HTTP_11;
                    remove_hop_by_hop(response.headers_mut());
                    return response.map(BodyExt::boxed);
                }
                Ok(Err(mut e)) => match e.take_message() {
                    Some(unsent) if attempt == 0 => {
                        request = unsent;
                        if let Some(old) = current.take() {
                            old.task.abort();
                        }
                    }
                    _ => {
                        tracing::debug!(error = %e.into_error(), "proxy: the HTTP target failed the request");
                        return answer(StatusCode::BAD_GATEWAY, "bad gateway\n");
                    }
                },
            }
        }
        answer(StatusCode::BAD_GATEWAY, "bad gateway\n")
    }

    async fn open(&self) -> io::Result<Current> {
        let stream = (self.connect)().await?;
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD.max(8192))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "proxy: HTTP target connection ended");
            }
        })
        .abort_handle();
        sender.ready().await.map_err(io::Error::other)?;
        Ok(Current { sender, task })
    }
}

/// Removes the headers that describe one connection only: `Connection`, those it names,
/// `Keep-Alive`, `Proxy-Connection`, `TE` and `Upgrade`.
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
        TE,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

fn answer(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
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

    /// A target that records the raw request it got (until it goes quiet) and answers `ok`.
    fn recording_target(
        seen: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> tokio::io::DuplexStream {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(300), theirs.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let _ = seen.send(String::from_utf8_lossy(&got).to_ascii_lowercase());
            let _ = theirs
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        });
        ours
    }

    #[tokio::test]
    async fn the_caller_can_set_the_id_neither_in_a_header_nor_in_a_trailer() {
        let (caller, downstream) = tokio::io::duplex(1 << 16);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let id = SpiffeId::new("spiffe://example.org/caller").unwrap();
        tokio::spawn(async move {
            let _ = forward_http(
                downstream,
                Some(&id),
                move || {
                    let seen_tx = seen_tx.clone();
                    async move { Ok::<_, io::Error>(recording_target(seen_tx)) }
                },
                HttpLimits::new(Duration::from_secs(5), Duration::from_secs(5)),
                std::future::pending(),
            )
            .await;
        });
        let (read, mut write) = tokio::io::split(caller);
        let mut read = BufReader::new(read);
        write
            .write_all(
                b"POST / HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\
                  X-Forwarded-Client-Cert: URI=spiffe://example.org/admin\r\n\
                  Trailer: x-forwarded-client-cert\r\nConnection: x-secret, close\r\n\
                  x-secret: hop\r\nTE: trailers\r\n\r\n\
                  2\r\nhi\r\n0\r\nx-forwarded-client-cert: URI=spiffe://example.org/admin\r\n\r\n",
            )
            .await
            .unwrap();
        let (head, body) = response(&mut read).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, "ok");
        let got = seen.recv().await.unwrap();
        assert_eq!(
            got.matches("x-forwarded-client-cert: uri=spiffe://example.org/caller")
                .count(),
            1,
            "{got}"
        );
        assert!(
            !got.contains("admin"),
            "the caller's own ID reached the target: {got}"
        );
        for hop in ["x-secret", "\r\nte:", "connection: x-secret"] {
            assert!(
                !got.contains(hop),
                "hop-by-hop {hop:?} reached the target: {got}"
            );
        }
        assert!(got.contains("\r\n\r\n2\r\nhi\r\n0\r\n"), "the body: {got}");
    }

    #[tokio::test]
    async fn connect_and_upgrades_are_not_proxied() {
        for request in [
            &b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: app\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ] {
            let (caller, downstream) = tokio::io::duplex(4096);
            tokio::spawn(forward_http(
                downstream,
                None,
                || async { Ok::<_, io::Error>(http10_target()) },
                HttpLimits::new(Duration::from_secs(5), Duration::from_secs(5)),
                std::future::pending(),
            ));
            let (read, mut write) = tokio::io::split(caller);
            let mut read = BufReader::new(read);
            write.write_all(request).await.unwrap();
            let (head, _) = response(&mut read).await;
            assert!(head.starts_with("http/1.1 501"), "{head}");
        }
    }

    #[tokio::test]
    async fn an_http10_target_does_not_close_the_callers_connection() {
        let (caller, downstream) = tokio::io::duplex(4096);
        let served = tokio::spawn(forward_http(
            downstream,
            None,
            || async { Ok::<_, io::Error>(http10_target()) },
            HttpLimits::new(Duration::from_secs(5), Duration::from_secs(5)),
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
            HttpLimits::new(Duration::from_secs(3600), Duration::from_secs(5)),
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
