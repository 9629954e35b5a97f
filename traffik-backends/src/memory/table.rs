//! A table of fixed-size states kept in atomics: what lets a decision on a
//! known key write nothing but that key's own entry.
//!
//! - **Entries** sit in [`Segmented`] storage and never move. Each is a
//!   lock word (which also holds the key's strategy and identity length,
//!   and its expiry), the key's three words ([`KeyId`]) and `W` words of
//!   state.
//! - **The index** is open addressing with linear probing over 4-byte slots
//!   (an 8-bit tag of the key's hash and the entry's position), read with
//!   atomic loads only.
//! - **Readers** (a decision on a key that exists) probe the index, then
//!   take the entry's lock word with one compare-and-swap, check the key
//!   again under it, apply the pure strategy and release it with
//!   one store. Nothing another core reads is written, unless it hits the
//!   same key.
//! - **Writers** (insert, remove, sweep, index growth) hold the shard's
//!   mutex, so there is one at a time per table. A writer takes an entry's
//!   lock word before it kills the entry, so a reader never applies a hit to
//!   an entry that changed key under it.
//! - **A miss is never wrong, only slow.** While a writer rebuilds or
//!   shifts the index, a reader can miss a key that exists; it then takes
//!   the shard's mutex, under which the index is stable, and looks again.
//!   A reader can also find a stale position: the key check under the
//!   entry's lock sends it to the same slow path.

use std::hash::BuildHasher;

use super::segmented::{Block, MAX_LEN, Segmented, scatter};
use super::sync::{AtomicU32, AtomicU64, AtomicUsize, KeyHasher, Ordering, backoff};

/// A key as a word table keeps it: three words (the scope's hash and the
/// identity, packed or digested) and the lock word's key bits (strategy,
/// identity length), with its hash. The hash's low bits place it in the
/// index, bits 32 and up pick its shard and the top 8 bits are its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KeyId {
    pub(super) words: [u64; 3],
    /// Key bits of the lock word: [`KEY_BITS`] only.
    pub(super) meta: u64,
    pub(super) hash: u64,
}

impl KeyId {
    /// The key of `words` and `meta`, hashed by `hasher`.
    #[inline(always)]
    pub(super) fn new(hasher: &KeyHasher, words: [u64; 3], meta: u64) -> KeyId {
        let meta = meta & KEY_BITS;
        KeyId {
            words,
            meta,
            hash: hasher.hash_one((words[0], words[1], words[2], meta)),
        }
    }
}

/// The lock word's bits: held, live, the key's own bits (the strategy's
/// index and the identity's length, stable while the entry lives), and the
/// expiry in whole seconds from bit 32.
const HELD: u64 = 1;
const LIVE: u64 = 2;
/// The bits of the lock word that belong to the key: bits 2 to 31.
pub(super) const KEY_BITS: u64 = 0xFFFF_FFFC;
const EXPIRY_SHIFT: u32 = 32;

/// Index slots: 0 is empty, otherwise the key's tag above the entry's
/// position plus one.
const POSITION_BITS: u32 = 24;
const POSITION_MASK: u32 = (1 << POSITION_BITS) - 1;

/// Entries are kept in lanes, one per inserting thread (modulo `LANES`),
/// so that keys first seen by different threads do not share cache lines.
/// A position is its lane above its place in the lane.
#[cfg(not(loom))]
pub(super) const LANES: usize = 4;
#[cfg(loom)]
pub(super) const LANES: usize = 2;
const LANE_SHIFT: u32 = POSITION_BITS - 2;
const LANE_MASK: usize = (1 << LANE_SHIFT) - 1;

/// The most entries one lane can hold (the index keeps 24 bits of
/// position, two of them for the lane).
const MAX_LANE_ENTRIES: usize = if LANE_MASK < MAX_LEN {
    LANE_MASK
} else {
    MAX_LEN
};

/// The most entries one table can hold.
pub(super) const MAX_ENTRIES: usize = POSITION_MASK as usize - 1;

