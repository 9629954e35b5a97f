use std::borrow::Cow;
use std::fmt;
use std::future::Pending;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::Duration;

use siphasher::sip128::{Hasher128, SipHasher13};
use traffik_core::strategy::State;
use traffik_core::{
    Answer, Backend, Decision, Error, ErrorKind, Hit, Key, Limit, Rate, Strategy, StrategyKind,
    Visitor, check_distinct,
};

use super::boxed::{Boxed, expiry_s, hash_key};
use super::hot::{HotKey, HotKeys};
use super::shard::{Shard, Writer};
use super::sync::{KeyHasher, MutexGuard};
use super::table::{Held, KeyId, Table};
use crate::observe::{LazyCounter, LazyGauge};

/// A shard on its own cache lines, so two cores working on two shards do not
/// slow each other down.
#[repr(align(128))]
struct Padded(Shard);

struct Inner {
    shards: Box<[Padded]>,
    /// The hasher of every table's keys (seeded at random per backend).
    hasher: KeyHasher,
    /// The keyed hash that digests identities over 16 bytes, with keys
    /// drawn at random for this backend, so no client can aim at another's
    /// digest.
    keys: SipHasher13,
    shard_mask: usize,
    /// The most keys one shard holds (`usize::MAX`: no cap).
    shard_cap: usize,
    /// Live keys evicted to make room at the cap.
    evictions: std::sync::atomic::AtomicU64,
    /// `traffik_memory_evictions_total` and `traffik_memory_keys`.
    evicted_metric: LazyCounter,
    keys_metric: LazyGauge,
    /// The keys denied most often, when asked for.
    hot: Option<HotKeys>,
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

/// The longest identity a word table keeps as it is (two words); longer
/// ones are kept as a keyed 128-bit digest.
const INLINE_IDENTITY: usize = 16;

/// The identity-length value of a digested identity.
const DIGESTED: u64 = 31;

/// Where the strategy and the identity's length sit in a key's lock-word
/// bits.
const KIND_SHIFT: u32 = 2;
const LEN_SHIFT: u32 = 8;

/// Up to 16 bytes in two words, with overlapping reads that cover every
/// byte: for a given length (which the key keeps beside them) different
/// bytes give different words.
#[inline(always)]
fn pack(bytes: &[u8]) -> [u64; 2] {
    let n = bytes.len();
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let half = |at: usize| {
        bytes.get(at..at + 4).map_or(0, |b| {
            u64::from(u32::from_le_bytes(b.try_into().unwrap_or_default()))
        })
    };
    let byte = |at: usize| bytes.get(at).map_or(0, |&b| u64::from(b));
    match n {
        0 => [0, 0],
        1..=3 => [byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16, 0],
        4..=8 => [half(0) | half(n - 4) << 32, 0],
        _ => [word(0), word(n.saturating_sub(8))],
    }
}

/// The entry lane of the calling thread: threads are numbered as they
/// first insert a key, so keys first seen by different threads sit in
/// different lanes (and hits from those threads write different lines).
fn current_lane() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    LANE.with(|lane| *lane)
}

