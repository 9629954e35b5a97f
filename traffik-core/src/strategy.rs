//! The six strategies, each a pure function of (rate, state, now, cost).
//!
//! | strategy | state per key | admits in any period-long interval | pick it when |
//! |---|---|---|---|
//! | [`FixedWindow`] | 16 B | ≤ 2 × limit (≤ limit per aligned window) | cheapest; edges may double a burst |
//! | [`SlidingWindowCounter`] | 24 B | ≤ 2 × limit, weighted estimate ≤ limit | smooth and cheap |
//! | [`SlidingWindowLog`] | O(limit) | ≤ limit, exactly | exact "N in the last X", small limits |
//! | [`TokenBucket`] | 16 B | ≤ burst + limit | bursts up to `burst`, then a steady rate |
//! | [`LeakyBucket`] | 16 B | ≤ burst + limit | same meter, seen as a draining bucket |
//! | [`Gcra`] | 16 B | ≤ burst + limit | same meter, one timestamp of state |
//!
//! No strategy reads a clock or does I/O: time is an argument. A denied hit
//! consumes nothing. Arithmetic is total: every `u64` time, cost and state
//! gives a decision, never a panic or a wrapped value. See
//! `docs/strategies.md` for pictures.
//!
//! # The strategy table
//!
//! The table in `strategy/any.rs` is the one place that lists the
//! strategies. It generates [`StrategyKind`], [`AnyStrategy`] and
//! [`AnyStrategy::visit`], through which every backend
//! dispatches: a backend is written once, generic over [`Strategy`], and
//! never names a strategy. Each strategy carries what a backend needs: its
//! [`State`] with its codec, its [`Storage`] layout and its
//! [`name`](StrategyKind::as_str) (the Redis script's file name).

mod any;
mod fixed_window;
mod gcra;
mod leaky_bucket;
mod meter;
mod sliding_window_counter;
mod sliding_window_log;
mod state;
mod token_bucket;

pub use any::{AnyStrategy, StrategyKind, UndecodableState, Visitor};
pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use leaky_bucket::{LeakyBucket, LeakyBucketState};
pub use sliding_window_counter::{SlidingWindowCounter, SlidingWindowCounterState};
pub use sliding_window_log::{SlidingWindowLog, SlidingWindowLogState};
pub use state::State;
pub use token_bucket::{TokenBucket, TokenBucketState};

use std::fmt::Debug;
use std::num::NonZeroU64;

use crate::{ConfigError, Decision, Rate};

/// How a remote store keeps a strategy's state.
///
/// Not `non_exhaustive` on purpose: a new layout must be handled by every
/// backend, so adding one breaks their build rather than their decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Storage {
    /// One value, the [`State`] codec's bytes, replaced as a whole (Memcached:
    /// read with a CAS token, write back with it).
    Blob,
    /// Counters of aligned windows, one per window, the key carrying the
    /// window's end: the state is rebuilt with
    /// [`Strategy::state_from_counters`] from the last `windows` counters, and a hit
    /// adds its cost to the newest one (Memcached: one arithmetic command).
    Counters {
        /// How many consecutive windows the state spans (the newest last).
        windows: u8,
    },
}

/// A rate-limiting algorithm as a pure transition:
/// `(rate, state, now, cost) -> decision`, updating `state` in place.
///
/// `State::default()` is a key that has never been hit. Once
/// [`Decision::reset_after`] has passed, a state is equivalent to the default
/// one again, so backends use `reset_after` as the key's time to live.
///
/// Every method is total: any `u64` time and cost, and any state (a store
/// may hand back anything), gives a defined decision without panicking or
/// wrapping.
pub trait Strategy: Clone + Debug + Send + Sync + 'static {
    /// What the strategy remembers per key.
    type State: State;

    /// Which of the strategies this is (its row in the table).
    const KIND: StrategyKind;

    /// How remote stores keep the state (default: [`Storage::Blob`]).
    const STORAGE: Storage = Storage::Blob;

    /// The largest cost one hit can have and still be admitted, under `rate`.
    fn capacity(&self, rate: &Rate) -> u64;

    /// The burst of a bucket strategy, if one was set (default: none).
    fn burst(&self) -> Option<NonZeroU64> {
        None
    }

    /// Checks that the strategy can compute exactly with `rate`.
    ///
    /// # Errors
    ///
    /// When a setting such as the burst makes the arithmetic exceed
    /// [`MAX_RATE_PRODUCT`](crate::rate::MAX_RATE_PRODUCT).
    fn check(&self, rate: &Rate) -> Result<(), ConfigError> {
        let _ = rate;
        Ok(())
    }

    /// Applies one hit of `cost` at `now_ms`: counts it when it fits, leaves
    /// the quota untouched when it does not.
    fn hit(&self, rate: &Rate, state: &mut Self::State, now_ms: u64, cost: u64) -> Decision;

    /// Gives back `cost` that a hit admitted at `charged_ms` counted, as of
    /// `now_ms`: the reservation of a request whose response turned out not
    /// to count. Only what that hit can still be holding is given back (a
    /// window that has closed since holds nothing), so a refund never
    /// frees more than the hit took. Refunding a hit that was denied, or
    /// twice, is the caller's mistake: it frees budget other hits took.
    fn refund(&self, rate: &Rate, state: &mut Self::State, now_ms: u64, charged_ms: u64, cost: u64);

    /// The decision a hit of `cost` at `now_ms` would get, without counting it.
    fn peek(&self, rate: &Rate, state: &Self::State, now_ms: u64, cost: u64) -> Decision {
        let mut scratch = state.clone();
        self.hit(rate, &mut scratch, now_ms, cost)
    }

    /// For [`Storage::Counters`] strategies: the state at `now_ms`, rebuilt
    /// from the counters of the windows ending at `window_end_ms(now_ms) −
    /// (n − 1 − i) × period` for `i` in `0..n`, oldest first. Other
    /// strategies keep the default, a fresh state.
    fn state_from_counters(&self, rate: &Rate, now_ms: u64, counters: &[u64]) -> Self::State {
        let _ = (rate, now_ms, counters);
        Self::State::default()
    }
}

/// The end (exclusive) of the aligned window of `period_ms` that holds
/// `now_ms`. Windows are aligned to the UNIX epoch, so every node agrees on
/// them. The last window of time, which would end past `u64::MAX`, ends at
/// `u64::MAX` and never closes.
#[inline]
pub const fn window_end_ms(now_ms: u64, period_ms: u64) -> u64 {
    if period_ms == 0 {
        return u64::MAX;
    }
    (now_ms - now_ms % period_ms).saturating_add(period_ms)
}

/// How long from `now_ms` until `end_ms`: `u64::MAX` (never) for an end
/// that saturated at the end of time, since such a window never closes.
#[inline]
pub(crate) const fn until(end_ms: u64, now_ms: u64) -> u64 {
    if end_ms == u64::MAX {
        u64::MAX
    } else {
        end_ms.saturating_sub(now_ms)
    }
}

/// Whether the window ending at `end_ms` is over at `now_ms`. A window whose
/// end saturated at `u64::MAX` never is.
#[inline]
pub(crate) const fn window_over(end_ms: u64, now_ms: u64) -> bool {
    end_ms <= now_ms && end_ms != u64::MAX
}
