use std::fmt;
use std::future::Pending;
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::Duration;

use foldhash::fast::RandomState;
use parking_lot::Mutex;
use traffik_core::{
    Answer, Backend, Decision, Error, ErrorKind, Hit, Key, Limit, Strategy, Visitor, check_distinct,
};

use super::shard::{Shard, expiry_s, hash_key};

/// A shard on its own cache lines, so two cores working on two shards do not
/// slow each other down.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

struct Inner {
    shards: Box<[Padded]>,
    hasher: RandomState,
    shard_mask: usize,
    /// The most keys one shard holds (`usize::MAX`: no cap).
    shard_cap: usize,
    sweeper: OnceLock<Thread>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wake the sweeper so it sees the backend is gone and exits.
        if let Some(sweeper) = self.sweeper.get() {
            sweeper.unpark();
        }
    }
}

/// The sharded in-memory backend; see [the module docs](super) for expiry,
/// the key cap and memory use.
///
/// Cloning is cheap: clones share one store.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use traffik_backends::memory::MemoryBackend;
/// use traffik_core::Throttle;
///
/// let backend = MemoryBackend::builder().max_keys(1_000_000).build();
/// let api = Throttle::builder("api", "100/min".parse()?).build(backend)?;
/// assert!(api.hit("client-1").await?.is_allowed());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("shards", &self.inner.shards.len())
            .field("shard_cap", &self.inner.shard_cap)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryBackend {
    fn default() -> MemoryBackend {
        MemoryBackend::new()
    }
}

impl MemoryBackend {
    /// A backend with the default settings: see [`MemoryBackendBuilder`].
    pub fn new() -> MemoryBackend {
        MemoryBackend::builder().build()
    }

    /// Starts configuring a backend.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder {
            shards: None,
            max_keys: None,
            sweep_interval: Some(Duration::from_secs(5)),
        }
    }

    /// How many keys are stored, counting expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.0.lock().len())
            .sum()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many shards the keys are spread over.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Drops every key that expired by `now_ms` and returns how many. The
    /// backend sweeps by itself; this is for callers that want it now.
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.0.lock().sweep(now_ms, &self.inner.hasher))
            .sum()
    }

    #[inline]
    fn locate(&self, key: &Key<'_>) -> (u64, &Mutex<Shard>) {
        let hash = hash_key(&self.inner.hasher, key.scope().hash(), key.identity());
        (hash, &self.inner.shards[self.shard_of(hash)].0)
    }

    /// The shard of a key's hash: the index uses the low and the top bits;
    /// the shard takes the middle.
    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.inner.shard_mask
    }

    /// One decision for a key kept as a digest (bounded memory for
    /// over-long identities): off the hot path.
    #[cold]
    #[inline(never)]
    fn decide_stored(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Result<Decision, Error> {
        let identity = key.stored_identity();
        self.decide(&Key::new(key.scope(), &identity), limit, now_ms, cost)
    }

    /// One decision.
    #[inline(always)]
    fn decide(
        &self,
        key: &Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Result<Decision, Error> {
        limit.strategy().visit(Apply {
            backend: self,
            key,
            limit,
            now: now_ms,
            cost,
        })
    }
}

/// One hit under the shard's lock, generic over the strategy.
struct Apply<'a> {
    backend: &'a MemoryBackend,
    key: &'a Key<'a>,
    limit: &'a Limit,
    now: u64,
    cost: u64,
}

impl Visitor for Apply<'_> {
    type Output = Result<Decision, Error>;

    #[inline]
    fn visit<S: Strategy>(self, strategy: &S) -> Result<Decision, Error> {
        let (hash, shard) = self.backend.locate(self.key);
        let mut shard = shard.lock();
        apply_locked(self, strategy, hash, &mut shard)
    }
}

