//! Permissive mode: telling a TLS client from a plaintext one by its first bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::ProxyError;

/// What a client's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// A TLS handshake record (content type 22, protocol major version 3: RFC 8446 §5.1).
    Tls,
    /// Anything else.
    Plaintext,
}

/// Reads the first bytes of `io` (at most 3, waiting at most `timeout` for them) and tells
/// a TLS handshake from anything else. The bytes read are not lost: the returned [`Rewind`]
/// replays them before reading on.
///
/// A client that sends nothing within `timeout` (or closes first) is an error: nothing can be
/// told about it, and a server-speaks-first protocol cannot share a permissive port.
pub async fn sniff<IO>(mut io: IO, timeout: Duration) -> Result<(Protocol, Rewind<IO>), ProxyError>
where
    IO: AsyncRead + Unpin,
{
    let mut first = [0u8; 3];
    let mut have = 0;
    let decided = tokio::time::timeout(timeout, async {
        while have < first.len() {
            let n = io.read(&mut first[have..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed before sending anything to tell its protocol by",
                ));
            }
            have += n;
            // A first byte other than a handshake record's decides at once.
            if first[0] != 0x16 || (have >= 2 && first[1] != 0x03) {
                break;
            }
        }
        Ok(())
    })
    .await;
    match decided {
        Err(_) => return Err(ProxyError::DetectTimeout(timeout)),
        Ok(Err(e)) => return Err(ProxyError::Io(e)),
        Ok(Ok(())) => {}
    }
    let protocol = if have >= 2 && first[0] == 0x16 && first[1] == 0x03 {
        Protocol::Tls
    } else {
        Protocol::Plaintext
    };
    Ok((
        protocol,
        Rewind {
            inner: io,
            prefix: first,
            at: 0,
            len: have,
        },
    ))
}

/// A stream whose first few bytes, already read, are read again first.
#[derive(Debug)]
pub struct Rewind<IO> {
    inner: IO,
    prefix: [u8; 3],
    at: usize,
    len: usize,
}

impl<IO> Rewind<IO> {
    /// The stream underneath (the replayed bytes not yet read are lost).
    pub fn into_inner(self) -> IO {
        self.inner
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.len {
            let n = (self.len - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(bytes: &'static [u8]) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(bytes).await.unwrap();
        client.shutdown().await.unwrap();
        let (protocol, mut rewound) = sniff(server, Duration::from_secs(5)).await.unwrap();
        let mut all = Vec::new();
        rewound.read_to_end(&mut all).await.unwrap();
        (protocol, all)
    }

    #[tokio::test]
    async fn tells_a_client_hello_from_plaintext_and_loses_no_byte() {
        assert_eq!(
            sniffed(b"\x16\x03\x01\x02\x00rest").await,
            (Protocol::Tls, b"\x16\x03\x01\x02\x00rest".to_vec())
        );
        assert_eq!(
            sniffed(b"GET / HTTP/1.1\r\n").await,
            (Protocol::Plaintext, b"GET / HTTP/1.1\r\n".to_vec())
        );
        // 0x16 followed by something that is not a TLS version is not TLS.
        assert_eq!(
            sniffed(b"\x16\x04zz").await,
            (Protocol::Plaintext, b"\x16\x04zz".to_vec())
        );
        assert_eq!(sniffed(b"x").await, (Protocol::Plaintext, b"x".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_and_a_closed_one_is_an_error() {
        let (_client, server) = tokio::io::duplex(64);
        let error = sniff(server, Duration::from_secs(3)).await.unwrap_err();
        assert!(matches!(error, ProxyError::DetectTimeout(_)), "{error}");

        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let error = sniff(server, Duration::from_secs(3)).await.unwrap_err();
        assert!(matches!(error, ProxyError::Io(_)), "{error}");
    }
}
