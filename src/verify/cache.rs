//! [`VerifiedChainCache`]: the verdicts of chains already verified, so a peer that connects
//! again does not pay path validation again.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256};

use super::{verify_parts, whole_seconds, Usage, Verified, VerifiedSvid, VerifyError};
use crate::{BundleSource, SpiffeId};

/// The number of independently locked parts of a cache: handshakes on different cores
/// rarely wait for each other.
const SHARDS: usize = 16;

/// A SHA-256 over everything a verdict depends on besides the bundle and the time.
type Key = [u8; 32];

/// A cache of successful X509-SVID verifications, keyed by the exact presented chain.
///
/// In a mesh the same peers connect again and again, each presenting the same chain until
/// it rotates. Path validation of that chain (two or more ECDSA verifications, about
/// 100 µs) gives the same answer every time while the bundle has not changed, so the
/// SPIFFE verifiers of [`crate::tls`] keep one of these by default, and
/// [`verify`](Self::verify) offers it to callers of [`verify_x509_svid_for`](crate::verify_x509_svid_for).
///
/// # What a hit checks, and why that is sound
///
/// An entry is made only after a full verification succeeded. It is found again only by a
/// SHA-256 over the **exact bytes** of every presented certificate, in order, together with
/// the [`Usage`] and the signature algorithms allowed (each `'static`, told apart by its
/// identifiers, its `Debug` text and its address): a chain that differs in one byte, or
/// is verified for another purpose or with other algorithms, is a different key. A hit
/// is then used only when all of the following hold; otherwise the chain is verified in
/// full again, exactly as without a cache:
///
/// 1. **The same bundle.** The bundle the source returns now for the leaf's trust domain
///    is the very bundle the chain was validated against (every bundle built in the
///    process has its own identity, so any change of a source's bundle, such as a rotation,
///    an authority removed, or a federated bundle refreshed, invalidates every entry of that
///    trust domain at once). A source that builds a new bundle on every call gets no hits,
///    never wrong ones; [`X509Source`](crate::workload::X509Source) keeps a bundle's identity
///    across updates that leave it unchanged.
/// 2. **The time.** The verification time lies within the validity window of the verified
///    path: at or after the latest notBefore, and at or before the earliest notAfter, of the
///    leaf, the intermediates the path went through and the bundle authority it ended at.
///    Within that window every certificate of the path is valid, so path validation would
///    succeed again; once any of them expires the entry is dropped.
///
/// The result is the cached SPIFFE ID, and the validity end of the path verified when the
/// entry was made (a chain that offers several valid paths may get another path's end
/// from a full verification). **Authorization is never cached**: the TLS verifiers
/// ask their [`Authorizer`](crate::Authorizer) on every handshake, hit or not. And rustls
/// still checks the peer's CertificateVerify signature over the handshake on every
/// connection with the leaf's public key: that signature, not the chain, proves the peer
/// holds the SVID's private key, and the cache never skips it. A cache hit therefore only
/// skips work whose answer is already known: signatures on certificates that have not
/// changed, checked against authorities that have not changed, at a time they are all valid.
///
/// # Bounds
///
/// A cache holds about `max_entries` entries and at most `max_bytes` bytes of entries (its
/// own accounting: the key, the entry and the SPIFFE ID, about 170 bytes with a short ID),
/// split evenly over 16 shards, each holding a 16th of both bounds rounded up. When a shard
/// is full it evicts by CLOCK, a recently used entry surviving one pass; an entry larger
/// than a shard's share of `max_bytes` is not stored. Only chains that verified are stored:
/// garbage fills nothing, though a peer can present a valid chain (certificates are public)
/// in many byte-different forms, each a separate entry, and so evict others: that costs
/// hits, never a wrong verdict. [`default`](Self::default) holds 4,096 entries in 4 MiB.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use meshid::{Authority, KeyType, SpiffeId, TrustDomain, Usage, VerifiedChainCache, X509Bundle};
///
/// let td = TrustDomain::new("example.org")?;
/// let ca = Authority::new_root(td.clone(), Duration::from_secs(3600), KeyType::P256)?;
/// let id = SpiffeId::new("spiffe://example.org/web")?;
/// let svid = ca.issue(&id, Duration::from_secs(600))?;
/// let bundle = X509Bundle::from_authorities(td, ca.root().cloned())?;
/// let algorithms = meshid::ring_algorithms();
///
/// let cache = VerifiedChainCache::default();
/// let now = SystemTime::now();
/// for _ in 0..3 {
///     let verified = cache.verify(svid.chain(), &bundle, now, algorithms, Usage::ClientAuth)?;
///     assert_eq!(verified.id(), &id);
/// }
/// let stats = cache.stats();
/// assert_eq!((stats.misses, stats.hits), (1, 2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct VerifiedChainCache {
    shards: Box<[Mutex<Shard>]>,
    /// The context [`verify`](Self::verify) last derived, and what it was derived from.
    memo: Mutex<Option<Memo>>,
    max_entries: usize,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// What a [`VerifiedChainCache`] holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainCacheStats {
    /// Verifications answered from the cache.
    pub hits: u64,
    /// Verifications done in full: no entry, or one whose bundle or time no longer allowed it.
    pub misses: u64,
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes held now, by the cache's own accounting.
    pub bytes: usize,
}

