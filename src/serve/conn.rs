//! One accepted connection as the HTTP/2 server sees it: the client's bytes pass through
//! the `:authority` rewriter, the peer's credentials are taken at accept, a connection
//! that sends no HTTP/2 preface in time or holds no stream for too long is closed, and
//! every read and write fails once a forced shutdown closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::UCred;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::authority::AuthorityRewriter;
use super::{Caller, H2RewriteError};

/// The socket under a connection.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Unix peer credentials (`SO_PEERCRED`); `None` over TCP.
    pub(crate) fn peer_cred(&self) -> Option<UCred> {
        match self {
            Self::Unix(s) => s.peer_cred().ok(),
            Self::Tcp(_) => None,
        }
    }
}

/// Who is on the other end, as the kernel says at accept, and the connection's stream
/// count: in every request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Unix peer credentials (`SO_PEERCRED`); `None` over TCP.
    pub(crate) cred: Option<UCred>,
    /// The same, with the caller's process start time read at accept.
    pub(crate) caller: Caller,
    pub(crate) activity: Arc<Activity>,
}

/// How many requests a connection has open, and since when it has had none. Both are
/// read and written under one lock, so they always agree.
#[derive(Debug)]
pub(crate) struct Activity {
    open: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    /// Marks a request open until the guard drops (with the response body).
    pub(crate) fn begin(self: &Arc<Self>) -> Open {
        let _lock = self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.open.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(self))
    }

    /// When the connection became idle, if it holds no request now.
    fn idle_since(&self) -> Option<Instant> {
        let since = self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (self.open.load(Ordering::SeqCst) == 0).then_some(*since)
    }
}

/// An open request; dropping it closes it.
pub(crate) struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        let mut since = self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// The timeouts a connection enforces on itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// The client preface and the first frame header must arrive within this.
    pub(crate) preface: Duration,
    /// A connection holding no request for this long is closed.
    pub(crate) idle: Duration,
}

/// `base + d`, or a far-off instant where that overflows (`Duration::MAX` means never).
fn deadline(base: Instant, d: Duration) -> Instant {
    base.checked_add(d)
        .unwrap_or_else(|| base + Duration::from_secs(365 * 24 * 3600))
}

/// The capacity `pending` keeps once drained; a larger buffer is given back.
const KEEP_PENDING: usize = 32 * 1024;

/// An accepted connection. See the [module docs](self).
pub(crate) struct Conn {
    inner: Stream,
    peer: Peer,
    closed: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    /// Whether `closed` has completed (it must not be polled again).
    aborted: bool,
    rewriter: AuthorityRewriter,
    /// Rewritten bytes not yet read by the server, from `pos` on.
    pending: Vec<u8>,
    pos: usize,
    /// Client bytes read but not yet rewritten (the rewriter stops at its high-water
    /// mark): at most one read's worth.
    unread: Vec<u8>,
    timeouts: Timeouts,
    /// Whether the preface deadline still applies (then the timer watches idleness).
    awaiting_preface: bool,
    timer: Pin<Box<Sleep>>,
    /// Held while the connection lives: its place under the server's connection cap.
    _permit: (
        OwnedSemaphorePermit,
        Option<super::incoming::UidSlot>,
        Option<super::observe::ConnectionSeen>,
    ),
}

impl Conn {
    pub(crate) fn new(
        inner: Stream,
        mut closed: watch::Receiver<bool>,
        timeouts: Timeouts,
        permit: (
            OwnedSemaphorePermit,
            Option<super::incoming::UidSlot>,
            Option<super::observe::ConnectionSeen>,
        ),
    ) -> Self {
        let cred = inner.peer_cred();
        let caller = match cred {
            Some(c) => match c.pid() {
                Some(pid) => Caller::unix(pid, c.uid(), c.gid()),
                None => Caller {
                    uid: Some(c.uid()),
                    gid: Some(c.gid()),
                    ..Caller::unknown()
                },
            },
            None => Caller::unknown(),
        };
        Self {
            inner,
            peer: Peer {
                cred,
                caller,
                activity: Arc::new(Activity::new()),
            },
            closed: Box::pin(async move {
                let _ = closed.wait_for(|c| *c).await;
            }),
            aborted: false,
            rewriter: AuthorityRewriter::new(),
            pending: Vec::new(),
            pos: 0,
            unread: Vec::new(),
            timeouts,
            awaiting_preface: true,
            timer: Box::pin(tokio::time::sleep_until(deadline(
                Instant::now(),
                timeouts.preface,
            ))),
            _permit: permit,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.aborted && self.closed.as_mut().poll(cx).is_ready() {
            self.aborted = true;
        }
        if self.aborted {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        Ok(())
    }

    /// Enforces the preface and idle timeouts (and registers the timer's wake-up).
    fn check_timeouts(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.awaiting_preface {
                tracing::debug!("closing a connection that sent no HTTP/2 preface in time");
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within the preface timeout",
                ));
            }
            let next = match self.peer.activity.idle_since() {
                Some(since) if now >= deadline(since, self.timeouts.idle) => {
                    tracing::debug!("closing a connection idle with no stream");
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no stream within the idle timeout",
                    ));
                }
                Some(since) => deadline(since, self.timeouts.idle),
                None => deadline(now, self.timeouts.idle),
            };
            self.timer.as_mut().reset(next);
        }
        Ok(())
    }

    fn inner(&mut self) -> Pin<&mut (dyn AsyncIo + Send + Unpin)> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s as &mut (dyn AsyncIo + Send + Unpin)),
            Stream::Tcp(s) => Pin::new(s as &mut (dyn AsyncIo + Send + Unpin)),
        }
    }
}

/// The error that closes a connection whose bytes cannot be rewritten.
fn refused(e: H2RewriteError) -> io::Error {
    tracing::debug!(error = %e, "closing a connection whose HTTP/2 stream cannot be rewritten");
    io::Error::new(io::ErrorKind::InvalidData, e)
}

trait AsyncIo: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncIo for T {}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        self.check_timeouts(cx)?;
        let this = &mut *self;
        loop {
            if this.pos < this.pending.len() {
                let n = (this.pending.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.pending[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.pending.len() {
                    this.pending.clear();
                    this.pending.shrink_to(KEEP_PENDING);
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if !this.unread.is_empty() {
                let taken = this
                    .rewriter
                    .feed(&this.unread, &mut this.pending)
                    .map_err(refused)?;
                this.unread.drain(..taken);
                continue;
            }
            // Read into the caller's buffer, rewrite from there into `pending`, then hand
            // the rewritten bytes back: no buffer of our own until bytes arrive.
            let start = buf.filled().len();
            match this.inner().poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() > start => {}
                // End of stream (nothing read), an error, or pending.
                other => return other,
            }
            let fed = this
                .rewriter
                .feed(&buf.filled()[start..], &mut this.pending);
            if let Ok(taken) = fed {
                this.unread
                    .extend_from_slice(&buf.filled()[start + taken..]);
            }
            buf.set_filled(start);
            fed.map_err(refused)?;
            if this.awaiting_preface && this.rewriter.started() {
                // From now on the timer watches for idleness.
                this.awaiting_preface = false;
                let next = deadline(Instant::now(), this.timeouts.idle);
                this.timer.as_mut().reset(next);
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        self.inner().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        self.inner().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tcp(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}
