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
pub struct Refused(#[source] Box<dyn std::error::Error + Send + Sync>);

impl Refused {
    /// A refusal for `reason`.
    pub fn new(reason: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(reason.into())
    }

    /// Why.
    pub fn reason(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

/// What a caller receives now and the changes that concern it, from one look at the
/// caller ([`Identities::subscribe`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Subscription {
    /// The caller's identities, its default first (empty: none issued).
    pub identities: Vec<Identity>,
    /// Moves when they may have changed: then subscribe again.
    pub changes: Arc<Changes>,
}

impl Subscription {
    /// `identities`, watched through `changes`.
    pub fn new(identities: Vec<Identity>, changes: Arc<Changes>) -> Self {
        Self {
            identities,
            changes,
        }
    }
}

/// The X509-SVIDs each caller of a server is entitled to: a plain set of stores for
/// everyone ([`EveryCaller`]), a Workload API [`X509Source`](crate::workload::X509Source)
/// re-served, or an agent's registry that attests each caller
/// ([`Agent`](crate::agent::Agent)).
///
/// A server's stream [subscribes](Self::subscribe) when it begins and again whenever the
/// subscription's changes move, before every push; servers hold no SVID of their own.
pub trait Identities: Send + Sync {
    /// What `caller` receives now, its default first; empty when nothing is issued to it
    /// (the Workload API answers `PermissionDenied` "no identity issued"; SDS sends no
    /// certificate). An error refuses the caller outright.
    fn x509_svids(&self, caller: &Caller) -> Result<Vec<Identity>, Refused>;

    /// Moves whenever what any caller would receive may have changed.
    fn changes(&self) -> &Changes;

    /// What `caller` receives now, with changes that move when that may change: a
    /// server's stream pushes the identities, waits on the changes, then subscribes again
    /// (what concerns a caller can change with what it is entitled to). The changes are
    /// subscribed to before the identities are read, so nothing is missed in between.
    ///
    /// The default watches all of [`changes`](Self::changes); an agent with many entries
    /// looks at the caller once and watches only its own entries, so one rotation wakes
    /// only its own callers.
    fn subscribe(&self, caller: &Caller) -> Result<Subscription, Refused> {
        let mine = Arc::new(Changes::new());
        self.changes().forward_to(&mine);
        Ok(Subscription::new(self.x509_svids(caller)?, mine))
    }

    /// Whether [`x509_svids`](Self::x509_svids) and [`subscribe`](Self::subscribe) may
    /// block the thread (an agent attesting a caller reads `/proc` and may hash an
    /// executable). The servers then call them with the async worker's other tasks handed
    /// over first (`block_in_place`), which costs a thread handoff per call: an
    /// implementation that only reads memory answers `false`, and every stream of a
    /// rotation fanning out to a thousand callers is spared one. `true` unless overridden.
    fn may_block(&self) -> bool {
        true
    }
}

/// The trust bundles a server hands out (every caller gets the same).
pub trait Bundles: Send + Sync {
    /// The current bundles (`None`: none yet). Called on the servers' async workers (with
    /// [`Identities::may_block`]'s answer deciding for the whole call), so it must not
    /// block: hold the bundles in memory, as a `Watch` or a fixed set does.
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

    fn subscribe(&self, caller: &Caller) -> Result<Subscription, Refused> {
        (**self).subscribe(caller)
    }

    fn may_block(&self) -> bool {
        (**self).may_block()
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

    /// The stores' SVIDs are in memory.
    fn may_block(&self) -> bool {
        false
    }
}
