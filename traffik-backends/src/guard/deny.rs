//! The local deny cache: a key the store denied is denied in process until
//! its `retry_after`, without a round trip.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
use traffik_core::backend::Hit;
use traffik_core::{Decision, Key, Limit, Reason};

use crate::observe::LazyCounter;

const SHARDS: usize = 16;

/// One cached denial: of one hit, or of a whole combined decision.
struct Entry {
    /// Who, exactly: the keys, limits and costs it answers for.
    hits: Box<[(String, Limit, u64)]>,
    /// When it was made, on the caller's clock.
    at_ms: u64,
    /// Until when it stands.
    until_ms: u64,
    decisions: Box<[Decision]>,
}

/// Denials by the hash of what was asked (a single hit's by its key and
/// limit, so a refund can drop it), in bounded shards.
pub(crate) struct DenyCache {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    /// Combined decisions' denials, kept apart: a refund of any key drops
    /// them all.
    groups: Box<[Mutex<HashMap<u64, Entry>>]>,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
    /// `traffik_deny_cache_hits_total`: the denials it answered.
    answered: LazyCounter,
}

fn same(stored: &str, key: &Key<'_>) -> bool {
    let (tag, rest) = key.tag_and_rest();
    let prefix = key.scope().prefix();
    stored.len() == prefix.len() + tag.len() + rest.len() + 2
        && stored.starts_with(prefix)
        && stored[prefix.len() + 1..].starts_with(tag)
        && stored.ends_with(rest)
        && stored.as_bytes()[prefix.len()] == 0
        && stored.as_bytes()[prefix.len() + 1 + tag.len()] == 0
}