/// Two random 64-bit keys for the digest of long identities, from the
/// standard library's per-process random seed.
fn digest_keys() -> SipHasher13 {
    let seed = std::collections::hash_map::RandomState::new();
    SipHasher13::new_with_keys(seed.hash_one(0u8), seed.hash_one(1u8))
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
            hot_keys: None,
        }
    }

    /// How many keys are stored, counting expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.0.writer.lock().len())
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

    /// How many live keys were evicted to make room for new ones at the
    /// [cap](MemoryBackendBuilder::max_keys), those closest to expiry first.
    pub fn evictions(&self) -> u64 {
        self.inner
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The `n` keys denied most often since the backend was built (or
    /// [`clear_hot_keys`](MemoryBackend::clear_hot_keys)), most first:
    /// who is hammering a limit. Counted only when the builder asked for it
    /// ([`hot_keys`](MemoryBackendBuilder::hot_keys)); empty otherwise.
    /// Approximate: see [`HotKey::error`].
    pub fn hottest(&self, n: usize) -> Vec<HotKey> {
        self.inner
            .hot
            .as_ref()
            .map_or_else(Vec::new, |hot| hot.hottest(n))
    }

    /// `decision`, counted in the hot keys when it is a denial and they are
    /// counted: an admitted hit pays one test of its own decision.
    #[inline(always)]
    fn noted(&self, key: &Key<'_>, decision: Decision) -> Decision {
        if !decision.is_allowed() {
            self.count_denial(key);
        }
        decision
    }

    #[cold]
    #[inline(never)]
    fn count_denial(&self, key: &Key<'_>) {
        if let Some(hot) = &self.inner.hot {
            hot.denied(key);
        }
    }

    /// Forgets the hot keys' counts.
    pub fn clear_hot_keys(&self) {
        if let Some(hot) = &self.inner.hot {
            hot.clear();
        }
    }

    /// Drops every key that expired by `now_ms` and returns how many. The
    /// backend sweeps by itself; this is for callers that want it now.
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| {
                let mut writer = shard.0.writer.lock();
                shard.0.sweep(&mut writer, now_ms, &self.inner.hasher)
            })
            .sum()
    }

    /// The shard a key of strategy `kind` lives in, in `0..shard_count()`.
    /// Which shard is drawn at random per backend (the hash is seeded), so
    /// this is for diagnostics and benchmarks, such as giving each thread
    /// keys of its own shards.
    pub fn shard_of(&self, key: Key<'_>, kind: StrategyKind) -> usize {
        self.shard_index(&self.key_id(&key, kind))
    }

    /// A key as the word tables keep it: the scope's hash and the identity,
    /// packed as it is up to 16 bytes, else its keyed 128-bit SipHash-1-3
    /// digest (any length; nothing more of it is stored).
    #[inline(always)]
    fn key_id(&self, key: &Key<'_>, kind: StrategyKind) -> KeyId {
        let identity = key.identity().as_bytes();
        let (words, len) = if identity.len() <= INLINE_IDENTITY {
            (pack(identity), identity.len() as u64)
        } else {
            (self.digest(identity), DIGESTED)
        };
        let meta = ((kind.index() as u64) << KIND_SHIFT) | (len << LEN_SHIFT);
        KeyId::new(
            &self.inner.hasher,
            [key.scope().hash(), words[0], words[1]],
            meta,
        )
    }

    /// The keyed digest of a long identity.
    #[cold]
    #[inline(never)]
    fn digest(&self, identity: &[u8]) -> [u64; 2] {
        let mut hasher = self.inner.keys;
        hasher.write(identity);
        let hash = hasher.finish128();
        [hash.h1, hash.h2]
    }

    /// The shard of a key: the index uses the hash's low and top bits; the
    /// shard takes bits 32 and up.
    #[inline(always)]
    fn shard_index(&self, id: &KeyId) -> usize {
        (id.hash >> 32) as usize & self.inner.shard_mask
    }

    #[inline(always)]
    fn shard(&self, id: &KeyId) -> &Shard {
        &self.inner.shards[self.shard_index(id)].0
    }

    /// Room for `new` more keys in a shard whose mutex the caller holds:
    /// sweeps when [`Writer::wants_sweep`] says so, and at the cap at most
    /// once a second (a flood must not turn every new key into a full scan).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Capacity`] when the shard is full of live keys.
    fn make_room(
        &self,
        shard: &Shard,
        writer: &mut Writer,
        now: u64,
        new: usize,
        key: Option<&Key<'_>>,
    ) -> Result<(), Error> {
        let cap = self.inner.shard_cap;
        let over_cap = |writer: &Writer| writer.len().saturating_add(new) > cap;
        if !writer.wants_sweep(new) && !over_cap(writer) {
            writer.inserted(new);
            return Ok(());
        }
        if !over_cap(writer) || writer.last_sweep_s < now / 1_000 {
            shard.sweep(writer, now, &self.inner.hasher);
        }
        if over_cap(writer) {
            let want = writer.len().saturating_add(new).saturating_sub(cap);
            let evicted = shard.evict(writer, want, &self.inner.hasher);
            self.inner
                .evictions
                .fetch_add(evicted as u64, std::sync::atomic::Ordering::Relaxed);
            self.inner.evicted_metric.increment(evicted as u64);
        }
        if over_cap(writer) {
            return Err(capacity_error(key));
        }
        writer.inserted(new);
        Ok(())
    }
}

#[cold]
fn capacity_error(key: Option<&Key<'_>>) -> Error {
    let message = match key {
        Some(key) => format!(
            "the in-memory backend holds its maximum of keys; {:?} is new",
            traffik_core::backend::key_prefix(&key.to_string())
        ),
        None => "the in-memory backend holds its maximum of keys; a combined decision needs room \
                 for its new keys"
            .to_owned(),
    };
    Error::new(ErrorKind::Capacity, message)
}

