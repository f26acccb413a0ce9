//! File and value handling shared by the subcommands: atomic writes (a refusal never leaves a
//! partial file), key files with mode 0600, private directories, sets of files published
//! exclusively, and bounded reads. SVID directories, timestamps and durations are the
//! library's ([`meshid::SvidDir`], [`meshid::time`]).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Inputs larger than this are refused before they are parsed.
const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// A failure of a subcommand: the exit code and the message for standard error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// A refusal or failed check (exit 1); the message names the rule.
    pub(crate) fn refused(message: impl fmt::Display) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }

    /// A refusal (exit 1) for an error and its causes: each `source` in turn, after a
    /// colon, unless the text so far already says it (a `Display` that repeats its
    /// source, as `cannot connect to X: transport error` does).
    pub(crate) fn refused_with_causes(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::refused(with_causes(error))
    }

    /// A file could not be read or written (exit 2).
    pub(crate) fn io(path: &Path, e: impl fmt::Display) -> Self {
        Self {
            code: 2,
            message: format!("{}: {e}", path.display()),
        }
    }
}

/// An error's text followed by its causes (`std::error::Error::source`, in turn), each
/// left out when the text so far already holds it: "cannot connect to unix:///x: transport
/// error: No such file or directory (os error 2)".
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let more = e.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// A duration as the duration flags take it, largest units first: `800d`, `1h10s`,
/// `364d23h59m59s` (whole seconds; `0s` for less than one).
pub(crate) fn format_duration(d: std::time::Duration) -> String {
    use std::fmt::Write as _;
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            let _ = write!(out, "{}{unit}", secs / size);
            secs %= size;
        }
    }
    out
}

/// Reads a whole file, refusing more than 16 MiB (counted while reading, so a pipe or a
/// growing file is bounded too).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Failure::io(path, e))?;
    let mut data = Vec::new();
    file.take(MAX_INPUT + 1)
        .read_to_end(&mut data)
        .map_err(|e| Failure::io(path, e))?;
    if data.len() as u64 > MAX_INPUT {
        return Err(Failure::refused(format!(
            "{}: over the {MAX_INPUT}-byte input limit",
            path.display()
        )));
    }
    Ok(data)
}

/// Whether a file holds a secret (mode 0600) or public material (mode 0644).
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    Public,
    Secret,
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, then a rename.
pub(crate) fn write(path: &Path, data: &[u8], mode: Mode) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(match mode {
                Mode::Public => 0o644,
                Mode::Secret => 0o600,
            });
        }
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable (best effort: not every platform opens directories).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::io(path, e));
    }
    Ok(())
}

/// Creates a directory for keys (and its parents) with mode 0700 if missing; refuses an
/// existing one that other users may write.
pub(crate) fn private_dir(path: &Path) -> Result<(), Failure> {
    meshid::create_private_dir(path).map_err(dir_failure)
}

/// A refusal (exit 1) for a directory that is unsafe or holds a bad SVID, an I/O error
/// (exit 2) for the rest.
pub(crate) fn dir_failure(e: meshid::DirError) -> Failure {
    match e {
        meshid::DirError::Io { path, source } => Failure::io(&path, source),
        other => Failure::refused(other),
    }
}

/// Why [`publish_new`] did not publish.
pub(crate) enum Publish {
    /// A file of the set already exists (another run published there, or an earlier one
    /// was interrupted); nothing of ours is left.
    Exists(PathBuf),
    /// Anything else; nothing of ours is left.
    Failed(Failure),
}

/// Publishes a set of new files into `dir`, never replacing one: all are written and
/// synced in a private staging directory inside `dir`, then hard-linked into place in the
/// order given (a link fails if the name exists, so of two runs only one can publish the
/// first file). A name may sit in one subdirectory (`jwt/KEY`), created with mode 0700
/// when missing. On any failure, what was published is removed again (and the
/// subdirectories this run created, when empty), and the staging directory too, so nothing
/// is left to block a retry. Put the file that makes the set usable (a key) last.
pub(crate) fn publish_new(dir: &Path, set: &[(&str, &[u8], Mode)]) -> Result<(), Publish> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let staging = dir.join(format!(".staging-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| Publish::Failed(Failure::io(&staging, e)))?;
    let mut published: Vec<(PathBuf, u64)> = Vec::new();
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<(), Publish> {
        for (name, data, mode) in set {
            let path = staging.join(name);
            if let Some(parent) = path.parent().filter(|p| *p != staging) {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(parent)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| Publish::Failed(Failure::io(parent, e)))?;
            }
            write(&path, data, *mode).map_err(Publish::Failed)?;
        }
        for (name, _, _) in set {
            let (from, to) = (staging.join(name), dir.join(name));
            if let Some(parent) = to.parent().filter(|p| *p != dir) {
                match std::fs::DirBuilder::new().mode(0o700).create(parent) {
                    Ok(()) => created_dirs.push(parent.to_path_buf()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Publish::Failed(Failure::io(parent, e))),
                }
            }
            match std::fs::hard_link(&from, &to) {
                Ok(()) => {
                    let ino = std::fs::metadata(&from).map_or(0, |m| m.ino());
                    published.push((to, ino));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Publish::Exists(to));
                }
                Err(e) => return Err(Publish::Failed(Failure::io(&to, e))),
            }
        }
        Ok(())
    })();
    if result.is_err() {
        // Only names that are still our own files are removed.
        for (path, ino) in published.iter().rev() {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
        for created in created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(created);
        }
    }
    let _ = std::fs::remove_dir_all(&staging);
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    result
}
