use std::num::NonZeroU64;

use super::meter::Meter;
use super::state::words_state;
use super::{Strategy, StrategyKind};
use crate::{ConfigError, Decision, Rate};

/// A bucket of `burst` tokens (default: the rate's count) that refills
/// continuously at the rate; a hit takes `cost` tokens or is denied.
///
/// - Starts full: a new key may spend `burst` at once, then the rate.
/// - In any interval of `d` ms it admits at most `burst + ⌊d × count / period⌋`.
/// - Refill is exact: tokens are counted in units of `1 / period` of a token,
///   so no fraction is lost however long it runs.
/// - State: the tokens taken out of a full bucket and when, 16 bytes.
///
/// [`LeakyBucket`](super::LeakyBucket) and [`Gcra`](super::Gcra) admit exactly
/// the same hits for the same rate and burst; they keep their state
/// differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenBucket {
    burst: Option<NonZeroU64>,
}

impl TokenBucket {
    /// A bucket that holds as many tokens as the rate's count.
    pub const fn new() -> TokenBucket {
        TokenBucket { burst: None }
    }

    /// A bucket that holds `burst` tokens.
    pub const fn with_burst(burst: NonZeroU64) -> TokenBucket {
        TokenBucket { burst: Some(burst) }
    }

    /// The burst, if set.
    pub const fn burst(&self) -> Option<NonZeroU64> {
        self.burst
    }
}

/// [`TokenBucket`] state: tokens taken out of a full bucket, as of `updated_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucketState {
    /// Tokens missing from a full bucket, in units of `1 / unit` token.
    pub taken: u64,
    /// When `taken` was last brought up to date.
    pub updated_ms: u64,
}

words_state!(TokenBucketState { taken, updated_ms });

impl Strategy for TokenBucket {
    type State = TokenBucketState;
    const KIND: StrategyKind = StrategyKind::TokenBucket;

    fn capacity(&self, rate: &Rate) -> u64 {
        self.burst.map_or(rate.count(), NonZeroU64::get)
    }

    fn burst(&self) -> Option<NonZeroU64> {
        self.burst
    }

    fn check(&self, rate: &Rate) -> Result<(), ConfigError> {
        Meter::check(rate, self.burst)
    }

    fn hit(&self, rate: &Rate, state: &mut TokenBucketState, now_ms: u64, cost: u64) -> Decision {
        let meter = Meter::new(rate, self.burst);
        let refilled = meter.drained(state.taken, now_ms.saturating_sub(state.updated_ms));
        let (decision, taken) = meter.decide(refilled, cost);
        state.taken = taken;
        state.updated_ms = state.updated_ms.max(now_ms);
        decision
    }

    fn refund(
        &self,
        rate: &Rate,
        state: &mut TokenBucketState,
        now_ms: u64,
        _charged_ms: u64,
        cost: u64,
    ) {
        let meter = Meter::new(rate, self.burst);
        let level = meter.drained(state.taken, now_ms.saturating_sub(state.updated_ms));
        state.taken = meter.refunded(level, cost);
        state.updated_ms = state.updated_ms.max(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_fractions_exactly() {
        // 3 per second: one token every 333.3… ms.
        let rate: Rate = "3/s".parse().unwrap();
        let bucket = TokenBucket::new();
        let mut state = TokenBucketState::default();
        for _ in 0..3 {
            assert!(bucket.hit(&rate, &mut state, 1_000, 1).is_allowed());
        }
        let denied = bucket.hit(&rate, &mut state, 1_000, 1);
        assert_eq!(denied.retry_after_ms(), 334);
        assert!(!bucket.hit(&rate, &mut state, 1_333, 1).is_allowed());
        assert!(bucket.hit(&rate, &mut state, 1_334, 1).is_allowed());
        // Over a long run, no drift: after 1,000 s exactly 3,000 more tokens.
        let mut admitted = 0;
        let mut now = 1_334;
        while now <= 1_001_334 {
            while bucket.hit(&rate, &mut state, now, 1).is_allowed() {
                admitted += 1;
            }
            now += 8;
        }
        assert_eq!(admitted, 3_000);
    }
}