/// The state of a held entry, `strategy`'s hit applied, written back.
#[inline(always)]
fn apply_held<S: Strategy, const W: usize>(
    mut held: Held<'_>,
    strategy: &S,
    rate: &Rate,
    now: u64,
    cost: u64,
) -> Decision {
    let mut words = [0u64; W];
    held.read(&mut words);
    let mut state = S::State::from_words(&words);
    let decision = strategy.hit(rate, &mut state, now, cost);
    if decision.reset_after_ms() == 0 {
        // As good as new: the key reads as one never hit (which is what the
        // strategies' tables promise, even where time has saturated) until
        // a sweep frees its entry.
        state = S::State::default();
    }
    state.to_words(&mut words);
    held.write(&words, expiry_s(now, decision.reset_after_ms()));
    decision
}

/// A held entry with `strategy`'s refund applied, written back with the
/// time to live its state now has.
fn refund_held<S: Strategy, const W: usize>(mut held: Held<'_>, strategy: &S, refund: &Refund<'_>) {
    let mut words = [0u64; W];
    held.read(&mut words);
    let mut state = S::State::from_words(&words);
    let rate = refund.limit.rate();
    strategy.refund(rate, &mut state, refund.now, refund.charged, refund.cost);
    let ttl = strategy.peek(rate, &state, refund.now, 0).reset_after_ms();
    if ttl == 0 {
        state = S::State::default();
    }
    state.to_words(&mut words);
    held.write(&words, expiry_s(refund.now, ttl));
}

/// What a held entry's state would give a hit of `cost`, unchanged.
#[inline]
fn peek_held<S: Strategy, const W: usize>(
    held: &Held<'_>,
    strategy: &S,
    rate: &Rate,
    now: u64,
    cost: u64,
) -> Decision {
    let mut words = [0u64; W];
    held.read(&mut words);
    strategy.peek(rate, &S::State::from_words(&words), now, cost)
}

/// Why a table of some width is missing. It cannot be: widths are 2 or 3
/// by construction (checked at compile time in [`MemoryBackend::hit_words`]),
/// and were it ever otherwise the error must not be a store failure, which a
/// failure policy could turn into an admission.
#[cold]
fn no_table() -> Error {
    Error::new(
        ErrorKind::Config,
        "the in-memory backend has no table of this state width",
    )
}

impl MemoryBackend {
    /// One hit of a strategy whose state is `W` words.
    #[inline(always)]
    fn hit_words<S: Strategy, const W: usize>(
        &self,
        strategy: &S,
        key: &Key<'_>,
        limit: &Limit,
        now: u64,
        cost: u64,
    ) -> Result<Decision, Error> {
        const { assert!(W == 2 || W == 3, "word tables hold 2 or 3 words") };
        let id = self.key_id(key, S::KIND);
        let shard = self.shard(&id);
        shard.note_time(now);
        let Some(table) = shard.words::<W>() else {
            return Err(no_table());
        };
        // A known key: its entry alone is written.
        if let Some(held) = table.hold(&id) {
            let decision = apply_held::<S, W>(held, strategy, limit.rate(), now, cost);
            return Ok(self.noted(key, decision));
        }
        self.hit_words_locked::<S, W>(strategy, shard, table, &id, key, limit, now, cost)
            .map(|decision| self.noted(key, decision))
    }

