//! Where a proxy listens and where it connects: TCP or a Unix socket, one stream type for
//! both.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use super::ProxyError;

/// An address to listen on or connect to: `HOST:PORT`, or `unix:PATH` / `unix://PATH` /
/// an absolute path for a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// A TCP address (`HOST:PORT`; the host is resolved when used).
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

impl Address {
    /// Parses `HOST:PORT`, `unix:PATH`, `unix://PATH` or `/PATH`.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let unix = text
            .strip_prefix("unix://")
            .or_else(|| text.strip_prefix("unix:"))
            .or_else(|| text.starts_with('/').then_some(text));
        if let Some(path) = unix {
            if !path.starts_with('/') {
                return Err(AddressError::RelativePath(text.to_owned()));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(text.to_owned()))
            }
            _ => Err(AddressError::NoPort(text.to_owned())),
        }
    }

    /// Connects, within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Stream, ProxyError> {
        let target = self.to_string();
        let connecting = async {
            match self {
                Self::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Ok(Stream::Tcp(stream))
                }
                Self::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            }
        };
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(ProxyError::Connect { target, source }),
            Err(_) => Err(ProxyError::ConnectTimeout { target, timeout }),
        }
    }

    /// Binds a listener. A Unix socket path must not exist yet.
    pub async fn bind(&self) -> io::Result<Listener> {
        match self {
            Self::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr.as_str()).await?)),
            Self::Unix(path) => Ok(Listener::Unix(UnixListener::bind(path)?, path.clone())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => f.write_str(addr),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why an address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// A TCP address needs `HOST:PORT`.
    #[error("{0:?} is neither HOST:PORT nor unix:/ABSOLUTE/PATH")]
    NoPort(String),
    /// A Unix socket path must be absolute.
    #[error("{0:?}: a Unix socket path must be absolute")]
    RelativePath(String),
}

/// A bound listener: TCP or a Unix socket.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket, and its path (removed when the proxy stops).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// What it is bound to (the port chosen, for `:0`).
    pub fn local_address(&self) -> io::Result<Address> {
        match self {
            Self::Tcp(l) => Ok(Address::Tcp(l.local_addr()?.to_string())),
            Self::Unix(_, path) => Ok(Address::Unix(path.clone())),
        }
    }

    /// The next connection, with the caller's and our addresses (TCP only).
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Option<(SocketAddr, SocketAddr)>)> {
        match self {
            Self::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr()?;
                Ok((Stream::Tcp(stream), Some((peer, local))))
            }
            Self::Unix(l, _) => Ok((Stream::Unix(l.accept().await?.0), None)),
        }
    }
}

/// A TCP or Unix stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("127.0.0.1:80").unwrap(),
            Address::Tcp("127.0.0.1:80".into())
        );
        assert_eq!(
            Address::parse("[::1]:80").unwrap(),
            Address::Tcp("[::1]:80".into())
        );
        assert_eq!(
            Address::parse("localhost:8080").unwrap(),
            Address::Tcp("localhost:8080".into())
        );
        for unix in ["unix:/run/a.sock", "unix:///run/a.sock", "/run/a.sock"] {
            assert_eq!(
                Address::parse(unix).unwrap(),
                Address::Unix("/run/a.sock".into()),
                "{unix}"
            );
        }
        assert!(matches!(
            Address::parse("unix:a.sock"),
            Err(AddressError::RelativePath(_))
        ));
        for bad in ["127.0.0.1", ":80", "host:99999", "host:", ""] {
            assert!(
                matches!(Address::parse(bad), Err(AddressError::NoPort(_))),
                "{bad}"
            );
        }
    }
}
