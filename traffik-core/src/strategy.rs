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
//! consumes nothing. See `docs/strategies.md` for pictures.

mod any;
mod fixed_window;
mod gcra;
mod leaky_bucket;
mod meter;
mod sliding_window_counter;
mod sliding_window_log;
mod token_bucket;

pub use any::{AnyStrategy, StrategyKind};
pub use fixed_window::{FixedWindow, FixedWindowState};
pub use gcra::{Gcra, GcraState};
pub use leaky_bucket::{LeakyBucket, LeakyBucketState};
pub use sliding_window_counter::{SlidingWindowCounter, SlidingWindowCounterState};
pub use sliding_window_log::{SlidingWindowLog, SlidingWindowLogState};
pub use token_bucket::{TokenBucket, TokenBucketState};

use std::fmt::Debug;

use crate::{ConfigError, Decision, Rate};

/// A rate-limiting algorithm as a pure transition:
/// `(rate, state, now, cost) -> decision`, updating `state` in place.
///
/// `State::default()` is a key that has never been hit. Once
/// [`Decision::reset_after`] has passed, a state is equivalent to the default
/// one again, so backends use `reset_after` as the key's time to live.
pub trait Strategy: Clone + Debug + Send + Sync + 'static {
    /// What the strategy remembers per key.
    type State: Clone + Default + Debug + Send + Sync + 'static;

    /// Which of the six strategies this is.
    const KIND: StrategyKind;

    /// The largest cost one hit can have and still be admitted, under `rate`.
    fn capacity(&self, rate: &Rate) -> u64;

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

    /// The decision a hit of `cost` at `now_ms` would get, without counting it.
    fn peek(&self, rate: &Rate, state: &Self::State, now_ms: u64, cost: u64) -> Decision {
        let mut scratch = state.clone();
        self.hit(rate, &mut scratch, now_ms, cost)
    }
}
