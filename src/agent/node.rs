//! [`Agent`]: registration entries, each kept issued by a rotator, served to the callers
//! an attestor says they match.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rustls_pki_types::SignatureVerificationAlgorithm;
use thiserror::Error;

use super::{Attestor, Entry, Registry};
use crate::bundle::{BundleError, BundleSet, X509Bundle};
use crate::rotate::{Issuer, RotationPolicy, RotationStatus, Rotator, RotatorConfig, SvidStore};
use crate::serve::{Bundles, Caller, Identities, Identity, Refused, Subscription};
use crate::watch::{Changes, Watch};
use crate::{Authority, SpiffeId, SvidRequest, SvidSource, TrustDomain, X509Svid};

/// Why an [`Agent`] could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The authority does not know its root (an intermediate loaded without its bundle),
    /// so no bundle can be served beside its SVIDs.
    #[error("the authority's root is unknown (an intermediate needs its bundle)")]
    UnknownRoot,
    /// The root does not make a bundle.
    #[error("the authority's root: {0}")]
    Bundle(#[from] BundleError),
    /// An entry names an ID outside the authority's trust domain.
    #[error("{id}: outside {authority}, the authority's trust domain")]
    OutsideTrustDomain {
        /// The entry's SPIFFE ID.
        id: SpiffeId,
        /// The authority's trust domain.
        authority: TrustDomain,
    },
    /// Some entries held no SVID in time.
    #[error("{id} (and {more} more): no SVID issued within {waited:?}{}", last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotIssued {
        /// The first entry without an SVID.
        id: SpiffeId,
        /// How many others lack one.
        more: usize,
        /// How long it waited.
        waited: Duration,
        /// The first entry's rotator's last error, if any.
        last_error: Option<String>,
    },
}

/// What a [`reload`](Agent::reload) changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// New entries (issued from now on).
    pub added: usize,
    /// Entries gone (withdrawn from their callers, no longer rotated).
    pub removed: usize,
    /// Entries kept as they were (their SVIDs and rotators untouched).
    pub kept: usize,
}

/// One entry kept issued: its store and the rotator renewing it.
struct Issued {
    entry: Entry,
    store: Arc<SvidStore>,
    rotator: Mutex<Option<Rotator>>,
}

impl Issued {
    fn stop(&self) {
        if let Some(rotator) = self
            .rotator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            rotator.stop();
        }
    }

    fn status(&self) -> RotationStatus {
        self.rotator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Rotator::status)
            .unwrap_or_default()
    }
}

/// Issues an entry's SVIDs: the authority, with the entry's DNS names.
struct EntryIssuer {
    ca: Arc<Authority>,
    dns_names: Vec<String>,
}

