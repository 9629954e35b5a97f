//! [`Limit`]: a rate and the strategy that enforces it.

use std::fmt;

use crate::{AnyStrategy, ConfigError, Rate};

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
        })
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
