//! [`Limit`]: a rate and the strategy that enforces it.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use crate::{AnyStrategy, ConfigError, Gcra, LeakyBucket, Rate, TokenBucket};

/// A [`Rate`] enforced by a strategy, checked to compute exactly.
///
/// ```
/// use std::num::NonZeroU64;
/// use traffik_core::{Limit, TokenBucket};
///
/// let burst = NonZeroU64::new(20).unwrap();
/// let limit = Limit::new("100/min".parse()?, TokenBucket::with_burst(burst))?;
/// assert_eq!(limit.capacity(), 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    rate: Rate,
    strategy: AnyStrategy,
    capacity: u64,
    /// With a fallback limiter: how many processes share the limit.
    fallback: Option<NonZeroU32>,
}

impl Limit {
    /// `rate` enforced by `strategy`.
    ///
    /// # Errors
    ///
    /// When the strategy cannot compute exactly with the rate (a burst that
    /// is too large; see [`Strategy::check`](crate::Strategy::check)).
    pub fn new(rate: Rate, strategy: impl Into<AnyStrategy>) -> Result<Limit, ConfigError> {
        let strategy = strategy.into();
        strategy.check(&rate)?;
        let capacity = strategy.capacity(&rate);
        Ok(Limit {
            rate,
            strategy,
            capacity,
            fallback: None,
        })
    }

    /// "1 per `duration`", a GCRA burst of 1: one hit of it holds its key
    /// off for `duration`, on any backend (how lockouts keep their blocks,
    /// and outbound clients their hold-offs).
    ///
    /// # Errors
    ///
    /// When `duration` is not a [`Rate`]'s period (zero, or too long).
    pub fn block(duration: std::time::Duration) -> Result<Limit, ConfigError> {
        let rate = Rate::new(1, duration).map_err(|error| {
            ConfigError::new(format!("a block of {} ms: {error}", duration.as_millis()))
        })?;
        Limit::new(rate, Gcra::with_burst(NonZeroU64::MIN))
    }

    /// This limit, decided while its store cannot answer on a fallback
    /// limiter of one of `instances` processes' share
    /// ([`FailurePolicy::Fallback`](crate::FailurePolicy::Fallback)); a
    /// backend with a fallback reads it from [`fallback`](Limit::fallback).
    #[must_use]
    pub fn with_fallback(mut self, instances: NonZeroU32) -> Limit {
        self.fallback = Some(instances);
        self
    }

    /// How many processes share the limit, when it has a fallback.
    pub fn fallback(&self) -> Option<NonZeroU32> {
        self.fallback
    }

    /// The limit one of `instances` processes enforces on its own: the same
    /// strategy and period, `1 / instances` of the count and of the burst,
    /// rounded down, at least 1. The fleet's exposure is `instances` times
    /// this share: at most the limit, or `instances` where the limit is
    /// smaller than that.
    #[must_use]
    pub fn share(&self, instances: NonZeroU32) -> Limit {
        let n = u64::from(instances.get());
        let part = |value: u64| NonZeroU64::new(value / n).unwrap_or(NonZeroU64::MIN);
        let rate =
            Rate::new(part(self.rate.count()).get(), self.rate.period()).unwrap_or(self.rate);
        let strategy = match self.strategy.burst() {
            None => self.strategy.clone(),
            Some(burst) => match &self.strategy {
                AnyStrategy::TokenBucket(_) => TokenBucket::with_burst(part(burst.get())).into(),
                AnyStrategy::LeakyBucket(_) => LeakyBucket::with_burst(part(burst.get())).into(),
                AnyStrategy::Gcra(_) => Gcra::with_burst(part(burst.get())).into(),
                other => other.clone(),
            },
        };
        // A smaller count and burst of a valid limit stay valid.
        Limit::new(rate, strategy).unwrap_or_else(|_| self.clone())
    }

    /// The rate.
    pub fn rate(&self) -> &Rate {
        &self.rate
    }

    /// The strategy.
    pub fn strategy(&self) -> &AnyStrategy {
        &self.strategy
    }

    /// The most cost the quota holds: the rate's count, or the burst.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.rate, self.strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StrategyKind;
    use proptest::prelude::*;

    #[test]
    fn a_share_divides_the_count_and_the_burst() {
        let three = NonZeroU32::new(3).unwrap();
        let limit = Limit::new("100/min".parse().unwrap(), crate::FixedWindow).unwrap();
        assert_eq!(limit.share(three).capacity(), 33);
        assert_eq!(limit.share(three).rate().period_ms(), 60_000);
        let burst = NonZeroU64::new(30).unwrap();
        let bucket =
            Limit::new("100/min".parse().unwrap(), TokenBucket::with_burst(burst)).unwrap();
        assert_eq!(bucket.share(three).capacity(), 10);
        // Never below one: a limit of 2 over 3 processes is 1 each.
        let small = Limit::new("2/min".parse().unwrap(), Gcra::new()).unwrap();
        assert_eq!(small.share(three).capacity(), 1);
    }

    proptest! {
        /// Any limit, any number of processes: the share is a valid limit
        /// of the same strategy, at least 1 and at most the whole.
        #[test]
        fn any_share_is_a_smaller_valid_limit(
            count in 1u64..=u64::MAX,
            period_ms in 1u64..=u64::MAX / 2,
            burst in proptest::option::of(1u64..=u64::MAX),
            kind in 0usize..StrategyKind::COUNT,
            instances in 1u32..=u32::MAX,
        ) {
            let Ok(rate) = Rate::new(count, std::time::Duration::from_millis(period_ms)) else {
                return Ok(());
            };
            let burst = burst.and_then(NonZeroU64::new);
            let strategy: AnyStrategy = match (StrategyKind::ALL[kind], burst) {
                (StrategyKind::FixedWindow, _) => crate::FixedWindow.into(),
                (StrategyKind::SlidingWindowCounter, _) => crate::SlidingWindowCounter.into(),
                (StrategyKind::SlidingWindowLog, _) => crate::SlidingWindowLog.into(),
                (StrategyKind::TokenBucket, Some(b)) => TokenBucket::with_burst(b).into(),
                (StrategyKind::LeakyBucket, Some(b)) => LeakyBucket::with_burst(b).into(),
                (StrategyKind::Gcra, Some(b)) => Gcra::with_burst(b).into(),
                (StrategyKind::TokenBucket, None) => TokenBucket::new().into(),
                (StrategyKind::LeakyBucket, None) => LeakyBucket::new().into(),
                (_, _) => Gcra::new().into(),
            };
            let Ok(limit) = Limit::new(rate, strategy) else { return Ok(()) };
            let share = limit.share(NonZeroU32::new(instances).unwrap());
            prop_assert!(share.capacity() >= 1);
            prop_assert!(share.capacity() <= limit.capacity());
            prop_assert_eq!(share.strategy().kind(), limit.strategy().kind());
            prop_assert_eq!(share.rate().period_ms(), limit.rate().period_ms());
        }
    }
}