    /// A hit that missed without the lock: a new key, or one the index was
    /// being rebuilt around.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn hit_words_locked<S: Strategy, const W: usize>(
        &self,
        strategy: &S,
        shard: &Shard,
        table: &Table<W>,
        id: &KeyId,
        key: &Key<'_>,
        limit: &Limit,
        now: u64,
        cost: u64,
    ) -> Result<Decision, Error> {
        let mut writer = shard.writer.lock();
        if let Some(held) = table.hold(id) {
            return Ok(apply_held::<S, W>(held, strategy, limit.rate(), now, cost));
        }
        let (rate, key) = (limit.rate(), Some(key));
        hit_new::<S, W>(
            strategy,
            table,
            &mut writer,
            id,
            rate,
            now,
            cost,
            key,
            |writer| self.make_room(shard, writer, now, 1, key),
        )
    }

    /// One hit of a strategy whose state has no fixed size, under the
    /// shard's mutex.
    fn hit_boxed<S: Strategy>(
        &self,
        strategy: &S,
        key: &Key<'_>,
        limit: &Limit,
        now: u64,
        cost: u64,
    ) -> Result<Decision, Error> {
        let id = self.key_id(key, S::KIND);
        let shard = self.shard(&id);
        shard.note_time(now);
        let mut writer = shard.writer.lock();
        let identity = key.stored_identity();
        let stored = Key::new(key.scope(), &identity);
        self.apply_boxed(strategy, shard, &mut writer, &stored, limit, now, cost)
    }

    /// One hit on the boxed tables of a shard whose mutex the caller holds.
    #[allow(clippy::too_many_arguments)]
    fn apply_boxed<S: Strategy>(
        &self,
        strategy: &S,
        shard: &Shard,
        writer: &mut Writer,
        key: &Key<'_>,
        limit: &Limit,
        now: u64,
        cost: u64,
    ) -> Result<Decision, Error> {
        let hasher = &self.inner.hasher;
        let hash = hash_key(hasher, key.scope().hash(), key.identity());
        let rate = limit.rate();
        let boxed = &mut writer.boxed;
        if let Some(slot) = boxed.scopes.find(key.scope()) {
            let (table, _) = boxed.table_mut::<S>();
            if let Some(at) = table.find(hash, slot, key.identity()) {
                let entry = table.entry_mut(at);
                let decision = strategy.hit(rate, &mut entry.state, now, cost);
                if decision.reset_after_ms() == 0 {
                    boxed.remove::<S>(at, hash, hasher);
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
        self.make_room(shard, writer, now, 1, Some(key))?;
        let expires = expiry_s(now, decision.reset_after_ms());
        writer
            .boxed
            .insert::<S>(hash, key.scope(), key.identity(), expires, state, hasher);
        Ok(decision)
    }

    /// What a hit would get, without counting it.
    fn observe<S: Strategy>(
        &self,
        strategy: &S,
        key: &Key<'_>,
        limit: &Limit,
        now: u64,
        cost: u64,
    ) -> Decision {
        let id = self.key_id(key, S::KIND);
        let shard = self.shard(&id);
        let rate = limit.rate();
        match S::State::WORDS {
            2 => self.observe_words::<S, 2>(strategy, shard, &id, rate, now, cost),
            3 => self.observe_words::<S, 3>(strategy, shard, &id, rate, now, cost),
            _ => {
                let writer = shard.writer.lock();
                let identity = key.stored_identity();
                observe_boxed(
                    strategy,
                    &writer.boxed,
                    &Key::new(key.scope(), &identity),
                    limit,
                    now,
                    cost,
                    &self.inner.hasher,
                )
            }
        }
    }

    fn observe_words<S: Strategy, const W: usize>(
        &self,
        strategy: &S,
        shard: &Shard,
        id: &KeyId,
        rate: &Rate,
        now: u64,
        cost: u64,
    ) -> Decision {
        let Some(table) = shard.words::<W>() else {
            return strategy.peek(rate, &S::State::default(), now, cost);
        };
        let found = |table: &Table<W>| {
            table
                .hold(id)
                .map(|held| peek_held::<S, W>(&held, strategy, rate, now, cost))
        };
        found(table).unwrap_or_else(|| {
            // A miss without the lock may be a rebuild: look again under it.
            let _writer = shard.writer.lock();
            found(table).unwrap_or_else(|| strategy.peek(rate, &S::State::default(), now, cost))
        })
    }

    /// Forgets a key.
    fn forget<S: Strategy>(&self, key: &Key<'_>) {
        let id = self.key_id(key, S::KIND);
        let shard = self.shard(&id);
        let mut writer = shard.writer.lock();
        match S::State::WORDS {
            2 => forget_words::<2>(shard, &mut writer, &id),
            3 => forget_words::<3>(shard, &mut writer, &id),
            _ => {
                if let Some((at, hash)) = self.boxed_entry::<S>(&mut writer.boxed, key) {
                    writer.boxed.remove::<S>(at, hash, &self.inner.hasher);
                }
            }
        }
    }

    /// Where `key` (as the caller gave it: a long identity is digested
    /// here) is in a shard's boxed table, with its hash; `None` when the
    /// shard does not hold it.
    fn boxed_entry<S: Strategy>(&self, boxed: &mut Boxed, key: &Key<'_>) -> Option<(usize, u64)> {
        let identity = key.stored_identity();
        let key = Key::new(key.scope(), &identity);
        let hash = hash_key(&self.inner.hasher, key.scope().hash(), key.identity());
        let slot = boxed.scopes.find(key.scope())?;
        let (table, _) = boxed.table_mut::<S>();
        let at = table.find(hash, slot, key.identity())?;
        Some((at, hash))
    }
}

fn forget_words<const W: usize>(shard: &Shard, writer: &mut Writer, id: &KeyId) {
    if let Some(table) = shard.words::<W>() {
        table.remove(writer.words::<W>(), id);
    }
}

/// What a hit would get on the boxed tables of a locked shard.
fn observe_boxed<S: Strategy>(
    strategy: &S,
    boxed: &Boxed,
    key: &Key<'_>,
    limit: &Limit,
    now: u64,
    cost: u64,
    hasher: &KeyHasher,
) -> Decision {
    let rate = limit.rate();
    let hash = hash_key(hasher, key.scope().hash(), key.identity());
    let found = boxed.scopes.find(key.scope()).and_then(|slot| {
        let table = boxed.table::<S>()?;
        let at = table.find(hash, slot, key.identity())?;
        Some(strategy.peek(rate, &table.entry(at).state, now, cost))
    });
    found.unwrap_or_else(|| strategy.peek(rate, &S::State::default(), now, cost))
}

/// One hit, dispatched by the width of the strategy's state.
struct Apply<'a> {
    backend: &'a MemoryBackend,
    key: &'a Key<'a>,
    limit: &'a Limit,
    now: u64,
    cost: u64,
}

impl Visitor for Apply<'_> {
    type Output = Result<Decision, Error>;

    #[inline(always)]
    fn visit<S: Strategy>(self, strategy: &S) -> Result<Decision, Error> {
        let Apply {
            backend,
            key,
            limit,
            now,
            cost,
        } = self;
        match S::State::WORDS {
            2 => backend.hit_words::<S, 2>(strategy, key, limit, now, cost),
            3 => backend.hit_words::<S, 3>(strategy, key, limit, now, cost),
            _ => backend
                .hit_boxed(strategy, key, limit, now, cost)
                .map(|decision| backend.noted(key, decision)),
        }
    }
}

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
        self.backend
            .observe(strategy, self.key, self.limit, self.now, self.cost)
    }
}