impl Issuer for EntryIssuer {
    fn issue_svid(
        &self,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<X509Svid, Box<dyn std::error::Error + Send + Sync>> {
        let request = self
            .dns_names
            .iter()
            .fold(SvidRequest::new().id(id.clone()).ttl(ttl), |r, name| {
                r.dns_name(name.clone())
            });
        Ok(self.ca.issue_for(&request)?)
    }
}

pub(crate) struct Inner {
    ca: Arc<Authority>,
    attestor: Arc<dyn Attestor>,
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    default_ttl: Duration,
    /// The entries in force, in file order; replaced whole on reload.
    issued: ArcSwap<Vec<Arc<Issued>>>,
    /// Serialises reloads.
    reloading: Mutex<()>,
    /// Bumped by every entry's store (forwarded) and by every reload.
    changes: Arc<Changes>,
    /// Bumped by every reload (and forwarded to `changes`).
    reloads: Changes,
    bundles: Watch<BundleSet>,
}

/// A node agent's identities: every registration entry kept issued by a local
/// [`Authority`] (one [`Rotator`] each, renewing at about half of each SVID's lifetime),
/// and each caller of a server handed only the entries its attested selectors match, in
/// file order (the first is its default). It is the [`Identities`] and [`Bundles`] of
/// [`WorkloadApiServer::from_sources`](crate::workload::WorkloadApiServer::from_sources)
/// and [`SdsServer::new`](crate::sds::SdsServer::new).
///
/// Callers are attested on every call, and again before every push on a stream: a caller
/// whose process has exited (or whose PID now names another process) is refused, and one
/// whose last entry is removed is told `PermissionDenied` and its streams end.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use meshid::agent::{Agent, Registry, UnixAttestor};
/// use meshid::serve::{Caller, Identities};
/// use meshid::{Authority, KeyType, TrustDomain};
///
/// let td = TrustDomain::new("example.org")?;
/// let ca = Arc::new(Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256)?);
/// let uid = std::fs::metadata("/proc/self")?.uid_of_owner();
/// # use std::os::unix::fs::MetadataExt as _;
/// # trait Owner { fn uid_of_owner(&self) -> u32; }
/// # impl Owner for std::fs::Metadata { fn uid_of_owner(&self) -> u32 { self.uid() } }
/// let entries = Registry::parse(
///     &format!("[[entry]]\nspiffe_id = \"spiffe://example.org/me\"\nselectors = [\"unix:uid:{uid}\"]\n"),
///     &td,
/// )?;
/// let agent = Agent::start(ca, &entries, Arc::new(UnixAttestor::new()), meshid::ring_algorithms())?;
/// let me = Caller::unix(std::process::id() as i32, uid, 0);
/// let mine = agent.x509_svids(&me)?;
/// assert_eq!(mine[0].svid.id().as_str(), "spiffe://example.org/me");
/// agent.stop();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("trust_domain", self.inner.ca.trust_domain())
            .field("entries", &self.inner.issued.load().len())
            .finish_non_exhaustive()
    }
}

impl Agent {
    #[cfg(feature = "metrics")]
    /// A reference that does not keep the agent alive (metrics read it on each scrape).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    #[cfg(feature = "metrics")]
    /// The agent a [`downgrade`](Self::downgrade)d reference points to.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// How long [`start`](Self::start) waits for every entry's first SVID.
    pub const FIRST_SVIDS_WITHIN: Duration = Duration::from_secs(30);