/// The smallest index a table has once it holds a key (tiny under loom, so
/// that models grow the index within a few inserts).
#[cfg(not(loom))]
const MIN_INDEX: usize = 16;
#[cfg(loom)]
const MIN_INDEX: usize = 2;

/// Entries per block of storage: 16 entries of 48 or 56 bytes are 768 or
/// 896 bytes, whole 128-byte line pairs (one under loom, whose segments
/// are tiny).
const ENTRY_BLOCK: usize = if cfg!(loom) { 1 } else { 16 };

/// Index slots per block of storage: 32 slots are 128 bytes.
const SLOT_BLOCK: usize = if cfg!(loom) { 1 } else { 32 };

// Blocks are whole line pairs with no padding, so they cost no memory.
#[cfg(not(loom))]
const _: () = {
    use std::mem::size_of;
    assert!(size_of::<Entries<2>>() == ENTRY_BLOCK * size_of::<Entry<2>>());
    assert!(size_of::<Entries<3>>() == ENTRY_BLOCK * size_of::<Entry<3>>());
    assert!(size_of::<Slots>() == SLOT_BLOCK * size_of::<AtomicU32>());
};

/// A block of entries, on line pairs of its own.
#[repr(align(128))]
pub(super) struct Entries<const W: usize>([Entry<W>; ENTRY_BLOCK]);

impl<const W: usize> Block for Entries<W> {
    type Item = Entry<W>;
    const LEN: usize = ENTRY_BLOCK;

    fn make() -> Entries<W> {
        Entries(std::array::from_fn(|_| Entry::new()))
    }

    #[inline(always)]
    fn items(&self) -> &[Entry<W>] {
        &self.0
    }
}

/// A block of index slots, on a line pair of its own.
#[repr(align(128))]
pub(super) struct Slots([AtomicU32; SLOT_BLOCK]);

impl Block for Slots {
    type Item = AtomicU32;
    const LEN: usize = SLOT_BLOCK;

    fn make() -> Slots {
        Slots(std::array::from_fn(|_| AtomicU32::new(0)))
    }

    #[inline(always)]
    fn items(&self) -> &[AtomicU32] {
        &self.0
    }
}

/// One key: its lock word, its key words and its state.
pub(super) struct Entry<const W: usize> {
    /// [`HELD`] | [`LIVE`] | key bits | expiry seconds << [`EXPIRY_SHIFT`];
    /// 0 is a free entry.
    lock: AtomicU64,
    key: [AtomicU64; 3],
    state: [AtomicU64; W],
}

impl<const W: usize> Entry<W> {
    fn new() -> Entry<W> {
        Entry {
            lock: AtomicU64::new(0),
            key: std::array::from_fn(|_| AtomicU64::new(0)),
            state: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Whether the entry's key words and lock word's key bits are `id`'s
    /// (unheld, a hint; held, the truth).
    #[inline(always)]
    fn is(&self, id: &KeyId) -> bool {
        self.key[0].load(Ordering::Relaxed) == id.words[0]
            && self.key[1].load(Ordering::Relaxed) == id.words[1]
            && self.key[2].load(Ordering::Relaxed) == id.words[2]
            && self.lock.load(Ordering::Relaxed) & KEY_BITS == id.meta
    }

    /// The entry's key, hashed by `hasher`.
    fn id(&self, hasher: &KeyHasher) -> KeyId {
        let words = std::array::from_fn(|i| self.key[i].load(Ordering::Relaxed));
        KeyId::new(hasher, words, self.lock.load(Ordering::Relaxed))
    }

    /// Holds the entry if it is live and, once held, still the key `id`.
    /// Waits while another thread holds it.
    #[inline(always)]
    pub(super) fn hold(&self, id: &KeyId) -> Option<Held<'_>> {
        let held = self.hold_live()?;
        // Only a writer holding the entry changes its key, so under the
        // lock this read is the entry's key for good.
        self.is(id).then_some(held)
    }

    /// Holds the entry if it is live, whatever its key; waits while
    /// another thread holds it.
    #[inline(always)]
    fn hold_live(&self) -> Option<Held<'_>> {
        self.take(true)
    }

