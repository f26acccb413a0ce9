//! What a server needs to hand out JWT-SVIDs: a [`JwtIssuer`] (mints a token for one of a
//! caller's identities) and a [`JwtBundleFeed`] (the JWT bundles served, and validated
//! against, with the [`Changes`] that say when to push them again).

use std::sync::Arc;

use crate::jwt::{JwtBundles, JwtSvid};
use crate::watch::{Changes, Watch};
use crate::SpiffeId;

/// Why a [`JwtIssuer`] minted nothing.
pub type MintError = Box<dyn std::error::Error + Send + Sync>;

/// Mints JWT-SVIDs for the identities a server hands its callers: one method, so that an
/// [`Authority`](crate::Authority) (feature `ca`), a remote signer or a test double can
/// stand behind a Workload API server.
///
/// The server decides *which* identities a caller gets (its [`Identities`](super::Identities))
/// and caches what is minted; the issuer decides the lifetime and the key.
pub trait JwtIssuer: Send + Sync {
    /// A token for `id` with `audience` (never empty: the server refuses a request
    /// without one before asking).
    fn mint_jwt_svid(&self, id: &SpiffeId, audience: &[String]) -> Result<JwtSvid, MintError>;
}

impl<T: JwtIssuer + ?Sized> JwtIssuer for Arc<T> {
    fn mint_jwt_svid(&self, id: &SpiffeId, audience: &[String]) -> Result<JwtSvid, MintError> {
        (**self).mint_jwt_svid(id, audience)
    }
}

/// An authority mints with its newest JWT key and the default lifetime
/// ([`DEFAULT_JWT_SVID_TTL`](crate::DEFAULT_JWT_SVID_TTL), 5 min, as SPIRE's).
#[cfg(feature = "ca")]
#[cfg_attr(docsrs, doc(cfg(feature = "ca")))]
impl JwtIssuer for crate::Authority {
    fn mint_jwt_svid(&self, id: &SpiffeId, audience: &[String]) -> Result<JwtSvid, MintError> {
        let request = crate::JwtSvidRequest::new(id.clone(), audience.iter().cloned());
        Ok(self.mint_jwt_svid_for(&request)?)
    }
}

/// The JWT bundles a server publishes (`FetchJWTBundles`) and validates tokens against
/// (`ValidateJWTSVID`); every caller gets the same.
pub trait JwtBundleFeed: Send + Sync {
    /// The current JWT bundles (`None`: none yet).
    fn jwt_bundles(&self) -> Option<Arc<JwtBundles>>;

    /// Moves whenever the bundles may have changed.
    fn changes(&self) -> &Changes;
}

/// Never moves: what fixed values report.
static NEVER: Changes = Changes::new();

/// A fixed set of JWT bundles.
impl JwtBundleFeed for JwtBundles {
    fn jwt_bundles(&self) -> Option<Arc<JwtBundles>> {
        Some(Arc::new(self.clone()))
    }

    fn changes(&self) -> &Changes {
        &NEVER
    }
}

/// JWT bundles that can be replaced (a key added or retired, a federation refresh).
impl JwtBundleFeed for Watch<JwtBundles> {
    fn jwt_bundles(&self) -> Option<Arc<JwtBundles>> {
        self.get()
    }

    fn changes(&self) -> &Changes {
        Watch::changes(self)
    }
}

impl<T: JwtBundleFeed + ?Sized> JwtBundleFeed for Arc<T> {
    fn jwt_bundles(&self) -> Option<Arc<JwtBundles>> {
        (**self).jwt_bundles()
    }

    fn changes(&self) -> &Changes {
        (**self).changes()
    }
}
