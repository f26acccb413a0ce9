//! The JWT-SVID cache of the Workload API server (minted tokens) and of the
//! [`JwtSource`](super::JwtSource) (fetched tokens): one rule for both, a token is reused
//! until half its lifetime has passed.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::SystemTime;

use crate::jwt::JwtSvid;

/// What an entry costs beside its key and its token (the bookkeeping, roughly).
const ENTRY_OVERHEAD: usize = 64;

/// Tokens by key (an identity and an audience set), each reused until half its lifetime
/// has passed; bounded in entries and bytes (stale entries go first, then the oldest).
/// Entries belong to one generation of the JWT bundles: a token got under other bundles
/// (a key added or retired) is not reused.
pub(crate) struct TokenCache<K> {
    entries: HashMap<K, Cached>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The bundles' generation the entries were got under.
    generation: u64,
    next: u64,
}

struct Cached {
    svid: JwtSvid,
    refresh_at: SystemTime,
    size: usize,
    order: u64,
}

impl<K: Hash + Eq + Clone> TokenCache<K> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: HashMap::new(),
            bytes: 0,
            max_entries,
            max_bytes,
            generation: 0,
            next: 0,
        }
    }

    fn resync(&mut self, generation: u64) {
        if generation != self.generation {
            self.entries.clear();
            self.bytes = 0;
            self.generation = generation;
        }
    }

    /// The token cached under `key`, if it is not yet past half its lifetime at `now` and
    /// was got under bundles `generation`; a stale entry is dropped.
    pub(crate) fn get(&mut self, key: &K, now: SystemTime, generation: u64) -> Option<JwtSvid> {
        self.resync(generation);
        let cached = self.entries.get(key)?;
        if now < cached.refresh_at {
            return Some(cached.svid.clone());
        }
        let size = cached.size;
        self.entries.remove(key);
        self.bytes -= size;
        None
    }

    /// Caches `svid` under `key` (whose parts take `key_bytes`), got at `got`: reused until
    /// half of the time from its `iat` (else `got`) to its `exp` has passed. A token already
    /// past that, or larger than the whole cache, is not kept.
    pub(crate) fn insert(
        &mut self,
        key: K,
        key_bytes: usize,
        svid: JwtSvid,
        got: SystemTime,
        generation: u64,
    ) {
        self.resync(generation);
        let issued = svid.issued_at().unwrap_or(got);
        let life = svid.expiry().duration_since(issued).unwrap_or_default();
        let refresh_at = issued + life / 2;
        let size = ENTRY_OVERHEAD + key_bytes + svid.token().len();
        if size > self.max_bytes || self.max_entries == 0 || got >= refresh_at {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.bytes -= old.size;
        }
        if self.entries.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let before = self.entries.len();
            self.entries.retain(|_, c| got < c.refresh_at);
            if self.entries.len() != before {
                self.bytes = self.entries.values().map(|c| c.size).sum();
            }
        }
        while self.entries.len() >= self.max_entries || self.bytes + size > self.max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, c)| c.order)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(c) = self.entries.remove(&oldest) {
                self.bytes -= c.size;
            }
        }
        self.next += 1;
        self.bytes += size;
        self.entries.insert(
            key,
            Cached {
                svid,
                refresh_at,
                size,
                order: self.next,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(all(test, feature = "ca"))]
mod tests {
    use super::*;
    use crate::{Authority, JwtKey, KeyType, SpiffeId, TrustDomain};
    use std::time::Duration;

    type Key = (SpiffeId, Vec<String>);

    fn half_life(svid: &JwtSvid) -> Duration {
        let issued = svid.issued_at().unwrap();
        svid.expiry().duration_since(issued).unwrap() / 2
    }

    fn authority() -> Authority {
        Authority::new_root(
            TrustDomain::new("example.org").unwrap(),
            Duration::from_secs(3600),
            KeyType::P256,
        )
        .unwrap()
        .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap())
    }

    fn id(path: &str) -> SpiffeId {
        SpiffeId::new(&format!("spiffe://example.org/{path}")).unwrap()
    }

    fn key(path: &str, aud: &[String]) -> (Key, usize) {
        let id = id(path);
        let bytes = id.as_str().len() + aud.iter().map(String::len).sum::<usize>();
        ((id, aud.to_vec()), bytes)
    }

    fn put(cache: &mut TokenCache<Key>, path: &str, aud: &[String], svid: &JwtSvid) {
        let (k, bytes) = key(path, aud);
        cache.insert(k, bytes, svid.clone(), svid.issued_at().unwrap(), 0);
    }

    #[test]
    fn the_cache_reuses_until_half_life_and_stays_bounded() {
        let ca = authority();
        let aud = vec!["a".to_owned()];
        let svid = ca
            .mint_jwt_svid(&id("w"), &["a"], Duration::from_secs(60))
            .unwrap();
        let now = svid.issued_at().unwrap();
        let mut cache = TokenCache::new(3, 4 << 20);
        put(&mut cache, "w", &aud, &svid);
        assert_eq!(half_life(&svid), Duration::from_secs(30));
        let w = key("w", &aud).0;
        let hit = cache.get(&w, now + Duration::from_secs(29), 0);
        assert_eq!(hit.unwrap().token(), svid.token());
        assert!(cache.get(&key("w", &["b".to_owned()]).0, now, 0).is_none());
        assert!(cache.get(&w, now + Duration::from_secs(30), 0).is_none());
        assert_eq!(cache.len(), 0, "a stale entry is dropped when looked up");
        // Bounded in entries: the oldest goes.
        for n in 0..5 {
            put(&mut cache, &format!("w{n}"), &aud, &svid);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key("w0", &aud).0, now, 0).is_none());
        assert!(cache.get(&key("w4", &aud).0, now, 0).is_some());
        // Another bundles generation: nothing is reused.
        assert!(cache.get(&key("w4", &aud).0, now, 1).is_none());
        assert_eq!(cache.len(), 0);
        // Bounded in bytes: an entry larger than the cache is not kept.
        let mut small = TokenCache::new(10, 100);
        put(&mut small, "w", &aud, &svid);
        assert_eq!(small.len(), 0);
        let fits = ENTRY_OVERHEAD + id("w").as_str().len() + 1 + svid.token().len();
        let mut two = TokenCache::new(10, fits * 2);
        for n in 0..4 {
            put(&mut two, "w", &[format!("{n}")], &svid);
        }
        assert_eq!(two.len(), 2);
        assert!(two.bytes <= fits * 2);
        // A token already past half its life when got is not kept.
        let mut late = TokenCache::new(10, 4 << 20);
        let (k, bytes) = key("w", &aud);
        late.insert(k, bytes, svid.clone(), now + Duration::from_secs(30), 0);
        assert_eq!(late.len(), 0);
    }
}
