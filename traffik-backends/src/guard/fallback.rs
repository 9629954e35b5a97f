//! The fallback limiter of a remote store, and its ledger of what it
//! admitted, to charge the store with when it answers again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
use traffik_core::backend::Hit;
use traffik_core::{Backend, Decision, Error, Key, Limit, Scope};

use crate::memory::MemoryBackend;

/// Hits the fallback admitted for one key and limit, within one period.
pub(crate) struct Owed {
    pub(crate) scope: Scope,
    pub(crate) identity: String,
    pub(crate) tag: usize,
    pub(crate) limit: Limit,
    /// When the first of them was admitted.
    since_ms: u64,
    pub(crate) cost: u64,
}

impl Owed {
    pub(crate) fn key(&self) -> Key<'_> {
        Key::with_tag(&self.scope, &self.identity, self.tag)
    }
}

/// An in-memory limiter of each limit's share, and the ledger.
pub(crate) struct Fallback {
    memory: MemoryBackend,
    ledger: Mutex<HashMap<(String, Limit), Owed>>,
    max_owed: usize,
    owes: AtomicBool,
}

impl Fallback {
    /// A fallback holding at most `max_keys` keys, and owing at most as many.
    pub(crate) fn new(max_keys: usize) -> Fallback {
        Fallback {
            memory: MemoryBackend::builder()
                .max_keys(max_keys.max(1))
                .sweep_interval(Some(std::time::Duration::from_secs(5)))
                .build(),
            ledger: Mutex::new(HashMap::with_hasher(foldhash::fast::RandomState::default())),
            max_owed: max_keys.max(1),
            owes: AtomicBool::new(false),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Limit), Owed>> {
        // Plain values: consistent after any panic.
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that the fallback admitted `cost` for `key` under `limit`.
    fn owe(&self, key: &Key<'_>, limit: &Limit, now_ms: u64, cost: u64) {
        if cost == 0 {
            return;
        }
        let period = limit.rate().period_ms();
        let mut ledger = self.ledger();
        let id = (super::key_text(key), limit.clone());
        if let Some(owed) = ledger.get_mut(&id) {
            if now_ms.saturating_sub(owed.since_ms) >= period {
                owed.since_ms = now_ms;
                owed.cost = 0;
            }
            owed.cost = owed.cost.saturating_add(cost);
        } else if ledger.len() < self.max_owed {
            let owed = Owed {
                scope: key.scope().clone(),
                identity: key.identity().to_owned(),
                tag: key.tag_and_rest().0.len(),
                limit: limit.clone(),
                since_ms: now_ms,
                cost,
            };
            ledger.insert(id, owed);
        }
        self.owes.store(true, Ordering::Release);
    }

    /// The fallback's decision of a hit, when the limit has a fallback.
    pub(crate) fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
        peek: bool,
    ) -> Option<Result<Decision, Error>> {
        let share = limit.share(limit.fallback()?);
        let answer = if peek {
            self.memory.peek(key, &share, now_ms, cost)
        } else {
            self.memory.hit(key, &share, now_ms, cost)
        };
        // The in-memory backend always answers at once.
        let decided = answer.into_ready().ok()?;
        Some(decided.map(|decision| {
            if decision.is_allowed() && !peek {
                self.owe(&key, limit, now_ms, cost);
            }
            Decision::via_fallback(decision)
        }))
    }

    /// The fallback's decision of a combined decision, when every limit in
    /// it has a fallback.
    pub(crate) fn hit_all(
        &self,
        hits: &[Hit<'_>],
        now_ms: u64,
    ) -> Option<Result<Vec<Decision>, Error>> {
        let shares: Vec<Limit> = hits
            .iter()
            .map(|hit| hit.limit.fallback().map(|n| hit.limit.share(n)))
            .collect::<Option<_>>()?;
        let asked = hits
            .iter()
            .zip(&shares)
            .map(|(hit, share)| Hit {
                key: hit.key,
                limit: share,
                cost: hit.cost,
            })
            .collect();
        let decided = self.memory.hit_all(asked, now_ms).into_ready().ok()?;
        Some(decided.map(|decisions| {
            if decisions.iter().all(Decision::is_allowed) {
                for hit in hits {
                    self.owe(&hit.key, hit.limit, now_ms, hit.cost);
                }
            }
            decisions.into_iter().map(Decision::via_fallback).collect()
        }))
    }

    /// Whether anything is owed to the store.
    pub(crate) fn owes(&self) -> bool {
        self.owes.load(Ordering::Acquire)
    }

    /// Takes what is owed and still counts at `now_ms`: hits admitted within
    /// the last period of their limit.
    pub(crate) fn take(&self, now_ms: u64) -> Vec<Owed> {
        if !self.owes.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        self.ledger()
            .drain()
            .map(|(_, owed)| owed)
            .filter(|owed| now_ms.saturating_sub(owed.since_ms) < owed.limit.rate().period_ms())
            .collect()
    }

    /// Puts back what could not be charged yet.
    pub(crate) fn restore(&self, owed: impl IntoIterator<Item = Owed>) {
        let mut ledger = self.ledger();
        for owed in owed {
            let id = (super::key_text(&owed.key()), owed.limit.clone());
            ledger.entry(id).or_insert(owed);
        }
        if !ledger.is_empty() {
            self.owes.store(true, Ordering::Release);
        }
    }

    /// Forgets a key, in the fallback's counts and in what is owed for it
    /// (a reset gives it a fresh budget everywhere).
    pub(crate) fn forget(&self, key: Key<'_>, limit: &Limit, now_ms: u64) {
        if let Some(instances) = limit.fallback() {
            let _ = self
                .memory
                .reset(key, &limit.share(instances), now_ms)
                .into_ready();
        }
        let id = super::key_text(&key);
        self.ledger().retain(|(owed, _), _| *owed != id);
    }

    /// How many keys are owed.
    pub(crate) fn owed_keys(&self) -> usize {
        self.ledger().len()
    }
}
