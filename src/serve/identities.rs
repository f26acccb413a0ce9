//! What a server hands out, as traits: [`Identities`] (the X509-SVIDs a caller is entitled
//! to) and [`Bundles`] (the trust bundles served beside them), each with the [`Changes`]
//! that say when to push again. [`EveryCaller`] is the simple case: the same stores for
//! whoever calls.

use std::sync::Arc;

use thiserror::Error;

use super::Caller;
use crate::watch::{Changes, Watch};
use crate::{BundleSet, SvidSource, SvidStore, X509Svid};

/// One X509-SVID handed to a caller, with the hint the Workload API labels it with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Identity {
    /// The SVID (chain and private key).
    pub svid: Arc<X509Svid>,
    /// The Workload API's `hint` for it (empty: none).
    pub hint: String,
}

impl Identity {
    /// An identity with no hint.
    pub fn new(svid: Arc<X509Svid>) -> Self {
        Self {
            svid,
            hint: String::new(),
        }
    }

    /// The same, labelled with `hint`.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }
}

/// Why a caller gets nothing at all: the call is refused with `PermissionDenied`.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct Refused(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The X509-SVIDs each caller of a server is entitled to: a plain set of stores for
/// everyone ([`EveryCaller`]), a Workload API [`X509Source`](crate::workload::X509Source)
/// re-served, or an agent's registry that attests each caller
/// ([`Agent`](crate::agent::Agent)).
///
/// Servers ask once when a call begins and again whenever [`changes`](Self::changes) move,
/// before every push; they hold no SVID of their own.
pub trait Identities: Send + Sync {
    /// What `caller` receives now, its default first; empty when nothing is issued to it
    /// (the Workload API answers `PermissionDenied` "no identity issued"; SDS sends no
    /// certificate). An error refuses the caller outright.
    fn x509_svids(&self, caller: &Caller) -> Result<Vec<Identity>, Refused>;

    /// Moves whenever what any caller would receive may have changed.
    fn changes(&self) -> &Changes;

    /// Changes that move when what `caller` receives may have changed: a server's stream
    /// for `caller` waits on these, then asks [`x509_svids`](Self::x509_svids) again and
    /// takes new ones (what concerns a caller can change with what it is entitled to).
    /// Subscribe before reading, so no change is missed in between.
    ///
    /// The default moves with [`changes`](Self::changes); an agent with many entries
    /// narrows it to the caller's own, so one rotation wakes only its own callers.
    fn changes_for(&self, caller: &Caller) -> Arc<Changes> {
        let _ = caller;
        let mine = Arc::new(Changes::new());
        self.changes().forward_to(&mine);
        mine
    }
}

/// The trust bundles a server hands out (every caller gets the same).
pub trait Bundles: Send + Sync {
    /// The current bundles (`None`: none yet).
    fn bundles(&self) -> Option<Arc<BundleSet>>;

    /// Moves whenever the bundles may have changed.
    fn changes(&self) -> &Changes;
}

/// Never moves: what fixed values report.
static NEVER: Changes = Changes::new();

/// A fixed bundle set.
impl Bundles for BundleSet {
    fn bundles(&self) -> Option<Arc<BundleSet>> {
        Some(Arc::new(self.clone()))
    }

    fn changes(&self) -> &Changes {
        &NEVER
    }
}

/// A bundle set that can be replaced (a CA rotating its root, a federation refresh).
impl Bundles for Watch<BundleSet> {
    fn bundles(&self) -> Option<Arc<BundleSet>> {
        self.get()
    }

    fn changes(&self) -> &Changes {
        Watch::changes(self)
    }
}

impl<T: Identities + ?Sized> Identities for Arc<T> {
    fn x509_svids(&self, caller: &Caller) -> Result<Vec<Identity>, Refused> {
        (**self).x509_svids(caller)
    }

    fn changes(&self) -> &Changes {
        (**self).changes()
    }

    fn changes_for(&self, caller: &Caller) -> Arc<Changes> {
        (**self).changes_for(caller)
    }
}

impl<T: Bundles + ?Sized> Bundles for Arc<T> {
    fn bundles(&self) -> Option<Arc<BundleSet>> {
        (**self).bundles()
    }

    fn changes(&self) -> &Changes {
        (**self).changes()
    }
}

/// The same SVIDs for every caller: the stores' current SVIDs, in the order added (the
/// first is the default). What `meshid serve workload-api --id ...` serves.
///
/// ```
/// use std::sync::Arc;
/// use meshid::serve::{Caller, EveryCaller, Identities};
/// use meshid::SvidStore;
///
/// let store = Arc::new(SvidStore::new());
/// let everyone = EveryCaller::new([Arc::clone(&store)]);
/// assert!(everyone.x509_svids(&Caller::unknown())?.is_empty()); // nothing issued yet
/// # Ok::<(), meshid::serve::Refused>(())
/// ```
#[derive(Debug)]
pub struct EveryCaller {
    stores: Vec<Arc<SvidStore>>,
    changes: Arc<Changes>,
}

impl EveryCaller {
    /// Serves `stores`; their changes are forwarded to this one's.
    pub fn new(stores: impl IntoIterator<Item = Arc<SvidStore>>) -> Self {
        let changes = Arc::new(Changes::new());
        let stores: Vec<_> = stores.into_iter().collect();
        for store in &stores {
            store.changes().forward_to(&changes);
        }
        Self { stores, changes }
    }
}

impl Identities for EveryCaller {
    fn x509_svids(&self, _: &Caller) -> Result<Vec<Identity>, Refused> {
        Ok(self
            .stores
            .iter()
            .filter_map(SvidSource::x509_svid)
            .map(Identity::new)
            .collect())
    }

    fn changes(&self) -> &Changes {
        &self.changes
    }
}
