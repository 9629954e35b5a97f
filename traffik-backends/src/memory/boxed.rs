//! The tables of states that have no fixed size (the sliding window log),
//! one per strategy, with the scopes their keys belong to. They live under
//! the shard's mutex: such a state cannot be swapped in a few atomic words,
//! and its decision costs more than the lock.
//!
//! A table keeps its entries densely in a `Vec` and looks them up through a
//! hash index of 4-byte positions. A hash table's load factor (between 44%
//! and 87%) then applies to those 4 bytes and one control byte, not to the
//! whole entry, which is what keeps a key smaller than in a plain hash map.
//!
//! Tables are created on first use, one per row of the strategy table, and
//! found by the strategy's index: the shard never names a strategy.

use std::any::Any;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;
use traffik_core::{Scope, Strategy, StrategyKind};

use super::sync::KeyHasher;

/// One key's state.
pub(super) struct Entry<S> {
    identity: CompactString,
    /// The key's scope: a slot of the shard's [`Scopes`].
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
}

/// The hash of a key: the same for lookups and for stored entries.
#[inline]
pub(super) fn hash_key(hasher: &KeyHasher, scope_hash: u64, identity: &str) -> u64 {
    hasher.hash_one((scope_hash, identity))
}

/// `now_ms + ttl_ms`, in whole seconds rounded up.
#[inline]
pub(super) fn expiry_s(now_ms: u64, ttl_ms: u64) -> u32 {
    let ms = now_ms.saturating_add(ttl_ms);
    u32::try_from(ms.div_ceil(1_000)).unwrap_or(u32::MAX)
}

/// The scopes of a shard's keys. Entries name their scope by slot, 4 bytes
/// instead of the whole `namespace:name`; a slot is freed when its last
/// entry goes, so the directory holds only scopes with live keys.
#[derive(Default)]
pub(super) struct Scopes {
    slots: Vec<Option<ScopeSlot>>,
}

struct ScopeSlot {
    prefix: Arc<str>,
    hash: u64,
    live: usize,
}

impl Scopes {
    /// The slot of `scope`, if the shard has keys in it.
    #[inline]
    pub(super) fn find(&self, scope: &Scope) -> Option<u32> {
        let prefix = scope.shared_prefix();
        let position = self.slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|slot| Arc::ptr_eq(&slot.prefix, prefix) || slot.prefix == *prefix)
        })?;
        u32::try_from(position).ok()
    }

    /// The slot of `scope`, made if needed, counting one more entry in it.
    fn acquire(&mut self, scope: &Scope) -> u32 {
        if let Some(at) = self.find(scope) {
            if let Some(Some(slot)) = self.slots.get_mut(at as usize) {
                slot.live += 1;
            }
            return at;
        }
        let slot = ScopeSlot {
            prefix: Arc::clone(scope.shared_prefix()),
            hash: scope.hash(),
            live: 1,
        };
        match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(slot);
                free as u32
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// One entry of slot `at` is gone; the slot is freed with its last.
    fn release(&mut self, at: u32) {
        if let Some(entry) = self.slots.get_mut(at as usize) {
            if let Some(slot) = entry {
                slot.live = slot.live.saturating_sub(1);
                if slot.live == 0 {
                    *entry = None;
                }
            }
        }
    }

    fn hash_of(&self, at: u32) -> u64 {
        self.slots
            .get(at as usize)
            .and_then(Option::as_ref)
            .map_or(0, |slot| slot.hash)
    }

    /// How many scopes have keys in this shard.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }
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

fn entry_hash<S>(entry: &Entry<S>, hasher: &KeyHasher, scopes: &Scopes) -> u64 {
    hash_key(hasher, scopes.hash_of(entry.scope), &entry.identity)
}

impl<S> Table<S> {
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
    fn insert(&mut self, hash: u64, entry: Entry<S>, hasher: &KeyHasher, scopes: &Scopes) {
        let at = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(entry);
        let entries = &self.entries;
        self.index.insert_unique(hash, at, |&i| {
            entry_hash(&entries[i as usize], hasher, scopes)
        });
    }

    /// Removes the entry at `at` (with hash `hash`); the last entry moves
    /// into its place. Returns the removed entry's scope slot.
    fn remove(&mut self, at: usize, hash: u64, hasher: &KeyHasher, scopes: &Scopes) -> u32 {
        let at32 = at as u32;
        if let Ok(slot) = self.index.find_entry(hash, |&i| i == at32) {
            slot.remove();
        }
        let last = self.entries.len() - 1;
        let removed = self.entries.swap_remove(at);
        if at != last {
            let moved_hash = entry_hash(&self.entries[at], hasher, scopes);
            let last32 = last as u32;
            if let Some(slot) = self.index.find_mut(moved_hash, |&i| i == last32) {
                *slot = at32;
            }
        }
        removed.scope
    }

    /// Drops every entry that expired by `now_s`; gives memory back when the
    /// table has shrunk to a quarter of its capacity. Frees the scope slots
    /// of the entries it drops.
    fn sweep(&mut self, now_s: u64, hasher: &KeyHasher, scopes: &mut Scopes) {
        let mut at = 0;
        while at < self.entries.len() {
            if u64::from(self.entries[at].expires_s) > now_s {
                at += 1;
            } else {
                let hash = entry_hash(&self.entries[at], hasher, scopes);
                let scope = self.remove(at, hash, hasher, scopes);
                scopes.release(scope);
            }
        }
        if self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
            let entries = &self.entries;
            self.index.shrink_to(entries.len() * 2, |&i| {
                entry_hash(&entries[i as usize], hasher, scopes)
            });
        }
    }
}