    /// Starts issuing every entry of `registry` from `ca`, each SVID verified against the
    /// authority's root with `algorithms` before it is served, callers attested by
    /// `attestor`; waits (at most [`Self::FIRST_SVIDS_WITHIN`]) until every entry holds
    /// an SVID. Entries without a `ttl` get [`Self::DEFAULT_TTL`].
    pub fn start(
        ca: Arc<Authority>,
        registry: &Registry,
        attestor: Arc<dyn Attestor>,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Result<Self, AgentError> {
        Self::start_with_ttl(ca, registry, attestor, algorithms, Self::DEFAULT_TTL)
    }

    /// The lifetime of an entry's SVIDs when the entry names none: 1 h (SPIRE's default
    /// X509-SVID TTL).
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// [`start`](Self::start), with `default_ttl` for entries that name no `ttl`.
    pub fn start_with_ttl(
        ca: Arc<Authority>,
        registry: &Registry,
        attestor: Arc<dyn Attestor>,
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
        default_ttl: Duration,
    ) -> Result<Self, AgentError> {
        check_trust_domain(registry, ca.trust_domain())?;
        let root = ca.root().cloned().ok_or(AgentError::UnknownRoot)?;
        let bundle = X509Bundle::from_authorities(ca.trust_domain().clone(), [root])?;
        let bundles = Watch::new();
        bundles.publish([bundle].into_iter().collect::<BundleSet>());
        let agent = Self {
            inner: Arc::new(Inner {
                ca,
                attestor,
                algorithms,
                default_ttl,
                issued: ArcSwap::from_pointee(Vec::new()),
                reloading: Mutex::new(()),
                changes: Arc::new(Changes::new()),
                reloads: Changes::new(),
                bundles,
            }),
        };
        agent.inner.reloads.forward_to(&agent.inner.changes);
        agent.reload(registry)?;
        if let Err(e) = agent.wait_issued(Self::FIRST_SVIDS_WITHIN) {
            agent.stop();
            return Err(e);
        }
        Ok(agent)
    }

    /// Puts `registry` in force: entries new to it start being issued (and are pushed to
    /// matching open streams once issued), entries gone from it stop being rotated and are
    /// withdrawn from their callers, and entries in both (same ID, selectors, TTL and DNS
    /// names) keep their SVID and rotator. A registry with an entry outside the
    /// authority's trust domain is refused whole, and the entries in force stay.
    pub fn reload(&self, registry: &Registry) -> Result<Reloaded, AgentError> {
        check_trust_domain(registry, self.inner.ca.trust_domain())?;
        let _one_at_a_time = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.inner.issued.load_full();
        let mut reloaded = Reloaded::default();
        let mut taken = vec![false; old.len()];
        let mut next = Vec::with_capacity(registry.entries().len());
        for entry in registry.entries() {
            let same = old
                .iter()
                .enumerate()
                .position(|(i, held)| !taken[i] && same_issuance(&held.entry, entry));
            #[allow(clippy::single_match_else)]
            let issued = match same {
                Some(i) => {
                    taken[i] = true;
                    reloaded.kept += 1;
                    if old[i].entry == *entry {
                        Arc::clone(&old[i])
                    } else {
                        // Issued the same way (the hint or the line changed): the same
                        // store and rotator, relabelled.
                        Arc::new(Issued {
                            entry: entry.clone(),
                            store: Arc::clone(&old[i].store),
                            rotator: Mutex::new(
                                old[i]
                                    .rotator
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .take(),
                            ),
                        })
                    }
                }
                None => {
                    reloaded.added += 1;
                    Arc::new(self.issue(entry))
                }
            };
            next.push(issued);
        }
        self.inner.issued.store(Arc::new(next));
        self.inner.reloads.notify();
        for (held, kept) in old.iter().zip(taken) {
            if !kept {
                reloaded.removed += 1;
                held.stop();
            }
        }
        tracing::info!(
            added = reloaded.added,
            removed = reloaded.removed,
            kept = reloaded.kept,
            "registration entries in force"
        );
        Ok(reloaded)
    }

    fn issue(&self, entry: &Entry) -> Issued {
        let store = Arc::new(SvidStore::new());
        store.changes().forward_to(&self.inner.changes);
        let rotator = Rotator::start(RotatorConfig {
            id: entry.spiffe_id().clone(),
            ttl: entry.ttl().unwrap_or(self.inner.default_ttl),
            policy: RotationPolicy::default(),
            issuer: Arc::new(EntryIssuer {
                ca: Arc::clone(&self.inner.ca),
                dns_names: entry.dns_names().to_vec(),
            }),
            bundles: Arc::new(
                self.inner
                    .bundles
                    .get()
                    .map(|b| (*b).clone())
                    .unwrap_or_default(),
            ),
            algorithms: self.inner.algorithms,
            store: Arc::clone(&store),
        });
        Issued {
            entry: entry.clone(),
            store,
            rotator: Mutex::new(Some(rotator)),
        }
    }

    /// Waits until every entry in force holds an SVID, at most `timeout`.
    pub fn wait_issued(&self, timeout: Duration) -> Result<(), AgentError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.inner.changes.generation();
            let issued = self.inner.issued.load();
            let missing: Vec<&Arc<Issued>> = issued
                .iter()
                .filter(|i| i.store.x509_svid().is_none())
                .collect();
            let Some(first) = missing.first() else {
                return Ok(());
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(AgentError::NotIssued {
                    id: first.entry.spiffe_id().clone(),
                    more: missing.len() - 1,
                    waited: timeout,
                    last_error: first.status().last_error,
                });
            }
            self.inner.changes.wait_for_change(seen, deadline - now);
        }
    }

    /// The entries in force, in order.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner
            .issued
            .load()
            .iter()
            .map(|i| i.entry.clone())
            .collect()
    }

    /// Each entry in force with its rotator's status.
    pub fn status(&self) -> Vec<(Entry, RotationStatus)> {
        self.inner
            .issued
            .load()
            .iter()
            .map(|i| (i.entry.clone(), i.status()))
            .collect()
    }

    /// The trust domain it issues for.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.inner.ca.trust_domain()
    }

    /// Stops every rotator (what is held stays served until it expires). Returns at once
    /// ([`Rotator::stop`]): safe on an async runtime's worker thread.
    pub fn stop(&self) {
        for issued in self.inner.issued.load().iter() {
            issued.stop();
        }
    }
}

