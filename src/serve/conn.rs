//! One accepted connection as the HTTP/2 server sees it: the client's bytes pass through
//! the `:authority` rewriter, the peer's credentials are taken at accept, and every read
//! and write fails once a forced shutdown closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::UCred;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;
use tonic::transport::server::Connected;

use super::authority::AuthorityRewriter;

/// The socket under a connection.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// Who is on the other end, as the kernel says at accept: in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// Unix peer credentials (`SO_PEERCRED`); `None` over TCP.
    pub(crate) cred: Option<UCred>,
}

/// How much of the client's bytes one read takes at most.
const READ_CHUNK: usize = 16 * 1024;

/// An accepted connection. See the [module docs](self).
pub(crate) struct Conn {
    inner: Stream,
    peer: Peer,
    closed: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    rewriter: AuthorityRewriter,
    /// Rewritten bytes not yet read by the server, from `pos` on.
    pending: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
}

impl Conn {
    pub(crate) fn new(inner: Stream, mut closed: watch::Receiver<bool>) -> Self {
        let cred = match &inner {
            Stream::Unix(s) => s.peer_cred().ok(),
            Stream::Tcp(_) => None,
        };
        Self {
            inner,
            peer: Peer { cred },
            closed: Box::pin(async move {
                let _ = closed.wait_for(|c| *c).await;
            }),
            rewriter: AuthorityRewriter::new(),
            pending: Vec::new(),
            pos: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::ErrorKind::ConnectionAborted.into()),
            Poll::Pending => Ok(()),
        }
    }

    fn inner(&mut self) -> Pin<&mut (dyn AsyncIo + Send + Unpin)> {
        match &mut self.inner {
            Stream::Unix(s) => Pin::new(s as &mut (dyn AsyncIo + Send + Unpin)),
            Stream::Tcp(s) => Pin::new(s as &mut (dyn AsyncIo + Send + Unpin)),
        }
    }
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
        let this = &mut *self;
        loop {
            if this.pos < this.pending.len() {
                let n = (this.pending.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.pending[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.pending.len() {
                    this.pending.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut scratch = std::mem::take(&mut this.scratch);
            let mut read = ReadBuf::new(&mut scratch);
            let polled = this.inner().poll_read(cx, &mut read);
            let filled = read.filled().len();
            let result = match polled {
                Poll::Ready(Ok(())) if filled > 0 => this
                    .rewriter
                    .feed(&scratch[..filled], &mut this.pending)
                    .map_err(|e| {
                        tracing::info!(error = %e, "closing a connection whose HTTP/2 stream cannot be rewritten");
                        io::Error::new(io::ErrorKind::InvalidData, e)
                    }),
                other => {
                    this.scratch = scratch;
                    // End of stream (nothing filled), an error, or pending.
                    return other;
                }
            };
            this.scratch = scratch;
            result?;
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
        self.peer
    }
}
