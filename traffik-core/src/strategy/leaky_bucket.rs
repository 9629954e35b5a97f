use std::num::NonZeroU64;

use super::meter::Meter;
use super::state::words_state;
use super::{Strategy, StrategyKind};
use crate::{ConfigError, Decision, Rate};

/// A bucket that leaks at the rate and holds `burst` (default: the rate's
/// count); a hit pours `cost` in, or is denied when it would overflow.
///
/// - Starts empty: a new key may pour `burst` at once, then the rate.
/// - In any interval of `d` ms it admits at most `burst + ⌊d × count / period⌋`.
/// - The leak is exact: the level is counted in units of `1 / period` of a hit.
/// - State: the water level and when it was measured, 16 bytes.
///
/// This is the leaky bucket *as a meter*: it admits exactly the hits a
/// [`TokenBucket`](super::TokenBucket) with the same burst admits (the level
/// is the tokens taken). Use whichever picture your team thinks in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeakyBucket {
    burst: Option<NonZeroU64>,
}

impl LeakyBucket {
    /// A bucket that holds as much as the rate's count.
    pub const fn new() -> LeakyBucket {
        LeakyBucket { burst: None }
    }

    /// A bucket that holds `burst`.
    pub const fn with_burst(burst: NonZeroU64) -> LeakyBucket {
        LeakyBucket { burst: Some(burst) }
    }

    /// The burst, if set.
    pub const fn burst(&self) -> Option<NonZeroU64> {
        self.burst
    }
}

/// [`LeakyBucket`] state: the water level as of `leaked_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakyBucketState {
    /// The level, in units of `1 / unit` hit.
    pub level: u64,
    /// When the level was last leaked.
    pub leaked_ms: u64,
}

words_state!(LeakyBucketState { level, leaked_ms });

impl Strategy for LeakyBucket {
    type State = LeakyBucketState;
    const KIND: StrategyKind = StrategyKind::LeakyBucket;

    fn capacity(&self, rate: &Rate) -> u64 {
        self.burst.map_or(rate.count(), NonZeroU64::get)
    }

    fn burst(&self) -> Option<NonZeroU64> {
        self.burst
    }

    fn check(&self, rate: &Rate) -> Result<(), ConfigError> {
        Meter::check(rate, self.burst)
    }

    fn hit(&self, rate: &Rate, state: &mut LeakyBucketState, now_ms: u64, cost: u64) -> Decision {
        let meter = Meter::new(rate, self.burst);
        let level = meter.drained(state.level, now_ms.saturating_sub(state.leaked_ms));
        let (decision, level) = meter.decide(level, cost);
        state.level = level;
        state.leaked_ms = state.leaked_ms.max(now_ms);
        decision
    }

    fn refund(
        &self,
        rate: &Rate,
        state: &mut LeakyBucketState,
        now_ms: u64,
        _charged_ms: u64,
        cost: u64,
    ) {
        let meter = Meter::new(rate, self.burst);
        let level = meter.drained(state.level, now_ms.saturating_sub(state.leaked_ms));
        state.level = meter.refunded(level, cost);
        state.leaked_ms = state.leaked_ms.max(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_larger_burst_admits_more_at_once_then_the_rate() {
        let rate: Rate = "2/s".parse().unwrap();
        let bucket = LeakyBucket::with_burst(NonZeroU64::new(5).unwrap());
        let mut state = LeakyBucketState::default();
        let first = (0..10)
            .filter(|_| bucket.hit(&rate, &mut state, 10_000, 1).is_allowed())
            .count();
        assert_eq!(first, 5);
        let decision = bucket.hit(&rate, &mut state, 10_000, 1);
        assert_eq!(decision.limit(), 5);
        assert_eq!(decision.retry_after_ms(), 500);
        assert_eq!(decision.reset_after_ms(), 2_500);
    }
}
