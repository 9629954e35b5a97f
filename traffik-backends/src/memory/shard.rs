//! One shard: a table of entries per strategy, and its sweeping.

use compact_str::CompactString;
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
    pub(super) identity: CompactString,
    pub(super) scope: u32,
    /// Whole seconds since the epoch, rounded up, after which the state is
    /// as good as new and may be dropped.
    pub(super) expires_s: u32,
    pub(super) state: S,
}

impl<S> Entry<S> {
    #[inline]
    pub(super) fn is(&self, scope: u32, identity: &str) -> bool {
        self.scope == scope && self.identity == identity
    }
}

/// `now_ms + ttl_ms`, in whole seconds rounded up.
#[inline]
pub(super) fn expiry_s(now_ms: u64, ttl_ms: u64) -> u32 {
    let ms = now_ms.saturating_add(ttl_ms);
    u32::try_from(ms.div_ceil(1_000)).unwrap_or(u32::MAX)
}

#[derive(Default)]
pub(super) struct Shard {
    fixed_window: HashTable<Entry<FixedWindowState>>,
    sliding_window_counter: HashTable<Entry<SlidingWindowCounterState>>,
    sliding_window_log: HashTable<Entry<SlidingWindowLogState>>,
    token_bucket: HashTable<Entry<TokenBucketState>>,
    leaky_bucket: HashTable<Entry<LeakyBucketState>>,
    gcra: HashTable<Entry<GcraState>>,
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
    pub(super) fn sweep(&mut self, now_ms: u64) -> usize {
        let now_s = now_ms / 1_000;
        let before = self.len();
        let live = |expires_s: u32| u64::from(expires_s) > now_s;
        self.fixed_window.retain(|e| live(e.expires_s));
        self.sliding_window_counter.retain(|e| live(e.expires_s));
        self.sliding_window_log.retain(|e| live(e.expires_s));
        self.token_bucket.retain(|e| live(e.expires_s));
        self.leaky_bucket.retain(|e| live(e.expires_s));
        self.gcra.retain(|e| live(e.expires_s));
        let after = self.len();
        self.next_sweep_len = (after * 2).max(MIN_SWEEP_LEN);
        self.last_sweep_s = now_s;
        before - after
    }
}

/// The strategies the shard has a table for.
pub(super) trait Slot: Strategy {
    fn table(shard: &mut Shard) -> &mut HashTable<Entry<Self::State>>;
}

macro_rules! slot {
    ($strategy:ty, $field:ident) => {
        impl Slot for $strategy {
            #[inline]
            fn table(shard: &mut Shard) -> &mut HashTable<Entry<Self::State>> {
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
