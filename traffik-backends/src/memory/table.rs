//! A table of fixed-size states kept in atomics: what lets a decision on a
//! known key write nothing but that key's own entry.
//!
//! - **Entries** sit in [`Segmented`] storage and never move. Each is a
//!   lock word, the key's 128-bit fingerprint and `W` words of state.
//! - **The index** is open addressing with linear probing over 4-byte slots
//!   (an 8-bit tag of the fingerprint and the entry's position), read with
//!   atomic loads only.
//! - **Readers** (a decision on a key that exists) probe the index, then
//!   take the entry's lock word with one compare-and-swap, check the
//!   fingerprint again under it, apply the pure strategy and release it with
//!   one store. Nothing another core reads is written, unless it hits the
//!   same key.
//! - **Writers** (insert, remove, sweep, index growth) hold the shard's
//!   mutex, so there is one at a time per table. A writer takes an entry's
//!   lock word before it kills the entry, so a reader never applies a hit to
//!   an entry that changed key under it.
//! - **A miss is never wrong, only slow.** While a writer rebuilds or
//!   shifts the index, a reader can miss a key that exists; it then takes
//!   the shard's mutex, under which the index is stable, and looks again.
//!   A reader can also find a stale position: the fingerprint check under
//!   the entry's lock sends it to the same slow path.

use super::segmented::{MAX_LEN, Segmented};
use super::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering, backoff};

/// A key's fingerprint: a keyed 128-bit hash of its scope, strategy and
/// identity. The low bits place it in the index, bits 32.. pick its shard
/// and the top 8 bits are its tag in the index.
pub(super) type Fingerprint = [u64; 2];

/// The lock word's bits: held, live, and the expiry in whole seconds above.
const HELD: u64 = 1;
const LIVE: u64 = 2;
const EXPIRY_SHIFT: u32 = 32;

/// Index slots: 0 is empty, otherwise the fingerprint's tag above the
/// entry's position plus one.
const POSITION_BITS: u32 = 24;
const POSITION_MASK: u32 = (1 << POSITION_BITS) - 1;

/// The most entries one table can hold (the index keeps 24 bits of
/// position).
pub(super) const MAX_ENTRIES: usize = {
    let by_index = POSITION_MASK as usize - 1;
    if by_index < MAX_LEN {
        by_index
    } else {
        MAX_LEN
    }
};

/// The smallest index a table has once it holds a key.
const MIN_INDEX: usize = 16;

/// One key: its lock word, its fingerprint and its state.
pub(super) struct Entry<const W: usize> {
    /// [`HELD`] | [`LIVE`] | expiry seconds << [`EXPIRY_SHIFT`]; 0 is a free
    /// entry.
    lock: AtomicU64,
    fingerprint: [AtomicU64; 2],
    state: [AtomicU64; W],
}