/// One hit on a shard whose lock the caller holds.
#[inline]
fn apply_locked<S: Strategy>(
    apply: Apply<'_>,
    strategy: &S,
    hash: u64,
    shard: &mut Shard,
) -> Result<Decision, Error> {
    let Apply {
        backend,
        key,
        limit,
        now,
        cost,
    } = apply;
    let inner = &backend.inner;
    let identity = key.identity();
    let rate = limit.rate();
    shard.latest_ms = shard.latest_ms.max(now);
    if let Some(slot) = shard.scopes.find(key.scope()) {
        let (table, _) = shard.table_mut::<S>();
        if let Some(at) = table.find(hash, slot, identity) {
            let entry = table.entry_mut(at);
            let decision = strategy.hit(rate, &mut entry.state, now, cost);
            if decision.reset_after_ms() == 0 {
                shard.remove::<S>(at, hash, &inner.hasher);
            } else {
                entry.expires_s = expiry_s(now, decision.reset_after_ms());
            }
            return Ok(decision);
        }
    }
    let mut state = S::State::default();
    let decision = strategy.hit(rate, &mut state, now, cost);
    if decision.reset_after_ms() == 0 {
        return Ok(decision);
    }
    let len = shard.len();
    if len >= shard.next_sweep_len.min(inner.shard_cap) {
        let at_cap = len >= inner.shard_cap;
        // At the cap, sweep at most once a second: a flood must not turn
        // every new key into a full scan.
        if !at_cap || shard.last_sweep_s < now / 1_000 {
            shard.sweep(now, &inner.hasher);
        }
        if shard.len() >= inner.shard_cap {
            return Err(Error::new(
                ErrorKind::Capacity,
                format!(
                    "the in-memory backend holds its maximum of keys; {:?} is new",
                    traffik_core::backend::key_prefix(&key.to_string())
                ),
            ));
        }
    }
    let expires = expiry_s(now, decision.reset_after_ms());
    shard.insert::<S>(hash, key.scope(), identity, expires, state, &inner.hasher);
    Ok(decision)
}

/// The decision a hit of `cost` would get on a shard whose lock the caller
/// holds, without counting it.
struct ObserveLocked<'a> {
    shard: &'a Shard,
    hash: u64,
    key: &'a Key<'a>,
    limit: &'a Limit,
    now: u64,
    cost: u64,
}

impl Visitor for ObserveLocked<'_> {
    type Output = Decision;

    fn visit<S: Strategy>(self, strategy: &S) -> Decision {
        let rate = self.limit.rate();
        let found = self.shard.scopes.find(self.key.scope()).and_then(|slot| {
            let table = self.shard.table::<S>()?;
            let at = table.find(self.hash, slot, self.key.identity())?;
            Some(strategy.peek(rate, &table.entry(at).state, self.now, self.cost))
        });
        found.unwrap_or_else(|| strategy.peek(rate, &S::State::default(), self.now, self.cost))
    }
}

/// Whether a key is stored, on a locked shard.
struct Present<'a> {
    shard: &'a Shard,
    hash: u64,
    key: &'a Key<'a>,
}

impl Visitor for Present<'_> {
    type Output = bool;

    fn visit<S: Strategy>(self, _: &S) -> bool {
        self.shard
            .scopes
            .find(self.key.scope())
            .is_some_and(|slot| {
                self.shard
                    .table::<S>()
                    .and_then(|table| table.find(self.hash, slot, self.key.identity()))
                    .is_some()
            })
    }
}

/// One hit of a combined decision on a locked shard.
struct ApplyLocked<'a> {
    apply: Apply<'a>,
    hash: u64,
    shard: &'a mut Shard,
}

impl Visitor for ApplyLocked<'_> {
    type Output = Result<Decision, Error>;

    fn visit<S: Strategy>(self, strategy: &S) -> Result<Decision, Error> {
        apply_locked(self.apply, strategy, self.hash, self.shard)
    }
}