    /// Holds the entry if it is live and no one else holds it; never waits.
    /// Sweeps use it: an entry someone holds is being hit, so not expired,
    /// and the one holding it may be this thread (a combined decision that
    /// makes room for its new keys).
    fn try_hold_live(&self) -> Option<Held<'_>> {
        self.take(false)
    }

    /// Takes the lock word of a live entry; while another thread holds it,
    /// waits if `wait`, else gives up.
    #[inline(always)]
    fn take(&self, wait: bool) -> Option<Held<'_>> {
        let mut spins = 0;
        loop {
            let word = self.lock.load(Ordering::Relaxed);
            if word & LIVE == 0 {
                return None;
            }
            if word & HELD != 0 {
                if !wait {
                    return None;
                }
                backoff(&mut spins);
                continue;
            }
            if self
                .lock
                .compare_exchange_weak(word, word | HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(Held {
                    lock: &self.lock,
                    state: &self.state,
                    release: word,
                });
            }
        }
    }

    /// The expiry, read without holding the entry (a hint for sweeps).
    fn expiry_hint(&self) -> Option<u32> {
        let word = self.lock.load(Ordering::Relaxed);
        (word & LIVE != 0).then_some((word >> EXPIRY_SHIFT) as u32)
    }
}

/// An entry this thread holds; dropping it releases the entry. It does not
/// name the state's width, so a combined decision can hold entries of
/// several tables at once.
pub(super) struct Held<'a> {
    lock: &'a AtomicU64,
    state: &'a [AtomicU64],
    /// The lock word to store on release.
    release: u64,
}

impl Held<'_> {
    /// The state's words, into the front of `words`.
    #[inline]
    pub(super) fn read(&self, words: &mut [u64]) {
        for (value, word) in words.iter_mut().zip(self.state) {
            *value = word.load(Ordering::Relaxed);
        }
    }

    /// Replaces the state and its expiry; both show on release.
    #[inline]
    pub(super) fn write(&mut self, words: &[u64], expires_s: u32) {
        for (word, value) in self.state.iter().zip(words) {
            word.store(*value, Ordering::Relaxed);
        }
        self.release = (self.release & KEY_BITS) | LIVE | (u64::from(expires_s) << EXPIRY_SHIFT);
    }

    /// The expiry, in whole seconds.
    fn expires_s(&self) -> u32 {
        (self.release >> EXPIRY_SHIFT) as u32
    }

    /// Frees the entry on release: a reader that found it by a stale
    /// position sees it free, or another key's, and looks again.
    fn kill(&mut self) {
        self.release = 0;
    }
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.store(self.release, Ordering::Release);
    }
}

/// What the writer of a table keeps: which entries are free, and how many
/// are live. It lives under the shard's mutex.
#[derive(Default)]
pub(super) struct TableWriter {
    /// Per lane: entries `scatter(0..made)` have been used at least once.
    made: [usize; LANES],
    /// Per lane: entries of those that are free again (taken by inserts of
    /// their own lane first, of any lane when their own has none).
    free: [Vec<u32>; LANES],
    /// Live entries, which is also how many slots of the index are taken.
    live: usize,
}

impl TableWriter {
    /// How many keys the table holds, counting expired ones not yet swept.
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// How many entries the table has made: what a sweep walks.
    pub(super) fn made(&self) -> usize {
        self.made.iter().sum()
    }

    /// How many of those are free.
    pub(super) fn free(&self) -> usize {
        self.free.iter().map(Vec::len).sum()
    }
}