struct Forget<'a> {
    backend: &'a MemoryBackend,
    key: &'a Key<'a>,
}

impl Visitor for Forget<'_> {
    type Output = ();

    fn visit<S: Strategy>(self, _: &S) {
        self.backend.forget::<S>(self.key);
    }
}

/// Gives back a cost an admitted hit took.
struct Refund<'a> {
    backend: &'a MemoryBackend,
    key: &'a Key<'a>,
    limit: &'a Limit,
    now: u64,
    charged: u64,
    cost: u64,
}

impl Visitor for Refund<'_> {
    type Output = ();

    fn visit<S: Strategy>(self, strategy: &S) {
        match S::State::WORDS {
            2 => self.backend.refund_words::<S, 2>(strategy, &self),
            3 => self.backend.refund_words::<S, 3>(strategy, &self),
            _ => self.backend.refund_boxed(strategy, &self),
        }
    }
}

impl MemoryBackend {
    /// A refund on a word table: nothing to do for a key not stored (it
    /// expired, or was reset).
    fn refund_words<S: Strategy, const W: usize>(&self, strategy: &S, refund: &Refund<'_>) {
        let id = self.key_id(refund.key, S::KIND);
        let shard = self.shard(&id);
        let Some(table) = shard.words::<W>() else {
            return;
        };
        if let Some(held) = table.hold(&id) {
            return refund_held::<S, W>(held, strategy, refund);
        }
        // A miss without the lock may be a rebuild: look again under it.
        let _writer = shard.writer.lock();
        if let Some(held) = table.hold(&id) {
            refund_held::<S, W>(held, strategy, refund);
        }
    }