impl<const W: usize> Entry<W> {
    fn new() -> Entry<W> {
        Entry {
            lock: AtomicU64::new(0),
            fingerprint: [AtomicU64::new(0), AtomicU64::new(0)],
            state: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    #[inline]
    fn fingerprint_is(&self, fingerprint: &Fingerprint) -> bool {
        self.fingerprint[0].load(Ordering::Relaxed) == fingerprint[0]
            && self.fingerprint[1].load(Ordering::Relaxed) == fingerprint[1]
    }

    fn fingerprint(&self) -> Fingerprint {
        [
            self.fingerprint[0].load(Ordering::Relaxed),
            self.fingerprint[1].load(Ordering::Relaxed),
        ]
    }

    /// Holds the entry if it is live and, once held, still the key of
    /// `fingerprint`. Waits while another thread holds it.
    #[inline]
    pub(super) fn hold(&self, fingerprint: &Fingerprint) -> Option<Held<'_>> {
        let held = self.hold_live()?;
        // Only a writer holding the entry changes its fingerprint, so under
        // the lock this read is the entry's key for good.
        self.fingerprint_is(fingerprint).then_some(held)
    }

    /// Holds the entry if it is live, whatever its key.
    #[inline]
    fn hold_live(&self) -> Option<Held<'_>> {
        let mut spins = 0;
        loop {
            let word = self.lock.load(Ordering::Relaxed);
            if word & LIVE == 0 {
                return None;
            }
            if word & HELD != 0 {
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

    /// Holds the entry if it is live and no one else holds it; never waits.
    /// Sweeps use it: an entry someone holds is being hit, so not expired,
    /// and the one holding it may be this thread (a combined decision that
    /// makes room for its new keys).
    fn try_hold_live(&self) -> Option<Held<'_>> {
        loop {
            let word = self.lock.load(Ordering::Relaxed);
            if word & LIVE == 0 || word & HELD != 0 {
                return None;
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
        self.release = LIVE | (u64::from(expires_s) << EXPIRY_SHIFT);
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
    /// Entries `0..made` have been used at least once.
    made: usize,
    /// Entries below `made` that are free again.
    free: Vec<u32>,
    /// Live entries, which is also how many slots of the index are taken.
    live: usize,
}

impl TableWriter {
    /// How many keys the table holds, counting expired ones not yet swept.
    pub(super) fn live(&self) -> usize {
        self.live
    }
}

/// Fixed-size states in atomics, with their index.
pub(super) struct Table<const W: usize> {
    entries: Segmented<Entry<W>>,
    slots: Segmented<AtomicU32>,
    /// How many index slots are in use for probing (a power of two, or 0).
    capacity: AtomicUsize,
}

impl<const W: usize> Table<W> {
    pub(super) fn new() -> Table<W> {
        Table {
            entries: Segmented::new(),
            slots: Segmented::new(),
            capacity: AtomicUsize::new(0),
        }
    }

    /// The entry of `fingerprint` and its position, if the index shows one.
    /// Without the shard's mutex this may miss a key that exists.
    #[inline]
    pub(super) fn find(&self, fingerprint: &Fingerprint) -> Option<(usize, &Entry<W>)> {
        let capacity = self.capacity.load(Ordering::Acquire);
        let mask = capacity.wrapping_sub(1);
        let tag = (fingerprint[0] >> 56) as u32;
        let mut at = fingerprint[0] as usize & mask;
        for _ in 0..capacity {
            let slot = self.slots.get(at)?.load(Ordering::Acquire);
            if slot == 0 {
                return None;
            }
            if slot >> POSITION_BITS == tag {
                let position = (slot & POSITION_MASK) as usize - 1;
                if let Some(entry) = self.entries.get(position) {
                    if entry.fingerprint_is(fingerprint) {
                        return Some((position, entry));
                    }
                }
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Holds the entry of `fingerprint`, if the index shows one.
    #[inline]
    pub(super) fn hold(&self, fingerprint: &Fingerprint) -> Option<Held<'_>> {
        self.find(fingerprint)?.1.hold(fingerprint)
    }

    /// Adds the key of `fingerprint`, which is not in the table, with its
    /// state. The caller holds the shard's mutex, of which `writer` is part.
    /// Returns false when the table is at [`MAX_ENTRIES`].
    pub(super) fn insert(
        &self,
        writer: &mut TableWriter,
        fingerprint: &Fingerprint,
        words: &[u64; W],
        expires_s: u32,
    ) -> bool {
        if writer.live >= MAX_ENTRIES {
            return false;
        }
        // Grow before the key is published, so a failure loses nothing.
        if (writer.live + 2) * 4 > self.capacity.load(Ordering::Relaxed) * 3 && !self.grow(writer) {
            return false;
        }
        let position = match writer.free.pop() {
            Some(free) => free as usize,
            None => {
                if !self.entries.reserve(writer.made + 1, Entry::new) {
                    return false;
                }
                writer.made += 1;
                writer.made - 1
            }
        };
        let Some(entry) = self.entries.get(position) else {
            return false;
        };
        // The entry is free: no reader can hold it (holding needs LIVE), so
        // its words are written before the lock word publishes them.
        entry.fingerprint[0].store(fingerprint[0], Ordering::Relaxed);
        entry.fingerprint[1].store(fingerprint[1], Ordering::Relaxed);
        for (word, value) in entry.state.iter().zip(words) {
            word.store(*value, Ordering::Relaxed);
        }
        entry.lock.store(
            LIVE | (u64::from(expires_s) << EXPIRY_SHIFT),
            Ordering::Release,
        );
        writer.live += 1;
        self.index_insert(fingerprint, position);
        true
    }

    /// Doubles the index and places every live entry again. Readers that
    /// probe meanwhile may miss, and look again under the mutex.
    fn grow(&self, writer: &TableWriter) -> bool {
        let capacity = (self.capacity.load(Ordering::Relaxed) * 2).max(MIN_INDEX);
        if !self.slots.reserve(capacity, || AtomicU32::new(0)) {
            return false;
        }
        for at in 0..capacity {
            if let Some(slot) = self.slots.get(at) {
                slot.store(0, Ordering::Relaxed);
            }
        }
        self.capacity.store(capacity, Ordering::Release);
        for position in 0..writer.made {
            if let Some(entry) = self.entries.get(position) {
                if entry.expiry_hint().is_some() {
                    self.index_insert(&entry.fingerprint(), position);
                }
            }
        }
        true
    }

    fn index_insert(&self, fingerprint: &Fingerprint, position: usize) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mask = capacity.wrapping_sub(1);
        let slot_value = (((fingerprint[0] >> 56) as u32) << POSITION_BITS) | (position as u32 + 1);
        let mut at = fingerprint[0] as usize & mask;
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
    fn index_remove(&self, fingerprint: &Fingerprint, position: usize) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        let mask = capacity.wrapping_sub(1);
        let slot_at = |at: usize| self.slots.get(at);
        let mut hole = fingerprint[0] as usize & mask;
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
                .entries
                .get(moved)
                .map_or(next, |entry| entry.fingerprint()[0] as usize & mask);
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

    /// Removes the key of `fingerprint`, if present. The caller holds the
    /// shard's mutex.
    pub(super) fn remove(&self, writer: &mut TableWriter, fingerprint: &Fingerprint) {
        let Some((position, entry)) = self.find(fingerprint) else {
            return;
        };
        if let Some(mut held) = entry.hold(fingerprint) {
            held.kill();
            drop(held);
            self.forget(writer, fingerprint, position);
        }
    }

    fn forget(&self, writer: &mut TableWriter, fingerprint: &Fingerprint, position: usize) {
        self.index_remove(fingerprint, position);
        writer.free.push(position as u32);
        writer.live -= 1;
    }

    /// Drops every entry that expired by `now_s`; returns how many. The
    /// caller holds the shard's mutex.
    pub(super) fn sweep(&self, writer: &mut TableWriter, now_s: u64) -> usize {
        let mut dropped = 0;
        for position in 0..writer.made {
            let Some(entry) = self.entries.get(position) else {
                break;
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
            let fingerprint = entry.fingerprint();
            held.kill();
            drop(held);
            self.forget(writer, &fingerprint, position);
            dropped += 1;
        }
        dropped
    }

    /// Entry and index bytes this table has allocated.
    #[cfg(test)]
    pub(super) fn allocated_bytes(&self) -> usize {
        self.entries.allocated() * std::mem::size_of::<Entry<W>>()
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

    fn fp(i: u64) -> Fingerprint {
        // Spread like a hash, with clustering forced on some keys: every
        // tenth key lands on the same home slot.
        let spread = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let low = if i % 10 == 0 { 0 } else { spread };
        [low & !0xFF | (i & 0xFF), i]
    }

    #[test]
    fn keys_are_found_held_and_removed_through_growth_and_shifts() {
        let table: Table<2> = Table::new();
        let mut writer = TableWriter::default();
        for i in 0..3_000 {
            assert!(table.insert(&mut writer, &fp(i), &[i, i + 1], 10));
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
        for i in 10_000..11_000 {
            assert!(table.insert(&mut writer, &fp(i), &[0, 0], 10));
        }
        assert_eq!(table.allocated_bytes(), before);
    }

    #[test]
    fn a_written_state_shows_and_a_sweep_drops_only_the_expired() {
        let table: Table<3> = Table::new();
        let mut writer = TableWriter::default();
        for i in 0..100 {
            assert!(table.insert(&mut writer, &fp(i), &[1, 2, 3], 5));
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
        let table: Table<2> = Table::new();
        let mut writer = TableWriter::default();
        assert!(table.insert(&mut writer, &fp(1), &[1, 1], 5));
        assert!(table.insert(&mut writer, &fp(2), &[2, 2], 5));
        // This thread holds key 1, as a combined decision does while it
        // makes room: the sweep must not wait for it.
        let held = table.hold(&fp(1)).unwrap();
        assert_eq!(table.sweep(&mut writer, 10), 1);
        drop(held);
        assert!(table.hold(&fp(1)).is_some());
        assert!(table.hold(&fp(2)).is_none());
    }

    #[test]
    fn a_stale_position_is_never_taken_for_another_key() {
        let table: Table<2> = Table::new();
        let mut writer = TableWriter::default();
        assert!(table.insert(&mut writer, &fp(1), &[1, 1], 10));
        let (position, _) = table.find(&fp(1)).unwrap();
        table.remove(&mut writer, &fp(1));
        // The entry is reused by another key.
        assert!(table.insert(&mut writer, &fp(2), &[2, 2], 10));
        assert_eq!(table.find(&fp(2)).map(|found| found.0), Some(position));
        let entry = table.entries.get(position).unwrap();
        assert!(entry.hold(&fp(1)).is_none(), "held for the old key");
        assert_eq!(read::<2>(&entry.hold(&fp(2)).unwrap()), [2, 2]);
    }
}
