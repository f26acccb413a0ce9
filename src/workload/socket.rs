//! The server's Unix socket: bound with its final permissions before anyone can connect,
//! stale files replaced only when nobody listens, removed only if it is still ours, and
//! connections that can be closed by force when a graceful shutdown takes too long.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tonic::transport::server::{Connected, UdsConnectInfo};

use super::WorkloadApiError;

/// A bound socket file: removed on drop, but only while it is still the file we bound.
pub(crate) struct BoundSocket {
    path: PathBuf,
    identity: (u64, u64),
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds `path` with `mode`. The socket is created inside a fresh 0700 directory next to
/// `path`, given `mode`, and only then renamed into place, so nobody can connect while it
/// still has the umask's permissions. A stale socket (connection refused) is replaced; a
/// live one, one we cannot probe, or a path that is not a socket is an error and left alone.
pub(crate) async fn bind(
    path: &Path,
    mode: u32,
) -> Result<(UnixListener, BoundSocket), WorkloadApiError> {
    let io = |source| WorkloadApiError::Socket {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::warn!(socket = %path.display(), "removing a stale socket file");
                std::fs::remove_file(path).map_err(io)?;
            }
            Ok(_) => {
                return Err(WorkloadApiError::SocketInUse {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io(e)),
        },
        Ok(_) => {
            return Err(WorkloadApiError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let private = parent.join(format!(
        ".meshid-bind-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io)?;
    let staged = private.join("socket");
    let bound = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        if std::fs::symlink_metadata(path).is_ok() {
            // Someone else created the path meanwhile: do not replace it.
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let listener = bound.map_err(io)?;
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    Ok((
        listener,
        BoundSocket {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        },
    ))
}

/// An accepted connection that fails every read and write once `closed` turns true, so
/// that a shutdown can end connections whose peers never close them.
pub(crate) struct Conn {
    inner: UnixStream,
    closed: Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>,
}

impl Conn {
    pub(crate) fn new(inner: UnixStream, mut closed: watch::Receiver<bool>) -> Self {
        Self {
            inner,
            closed: Box::pin(async move {
                let _ = closed.wait_for(|c| *c).await;
            }),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::ErrorKind::ConnectionAborted.into()),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.inner.connect_info()
    }
}

/// Ends what a server started when serving ends however it ends (returns, fails, or its
/// future is dropped): closes connections by force, runs `on_drop`, removes the socket.
#[cfg_attr(not(feature = "sds"), allow(dead_code))]
pub(crate) struct ServeGuard {
    force: watch::Sender<bool>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
    _socket: BoundSocket,
}

#[cfg_attr(not(feature = "sds"), allow(dead_code))]
impl ServeGuard {
    pub(crate) fn new(
        socket: BoundSocket,
        force: watch::Sender<bool>,
        on_drop: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self {
            force,
            on_drop: Some(Box::new(on_drop)),
            _socket: socket,
        }
    }
}

impl Drop for ServeGuard {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
        let _ = self.force.send(true);
    }
}