/// The positions of every entry made, given how many each lane has made
/// (by value, so a writer can change the table while it walks them).
fn positions(made: [usize; LANES]) -> impl Iterator<Item = usize> {
    (0..LANES).flat_map(move |lane| (0..made[lane]).map(move |n| lane << LANE_SHIFT | scatter(n)))
}

/// Fixed-size states in atomics, with their index.
pub(super) struct Table<const W: usize> {
    entries: [Segmented<Entries<W>>; LANES],
    slots: Segmented<Slots>,
    /// How many index slots are in use for probing (a power of two, or 0).
    capacity: AtomicUsize,
    /// The hasher of the keys, to place entries again as the index grows.
    hasher: KeyHasher,
}

impl<const W: usize> Table<W> {
    pub(super) fn new(hasher: KeyHasher) -> Table<W> {
        Table {
            entries: std::array::from_fn(|_| Segmented::new()),
            slots: Segmented::new(),
            capacity: AtomicUsize::new(0),
            hasher,
        }
    }

    /// The entry at `position`.
    #[inline(always)]
    fn entry(&self, position: usize) -> Option<&Entry<W>> {
        self.entries
            .get(position >> LANE_SHIFT)?
            .get(position & LANE_MASK)
    }

    /// The entry of `id` and its position, if the index shows one.
    /// Without the shard's mutex this may miss a key that exists.
    #[inline(always)]
    pub(super) fn find(&self, id: &KeyId) -> Option<(usize, &Entry<W>)> {
        let capacity = self.capacity.load(Ordering::Acquire);
        let mask = capacity.wrapping_sub(1);
        let tag = (id.hash >> 56) as u32;
        let mut at = id.hash as usize & mask;
        for _ in 0..capacity {
            let slot = self.slots.get(at)?.load(Ordering::Acquire);
            if slot == 0 {
                return None;
            }
            if slot >> POSITION_BITS == tag {
                let position = (slot & POSITION_MASK) as usize - 1;
                if let Some(entry) = self.entry(position) {
                    if entry.is(id) {
                        return Some((position, entry));
                    }
                }
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Holds the entry of `id`, if the index shows one.
    #[inline(always)]
    pub(super) fn hold(&self, id: &KeyId) -> Option<Held<'_>> {
        self.find(id)?.1.hold(id)
    }

    /// Adds the key `id`, which is not in the table, with its state, in
    /// the entries of `lane` (the inserting thread's). The caller holds the
    /// shard's mutex, of which `writer` is part. Returns false when the
    /// table or the lane is full.
    pub(super) fn insert(
        &self,
        writer: &mut TableWriter,
        id: &KeyId,
        words: &[u64; W],
        expires_s: u32,
        lane: usize,
    ) -> bool {
        let lane = lane % LANES;
        if writer.live >= MAX_ENTRIES {
            return false;
        }
        // Grow before the key is published, so a failure loses nothing.
        if (writer.live + 2) * 4 > self.capacity.load(Ordering::Relaxed) * 3 && !self.grow(writer) {
            return false;
        }
        // A free entry of this lane, else of any lane (so that entries made
        // stay about as many as the most keys held, and a sweep walks no
        // more than that), else a new one in this lane.
        let free = writer.free[lane].pop().or_else(|| {
            let other = writer.free.iter().position(|free| !free.is_empty())?;
            writer.free[other].pop()
        });
        let position = match free {
            Some(free) => free as usize,
            None => {
                let made = writer.made[lane];
                if made >= MAX_LANE_ENTRIES || !self.entries[lane].reserve(made + 1) {
                    return false;
                }
                writer.made[lane] += 1;
                lane << LANE_SHIFT | scatter(made)
            }
        };
        let Some(entry) = self.entry(position) else {
            return false;
        };
        // The entry is free: no reader can hold it (holding needs LIVE), so
        // its words are written before the lock word publishes them.
        for (word, value) in entry.key.iter().zip(&id.words) {
            word.store(*value, Ordering::Relaxed);
        }
        for (word, value) in entry.state.iter().zip(words) {
            word.store(*value, Ordering::Relaxed);
        }
        entry.lock.store(
            id.meta | LIVE | (u64::from(expires_s) << EXPIRY_SHIFT),
            Ordering::Release,
        );
        writer.live += 1;
        self.index_insert(id.hash, position);
        true
    }

    /// Doubles the index and places every live entry again. Readers that
    /// probe meanwhile may miss, and look again under the mutex.
    fn grow(&self, writer: &TableWriter) -> bool {
        let capacity = (self.capacity.load(Ordering::Relaxed) * 2).max(MIN_INDEX);
        if !self.slots.reserve(capacity) {
            return false;
        }
        for at in 0..capacity {
            if let Some(slot) = self.slots.get(at) {
                slot.store(0, Ordering::Relaxed);
            }
        }
        self.capacity.store(capacity, Ordering::Release);
        for position in positions(writer.made) {
            if let Some(entry) = self.entry(position) {
                if entry.expiry_hint().is_some() {
                    self.index_insert(entry.id(&self.hasher).hash, position);
                }
            }
        }
        true
    }

    fn index_insert(&self, hash: u64, position: usize) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mask = capacity.wrapping_sub(1);
        let slot_value = (((hash >> 56) as u32) << POSITION_BITS) | (position as u32 + 1);
        let mut at = hash as usize & mask;
        for _ in 0..capacity {
            let Some(slot) = self.slots.get(at) else {
                return;
            };
            if slot.load(Ordering::Relaxed) == 0 {
                slot.store(slot_value, Ordering::Release);
                return;
            }
            at = (at + 1) & mask;
        }
    }

    /// Takes the slot of `position` out of the index, shifting the rest of
    /// its run back so that probing needs no tombstones.
    fn index_remove(&self, hash: u64, position: usize) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mask = capacity.wrapping_sub(1);
        let slot_at = |at: usize| self.slots.get(at);
        let mut hole = hash as usize & mask;
        let mut found = false;
        for _ in 0..capacity {
            let Some(slot) = slot_at(hole) else { return };
            let value = slot.load(Ordering::Relaxed);
            if value == 0 {
                return;
            }
            if (value & POSITION_MASK) as usize == position + 1 {
                found = true;
                break;
            }
            hole = (hole + 1) & mask;
        }
        if !found {
            return;
        }
        let mut next = (hole + 1) & mask;
        for _ in 0..capacity {
            let Some(slot) = slot_at(next) else { break };
            let value = slot.load(Ordering::Relaxed);
            if value == 0 {
                break;
            }
            let moved = (value & POSITION_MASK) as usize - 1;
            let home = self
                .entry(moved)
                .map_or(next, |entry| entry.id(&self.hasher).hash as usize & mask);
            // The slot at `next` may fill the hole if its home is not
            // between the hole (exclusive) and `next` (inclusive).
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                if let Some(hole_slot) = slot_at(hole) {
                    hole_slot.store(value, Ordering::Release);
                }
                hole = next;
            }
            next = (next + 1) & mask;
        }
        if let Some(hole_slot) = slot_at(hole) {
            hole_slot.store(0, Ordering::Release);
        }
    }

    /// Removes the key `id`, if present. The caller holds the shard's
    /// mutex.
    pub(super) fn remove(&self, writer: &mut TableWriter, id: &KeyId) {
        let Some((position, entry)) = self.find(id) else {
            return;
        };
        if let Some(mut held) = entry.hold(id) {
            held.kill();
            drop(held);
            self.forget(writer, id.hash, position);
        }
    }

    fn forget(&self, writer: &mut TableWriter, hash: u64, position: usize) {
        self.index_remove(hash, position);
        writer.free[position >> LANE_SHIFT].push(position as u32);
        writer.live -= 1;
    }

    /// Drops every entry that expired by `now_s`; returns how many. The
    /// caller holds the shard's mutex.
    pub(super) fn sweep(&self, writer: &mut TableWriter, now_s: u64) -> usize {
        let mut dropped = 0;
        for position in positions(writer.made) {
            let Some(entry) = self.entry(position) else {
                continue;
            };
            if entry
                .expiry_hint()
                .is_none_or(|expires| u64::from(expires) > now_s)
            {
                continue;
            }
            // A reader may have moved the expiry since: look again, held.
            let Some(mut held) = entry.try_hold_live() else {
                continue;
            };
            if u64::from(held.expires_s()) > now_s {
                continue;
            }
            let hash = entry.id(&self.hasher).hash;
            held.kill();
            drop(held);
            self.forget(writer, hash, position);
            dropped += 1;
        }
        dropped
    }

    /// Adds the expiry (whole seconds) of every live entry to `into`, for
    /// choosing which to evict. The caller holds the shard's mutex.
    pub(super) fn expiries(&self, writer: &TableWriter, into: &mut Vec<u32>) {
        for position in positions(writer.made) {
            if let Some(expires) = self.entry(position).and_then(Entry::expiry_hint) {
                into.push(expires);
            }
        }
    }

    /// Entry and index bytes this table has allocated.
    #[cfg(test)]
    pub(super) fn allocated_bytes(&self) -> usize {
        self.entries.iter().map(Segmented::allocated).sum::<usize>()
            * std::mem::size_of::<Entry<W>>()
            + self.slots.allocated() * std::mem::size_of::<AtomicU32>()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn read<const W: usize>(held: &Held<'_>) -> [u64; W] {
        let mut words = [0; W];
        held.read(&mut words);
        words
    }

    /// Key `i`, its hash by a fixed hasher shared by the tables of the tests.
    fn fp(i: u64) -> KeyId {
        KeyId::new(&hasher(), [i, i.wrapping_mul(3), 7], (i % 5) << 2)
    }

    fn hasher() -> KeyHasher {
        use std::sync::OnceLock;
        static HASHER: OnceLock<KeyHasher> = OnceLock::new();
        HASHER.get_or_init(KeyHasher::default).clone()
    }

    fn table<const W: usize>() -> Table<W> {
        Table::new(hasher())
    }

    #[test]
    fn keys_are_found_held_and_removed_through_growth_and_shifts() {
        let table: Table<2> = table();
        let mut writer = TableWriter::default();
        for i in 0..3_000 {
            assert!(table.insert(&mut writer, &fp(i), &[i, i + 1], 10, i as usize % 7));
        }
        assert_eq!(writer.live(), 3_000);
        for i in 0..3_000 {
            let held = table.hold(&fp(i)).unwrap_or_else(|| panic!("{i} lost"));
            assert_eq!(read::<2>(&held), [i, i + 1]);
        }
        // Remove every third key, clustered ones included; the others stay.
        for i in (0..3_000).step_by(3) {
            table.remove(&mut writer, &fp(i));
        }
        for i in 0..3_000 {
            assert_eq!(table.hold(&fp(i)).is_some(), i % 3 != 0, "key {i}");
        }
        assert_eq!(writer.live(), 2_000);
        // Freed entries are used again: no new segment for as many keys.
        let before = table.allocated_bytes();
        for (j, i) in (0..3_000u64).step_by(3).enumerate() {
            // The lanes of the removed keys, whose free entries they take.
            let lane = i as usize % 7;
            assert!(table.insert(&mut writer, &fp(10_000 + j as u64), &[0, 0], 10, lane));
        }
        assert_eq!(table.allocated_bytes(), before);
    }

    #[test]
    fn a_written_state_shows_and_a_sweep_drops_only_the_expired() {
        let table: Table<3> = table();
        let mut writer = TableWriter::default();
        for i in 0..100 {
            assert!(table.insert(&mut writer, &fp(i), &[1, 2, 3], 5, 0));
        }
        {
            let mut held = table.hold(&fp(7)).unwrap();
            held.write(&[4, 5, 6], 50);
        }
        assert_eq!(read::<3>(&table.hold(&fp(7)).unwrap()), [4, 5, 6]);
        assert_eq!(table.sweep(&mut writer, 4), 0);
        assert_eq!(table.sweep(&mut writer, 5), 99);
        assert_eq!(writer.live(), 1);
        assert!(table.hold(&fp(7)).is_some());
        assert!(table.hold(&fp(8)).is_none());
    }

    #[test]
    fn a_sweep_passes_over_an_entry_someone_holds() {
        let table: Table<2> = table();
        let mut writer = TableWriter::default();
        assert!(table.insert(&mut writer, &fp(1), &[1, 1], 5, 0));
        assert!(table.insert(&mut writer, &fp(2), &[2, 2], 5, 0));
        // This thread holds key 1, as a combined decision does while it
        // makes room: the sweep must not wait for it.
        let held = table.hold(&fp(1)).unwrap();
        assert_eq!(table.sweep(&mut writer, 10), 1);
        drop(held);
        assert!(table.hold(&fp(1)).is_some());
        assert!(table.hold(&fp(2)).is_none());
    }

    #[test]
    fn threads_hitting_one_key_and_others_count_every_hit() {
        // Small enough for Miri, which checks the threads' accesses too.
        let table: Table<2> = table();
        let writer = std::sync::Mutex::new(TableWriter::default());
        assert!(table.insert(&mut writer.lock().unwrap(), &fp(0), &[0, 0], 10, 0));
        std::thread::scope(|scope| {
            for thread in 1..=2u64 {
                let (table, writer) = (&table, &writer);
                scope.spawn(move || {
                    for i in 0..20u64 {
                        let mut held = table.hold(&fp(0)).unwrap();
                        let mut words = [0u64; 2];
                        held.read(&mut words);
                        held.write(&[words[0] + 1, words[1]], 10);
                        drop(held);
                        // A key of this thread's own, inserted as the index grows.
                        let own = fp(thread * 100 + i);
                        let mut writer = writer.lock().unwrap();
                        assert!(table.insert(&mut writer, &own, &[i, 0], 10, thread as usize));
                    }
                });
            }
        });
        assert_eq!(read::<2>(&table.hold(&fp(0)).unwrap()), [40, 0]);
        for thread in 1..=2u64 {
            for i in 0..20u64 {
                assert_eq!(read::<2>(&table.hold(&fp(thread * 100 + i)).unwrap())[0], i);
            }
        }
    }

    #[test]
    fn a_stale_position_is_never_taken_for_another_key() {
        let table: Table<2> = table();
        let mut writer = TableWriter::default();
        assert!(table.insert(&mut writer, &fp(1), &[1, 1], 10, 0));
        let (position, _) = table.find(&fp(1)).unwrap();
        table.remove(&mut writer, &fp(1));
        // The entry is reused by another key.
        assert!(table.insert(&mut writer, &fp(2), &[2, 2], 10, 0));
        assert_eq!(table.find(&fp(2)).map(|found| found.0), Some(position));
        let entry = table.entry(position).unwrap();
        assert!(entry.hold(&fp(1)).is_none(), "held for the old key");
        assert_eq!(read::<2>(&entry.hold(&fp(2)).unwrap()), [2, 2]);
    }
}