/// Whether two entries are issued the same way (the hint is only a label).
fn same_issuance(a: &Entry, b: &Entry) -> bool {
    a.spiffe_id() == b.spiffe_id()
        && a.selectors() == b.selectors()
        && a.ttl() == b.ttl()
        && a.dns_names() == b.dns_names()
}

/// Refuses a registry with an entry outside `authority`.
fn check_trust_domain(registry: &Registry, authority: &TrustDomain) -> Result<(), AgentError> {
    if let Some(outside) = registry
        .entries()
        .iter()
        .find(|e| !e.spiffe_id().is_member_of(authority))
    {
        return Err(AgentError::OutsideTrustDomain {
            id: outside.spiffe_id().clone(),
            authority: authority.clone(),
        });
    }
    Ok(())
}

/// The SVIDs of `matched`, with their hints (entries not yet issued are skipped).
fn identities_of(matched: &[&Arc<Issued>]) -> Vec<Identity> {
    matched
        .iter()
        .filter_map(|i| {
            let svid = i.store.x509_svid()?;
            Some(Identity::new(svid).with_hint(i.entry.hint().unwrap_or_default()))
        })
        .collect()
}

impl Identities for Agent {
    fn x509_svids(&self, caller: &Caller) -> Result<Vec<Identity>, Refused> {
        let selectors = self.inner.attestor.attest(caller).map_err(Refused::new)?;
        let issued = self.inner.issued.load();
        let matched: Vec<&Arc<Issued>> = issued
            .iter()
            .filter(|i| selectors.includes(i.entry.selectors()))
            .collect();
        tracing::debug!(?caller, %selectors, entries = matched.len(), "caller attested");
        Ok(identities_of(&matched))
    }

    fn changes(&self) -> &Changes {
        &self.inner.changes
    }

    /// Attests `caller` once, then watches only the entries it matches (and reloads): with
    /// many entries, a rotation wakes only its own callers' streams.
    fn subscribe(&self, caller: &Caller) -> Result<Subscription, Refused> {
        let selectors = self.inner.attestor.attest(caller).map_err(Refused::new)?;
        let mine = Arc::new(Changes::new());
        // Reloads first, then the entries in force, then their SVIDs: nothing that happens
        // after the subscription is missed.
        self.inner.reloads.forward_to(&mine);
        let issued = self.inner.issued.load();
        let matched: Vec<&Arc<Issued>> = issued
            .iter()
            .filter(|i| selectors.includes(i.entry.selectors()))
            .collect();
        for issued in &matched {
            issued.store.changes().forward_to(&mine);
        }
        tracing::debug!(?caller, %selectors, entries = matched.len(), "caller attested");
        Ok(Subscription::new(identities_of(&matched), mine))
    }
}

impl Bundles for Agent {
    fn bundles(&self) -> Option<Arc<BundleSet>> {
        self.inner.bundles.get()
    }

    fn changes(&self) -> &Changes {
        self.inner.bundles.changes()
    }
}
