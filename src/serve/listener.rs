//! Listeners: a Unix socket bound with its final permissions before anyone can connect,
//! stale files replaced only when nobody listens, removed only if it is still ours; or a
//! TCP address.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener, UnixStream};

use super::ServeError;

/// A bound socket file: removed on drop, but only while it is still the file we bound.
pub(crate) struct BoundSocket {
    path: PathBuf,
    /// `None` when the path was already no longer ours right after the rename: then it is
    /// never removed.
    identity: Option<Identity>,
}

/// What tells our socket file from one that replaced it: its device and inode, and its
/// change time. The inode alone is not enough: a file created right after ours was
/// removed can get the same inode number (seen in CI: a successor's file was removed).
type Identity = (u64, u64, i64, i64);

fn identity(meta: &std::fs::Metadata) -> Identity {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.file_type().is_socket() && Some(identity(&meta)) == self.identity {
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
) -> Result<(UnixListener, BoundSocket), ServeError> {
    let io = |source| ServeError::Socket {
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
                return Err(ServeError::SocketInUse {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io(e)),
        },
        Ok(_) => {
            return Err(ServeError::NotASocket {
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
        // The file's device and inode survive the rename (its change time does not).
        let staged_meta = std::fs::symlink_metadata(&staged)?;
        std::fs::rename(&staged, path)?;
        Ok((listener, (staged_meta.dev(), staged_meta.ino())))
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    let (listener, (dev, ino)) = bound.map_err(io)?;
    // Someone may replace or remove the path right after the rename: the listener is still
    // ours and serves, but the path is then never ours to remove (seen in CI: this stat
    // failed with NotFound and the whole bind with it).
    let identity = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.dev() == dev && meta.ino() == ino => Some(identity(&meta)),
        _ => {
            tracing::warn!(socket = %path.display(),
                "the socket file was replaced right after it was bound; it will not be removed");
            None
        }
    };
    Ok((
        listener,
        BoundSocket {
            path: path.to_path_buf(),
            identity,
        },
    ))
}

/// Binds a TCP listener on `addr`.
pub(crate) async fn bind_tcp(addr: std::net::SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Tcp { addr, source })
}