impl MemoryBackend {
    /// Every hit at once, all or nothing, under the locks of every shard
    /// involved, taken in ascending order (so two combined decisions never
    /// wait for each other in a cycle).
    fn decide_all(&self, hits: &[Hit<'_>], now: u64) -> Result<Vec<Decision>, Error> {
        check_distinct(hits)?;
        let located: Vec<(u64, usize)> = hits
            .iter()
            .map(|hit| {
                let hash = hash_key(
                    &self.inner.hasher,
                    hit.key.scope().hash(),
                    hit.key.identity(),
                );
                (hash, self.shard_of(hash))
            })
            .collect();
        let mut order: Vec<usize> = located.iter().map(|&(_, shard)| shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order
            .iter()
            .map(|&index| self.inner.shards[index].0.lock())
            .collect();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or(0);
        // What each hit would get, on the state as it stands.
        let mut decisions: Vec<Decision> = hits
            .iter()
            .zip(&located)
            .map(|(hit, &(hash, shard))| {
                hit.limit.strategy().visit(ObserveLocked {
                    shard: &guards[guard_of(shard)],
                    hash,
                    key: &hit.key,
                    limit: hit.limit,
                    now,
                    cost: hit.cost,
                })
            })
            .collect();
        if !decisions.iter().all(Decision::is_allowed) {
            // None is charged: those that would pass show their quota as it is.
            for ((hit, &(hash, shard)), decision) in hits.iter().zip(&located).zip(&mut decisions) {
                if decision.is_allowed() {
                    *decision = hit.limit.strategy().visit(ObserveLocked {
                        shard: &guards[guard_of(shard)],
                        hash,
                        key: &hit.key,
                        limit: hit.limit,
                        now,
                        cost: 0,
                    });
                }
            }
            return Ok(decisions);
        }
        // Every hit passes. Room for the new keys first, so that no hit is
        // charged when one cannot be stored (with no cap there is always room).
        let capped = self.inner.shard_cap != usize::MAX;
        for (i, &shard) in order.iter().enumerate().filter(|_| capped) {
            let new_keys = hits
                .iter()
                .zip(&located)
                .filter(|(_, located)| located.1 == shard)
                .filter(|(hit, located)| {
                    !hit.limit.strategy().visit(Present {
                        shard: &guards[i],
                        hash: located.0,
                        key: &hit.key,
                    })
                })
                .count();
            let guard = &mut guards[i];
            if guard.len().saturating_add(new_keys) > self.inner.shard_cap {
                guard.sweep(now, &self.inner.hasher);
                if guard.len().saturating_add(new_keys) > self.inner.shard_cap {
                    return Err(Error::new(
                        ErrorKind::Capacity,
                        "the in-memory backend holds its maximum of keys; a combined decision \
                         needs room for its new keys",
                    ));
                }
            }
        }
        // Charge them all. The locks are still held, so each hit decides as
        // it was observed.
        for ((hit, &(hash, shard)), decision) in hits.iter().zip(&located).zip(&mut decisions) {
            *decision = hit.limit.strategy().visit(ApplyLocked {
                apply: Apply {
                    backend: self,
                    key: &hit.key,
                    limit: hit.limit,
                    now,
                    cost: hit.cost,
                },
                hash,
                shard: &mut guards[guard_of(shard)],
            })?;
        }
        Ok(decisions)
    }
}

/// The decision a hit would get, without counting it.
struct Observe<'a> {
    backend: &'a MemoryBackend,
    key: &'a Key<'a>,
    limit: &'a Limit,
    now: u64,
    cost: u64,
}

impl Visitor for Observe<'_> {
    type Output = Decision;

    fn visit<S: Strategy>(self, strategy: &S) -> Decision {
        let (hash, shard) = self.backend.locate(self.key);
        let shard = shard.lock();
        ObserveLocked {
            shard: &shard,
            hash,
            key: self.key,
            limit: self.limit,
            now: self.now,
            cost: self.cost,
        }
        .visit(strategy)
    }
}

/// Forgets a key.
struct Forget<'a> {
    backend: &'a MemoryBackend,
    key: &'a Key<'a>,
}

impl Visitor for Forget<'_> {
    type Output = ();

    fn visit<S: Strategy>(self, _: &S) {
        let (hash, shard) = self.backend.locate(self.key);
        let mut shard = shard.lock();
        let Some(slot) = shard.scopes.find(self.key.scope()) else {
            return;
        };
        let (table, _) = shard.table_mut::<S>();
        if let Some(at) = table.find(hash, slot, self.key.identity()) {
            shard.remove::<S>(at, hash, &self.backend.inner.hasher);
        }
    }
}

/// Every answer is ready at once: a decision never waits, and callers take
/// it with [`Answer::into_ready`] without an async context.
#[allow(refining_impl_trait)]
impl Backend for MemoryBackend {
    #[inline(always)]
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<Pending<Result<Decision, Error>>> {
        if key.is_stored_as_is() {
            return Answer::ready(self.decide(&key, limit, now_ms, cost));
        }
        Answer::ready(self.decide_stored(key, limit, now_ms, cost))
    }

    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<Pending<Result<Vec<Decision>, Error>>> {
        let identities: Vec<_> = hits.iter().map(|hit| hit.key.stored_identity()).collect();
        let hits: Vec<Hit<'_>> = hits
            .iter()
            .zip(&identities)
            .map(|(hit, identity)| Hit {
                key: Key::new(hit.key.scope(), identity),
                ..*hit
            })
            .collect();
        Answer::ready(self.decide_all(&hits, now_ms))
    }