/// The protocol under loom, which runs every interleaving of the threads
/// (within a preemption bound): `RUSTFLAGS="--cfg loom" cargo test -p
/// traffik-backends --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;
    use loom::thread;

    use super::super::sync::Mutex;
    use super::*;

    struct Store {
        table: Table<2>,
        writer: Mutex<TableWriter>,
    }

    fn store() -> Arc<Store> {
        Arc::new(Store {
            table: Table::new(KeyHasher::default()),
            writer: Mutex::new(TableWriter::default()),
        })
    }

    fn fp(store: &Store, i: u64) -> KeyId {
        KeyId::new(&store.table.hasher, [i, 0, 0], 0)
    }

    /// One hit as the backend makes it: add 1 to word 0 of a known key
    /// without the lock; on a miss, under the lock, add it there or insert
    /// the key with 1.
    fn hit(store: &Store, key: u64, expires_s: u32) {
        let add = |mut held: Held<'_>| {
            let mut words = [0u64; 2];
            held.read(&mut words);
            words[0] += 1;
            held.write(&words, expires_s);
        };
        if let Some(held) = store.table.hold(&fp(store, key)) {
            return add(held);
        }
        let mut writer = store.writer.lock();
        match store.table.hold(&fp(store, key)) {
            Some(held) => add(held),
            None => assert!(store.table.insert(
                &mut writer,
                &fp(store, key),
                &[1, key],
                expires_s,
                key as usize
            )),
        }
    }

    /// Runs `race` on a thread of its own, against whatever the caller does
    /// next.
    fn spawn<R: Send + 'static>(
        store: &Arc<Store>,
        race: impl FnOnce(&Store) -> R + Send + 'static,
    ) -> thread::JoinHandle<R> {
        let store = Arc::clone(store);
        thread::spawn(move || race(&store))
    }

    /// Word 0 of a key, or `None` if the table does not hold it.
    fn count(store: &Store, key: u64) -> Option<u64> {
        let _writer = store.writer.lock();
        let held = store.table.hold(&fp(store, key))?;
        let mut words = [0u64; 2];
        held.read(&mut words);
        assert_eq!(words[1], key, "a key holds another's state");
        Some(words[0])
    }

    #[test]
    fn hits_on_one_key_are_all_counted() {
        loom::model(|| {
            let store = store();
            hit(&store, 1, 10);
            let other = spawn(&store, |store| hit(store, 1, 10));
            hit(&store, 1, 10);
            other.join().unwrap();
            assert_eq!(count(&store, 1), Some(3));
        });
    }

    #[test]
    fn a_hit_never_lands_on_an_entry_reused_by_another_key() {
        loom::model(|| {
            let store = store();
            hit(&store, 1, 10);
            let writer = spawn(&store, |store| {
                // Key 1 goes; key 2 takes its entry (key 1's lane is 1).
                let mut writer = store.writer.lock();
                store.table.remove(&mut writer, &fp(store, 1));
                assert!(
                    store
                        .table
                        .insert(&mut writer, &fp(store, 2), &[100, 2], 10, 1)
                );
            });
            hit(&store, 1, 10);
            writer.join().unwrap();
            // The hit found key 1 before it went, or stored it anew.
            assert!(matches!(count(&store, 1), None | Some(1)));
            assert_eq!(count(&store, 2), Some(100), "key 2 was charged for key 1");
        });
    }

    #[test]
    fn a_hit_during_index_growth_is_counted_once() {
        loom::model(|| {
            let store = store();
            hit(&store, 1, 10);
            let writer = spawn(&store, |store| {
                for key in [2, 3] {
                    hit(store, key, 10);
                }
            });
            hit(&store, 1, 10);
            writer.join().unwrap();
            assert_eq!(count(&store, 1), Some(2));
            assert_eq!(count(&store, 2), Some(1));
            assert_eq!(count(&store, 3), Some(1));
        });
    }

    #[test]
    fn a_hit_racing_a_sweep_is_never_lost() {
        loom::model(|| {
            let store = store();
            // Key 1 expires at second 5; the hit moves it to second 50.
            hit(&store, 1, 5);
            let sweeper = spawn(&store, |store| {
                let mut writer = store.writer.lock();
                store.table.sweep(&mut writer, 10)
            });
            hit(&store, 1, 50);
            let dropped = sweeper.join().unwrap();
            // Swept first: the hit stored the key anew. Hit first: the
            // sweep kept it. Either way the hit is there.
            let expected = if dropped == 1 { 1 } else { 2 };
            assert_eq!(count(&store, 1), Some(expected));
        });
    }
}
