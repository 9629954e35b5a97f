//! The arithmetic shared by the three bucket strategies.
//!
//! A rate of `L` hits per `P` ms is a meter that fills by `S = P / g` units per
//! hit and drains by `R = L / g` units per millisecond (`g = gcd(L, P)`), with
//! room for `burst × S` units. Whole units, so refill is exact: no fraction is
//! ever truncated away.

use std::num::NonZeroU64;

use crate::rate::MAX_RATE_PRODUCT;
use crate::{ConfigError, Decision, Rate};

#[derive(Clone, Copy, Debug)]
pub(crate) struct Meter {
    /// Units one hit adds.
    pub(crate) unit: u64,
    /// Units that drain per millisecond.
    pub(crate) drain: u64,
    /// The burst, in hits.
    pub(crate) burst: u64,
    /// `burst × unit`.
    pub(crate) capacity: u64,
}

impl Meter {
    #[inline]
    pub(crate) fn new(rate: &Rate, burst: Option<NonZeroU64>) -> Meter {
        let (drain, unit) = rate.reduced();
        let burst = burst.map_or(rate.count(), NonZeroU64::get);
        Meter {
            unit,
            drain,
            burst,
            capacity: burst.saturating_mul(unit),
        }
    }

    pub(crate) fn check(rate: &Rate, burst: Option<NonZeroU64>) -> Result<(), ConfigError> {
        let meter = Meter::new(rate, burst);
        if meter
            .burst
            .checked_mul(meter.unit)
            .is_some_and(|c| c <= MAX_RATE_PRODUCT)
        {
            Ok(())
        } else {
            Err(ConfigError::new(format!(
                "burst {} is too large for rate {rate}: burst × (period in ms / gcd(count, period)) \
                 must not exceed 2^51",
                meter.burst
            )))
        }
    }

    /// The level left after draining for `elapsed_ms`.
    pub(crate) fn drained(&self, level: u64, elapsed_ms: u64) -> u64 {
        if elapsed_ms >= level.div_ceil(self.drain) {
            0
        } else {
            level - elapsed_ms * self.drain
        }
    }

    /// Decides a hit of `cost` against the current `level`; returns the
    /// decision and the level after it.
    /// The level after giving back `cost` hits (never below empty).
    pub(crate) fn refunded(&self, level: u64, cost: u64) -> u64 {
        level
            .min(self.capacity)
            .saturating_sub(cost.saturating_mul(self.unit))
    }

    #[inline]
    pub(crate) fn decide(&self, level: u64, cost: u64) -> (Decision, u64) {
        let level = level.min(self.capacity);
        // Saturating: a burst that skipped `check` must not overflow.
        let need = cost.saturating_mul(self.unit);
        if cost <= self.burst && level.saturating_add(need) <= self.capacity {
            let level = level + need;
            let remaining = (self.capacity - level) / self.unit;
            let decision = Decision::allowed(self.burst, remaining, level.div_ceil(self.drain));
            return (decision, level);
        }
        let remaining = (self.capacity - level) / self.unit;
        let reset = level.div_ceil(self.drain);
        if cost > self.burst {
            return (
                Decision::cost_exceeds_capacity(self.burst, remaining, reset),
                level,
            );
        }
        let retry = (level.saturating_add(need) - self.capacity).div_ceil(self.drain);
        (Decision::denied(self.burst, remaining, retry, reset), level)
    }
}