    fn same_store(&self, other: &MemoryBackend) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn is_local(&self) -> bool {
        true
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<Pending<Result<Decision, Error>>> {
        let identity = key.stored_identity();
        let key = Key::new(key.scope(), &identity);
        Answer::ready(Ok(limit.strategy().visit(Observe {
            backend: self,
            key: &key,
            limit,
            now: now_ms,
            cost,
        })))
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        _now_ms: u64,
    ) -> Answer<Pending<Result<(), Error>>> {
        let identity = key.stored_identity();
        let key = Key::new(key.scope(), &identity);
        limit.strategy().visit(Forget {
            backend: self,
            key: &key,
        });
        Answer::ready(Ok(()))
    }
}

/// Configures a [`MemoryBackend`].
#[must_use]
pub struct MemoryBackendBuilder {
    shards: Option<usize>,
    max_keys: Option<usize>,
    sweep_interval: Option<Duration>,
}

impl fmt::Debug for MemoryBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackendBuilder")
            .field("shards", &self.shards)
            .field("max_keys", &self.max_keys)
            .field("sweep_interval", &self.sweep_interval)
            .finish_non_exhaustive()
    }
}

impl MemoryBackendBuilder {
    /// How many shards (rounded up to a power of two, at least 1). Default:
    /// four per available core, at least 16.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Caps the number of keys. The cap is applied per shard (`max_keys /
    /// shards`, rounded up), so the backend holds at most `max_keys` rounded
    /// up to a multiple of the shard count. At the cap a new key's hit fails
    /// with [`ErrorKind::Capacity`]; see [the module docs](super). Default:
    /// no cap (sweeping still bounds memory to about twice the live keys).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// How often the background thread sweeps expired keys (default: 5 s);
    /// `None` for no thread (shards still sweep themselves as they grow).
    ///
    /// The sweeper reads no clock of its own: it goes by the latest time a
    /// decision was made at, so a backend driven by a
    /// [`ManualClock`](traffik_core::ManualClock) (or any clock) never has
    /// a live key swept.
    pub fn sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The backend (and its sweeper thread, if any).
    pub fn build(self) -> MemoryBackend {
        let shards = self
            .shards
            .unwrap_or_else(|| {
                let cores = thread::available_parallelism().map_or(4, usize::from);
                (cores * 4).max(16)
            })
            .clamp(1, 1 << 16)
            .next_power_of_two();
        let shard_cap = self
            .max_keys
            .map_or(usize::MAX, |max| max.div_ceil(shards).max(1));
        let make_shard = || Padded(Mutex::new(Shard::new()));
        let interval = self.sweep_interval.filter(|i| !i.is_zero());
        let inner = Arc::new(Inner {
            shards: (0..shards).map(|_| make_shard()).collect(),
            hasher: RandomState::default(),
            shard_mask: shards - 1,
            shard_cap,
            sweeper: OnceLock::new(),
        });
        if let Some(sweeper) = interval.and_then(|i| spawn_sweeper(Arc::downgrade(&inner), i)) {
            let _ = inner.sweeper.set(sweeper);
        }
        MemoryBackend { inner }
    }
}

/// Starts the sweeper; it holds only a weak reference and exits once the
/// backend is gone. It sweeps by the latest time any shard decided at. Returns `None` if no thread could be started (the shards
/// still sweep themselves).
fn spawn_sweeper(backend: Weak<Inner>, interval: Duration) -> Option<Thread> {
    let handle = thread::Builder::new()
        .name("traffik-memory-sweeper".into())
        .spawn(move || {
            loop {
                thread::park_timeout(interval);
                let Some(inner) = backend.upgrade() else {
                    return;
                };
                // The backend's own time: the latest any decision was made at.
                let now = inner.shards.iter().map(|s| s.0.lock().latest_ms).max();
                for shard in inner.shards.iter() {
                    shard.0.lock().sweep(now.unwrap_or(0), &inner.hasher);
                }
            }
        })
        .ok()?;
    Some(handle.thread().clone())
}