/// A table of any strategy's entries, so a shard can hold one per strategy
/// without naming them.
trait AnyTable: Send {
    fn len(&self) -> usize;
    fn sweep(&mut self, now_s: u64, hasher: &KeyHasher, scopes: &mut Scopes);
    fn expiries(&self, into: &mut Vec<u32>);
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn as_any(&self) -> &dyn Any;
}

impl<S: Send + 'static> AnyTable for Table<S> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn sweep(&mut self, now_s: u64, hasher: &KeyHasher, scopes: &mut Scopes) {
        Table::sweep(self, now_s, hasher, scopes);
    }

    fn expiries(&self, into: &mut Vec<u32>) {
        into.extend(self.entries.iter().map(|entry| entry.expires_s));
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The boxed tables of one shard.
pub(super) struct Boxed {
    /// One table per strategy, by [`StrategyKind::index`], made on first use.
    tables: [Option<Box<dyn AnyTable>>; StrategyKind::COUNT],
    pub(super) scopes: Scopes,
}

impl Boxed {
    pub(super) fn new() -> Boxed {
        Boxed {
            tables: std::array::from_fn(|_| None),
            scopes: Scopes::default(),
        }
    }

    /// The table of strategy `S`, if the shard has one.
    #[inline]
    pub(super) fn table<S: Strategy>(&self) -> Option<&Table<S::State>> {
        self.tables[S::KIND.index()]
            .as_deref()?
            .as_any()
            .downcast_ref()
    }

    /// The table of strategy `S` (made if needed) and the scopes.
    #[inline]
    pub(super) fn table_mut<S: Strategy>(&mut self) -> (&mut Table<S::State>, &mut Scopes) {
        let slot = &mut self.tables[S::KIND.index()];
        let table = slot.get_or_insert_with(|| Box::new(Table::<S::State>::default()));
        // The slot of a strategy only ever holds that strategy's table.
        let Some(table) = table.as_any_mut().downcast_mut::<Table<S::State>>() else {
            unreachable!("the slot of a strategy holds a table of its state")
        };
        (table, &mut self.scopes)
    }

    /// Adds an entry for `scope` (the key is not in the table).
    pub(super) fn insert<S: Strategy>(
        &mut self,
        hash: u64,
        scope: &Scope,
        identity: &str,
        expires_s: u32,
        state: S::State,
        hasher: &KeyHasher,
    ) {
        let slot = self.scopes.acquire(scope);
        let entry = Entry::new(slot, identity, expires_s, state);
        let (table, scopes) = self.table_mut::<S>();
        table.insert(hash, entry, hasher, scopes);
    }

    /// Removes the entry at `at` of strategy `S`'s table.
    pub(super) fn remove<S: Strategy>(&mut self, at: usize, hash: u64, hasher: &KeyHasher) {
        let (table, scopes) = self.table_mut::<S>();
        let slot = table.remove(at, hash, hasher, scopes);
        scopes.release(slot);
    }

    pub(super) fn len(&self) -> usize {
        self.tables.iter().flatten().map(|table| table.len()).sum()
    }

    /// Adds every entry's expiry (whole seconds) to `into`.
    pub(super) fn expiries(&self, into: &mut Vec<u32>) {
        for table in self.tables.iter().flatten() {
            table.expiries(into);
        }
    }

    /// Drops every entry that expired by `now_ms`; returns how many.
    pub(super) fn sweep(&mut self, now_ms: u64, hasher: &KeyHasher) -> usize {
        let now_s = now_ms / 1_000;
        let before = self.len();
        for table in self.tables.iter_mut().flatten() {
            table.sweep(now_s, hasher, &mut self.scopes);
        }
        before - self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffik_core::SlidingWindowLog;

    #[test]
    fn removal_keeps_the_index_pointing_at_the_right_entries() {
        let hasher = KeyHasher::default();
        let scope = Scope::new("ns", "t").unwrap();
        let mut shard = Boxed::new();
        let names: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            let hash = hash_key(&hasher, scope.hash(), name);
            let state = traffik_core::strategy::SlidingWindowLogState {
                entries: [(i as u64, 1)].into(),
                total: 1,
            };
            // Every third expires at second 0, the others at second 10.
            let expires = if i % 3 == 0 { 0 } else { 10 };
            shard.insert::<SlidingWindowLog>(hash, &scope, name, expires, state, &hasher);
        }
        assert_eq!(shard.sweep(5_000, &hasher), 67);
        assert_eq!(shard.len(), 133);
        let slot = shard.scopes.find(&scope).unwrap();
        let table = shard.table::<SlidingWindowLog>().unwrap();
        for (i, name) in names.iter().enumerate() {
            let found = table.find(hash_key(&hasher, scope.hash(), name), slot, name);
            match found {
                Some(at) => assert_eq!(table.entry(at).state.entries[0].0, i as u64),
                None => assert_eq!(i % 3, 0, "{name} lost"),
            }
        }
    }

    #[test]
    fn a_scope_slot_is_freed_with_its_last_key() {
        let hasher = KeyHasher::default();
        let mut shard = Boxed::new();
        for n in 0..1_000 {
            // A thousand short-lived throttles, one key each.
            let scope = Scope::new("ns", &format!("t{n}")).unwrap();
            let hash = hash_key(&hasher, scope.hash(), "k");
            shard.insert::<SlidingWindowLog>(hash, &scope, "k", 1, Default::default(), &hasher);
            shard.sweep(2_000, &hasher);
        }
        assert_eq!(shard.len(), 0);
        assert_eq!(shard.scopes.len(), 0);
        assert!(shard.scopes.slots.len() <= 1, "the directory grew");
    }
}
