//! One shard: a table of entries per strategy, and its sweeping.
//!
//! A table keeps its entries densely in a `Vec` and looks them up through a
//! hash index of 4-byte positions. A hash table's load factor (between 44%
//! and 87%) then applies to those 4 bytes and one control byte, not to the
//! whole entry, which is what keeps a key smaller than in a plain hash map.

use std::hash::BuildHasher;

use compact_str::CompactString;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use traffik_core::strategy::{
    FixedWindowState, GcraState, LeakyBucketState, SlidingWindowCounterState,
    SlidingWindowLogState, TokenBucketState,
};
use traffik_core::{
    FixedWindow, Gcra, LeakyBucket, SlidingWindowCounter, SlidingWindowLog, Strategy, TokenBucket,
};

/// A shard does not sweep itself before it holds this many keys.
pub(super) const MIN_SWEEP_LEN: usize = 64;

/// One key's state.
pub(super) struct Entry<S> {
    identity: CompactString,
    scope: u32,
    /// Whole seconds since the epoch, rounded up, after which the state is
    /// as good as new and may be dropped.
    pub(super) expires_s: u32,
    pub(super) state: S,
}

impl<S> Entry<S> {
    pub(super) fn new(scope: u32, identity: &str, expires_s: u32, state: S) -> Entry<S> {
        Entry {
            identity: identity.into(),
            scope,
            expires_s,
            state,
        }
    }

    #[inline]
    fn is(&self, scope: u32, identity: &str) -> bool {
        self.scope == scope && self.identity == identity
    }

    #[inline]
    fn hash(&self, hasher: &RandomState) -> u64 {
        hash_key(hasher, self.scope, &self.identity)
    }
}

/// The hash of a key: the same for lookups and for stored entries.
#[inline]
pub(super) fn hash_key(hasher: &RandomState, scope: u32, identity: &str) -> u64 {
    hasher.hash_one((scope, identity))
}

/// `now_ms + ttl_ms`, in whole seconds rounded up.
#[inline]
pub(super) fn expiry_s(now_ms: u64, ttl_ms: u64) -> u32 {
    let ms = now_ms.saturating_add(ttl_ms);
    u32::try_from(ms.div_ceil(1_000)).unwrap_or(u32::MAX)
}

/// Entries of one strategy, dense, with a hash index of their positions.
pub(super) struct Table<S> {
    index: HashTable<u32>,
    entries: Vec<Entry<S>>,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Table {
            index: HashTable::new(),
            entries: Vec::new(),
        }
    }
}

impl<S> Table<S> {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The position of a key's entry.
    #[inline]
    pub(super) fn find(&self, hash: u64, scope: u32, identity: &str) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(hash, |&at| entries[at as usize].is(scope, identity))
            .map(|&at| at as usize)
    }

    #[inline]
    pub(super) fn entry_mut(&mut self, at: usize) -> &mut Entry<S> {
        &mut self.entries[at]
    }

    #[inline]
    pub(super) fn entry(&self, at: usize) -> &Entry<S> {
        &self.entries[at]
    }

    /// Adds an entry for a key that is not in the table.
    pub(super) fn insert(&mut self, hash: u64, entry: Entry<S>, hasher: &RandomState) {
        let at = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(entry);
        let entries = &self.entries;
        self.index
            .insert_unique(hash, at, |&i| entries[i as usize].hash(hasher));
    }

    /// Removes the entry at `at` (with hash `hash`); the last entry moves
    /// into its place.
    pub(super) fn remove(&mut self, at: usize, hash: u64, hasher: &RandomState) {
        let at32 = at as u32;
        if let Ok(slot) = self.index.find_entry(hash, |&i| i == at32) {
            slot.remove();
        }
        let last = self.entries.len() - 1;
        self.entries.swap_remove(at);
        if at != last {
            let moved_hash = self.entries[at].hash(hasher);
            let last32 = last as u32;
            if let Some(slot) = self.index.find_mut(moved_hash, |&i| i == last32) {
                *slot = at32;
            }
        }
    }

    /// Drops every entry for which `live` is false; gives memory back when
    /// the table has shrunk to a quarter of its capacity.
    fn retain(&mut self, live: impl Fn(&Entry<S>) -> bool, hasher: &RandomState) {
        let mut at = 0;
        while at < self.entries.len() {
            if live(&self.entries[at]) {
                at += 1;
            } else {
                let hash = self.entries[at].hash(hasher);
                self.remove(at, hash, hasher);
            }
        }
        if self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
            let entries = &self.entries;
            self.index
                .shrink_to(entries.len() * 2, |&i| entries[i as usize].hash(hasher));
        }
    }
}

