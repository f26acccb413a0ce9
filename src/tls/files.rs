//! A server certificate kept in PEM files (a Web PKI certificate for callers outside the
//! mesh), re-read when the files change.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are checked for a change: at most once a second, on a handshake.
const CHECK_EVERY_MS: u64 = 1000;

/// Why certificate files cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertFilesError {
    /// A file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no PEM `CERTIFICATE`, or one that does not decode.
    #[error("{0}: no PEM CERTIFICATE in it (RFC 7468)")]
    NoCertificate(PathBuf),
    /// The key file holds no PKCS #8, SEC1 or PKCS #1 private key in PEM.
    #[error("{0}: no PEM private key in it (PKCS #8, SEC1 or PKCS #1)")]
    NoKey(PathBuf),
    /// The crypto provider cannot sign with the key, or the key is not the certificate's.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// rustls's reason.
        reason: rustls::Error,
    },
}

/// A [`ResolvesServerCert`] presenting the certificate chain and key of two PEM files,
/// re-read when either file's modification time or size changes (checked at most once a
/// second, on a handshake). A change that does not load (a half-written file, a key that
/// is not the certificate's) keeps the last good certificate and is logged at `warn`.
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    stamp: Mutex<Stamp>,
    start: Instant,
    checked_ms: AtomicU64,
}

type Stamp = [(Option<SystemTime>, u64); 2];

impl CertFiles {
    /// Loads `cert` (the chain, leaf first) and `key`; fails if they do not make a usable
    /// certificate.
    pub fn load(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, CertFilesError> {
        let (cert, key) = (cert.into(), key.into());
        let stamp = [stamp_of(&cert), stamp_of(&key)];
        let loaded = load(&cert, &key, &provider)?;
        Ok(Self {
            cert,
            key,
            provider,
            current: ArcSwap::from_pointee(loaded),
            stamp: Mutex::new(stamp),
            start: Instant::now(),
            checked_ms: AtomicU64::new(0),
        })
    }

    /// The certificate presented now, re-reading the files first if they changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= CHECK_EVERY_MS
            && self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.reload_if_changed();
        }
        self.current.load_full()
    }

    fn reload_if_changed(&self) {
        let now = [stamp_of(&self.cert), stamp_of(&self.key)];
        let mut stamp = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if *stamp == now {
            return;
        }
        match load(&self.cert, &self.key, &self.provider) {
            Ok(loaded) => {
                *stamp = now;
                self.current.store(Arc::new(loaded));
                tracing::info!(cert = %self.cert.display(), "certificate files changed: reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate files changed but do not load; keeping the last good certificate");
            }
        }
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn stamp_of(path: &Path) -> (Option<SystemTime>, u64) {
    fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()))
}

fn load(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertFilesError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| CertFilesError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|_| CertFilesError::NoCertificate(cert.to_path_buf()))?;
    if chain.is_empty() {
        return Err(CertFilesError::NoCertificate(cert.to_path_buf()));
    }
    let key_pem = zeroize::Zeroizing::new(read(key)?);
    let der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| CertFilesError::NoKey(key.to_path_buf()))?;
    CertifiedKey::from_der(chain, der, provider).map_err(|reason| CertFilesError::Key {
        path: key.to_path_buf(),
        reason,
    })
}