    /// A refund on the boxed tables, under the shard's mutex.
    fn refund_boxed<S: Strategy>(&self, strategy: &S, refund: &Refund<'_>) {
        let id = self.key_id(refund.key, S::KIND);
        let shard = self.shard(&id);
        let mut writer = shard.writer.lock();
        let hasher = &self.inner.hasher;
        let boxed = &mut writer.boxed;
        let Some((at, hash)) = self.boxed_entry::<S>(boxed, refund.key) else {
            return;
        };
        let (table, _) = boxed.table_mut::<S>();
        let rate = refund.limit.rate();
        let entry = table.entry_mut(at);
        strategy.refund(
            rate,
            &mut entry.state,
            refund.now,
            refund.charged,
            refund.cost,
        );
        let ttl = strategy
            .peek(rate, &entry.state, refund.now, 0)
            .reset_after_ms();
        if ttl == 0 {
            boxed.remove::<S>(at, hash, hasher);
        } else {
            entry.expires_s = expiry_s(refund.now, ttl);
        }
    }
}

/// Where a hit of a combined decision stands between observing and
/// charging: its entry held, a new key of a word table, or a boxed key.
enum Slot<'a> {
    Held(Held<'a>),
    New,
    Boxed,
}

/// Observes one hit of a combined decision, holding its entry.
struct GroupObserve<'a, 'g> {
    backend: &'a MemoryBackend,
    shard: &'a Shard,
    writer: &'g Writer,
    id: &'g KeyId,
    hit: &'g Hit<'g>,
    identity: &'g str,
    now: u64,
}

impl<'a> Visitor for GroupObserve<'a, '_> {
    type Output = (Decision, Slot<'a>, bool);

    fn visit<S: Strategy>(self, strategy: &S) -> (Decision, Slot<'a>, bool) {
        let rate = self.hit.limit.rate();
        let (now, cost) = (self.now, self.hit.cost);
        let words = |held: Option<Held<'a>>, peek: &dyn Fn(&Held<'a>) -> Decision| match held {
            Some(held) => (peek(&held), Slot::Held(held), false),
            None => (
                strategy.peek(rate, &S::State::default(), now, cost),
                Slot::New,
                true,
            ),
        };
        match S::State::WORDS {
            2 => {
                let held = self.shard.words::<2>().and_then(|t| t.hold(self.id));
                words(held, &|held| {
                    peek_held::<S, 2>(held, strategy, rate, now, cost)
                })
            }
            3 => {
                let held = self.shard.words::<3>().and_then(|t| t.hold(self.id));
                words(held, &|held| {
                    peek_held::<S, 3>(held, strategy, rate, now, cost)
                })
            }
            _ => {
                let key = Key::new(self.hit.key.scope(), self.identity);
                let hasher = &self.backend.inner.hasher;
                let boxed = &self.writer.boxed;
                let hash = hash_key(hasher, key.scope().hash(), key.identity());
                let present = boxed.scopes.find(key.scope()).is_some_and(|slot| {
                    boxed
                        .table::<S>()
                        .and_then(|table| table.find(hash, slot, key.identity()))
                        .is_some()
                });
                let decision =
                    observe_boxed(strategy, boxed, &key, self.hit.limit, now, cost, hasher);
                (decision, Slot::Boxed, !present)
            }
        }
    }
}

/// Charges one hit of a combined decision that every limit admitted.
struct GroupApply<'a, 'g> {
    backend: &'a MemoryBackend,
    shard: &'a Shard,
    writer: &'g mut Writer,
    slot: Slot<'a>,
    id: &'g KeyId,
    hit: &'g Hit<'g>,
    identity: &'g str,
    now: u64,
}

impl Visitor for GroupApply<'_, '_> {
    type Output = Result<Decision, Error>;

    fn visit<S: Strategy>(self, strategy: &S) -> Result<Decision, Error> {
        let rate = self.hit.limit.rate();
        let (now, cost) = (self.now, self.hit.cost);
        match (self.slot, S::State::WORDS) {
            (Slot::Held(held), 2) => Ok(apply_held::<S, 2>(held, strategy, rate, now, cost)),
            (Slot::Held(held), 3) => Ok(apply_held::<S, 3>(held, strategy, rate, now, cost)),
            (Slot::New, 2) => {
                group_new::<S, 2>(strategy, self.shard, self.writer, self.id, rate, now, cost)
            }
            (Slot::New, 3) => {
                group_new::<S, 3>(strategy, self.shard, self.writer, self.id, rate, now, cost)
            }
            _ => {
                let key = Key::new(self.hit.key.scope(), self.identity);
                self.backend.apply_boxed(
                    strategy,
                    self.shard,
                    self.writer,
                    &key,
                    self.hit.limit,
                    now,
                    cost,
                )
            }
        }
    }
}