#[derive(Default)]
pub(super) struct Shard {
    fixed_window: Table<FixedWindowState>,
    sliding_window_counter: Table<SlidingWindowCounterState>,
    sliding_window_log: Table<SlidingWindowLogState>,
    token_bucket: Table<TokenBucketState>,
    leaky_bucket: Table<LeakyBucketState>,
    gcra: Table<GcraState>,
    /// Sweep when the shard reaches this many keys.
    pub(super) next_sweep_len: usize,
    /// When the last sweep ran (seconds), to sweep at most once a second at the cap.
    pub(super) last_sweep_s: u64,
}

impl Shard {
    pub(super) fn new() -> Shard {
        Shard {
            next_sweep_len: MIN_SWEEP_LEN,
            ..Shard::default()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.fixed_window.len()
            + self.sliding_window_counter.len()
            + self.sliding_window_log.len()
            + self.token_bucket.len()
            + self.leaky_bucket.len()
            + self.gcra.len()
    }

    /// Drops every entry that expired by `now_ms`; returns how many.
    pub(super) fn sweep(&mut self, now_ms: u64, hasher: &RandomState) -> usize {
        let now_s = now_ms / 1_000;
        let before = self.len();
        let live = |expires_s: u32| u64::from(expires_s) > now_s;
        self.fixed_window.retain(|e| live(e.expires_s), hasher);
        self.sliding_window_counter
            .retain(|e| live(e.expires_s), hasher);
        self.sliding_window_log
            .retain(|e| live(e.expires_s), hasher);
        self.token_bucket.retain(|e| live(e.expires_s), hasher);
        self.leaky_bucket.retain(|e| live(e.expires_s), hasher);
        self.gcra.retain(|e| live(e.expires_s), hasher);
        let after = self.len();
        self.next_sweep_len = (after * 2).max(MIN_SWEEP_LEN);
        self.last_sweep_s = now_s;
        before - after
    }
}

/// The strategies the shard has a table for.
pub(super) trait Slot: Strategy {
    fn table(shard: &mut Shard) -> &mut Table<Self::State>;
}

macro_rules! slot {
    ($strategy:ty, $field:ident) => {
        impl Slot for $strategy {
            #[inline]
            fn table(shard: &mut Shard) -> &mut Table<Self::State> {
                &mut shard.$field
            }
        }
    };
}

slot!(FixedWindow, fixed_window);
slot!(SlidingWindowCounter, sliding_window_counter);
slot!(SlidingWindowLog, sliding_window_log);
slot!(TokenBucket, token_bucket);
slot!(LeakyBucket, leaky_bucket);
slot!(Gcra, gcra);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_keeps_the_index_pointing_at_the_right_entries() {
        let hasher = RandomState::default();
        let mut table = Table::<u64>::default();
        let names: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let hash = hash_key(&hasher, 1, name);
            table.insert(hash, Entry::new(1, name, i as u32, i as u64), &hasher);
        }
        // Drop every third entry, which moves others around.
        table.retain(|e| e.state % 3 != 0, &hasher);
        assert_eq!(table.len(), 133);
        for (i, name) in names.iter().enumerate() {
            let found = table.find(hash_key(&hasher, 1, name), 1, name);
            match found {
                Some(at) => assert_eq!(table.entry(at).state, i as u64),
                None => assert_eq!(i % 3, 0, "{name} lost"),
            }
        }
        assert_eq!(table.find(hash_key(&hasher, 2, "key-1"), 2, "key-1"), None);
    }
}