/// One verdict.
#[derive(Clone)]
struct Entry {
    id: SpiffeId,
    bundle: u64,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Entry {
    fn same(&self, other: &Self) -> bool {
        self.bundle == other.bundle
            && self.not_before == other.not_before
            && self.not_after == other.not_after
            && self.id == other.id
    }

    /// What the entry costs: its slot, its key in the index, and the ID's text.
    fn cost(&self) -> usize {
        std::mem::size_of::<Option<Slot>>()
            + std::mem::size_of::<(Key, usize)>()
            + self.id.as_str().len()
    }
}

struct Slot {
    key: Key,
    entry: Entry,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    index: HashMap<Key, usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    hand: usize,
    bytes: usize,
}

impl Shard {
    fn entries(&self) -> usize {
        self.index.len()
    }

    fn remove(&mut self, key: &Key) {
        if let Some(i) = self.index.remove(key) {
            if let Some(slot) = self.slots[i].take() {
                self.bytes -= slot.entry.cost();
            }
            self.free.push(i);
        }
    }

    /// Evicts one entry by CLOCK; false when the shard is empty.
    fn evict_one(&mut self) -> bool {
        if self.index.is_empty() {
            return false;
        }
        // Two passes at most: the first clears every reference bit it passes.
        for _ in 0..2 * self.slots.len() {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            match &mut self.slots[i] {
                Some(slot) if slot.referenced => slot.referenced = false,
                Some(slot) => {
                    let key = slot.key;
                    self.remove(&key);
                    return true;
                }
                None => {}
            }
        }
        false
    }

    fn insert(&mut self, key: Key, entry: Entry, max_entries: usize, max_bytes: usize) -> u64 {
        self.remove(&key);
        let cost = entry.cost();
        if cost > max_bytes || max_entries == 0 {
            return 0; // it would never fit: evict nothing for it
        }
        let mut evicted = 0;
        while !self.index.is_empty()
            && (self.entries() + 1 > max_entries || self.bytes + cost > max_bytes)
        {
            if !self.evict_one() {
                break;
            }
            evicted += 1;
        }
        if self.entries() + 1 > max_entries || self.bytes + cost > max_bytes {
            return evicted;
        }
        let slot = Some(Slot {
            key,
            entry,
            referenced: false,
        });
        let i = if let Some(i) = self.free.pop() {
            self.slots[i] = slot;
            i
        } else {
            self.slots.push(slot);
            self.slots.len() - 1
        };
        self.index.insert(key, i);
        self.bytes += cost;
        evicted
    }
}

impl Default for VerifiedChainCache {
    /// 4,096 entries in at most 4 MiB.
    fn default() -> Self {
        Self::new(4096, 4 << 20)
    }
}

impl fmt::Debug for VerifiedChainCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedChainCache")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl VerifiedChainCache {
    /// A cache of at most `max_entries` verdicts taking at most `max_bytes` bytes. Each of
    /// its 16 shards holds a 16th of each bound (rounded up), so a cache smaller than 16
    /// entries holds up to 16.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            memo: Mutex::new(None),
            max_entries,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// [`verify_x509_svid_for`](crate::verify_x509_svid_for) through the cache: the same
    /// verdict, from the cache when this exact chain was verified before against the same
    /// bundle and is still within its validity window (see the type's docs).
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        bundles: &(impl BundleSource + ?Sized),
        at: SystemTime,
        algorithms: &[&'static dyn SignatureVerificationAlgorithm],
        usage: Usage,
    ) -> Result<VerifiedSvid, VerifyError> {
        let (leaf, intermediates) = chain.split_first().ok_or(VerifyError::EmptyChain)?;
        let context = self.context(algorithms, usage);
        let verified = self.verify_parts(
            &context,
            leaf,
            intermediates,
            bundles,
            at,
            algorithms,
            usage,
        )?;
        Ok(VerifiedSvid::new(verified, chain))
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> ChainCacheStats {
        let (mut entries, mut bytes) = (0, 0);
        for shard in &self.shards {
            let shard = lock(shard);
            entries += shard.entries();
            bytes += shard.bytes;
        }
        ChainCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries,
            bytes,
        }
    }