impl DenyCache {
    /// A cache of at most `capacity` denials (0: none) in front of a store
    /// of kind `backend` (a metric label).
    pub(crate) fn new(capacity: usize, backend: &'static str) -> DenyCache {
        DenyCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(foldhash::fast::RandomState::default())))
                .collect(),
            groups: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(foldhash::fast::RandomState::default())))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: foldhash::fast::RandomState::default(),
            answered: LazyCounter::new("traffik_deny_cache_hits_total", &[("backend", backend)]),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// A single hit's hash leaves its cost out (the entry checks it), so
    /// a refund, which knows the key and limit, finds it.
    fn hash(&self, hits: &[(&Key<'_>, &Limit, u64)]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for (key, limit, cost) in hits {
            key.scope().prefix().hash(&mut hasher);
            key.tag_and_rest().hash(&mut hasher);
            limit.hash(&mut hasher);
            if hits.len() > 1 {
                cost.hash(&mut hasher);
            }
        }
        hasher.finish()
    }

    fn shard(&self, hits: usize, hash: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        let maps = if hits > 1 { &self.groups } else { &self.shards };
        // A map of plain values: consistent after any panic.
        maps[(hash >> 60) as usize % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the denial that stands for `key` under `limit`, if any: a hit
    /// of another cost was admitted, and its figures moved.
    pub(crate) fn admitted(&self, key: &Key<'_>, limit: &Limit) {
        if !self.is_enabled() {
            return;
        }
        let hash = self.hash(&[(key, limit, 0)]);
        let mut shard = self.shard(1, hash);
        if !shard.is_empty() {
            shard.remove(&hash);
        }
    }

    /// Drops what stands for `key` under `limit` (a refund gave it room),
    /// and every combined decision's denial.
    pub(crate) fn forget(&self, key: &Key<'_>, limit: &Limit) {
        if !self.is_enabled() {
            return;
        }
        self.admitted(key, limit);
        for shard in self.groups.iter() {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !shard.is_empty() {
                shard.clear();
            }
        }
    }

    /// The cached answer to these hits at `now_ms`, if one stands: each
    /// decision aged by the time since it was made.
    fn lookup(&self, hits: &[(&Key<'_>, &Limit, u64)], now_ms: u64) -> Option<Vec<Decision>> {
        let hash = self.hash(hits);
        let mut shard = self.shard(hits.len(), hash);
        let entry = shard.get(&hash)?;
        let matches = entry.hits.len() == hits.len()
            && entry
                .hits
                .iter()
                .zip(hits)
                .all(|((text, limit, cost), (key, l, c))| {
                    same(text, key) && limit == *l && cost == c
                });
        if !matches {
            return None;
        }
        if now_ms >= entry.until_ms || now_ms < entry.at_ms {
            shard.remove(&hash);
            return None;
        }
        let elapsed = now_ms - entry.at_ms;
        self.answered.increment(1);
        Some(entry.decisions.iter().map(|d| aged(d, elapsed)).collect())
    }

    /// The cached denial of one hit.
    pub(crate) fn hit(
        &self,
        key: &Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Option<Decision> {
        if !self.is_enabled() {
            return None;
        }
        self.lookup(&[(key, limit, cost)], now_ms)?.pop()
    }

    /// The cached denial of a combined decision.
    pub(crate) fn hit_all(&self, hits: &[Hit<'_>], now_ms: u64) -> Option<Vec<Decision>> {
        if !self.is_enabled() {
            return None;
        }
        let asked: Vec<_> = hits.iter().map(|h| (&h.key, h.limit, h.cost)).collect();
        self.lookup(&asked, now_ms)
    }

    /// Remembers the store's answer to these hits if it is a denial for
    /// being over the limit: until the longest `retry_after` among them. A
    /// full shard first drops what has expired; if it is still full, the
    /// answer is not cached.
    pub(crate) fn remember(
        &self,
        hits: &[(&Key<'_>, &Limit, u64)],
        decisions: &[Decision],
        now_ms: u64,
    ) {
        if !self.is_enabled() {
            return;
        }
        let denied = decisions
            .iter()
            .filter(|d| !d.is_allowed() && d.reason() == Reason::OverLimit)
            .map(Decision::retry_after_ms)
            .max();
        let Some(wait) = denied else { return };
        let hash = self.hash(hits);
        let mut shard = self.shard(hits.len(), hash);
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, entry| entry.until_ms > now_ms);
            if shard.len() >= self.per_shard {
                return;
            }
        }
        shard.insert(
            hash,
            Entry {
                hits: hits
                    .iter()
                    .map(|(key, limit, cost)| (super::key_text(key), (*limit).clone(), *cost))
                    .collect(),
                at_ms: now_ms,
                until_ms: now_ms.saturating_add(wait),
                decisions: decisions.into(),
            },
        );
    }

    /// Forgets every cached denial (after a reset from this process).
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter().chain(self.groups.iter()) {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    /// How many denials are cached.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .chain(self.groups.iter())
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

/// `decision`, `elapsed` ms later: its waits shortened by that much.
fn aged(decision: &Decision, elapsed: u64) -> Decision {
    let reset = decision.reset_after_ms().saturating_sub(elapsed);
    if decision.is_allowed() {
        Decision::allowed(decision.limit(), decision.remaining(), reset)
    } else {
        let retry = decision.retry_after_ms().saturating_sub(elapsed);
        Decision::denied(decision.limit(), decision.remaining(), retry, reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffik_core::{FixedWindow, Scope};

    fn limit() -> Limit {
        Limit::new("2/min".parse().unwrap(), FixedWindow).unwrap()
    }

    #[test]
    fn a_denial_stands_until_its_retry_after_for_exactly_its_key() {
        let cache = DenyCache::new(100, "redis");
        let scope = Scope::new("ns", "api").unwrap();
        let (alice, bob) = (Key::new(&scope, "alice"), Key::new(&scope, "bob"));
        let limit = limit();
        let denial = Decision::denied(2, 0, 1_000, 1_000);
        cache.remember(&[(&alice, &limit, 1)], &[denial], 10_000);
        let seen = cache.hit(&alice, &limit, 10_400, 1).unwrap();
        assert_eq!((seen.retry_after_ms(), seen.is_allowed()), (600, false));
        assert!(cache.hit(&bob, &limit, 10_400, 1).is_none());
        assert!(
            cache.hit(&alice, &limit, 10_400, 2).is_none(),
            "another cost"
        );
        assert!(cache.hit(&alice, &limit, 11_000, 1).is_none(), "expired");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn only_denials_over_the_limit_are_kept_and_memory_is_bounded() {
        let cache = DenyCache::new(16, "redis");
        let scope = Scope::new("ns", "api").unwrap();
        let limit = limit();
        let key = Key::new(&scope, "k");
        let allowed = Decision::allowed(2, 1, 1_000);
        cache.remember(&[(&key, &limit, 1)], &[allowed], 0);
        let contended = Decision::contended(2, 1_000);
        cache.remember(&[(&key, &limit, 1)], &[contended], 0);
        assert_eq!(cache.len(), 0);
        let names: Vec<String> = (0..1_000).map(|i| format!("k{i}")).collect();
        for name in &names {
            let key = Key::new(&scope, name);
            cache.remember(&[(&key, &limit, 1)], &[Decision::denied(2, 0, 500, 500)], 0);
        }
        assert!(cache.len() <= 16, "{}", cache.len());
        // Expired entries make room again.
        let key = Key::new(&scope, "late");
        cache.remember(
            &[(&key, &limit, 1)],
            &[Decision::denied(2, 0, 500, 500)],
            600,
        );
        assert!(cache.hit(&key, &limit, 700, 1).is_some());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_key_cannot_pass_for_another_by_moving_its_separator() {
        let cache = DenyCache::new(100, "redis");
        let scope = Scope::new("ns", "api").unwrap();
        let limit = limit();
        let tagged = Key::with_tag(&scope, "ab", 1);
        let whole = Key::new(&scope, "ab");
        cache.remember(
            &[(&tagged, &limit, 1)],
            &[Decision::denied(2, 0, 500, 500)],
            0,
        );
        assert!(cache.hit(&whole, &limit, 10, 1).is_none());
        assert!(cache.hit(&tagged, &limit, 10, 1).is_some());
    }
}