/// A hit on a key the table does not hold, on a shard whose mutex the
/// caller holds: decided on a fresh state, then the key stored in the
/// calling thread's lane, once `room` has made room for it, unless the hit
/// leaves it as good as new (nothing to keep).
#[allow(clippy::too_many_arguments)]
fn hit_new<S: Strategy, const W: usize>(
    strategy: &S,
    table: &Table<W>,
    writer: &mut Writer,
    id: &KeyId,
    rate: &Rate,
    now: u64,
    cost: u64,
    key: Option<&Key<'_>>,
    room: impl FnOnce(&mut Writer) -> Result<(), Error>,
) -> Result<Decision, Error> {
    let mut state = S::State::default();
    let decision = strategy.hit(rate, &mut state, now, cost);
    if decision.reset_after_ms() == 0 {
        return Ok(decision);
    }
    room(writer)?;
    let mut words = [0u64; W];
    state.to_words(&mut words);
    let expires = expiry_s(now, decision.reset_after_ms());
    if !table.insert(writer.words::<W>(), id, &words, expires, current_lane()) {
        return Err(capacity_error(key));
    }
    Ok(decision)
}

/// A new key of a combined decision, room having been made for every new
/// key before any was charged.
fn group_new<S: Strategy, const W: usize>(
    strategy: &S,
    shard: &Shard,
    writer: &mut Writer,
    id: &KeyId,
    rate: &Rate,
    now: u64,
    cost: u64,
) -> Result<Decision, Error> {
    let table = shard.words::<W>().ok_or_else(no_table)?;
    hit_new::<S, W>(strategy, table, writer, id, rate, now, cost, None, |_| {
        Ok(())
    })
}

