//! The `sha256` selector: hashing a process's executable through `/proc/PID/exe`, with a
//! bounded cache so a long-running workload attested on every call is hashed once.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::proc::proc_error;
use super::AttestError;

/// How many executables' hashes are kept.
pub(super) const CACHE_ENTRIES: usize = 256;

/// Which file, in which version: an executable whose key is unchanged has unchanged
/// contents. The change time is in it because it cannot be set back: whoever may write
/// the file can restore its size and modification time after changing it, but any write
/// moves the change time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Digests by file, the least recently used dropped when full.
#[derive(Default)]
struct Cache {
    entries: HashMap<FileKey, ([u8; 32], u64)>,
    clock: u64,
}

impl Cache {
    fn get(&mut self, key: &FileKey) -> Option<[u8; 32]> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(digest, used)| {
            *used = clock;
            *digest
        })
    }

    fn insert(&mut self, key: FileKey, digest: [u8; 32]) {
        if self.entries.len() >= CACHE_ENTRIES && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(key, (digest, self.clock));
    }
}

/// Hashes executables of at most `limit` bytes, caching the digests.
pub(super) struct ExeHasher {
    limit: u64,
    cache: Mutex<Cache>,
    /// Held while hashing: one executable is hashed at a time, so callers arriving
    /// together from one large executable hash it once, and the CPU many callers can make
    /// the agent spend on hashing is one core's.
    hashing: Mutex<()>,
}

impl fmt::Debug for ExeHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExeHasher")
            .field("limit", &self.limit)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl ExeHasher {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            cache: Mutex::new(Cache::default()),
            hashing: Mutex::new(()),
        }
    }

    /// The most bytes an executable may have.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many digests are cached.
    pub fn cached(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache is consistent after any panic: entries are whole or absent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lowercase hex SHA-256 of process `pid`'s executable, read through
    /// `/proc/PID/exe` (which opens the file the process runs even if its path now names
    /// another, or none).
    pub fn sha256_hex(&self, pid: i32) -> Result<String, AttestError> {
        let path = PathBuf::from(format!("/proc/{pid}/exe"));
        let mut file = File::open(&path).map_err(|err| proc_error(pid, path.clone(), err))?;
        let meta = |file: &File| {
            file.metadata().map_err(|source| AttestError::Read {
                path: path.clone(),
                source,
            })
        };
        let before = FileKey::of(&meta(&file)?);
        if before.size > self.limit {
            return Err(AttestError::ExecutableTooLarge {
                pid,
                size: before.size,
                limit: self.limit,
            });
        }
        if let Some(digest) = self.lock().get(&before) {
            return Ok(hex(&digest));
        }
        // The cache lock is not held while hashing (callers whose digests are cached need
        // not wait); the hashing lock is, and whoever waited for it looks again first.
        let _one_at_a_time = self.hashing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(digest) = self.lock().get(&before) {
            return Ok(hex(&digest));
        }
        let (digest, len) = self.hash(&mut file).map_err(|source| AttestError::Read {
            path: path.clone(),
            source,
        })?;
        if len > self.limit {
            return Err(AttestError::ExecutableTooLarge {
                pid,
                size: len,
                limit: self.limit,
            });
        }
        if FileKey::of(&meta(&file)?) != before || len != before.size {
            return Err(AttestError::ExecutableChanged { pid });
        }
        self.lock().insert(before, digest);
        Ok(hex(&digest))
    }

    /// The digest of at most `limit + 1` bytes of `file`, and how many there were.
    fn hash(&self, file: &mut File) -> std::io::Result<([u8; 32], u64)> {
        let mut hasher = Sha256::new();
        let mut reader = file.take(self.limit.saturating_add(1));
        let mut buf = vec![0; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buf[..n]);
            len += u64::try_from(n).unwrap_or(u64::MAX);
        }
        let mut digest = [0; 32];
        digest.copy_from_slice(&hasher.finalize());
        Ok((digest, len))
    }
}

/// Lowercase hexadecimal.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            size: 10,
            mtime: (0, 0),
            ctime: (0, 0),
        }
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_least_recently_used() {
        let mut cache = Cache::default();
        for ino in 0..CACHE_ENTRIES as u64 {
            cache.insert(key(ino), [1; 32]);
        }
        assert_eq!(cache.get(&key(0)), Some([1; 32])); // 0 is now the most recent
        cache.insert(key(1000), [2; 32]);
        assert_eq!(cache.entries.len(), CACHE_ENTRIES);
        assert_eq!(cache.get(&key(1)), None, "the least recently used went");
        assert_eq!(cache.get(&key(0)), Some([1; 32]));
        assert_eq!(cache.get(&key(1000)), Some([2; 32]));
        let mut changed = key(0);
        changed.ctime = (1, 0);
        assert_eq!(cache.get(&changed), None, "another version is another key");
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f, 0xff]), "00ab0fff");
    }

    #[test]
    fn our_executable_hashes_as_its_file_does_and_is_cached() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let expected = hex(&Sha256::digest(&exe));
        let hasher = ExeHasher::new(1 << 30);
        assert_eq!(hasher.sha256_hex(pid).unwrap(), expected);
        assert_eq!(hasher.cached(), 1);
        assert_eq!(hasher.sha256_hex(pid).unwrap(), expected);
        assert_eq!(hasher.cached(), 1);

        let small = ExeHasher::new(16);
        assert!(matches!(
            small.sha256_hex(pid),
            Err(AttestError::ExecutableTooLarge { limit: 16, .. })
        ));
        assert_eq!(small.cached(), 0);
    }
}
