//! [`SvidResolver`]: the current SVID of a source, as rustls wants it.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{SvidSource, X509Svid};

/// The SVID a cached key was built from, and the key.
struct Cached {
    svid: Arc<X509Svid>,
    key: Option<Arc<CertifiedKey>>,
}

/// Presents the current SVID of an [`SvidSource`] in TLS handshakes, as a server
/// ([`ResolvesServerCert`]) and as a client ([`ResolvesClientCert`]).
///
/// The rustls `CertifiedKey` (chain plus the provider's signing key) is built once per
/// SVID, the first time it is needed after the source changed, and cached by the identity of
/// the source's `Arc`; every other handshake costs one atomic load and a pointer compare.
/// When the source holds nothing (no SVID yet, or expired with no replacement), nothing is
/// presented and the handshake fails: fail closed.
pub struct SvidResolver {
    source: Arc<dyn SvidSource>,
    provider: Arc<CryptoProvider>,
    cache: ArcSwapOption<Cached>,
}

impl SvidResolver {
    /// A resolver over `source`, loading keys with `provider`'s key provider.
    pub fn new(source: impl SvidSource + 'static, provider: Arc<CryptoProvider>) -> Self {
        Self {
            source: Arc::new(source),
            provider,
            cache: ArcSwapOption::empty(),
        }
    }

    /// The certified key for the source's current SVID, or `None` when the source holds
    /// none or its key cannot be loaded by the provider.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        // Load the cache before reading the source: then a cache entry stored meanwhile is
        // newer than `svid` or equal to it, and the compare-and-swap below cannot replace
        // it with an older SVID.
        let seen = self.cache.load();
        let svid = self.source.x509_svid()?;
        if let Some(cached) = &*seen {
            if Arc::ptr_eq(&cached.svid, &svid) {
                return cached.key.clone();
            }
        }
        let key = self.certify(&svid);
        // Cache only if nobody else did meanwhile: a handshake that read the source before
        // a rotation must not put the older SVID back over a newer one.
        let _ = self.cache.compare_and_swap(
            &seen,
            Some(Arc::new(Cached {
                svid,
                key: key.clone(),
            })),
        );
        key
    }

    fn certify(&self, svid: &X509Svid) -> Option<Arc<CertifiedKey>> {
        // rustls 0.23's `KeyProvider` takes the key by value and drops the copy without
        // zeroizing it (as the provider's own key object is not zeroized either); the
        // meshid-held key in `X509Svid` is zeroized on drop.
        let der = PrivatePkcs8KeyDer::from(svid.private_key().secret_pkcs8_der().to_vec());
        match self
            .provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(der))
        {
            Ok(signing_key) => {
                tracing::debug!(id = %svid.id(), "loaded a new SVID for TLS");
                Some(Arc::new(CertifiedKey::new(
                    svid.chain().to_vec(),
                    signing_key,
                )))
            }
            Err(error) => {
                tracing::warn!(id = %svid.id(), %error, "the crypto provider cannot load this SVID's key; presenting no certificate");
                None
            }
        }
    }
}

impl fmt::Debug for SvidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidResolver")
            .field(
                "current",
                &self.cache.load().as_ref().map(|c| c.svid.id().clone()),
            )
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.source.x509_svid().is_some()
    }
}
