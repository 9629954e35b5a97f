//! One shard: a [`Table`] per state width, read without a lock, and behind
//! the shard's mutex what only writers touch: the tables' free lists, the
//! boxed tables of states with no fixed size, and the sweep bookkeeping.

use std::any::Any;

use super::boxed::Boxed;
use super::sync::{AtomicU64, KeyHasher, Mutex, Ordering};
use super::table::{Table, TableWriter};

/// A shard does not sweep itself before it holds this many keys.
pub(super) const MIN_SWEEP_LEN: usize = 64;

pub(super) struct Shard {
    words2: Table<2>,
    words3: Table<3>,
    pub(super) writer: Mutex<Writer>,
    /// The latest time a decision in this shard was made at (ms), the
    /// shard's own clock, which the background sweeper goes by. Hits move
    /// it at most once a second, so its line is read, not written, by them.
    latest_ms: AtomicU64,
}

/// What the shard's mutex guards.
pub(super) struct Writer {
    words2: TableWriter,
    words3: TableWriter,
    pub(super) boxed: Boxed,
    /// Sweep when the shard reaches this many keys.
    next_sweep_len: usize,
    /// When the last sweep ran (seconds), to sweep at most once a second at
    /// the cap.
    pub(super) last_sweep_s: u64,
    /// Keys inserted since the last sweep.
    inserted: usize,
}

impl Writer {
    /// The writer of the word table of width `W`.
    #[inline]
    pub(super) fn words<const W: usize>(&mut self) -> &mut TableWriter {
        if W == 2 {
            &mut self.words2
        } else {
            &mut self.words3
        }
    }

    /// How many keys the shard holds, counting expired ones not yet swept.
    pub(super) fn len(&self) -> usize {
        self.words2.live() + self.words3.live() + self.boxed.len()
    }

    /// Whether the shard should sweep before it takes `new` keys more: when
    /// it has doubled since its last sweep, once as many keys have come in
    /// as a quarter of the entries a sweep walks (which stay at the most
    /// keys the shard ever held), or at once when no entry is free. So a
    /// sweep costs at most four entries walked per key inserted, and no
    /// entry is made while a sweep could free one.
    pub(super) fn wants_sweep(&self, new: usize) -> bool {
        let made = self.words2.made() + self.words3.made() + self.boxed.len();
        let free = self.words2.free() + self.words3.free();
        self.len().saturating_add(new) > self.next_sweep_len
            && (self.inserted >= made / 4 || free < new)
    }

    /// Counts `new` keys inserted.
    pub(super) fn inserted(&mut self, new: usize) {
        self.inserted = self.inserted.saturating_add(new);
    }
}

impl Shard {
    /// A shard whose tables hash keys with `hasher`.
    pub(super) fn new(hasher: &KeyHasher) -> Shard {
        Shard {
            words2: Table::new(hasher.clone()),
            words3: Table::new(hasher.clone()),
            writer: Mutex::new(Writer {
                words2: TableWriter::default(),
                words3: TableWriter::default(),
                boxed: Boxed::new(),
                next_sweep_len: MIN_SWEEP_LEN,
                last_sweep_s: 0,
                inserted: 0,
            }),
            latest_ms: AtomicU64::new(0),
        }
    }

    /// The word table of width `W` (2 or 3; `None` for any other).
    #[inline(always)]
    pub(super) fn words<const W: usize>(&self) -> Option<&Table<W>> {
        let table: &dyn Any = if W == 2 { &self.words2 } else { &self.words3 };
        table.downcast_ref()
    }

    /// Notes that a decision was made at `now_ms`; writes at most once a
    /// second.
    #[inline(always)]
    pub(super) fn note_time(&self, now_ms: u64) {
        if now_ms > self.latest_ms.load(Ordering::Relaxed).saturating_add(1_000) {
            self.latest_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
    }

    /// The latest time noted.
    pub(super) fn latest_ms(&self) -> u64 {
        self.latest_ms.load(Ordering::Relaxed)
    }

    /// Drops every key that expired by `now_ms`; returns how many. The
    /// caller holds the shard's mutex: `writer` is what it guards.
    pub(super) fn sweep(&self, writer: &mut Writer, now_ms: u64, hasher: &KeyHasher) -> usize {
        let now_s = now_ms / 1_000;
        let dropped = self.words2.sweep(&mut writer.words2, now_s)
            + self.words3.sweep(&mut writer.words3, now_s)
            + writer.boxed.sweep(now_ms, hasher);
        writer.next_sweep_len = (writer.len() * 2).max(MIN_SWEEP_LEN);
        writer.last_sweep_s = now_s;
        writer.inserted = 0;
        dropped
    }

    /// Evicts live keys, those closest to expiry first, until at least
    /// `want` are gone: every key expiring by the second the `want`-th
    /// soonest one does, and at least an eighth of the shard, so a flood at
    /// the cap evicts in batches rather than scanning the shard per new key.
    /// Returns how many were evicted. The caller holds the shard's mutex.
    pub(super) fn evict(&self, writer: &mut Writer, want: usize, hasher: &KeyHasher) -> usize {
        let mut expiries = Vec::with_capacity(writer.len());
        self.words2.expiries(&writer.words2, &mut expiries);
        self.words3.expiries(&writer.words3, &mut expiries);
        writer.boxed.expiries(&mut expiries);
        if expiries.is_empty() {
            return 0;
        }
        let nth = want.max(expiries.len() / 8).clamp(1, expiries.len()) - 1;
        let (_, &mut threshold_s, _) = expiries.select_nth_unstable(nth);
        let threshold_s = u64::from(threshold_s);
        self.words2.sweep(&mut writer.words2, threshold_s)
            + self.words3.sweep(&mut writer.words3, threshold_s)
            + writer
                .boxed
                .sweep(threshold_s.saturating_mul(1_000), hasher)
    }
}
