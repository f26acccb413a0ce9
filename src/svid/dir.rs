//! An SVID directory on disk: `svid.pem`, `svid.key` and `bundle.pem`, replaced together
//! (see [`SvidDir`]).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use thiserror::Error;

use super::{SvidError, X509Svid};

/// The certificate chain, leaf first (PEM).
const SVID_FILE: &str = "svid.pem";
/// The leaf's private key (PKCS#8 PEM, mode 0600).
const KEY_FILE: &str = "svid.key";
/// The trust bundle of the SVID's trust domain (PEM; empty when none is known).
const BUNDLE_FILE: &str = "bundle.pem";

/// The symlink naming the current version.
const DATA: &str = "..data";
/// How many times [`SvidDir::read`] starts over when a write swaps the version under it.
const READ_ATTEMPTS: usize = 8;

/// Why an SVID directory (or another private directory) could not be written or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DirError {
    /// A file or directory operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The path exists and is not a directory.
    #[error("{}: exists and is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory may be written by users other than its owner, who could then swap the
    /// key or certificate in it.
    #[error(
        "{}: directory is writable by other users (mode {mode:04o}), who could replace its keys; refusing to use it (chmod o-w, or choose another directory)",
        path.display()
    )]
    WritableByOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory belongs to another user (neither this process's user nor root), who
    /// could swap the files in it.
    #[error(
        "{}: directory is owned by another user (uid {uid}), who could replace its keys; refusing to use it",
        path.display()
    )]
    OwnedByAnotherUser {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// The files read do not form a valid SVID (or the key does not match the leaf).
    #[error("{}: {source}", path.display())]
    Svid {
        /// The version directory read.
        path: PathBuf,
        /// Why the SVID was refused.
        source: SvidError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Makes sure `path` is a directory only its owner may write: creates it (and any missing
/// parent) with mode 0700 whatever the umask, or checks that an existing one is not
/// writable by other users ([`DirError::WritableByOthers`]) and, where `/proc/self` tells
/// this process's user, belongs to that user or root ([`DirError::OwnedByAnotherUser`]).
///
/// Use it for any directory that holds keys; [`SvidDir::write`] calls it.
pub fn create_private_dir(path: &Path) -> Result<(), DirError> {
    // The mode given is filtered by the umask, which can only take bits away from 0700.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_error(path))?;
    // Checked after creating, so a directory someone else made meanwhile is checked too.
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if !meta.is_dir() {
        return Err(DirError::NotADirectory {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(DirError::WritableByOthers {
            path: path.to_owned(),
            mode,
        });
    }
    // The owner of /proc/self is this process's effective user (Linux; elsewhere unchecked).
    if let Ok(me) = fs::metadata("/proc/self").map(|m| m.uid()) {
        if meta.uid() != me && meta.uid() != 0 {
            return Err(DirError::OwnedByAnotherUser {
                path: path.to_owned(),
                uid: meta.uid(),
            });
        }
    }
    Ok(())
}

/// A directory holding one X509-SVID as `svid.pem`, `svid.key` and `bundle.pem`, always
/// replaced as a set.
///
/// The layout is the one Kubernetes' atomic writer uses for projected volumes, so tools that
/// already watch such directories (Envoy's `watched_directory`, for one) work unchanged:
///
/// ```text
/// DIR/                  0700
///   svid.pem   -> ..data/svid.pem
///   svid.key   -> ..data/svid.key
///   bundle.pem -> ..data/bundle.pem
///   ..data     -> ..v1765040000.123456789.4242
///   ..v1765040000.123456789.4242/   0700: svid.pem (0644), svid.key (0600), bundle.pem (0644)
/// ```
///
/// Each write fills a new version directory, then swaps the `..data` symlink with one
/// rename, then removes the older versions but the one just replaced, which stays until the
/// next write for readers whose path lookup went through `..data` just before the swap.
/// At every instant the three public names resolve
/// into one version: no reader opening `DIR/svid.pem` sees a certificate whose key is not
/// the one `DIR/svid.key` resolves to at that moment.
///
/// One process writes a directory at a time. Readers may open the public names at any
/// time; one that opens two of them while a write swaps the version can still get one file
/// of each version, as with any set of files: it should read again when the version
/// changed meanwhile (Envoy's `watched_directory` reloads after every swap), or use
/// [`SvidDir::read`], which reads all three files from one version.
///
/// ```
/// use std::time::Duration;
/// use meshid::{Authority, KeyType, SpiffeId, SvidDir, TrustDomain};
///
/// let ca = Authority::new_root(TrustDomain::new("example.org")?, Duration::from_secs(3600), KeyType::P256)?;
/// let id = SpiffeId::new("spiffe://example.org/web")?;
/// # let tmp = std::env::temp_dir().join(format!("meshid-doc-svid-dir-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&tmp);
/// let dir = SvidDir::new(tmp.join("web"));
/// let bundle = [ca.root().unwrap().clone()];
///
/// dir.write(&ca.issue(&id, Duration::from_secs(600))?, &bundle)?;
/// let next = ca.issue(&id, Duration::from_secs(600))?;
/// dir.write(&next, &bundle)?;
///
/// let (svid, roots) = dir.read()?;
/// assert_eq!(svid.leaf(), next.leaf());
/// assert_eq!(roots, bundle);
/// assert_eq!(std::fs::read_to_string(dir.path().join("svid.key"))?, *next.key_pem());
/// # std::fs::remove_dir_all(&tmp)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SvidDir {
    path: PathBuf,
}

impl SvidDir {
    /// The SVID directory at `path` (nothing is touched until a write or read).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes `svid` (chain and key) and the `bundle` authorities as one new version.
    ///
    /// The directory is created with mode 0700 if missing, and refused if other users may
    /// write it. The new files are written and synced in a fresh version directory, the
    /// `..data` symlink is swapped to it with one rename, the public names are made links
    /// through `..data` (replacing plain files an older writer left, once), and the older
    /// versions are removed but the one just replaced. On error the current version is left
    /// as it was.
    pub fn write(&self, svid: &X509Svid, bundle: &[CertificateDer<'_>]) -> Result<(), DirError> {
        let chain = svid.chain_pem();
        let key = svid.key_pem();
        let roots = crate::pem::certificates_to_pem(bundle);
        create_private_dir(&self.path)?;

        let (name, version) = self.new_version()?;
        let previous = fs::read_link(self.path.join(DATA)).ok();
        let written = (|| {
            write_new(&version.join(SVID_FILE), chain.as_bytes(), 0o644)?;
            write_new(&version.join(KEY_FILE), key.as_bytes(), 0o600)?;
            write_new(&version.join(BUNDLE_FILE), roots.as_bytes(), 0o644)?;
            sync_dir(&version);
            self.swap_data(&name)
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&version);
            return Err(e);
        }
        for file in [SVID_FILE, KEY_FILE, BUNDLE_FILE] {
            self.link_public(file)?;
        }
        sync_dir(&self.path);
        let previous = previous
            .as_deref()
            .and_then(Path::to_str)
            .unwrap_or_default();
        self.remove_old_versions(&[&name, previous]);
        Ok(())
    }

    /// Reads the current version: the SVID (its key checked to match the leaf) and the
    /// bundle's certificates (empty when `bundle.pem` is). All three files come from one
    /// version; a write that swaps versions meanwhile makes it read again.
    ///
    /// A directory of plain files (as meshid wrote before versions) is read as it is.
    pub fn read(&self) -> Result<(X509Svid, Vec<CertificateDer<'static>>), DirError> {
        let data = self.path.join(DATA);
        let current = || match fs::read_link(&data) {
            Ok(target) => Ok(self.path.join(target)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(self.path.clone()),
            Err(e) => Err(io_error(&data)(e)),
        };
        let mut attempt = 0;
        loop {
            let base = current()?;
            match read_version(&base) {
                // Gone or changed under us: a writer swapped versions; start over.
                Err(DirError::Io { .. })
                    if attempt + 1 < READ_ATTEMPTS && current().ok().as_ref() != Some(&base) =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates an empty version directory, 0700; returns its name and path.
    fn new_version(&self) -> Result<(String, PathBuf), DirError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        loop {
            let name = format!(
                "..v{}.{:09}.{}.{}",
                now.as_secs(),
                now.subsec_nanos(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = self.path.join(&name);
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok((name, path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }

    /// Points `..data` at the version `name` with one rename.
    fn swap_data(&self, name: &str) -> Result<(), DirError> {
        let tmp = self
            .path
            .join(format!("..data_tmp.{}.{name}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).map_err(io_error(&tmp))?;
        fs::rename(&tmp, self.path.join(DATA)).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error(&self.path.join(DATA))(e)
        })
    }

    /// Makes `DIR/file` a symlink to `..data/file`, unless it already is one.
    fn link_public(&self, file: &str) -> Result<(), DirError> {
        let public = self.path.join(file);
        let target = Path::new(DATA).join(file);
        if fs::read_link(&public).is_ok_and(|t| t == target) {
            return Ok(());
        }
        let tmp = self
            .path
            .join(format!(".{file}.link-tmp.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_error(&tmp))?;
        fs::rename(&tmp, &public).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error(&public)(e)
        })
    }

    /// Removes every version directory but those named in `keep`. Best effort: the new
    /// version is already published, and the next write tries again.
    fn remove_old_versions(&self, keep: &[&str]) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name
                .strip_prefix("..v")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
            if ours && !keep.contains(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Reads and checks the three files of one version directory.
fn read_version(base: &Path) -> Result<(X509Svid, Vec<CertificateDer<'static>>), DirError> {
    let read = |file: &str| {
        let path = base.join(file);
        fs::read(&path)
            .map(zeroize::Zeroizing::new)
            .map_err(io_error(&path))
    };
    let (chain, key, roots) = (read(SVID_FILE)?, read(KEY_FILE)?, read(BUNDLE_FILE)?);
    let svid_error = |source| DirError::Svid {
        path: base.to_owned(),
        source,
    };
    let svid = X509Svid::parse_pem(&chain, &key).map_err(svid_error)?;
    let bundle = if roots.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        super::parse_certificates(&roots).map_err(svid_error)?
    };
    Ok((svid, bundle))
}

/// Writes a new file with `mode` (not filtered by the umask's group and other bits, which
/// 0644 and 0600 do not need) and syncs it.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), DirError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error(path))?;
    // The umask may have taken bits away (0644 under umask 077): set them as asked.
    if file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777
        != mode
    {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_error(path))?;
    }
    file.write_all(data).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Makes renames in `dir` durable (best effort: some file systems refuse to sync a
/// directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_0700_and_open_ones_refused() {
        let base = std::env::temp_dir().join(format!("meshid-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = create_private_dir(&dir).unwrap_err();
        assert!(
            matches!(err, DirError::WritableByOthers { mode: 0o777, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("writable by other users"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        // Run as root, the test can give the directory away to check the owner rule.
        if fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            std::os::unix::fs::chown(&dir, Some(65_534), None).unwrap();
            let err = create_private_dir(&dir).unwrap_err();
            assert!(
                matches!(err, DirError::OwnedByAnotherUser { uid: 65_534, .. }),
                "{err}"
            );
        }
        fs::write(base.join("file"), b"").unwrap();
        assert!(matches!(
            create_private_dir(&base.join("file")),
            Err(DirError::NotADirectory { .. } | DirError::Io { .. })
        ));
        fs::remove_dir_all(&base).unwrap();
    }
}