impl MemoryBackend {
    /// Every hit at once, all or nothing. The mutexes of every shard
    /// involved are taken in ascending order (so two combined decisions
    /// never wait for each other in a cycle), then every known key's entry
    /// is held, so a lone hit on one of them waits until all are charged.
    fn decide_all(&self, hits: &[Hit<'_>], now: u64) -> Result<Vec<Decision>, Error> {
        check_distinct(hits)?;
        let identities: Vec<Cow<'_, str>> =
            hits.iter().map(|hit| hit.key.stored_identity()).collect();
        let located: Vec<(KeyId, usize)> = hits
            .iter()
            .map(|hit| {
                let id = self.key_id(&hit.key, hit.limit.strategy().kind());
                let shard = self.shard_index(&id);
                (id, shard)
            })
            .collect();
        let mut order: Vec<usize> = located.iter().map(|&(_, shard)| shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<MutexGuard<'_, Writer>> = order
            .iter()
            .map(|&index| self.inner.shards[index].0.writer.lock())
            .collect();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or(0);
        // What each hit would get, on the state as it stands, entries held.
        let mut decisions = Vec::with_capacity(hits.len());
        let mut slots = Vec::with_capacity(hits.len());
        let mut new_keys = vec![0usize; order.len()];
        for ((hit, (id, shard)), identity) in hits.iter().zip(&located).zip(&identities) {
            let (decision, slot, new) = hit.limit.strategy().visit(GroupObserve {
                backend: self,
                shard: &self.inner.shards[*shard].0,
                writer: &guards[guard_of(*shard)],
                id,
                hit,
                identity,
                now,
            });
            decisions.push(decision);
            slots.push(slot);
            new_keys[guard_of(*shard)] += usize::from(new);
        }
        if !decisions.iter().all(Decision::is_allowed) {
            if let Some(hot) = &self.inner.hot {
                for (hit, decision) in hits.iter().zip(&decisions) {
                    if !decision.is_allowed() {
                        hot.denied(&hit.key);
                    }
                }
            }
            // None is charged: those that would pass show their quota as it is.
            drop(slots);
            for ((hit, (id, shard)), (decision, identity)) in hits
                .iter()
                .zip(&located)
                .zip(decisions.iter_mut().zip(&identities))
            {
                if decision.is_allowed() {
                    let zero = Hit { cost: 0, ..*hit };
                    *decision = hit
                        .limit
                        .strategy()
                        .visit(GroupObserve {
                            backend: self,
                            shard: &self.inner.shards[*shard].0,
                            writer: &guards[guard_of(*shard)],
                            id,
                            hit: &zero,
                            identity,
                            now,
                        })
                        .0;
                }
            }
            return Ok(decisions);
        }
        // Every hit passes. Room for the new keys first, so that no hit is
        // charged when one cannot be stored.
        for ((guard, &index), &new) in guards.iter_mut().zip(&order).zip(&new_keys) {
            if new > 0 {
                self.make_room(&self.inner.shards[index].0, guard, now, new, None)?;
            }
        }
        // Charge them all, the entries still held.
        for (((hit, (id, shard)), slot), (decision, identity)) in hits
            .iter()
            .zip(&located)
            .zip(slots)
            .zip(decisions.iter_mut().zip(&identities))
        {
            *decision = hit.limit.strategy().visit(GroupApply {
                backend: self,
                shard: &self.inner.shards[*shard].0,
                writer: &mut guards[guard_of(*shard)],
                slot,
                id,
                hit,
                identity,
                now,
            })?;
        }
        Ok(decisions)
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
        Answer::ready(limit.strategy().visit(Apply {
            backend: self,
            key: &key,
            limit,
            now: now_ms,
            cost,
        }))
    }

    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<Pending<Result<Vec<Decision>, Error>>> {
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
        Answer::ready(Ok(limit.strategy().visit(Observe {
            backend: self,
            key: &key,
            limit,
            now: now_ms,
            cost,
        })))
    }

    fn refund(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<Pending<Result<(), Error>>> {
        limit.strategy().visit(Refund {
            backend: self,
            key: &key,
            limit,
            now: now_ms,
            charged: charged_ms,
            cost,
        });
        Answer::ready(Ok(()))
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        _now_ms: u64,
    ) -> Answer<Pending<Result<(), Error>>> {
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
    hot_keys: Option<usize>,
}

impl fmt::Debug for MemoryBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackendBuilder")
            .field("shards", &self.shards)
            .field("max_keys", &self.max_keys)
            .field("sweep_interval", &self.sweep_interval)
            .field("hot_keys", &self.hot_keys)
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
    /// up to a multiple of the shard count. At the cap a new key evicts the
    /// keys closest to expiry ([`MemoryBackend::evictions`] counts them);
    /// see [the module docs](super). Default:
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

    /// Counts the keys denied most often, in about `capacity` counters (at
    /// most 4,096; Space-Saving: every key denied more than `1/capacity` of
    /// all denials is listed, and none is undercounted), for [`MemoryBackend::hottest`]. Off by default; when
    /// on, a denial costs a few tens of nanoseconds more (a striped lock and
    /// a scan of its counters), an admitted hit nothing.
    pub fn hot_keys(mut self, capacity: usize) -> Self {
        self.hot_keys = Some(capacity);
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
        let hasher = KeyHasher::default();
        let interval = self.sweep_interval.filter(|i| !i.is_zero());
        let inner = Arc::new(Inner {
            shards: (0..shards).map(|_| Padded(Shard::new(&hasher))).collect(),
            hasher,
            keys: digest_keys(),
            shard_mask: shards - 1,
            shard_cap,
            evictions: std::sync::atomic::AtomicU64::new(0),
            evicted_metric: LazyCounter::new("traffik_memory_evictions_total", &[]),
            keys_metric: LazyGauge::new("traffik_memory_keys", &[]),
            hot: self.hot_keys.map(HotKeys::new),
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
                let now = inner.shards.iter().map(|s| s.0.latest_ms()).max();
                let mut keys = 0;
                for shard in inner.shards.iter() {
                    let mut writer = shard.0.writer.lock();
                    shard.0.sweep(&mut writer, now.unwrap_or(0), &inner.hasher);
                    keys += writer.len();
                }
                inner.keys_metric.set(keys as f64);
            }
        })
        .ok()?;
    Some(handle.thread().clone())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::pack;

    proptest! {
        /// Two identities of one length (the key keeps the length beside
        /// the words) pack alike only if they are alike.
        #[test]
        fn packing_is_injective_for_each_length(
            a in proptest::collection::vec(any::<u8>(), 0..=16),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..3),
        ) {
            let mut b = a.clone();
            for (at, by) in flips {
                if !b.is_empty() {
                    let at = at.index(b.len());
                    b[at] ^= by;
                }
            }
            prop_assert_eq!(a == b, pack(&a) == pack(&b), "{:?} {:?}", a, b);
        }
    }

    #[test]
    fn every_byte_of_every_length_counts() {
        for n in 0..=16usize {
            let zeros = vec![0u8; n];
            for at in 0..n {
                let mut one = zeros.clone();
                one[at] = 1;
                assert_ne!(pack(&zeros), pack(&one), "byte {at} of {n} is not read");
            }
        }
    }
}