    /// Drops every entry (the counters stay).
    pub fn clear(&self) {
        for shard in &self.shards {
            *lock(shard) = Shard::default();
        }
    }

    /// [`verify_parts`] through the cache.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn verify_parts(
        &self,
        context: &CacheContext,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        bundles: &(impl BundleSource + ?Sized),
        at: SystemTime,
        algorithms: &[&dyn SignatureVerificationAlgorithm],
        usage: Usage,
    ) -> Result<Verified, VerifyError> {
        let key = context.key(leaf, intermediates);
        if let Some(hit) = self.lookup(&key, bundles, at) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let verified = verify_parts(leaf, intermediates, bundles, at, algorithms, usage)?;
        self.insert(key, &verified);
        Ok(verified)
    }

    /// The context for `algorithms` and `usage`: the last one derived when they are the
    /// same algorithm objects (a caller passes the same list every time), else a new one.
    fn context(
        &self,
        algorithms: &[&'static dyn SignatureVerificationAlgorithm],
        usage: Usage,
    ) -> CacheContext {
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = memo.as_ref() {
            // The same objects: address and vtable (`ptr::eq` on `dyn` compares both).
            let same = m.usage == usage
                && m.algorithms.len() == algorithms.len()
                && m.algorithms
                    .iter()
                    .zip(algorithms)
                    .all(|(known, alg)| std::ptr::eq(*known, *alg));
            if same {
                return m.context.clone();
            }
        }
        let context = CacheContext::new(algorithms, usage);
        *memo = Some(Memo {
            usage,
            algorithms: algorithms.to_vec(),
            context: context.clone(),
        });
        context
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    fn per_shard(total: usize) -> usize {
        total.div_ceil(SHARDS)
    }

    /// The cached verdict for `key`, when its bundle is still the source's and `at` lies in
    /// its window; an entry that no longer holds is dropped.
    fn lookup(
        &self,
        key: &Key,
        bundles: &(impl BundleSource + ?Sized),
        at: SystemTime,
    ) -> Option<Verified> {
        let entry = {
            let mut shard = lock(self.shard(key));
            let i = *shard.index.get(key)?;
            let slot = shard.slots[i].as_mut()?;
            slot.referenced = true;
            slot.entry.clone()
        };
        // Whole seconds, as path validation compares them.
        let at = whole_seconds(at);
        let in_window = entry.not_before <= at && at <= entry.not_after;
        let same_bundle = in_window
            && bundles
                .x509_bundle(&entry.id.trust_domain())
                .is_some_and(|b| b.instance() == entry.bundle);
        if !same_bundle {
            // Unless another thread has stored a new verdict under the key meanwhile.
            let mut shard = lock(self.shard(key));
            let still = shard.index.get(key).and_then(|i| shard.slots[*i].as_ref());
            if still.is_some_and(|slot| slot.entry.same(&entry)) {
                shard.remove(key);
            }
            return None;
        }
        Some(Verified {
            id: entry.id,
            not_before: entry.not_before,
            not_after: entry.not_after,
            bundle: entry.bundle,
        })
    }

    fn insert(&self, key: Key, verified: &Verified) {
        let entry = Entry {
            id: verified.id.clone(),
            bundle: verified.bundle,
            not_before: verified.not_before,
            not_after: verified.not_after,
        };
        let evicted = lock(self.shard(&key)).insert(
            key,
            entry,
            Self::per_shard(self.max_entries),
            Self::per_shard(self.max_bytes),
        );
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Stores a verdict under an arbitrary chain: for tests of the bounds.
    #[cfg(test)]
    fn insert_for_test(&self, chain: &[&[u8]], verified: &Verified) {
        let mut h = Sha256::new();
        for c in chain {
            h.update((c.len() as u64).to_be_bytes());
            h.update(c);
        }
        self.insert(h.finalize().into(), verified);
    }
}

/// The last context [`VerifiedChainCache::verify`] derived.
struct Memo {
    usage: Usage,
    algorithms: Vec<&'static dyn SignatureVerificationAlgorithm>,
    context: CacheContext,
}

/// What a cache key binds besides the chain: the use verified and the algorithms allowed,
/// digested once per verifier.
#[derive(Clone)]
pub(crate) struct CacheContext {
    prefix: [u8; 33],
}

impl CacheContext {
    pub(crate) fn new(
        algorithms: &[&'static dyn SignatureVerificationAlgorithm],
        usage: Usage,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"meshid verified-chain cache: algorithms v2");
        for alg in algorithms {
            // The identifiers say what is checked; the `Debug` text (the type and its
            // settings) and the address say which code checks it: zero-sized algorithm
            // types may share an address, never a type name.
            let public_key = alg.public_key_alg_id();
            let signature = alg.signature_alg_id();
            let debug = format!("{alg:?}");
            for part in [public_key.as_ref(), signature.as_ref(), debug.as_bytes()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            let address = std::ptr::from_ref(*alg).cast::<()>() as usize;
            h.update((address as u64).to_be_bytes());
            h.update([u8::from(alg.fips())]);
        }
        let mut prefix = [0; 33];
        prefix[..32].copy_from_slice(&h.finalize());
        prefix[32] = match usage {
            Usage::ServerAuth => 1,
            Usage::ClientAuth => 2,
        };
        Self { prefix }
    }

    /// The key of a chain: every certificate's exact bytes, length-prefixed, in order.
    fn key(&self, leaf: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> Key {
        let mut h = Sha256::new();
        h.update(self.prefix);
        for cert in std::iter::once(leaf).chain(intermediates) {
            h.update((cert.len() as u64).to_be_bytes());
            h.update(cert.as_ref());
        }
        h.finalize().into()
    }
}

impl fmt::Debug for CacheContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheContext").finish_non_exhaustive()
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic under the lock leaves a consistent map (every update is a single step).
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn verified(id: &str) -> Verified {
        Verified {
            id: SpiffeId::new(id).unwrap(),
            bundle: 1,
            not_before: UNIX_EPOCH,
            not_after: UNIX_EPOCH + Duration::from_secs(1 << 40),
        }
    }

    #[test]
    fn stays_within_its_bounds_under_100_000_distinct_chains() {
        let cache = VerifiedChainCache::new(1000, 64 << 10);
        let v = verified("spiffe://example.org/ns/default/sa/a-fairly-long-service-name");
        let mut seen_evictions = 0;
        for i in 0..100_000_u32 {
            let leaf = i.to_be_bytes();
            cache.insert_for_test(&[&leaf, b"intermediate"], &v);
            let s = cache.stats();
            assert!(s.entries <= 1000 + SHARDS, "{s:?}");
            assert!(s.bytes <= (64 << 10) + SHARDS, "{s:?}");
            seen_evictions = s.evictions;
        }
        let s = cache.stats();
        assert!(s.entries > 100, "the cache still holds entries: {s:?}");
        assert_eq!(seen_evictions, 100_000 - s.entries as u64);
    }

    #[test]
    fn the_byte_bound_holds_for_long_ids() {
        // 4 KiB per shard: one 2 KiB ID each.
        let cache = VerifiedChainCache::new(1_000_000, 64 << 10);
        let long = format!("spiffe://example.org/{}", "x".repeat(2000));
        let v = verified(&long);
        for i in 0..10_000_u32 {
            cache.insert_for_test(&[&i.to_be_bytes()], &v);
            assert!(cache.stats().bytes <= 64 << 10);
        }
        assert!(cache.stats().entries >= 8);
    }

    #[test]
    fn an_entry_too_large_for_a_shard_is_not_stored() {
        let cache = VerifiedChainCache::new(100, 16 * 100);
        let long = format!("spiffe://example.org/{}", "x".repeat(2000));
        cache.insert_for_test(&[b"a"], &verified(&long));
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn clock_keeps_a_recently_used_entry() {
        // Two entries per shard; three keys of shard 0: a hit on the first makes the
        // second the one evicted when the third comes.
        let cache = VerifiedChainCache::new(2 * SHARDS, usize::MAX / 2);
        let entry = verified("spiffe://example.org/a");
        let key_of = |i: u32| {
            let mut h = Sha256::new();
            let b = i.to_be_bytes();
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
            let k: Key = h.finalize().into();
            k
        };
        let shard0: Vec<u32> = (0..10_000)
            .filter(|i| usize::from(key_of(*i)[0]) % SHARDS == 0)
            .take(3)
            .collect();
        let held = |i: u32| lock(cache.shard(&key_of(i))).index.contains_key(&key_of(i));
        let (first, second, third) = (shard0[0], shard0[1], shard0[2]);
        cache.insert_for_test(&[&first.to_be_bytes()], &entry);
        cache.insert_for_test(&[&second.to_be_bytes()], &entry);
        {
            let mut shard = lock(cache.shard(&key_of(first)));
            let i = shard.index[&key_of(first)];
            shard.slots[i].as_mut().unwrap().referenced = true;
        }
        cache.insert_for_test(&[&third.to_be_bytes()], &entry);
        assert!(held(first) && !held(second) && held(third));
        assert_eq!(cache.stats().evictions, 1);
    }

    /// Two zero-sized algorithm types (which may share an address) with the same
    /// identifiers, one accepting every signature: never the same context.
    #[derive(Debug)]
    struct Lenient;
    #[derive(Debug)]
    struct Strict;

    impl SignatureVerificationAlgorithm for Lenient {
        fn verify_signature(
            &self,
            _: &[u8],
            _: &[u8],
            _: &[u8],
        ) -> Result<(), rustls_pki_types::InvalidSignature> {
            Ok(())
        }
        fn public_key_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
            rustls_pki_types::alg_id::ECDSA_P256
        }
        fn signature_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
            rustls_pki_types::alg_id::ECDSA_SHA256
        }
    }

    impl SignatureVerificationAlgorithm for Strict {
        fn verify_signature(
            &self,
            _: &[u8],
            _: &[u8],
            _: &[u8],
        ) -> Result<(), rustls_pki_types::InvalidSignature> {
            Err(rustls_pki_types::InvalidSignature)
        }
        fn public_key_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
            rustls_pki_types::alg_id::ECDSA_P256
        }
        fn signature_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
            rustls_pki_types::alg_id::ECDSA_SHA256
        }
    }

    static LENIENT: Lenient = Lenient;
    static STRICT: Strict = Strict;

    #[test]
    fn look_alike_algorithms_never_share_a_context() {
        let lenient: &[&'static dyn SignatureVerificationAlgorithm] = &[&LENIENT];
        let strict: &[&'static dyn SignatureVerificationAlgorithm] = &[&STRICT];
        let (a, b) = (
            CacheContext::new(lenient, Usage::ClientAuth),
            CacheContext::new(strict, Usage::ClientAuth),
        );
        assert_ne!(a.prefix, b.prefix);
        // The memo of `verify` tells them apart too.
        let cache = VerifiedChainCache::default();
        let first = cache.context(lenient, Usage::ClientAuth);
        let second = cache.context(strict, Usage::ClientAuth);
        assert_eq!(first.prefix, a.prefix);
        assert_eq!(second.prefix, b.prefix);
        assert_ne!(
            cache.context(strict, Usage::ServerAuth).prefix,
            second.prefix
        );
    }
}
