use std::num::NonZeroU64;

use super::meter::Meter;
use super::state::words_state;
use super::{Strategy, StrategyKind};
use crate::{ConfigError, Decision, Rate};

/// The Generic Cell Rate Algorithm: one "theoretical arrival time" per key.
///
/// Each admitted hit pushes the arrival time forward by `cost × period /
/// count`; a hit is admitted while that time stays within `burst` emission
/// intervals (default burst: the rate's count) of now.
///
/// - In any interval of `d` ms it admits at most `burst + ⌊d × count / period⌋`:
///   the same hits as a [`TokenBucket`](super::TokenBucket) with that burst.
/// - Exact: the arrival time keeps its fraction of a millisecond.
/// - State: one timestamp and its fraction, 16 bytes; a state in the past is
///   the same as no state. An arrival time that would pass `u64::MAX` ms
///   saturates there and the quota stays spent (the end of time is restrictive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gcra {
    burst: Option<NonZeroU64>,
}

impl Gcra {
    /// GCRA with a burst of the rate's count.
    pub const fn new() -> Gcra {
        Gcra { burst: None }
    }

    /// GCRA with `burst`.
    pub const fn with_burst(burst: NonZeroU64) -> Gcra {
        Gcra { burst: Some(burst) }
    }

    /// The burst, if set.
    pub const fn burst(&self) -> Option<NonZeroU64> {
        self.burst
    }
}

/// [`Gcra`] state: the theoretical arrival time, `tat_ms + tat_frac / drain` ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcraState {
    /// Whole milliseconds of the theoretical arrival time.
    pub tat_ms: u64,
    /// The fraction of a millisecond, in units of `1 / (count / gcd(count, period))`.
    pub tat_frac: u64,
}

words_state!(GcraState { tat_ms, tat_frac });

impl Strategy for Gcra {
    type State = GcraState;
    const KIND: StrategyKind = StrategyKind::Gcra;

    fn capacity(&self, rate: &Rate) -> u64 {
        self.burst.map_or(rate.count(), NonZeroU64::get)
    }

    fn burst(&self) -> Option<NonZeroU64> {
        self.burst
    }

    fn check(&self, rate: &Rate) -> Result<(), ConfigError> {
        Meter::check(rate, self.burst)
    }

    fn hit(&self, rate: &Rate, state: &mut GcraState, now_ms: u64, cost: u64) -> Decision {
        let meter = Meter::new(rate, self.burst);
        // How far the arrival time is ahead of now, in units of 1/drain ms.
        // An arrival time that saturated at the end of time is as far ahead
        // as the burst allows: the quota stays spent.
        let ahead = ahead(&meter, state, now_ms);
        let (decision, ahead_after) = meter.decide(ahead, cost);
        if decision.is_allowed() {
            state.tat_ms = now_ms.saturating_add(ahead_after / meter.drain);
            state.tat_frac = ahead_after % meter.drain;
        }
        decision
    }

    fn refund(&self, rate: &Rate, state: &mut GcraState, now_ms: u64, _charged_ms: u64, cost: u64) {
        let meter = Meter::new(rate, self.burst);
        let ahead = ahead(&meter, state, now_ms);
        let ahead = meter.refunded(ahead, cost);
        let tat_ms = now_ms.saturating_add(ahead / meter.drain);
        // At the end of time the meter stays full, as a hit leaves it.
        if tat_ms != u64::MAX {
            state.tat_ms = tat_ms;
            state.tat_frac = ahead % meter.drain;
        }
    }
}

/// How far ahead of `now_ms` the theoretical arrival time is, in meter
/// units.
fn ahead(meter: &Meter, state: &GcraState, now_ms: u64) -> u64 {
    if state.tat_ms == u64::MAX {
        meter.capacity
    } else if state.tat_ms > now_ms || (state.tat_ms == now_ms && state.tat_frac > 0) {
        (state.tat_ms - now_ms)
            .saturating_mul(meter.drain)
            .saturating_add(state.tat_frac)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_hits_by_the_emission_interval_after_the_burst() {
        let rate: Rate = "10/s".parse().unwrap();
        let gcra = Gcra::with_burst(NonZeroU64::new(1).unwrap());
        let mut state = GcraState::default();
        assert!(gcra.hit(&rate, &mut state, 5_000, 1).is_allowed());
        let denied = gcra.hit(&rate, &mut state, 5_001, 1);
        assert_eq!(denied.retry_after_ms(), 99);
        assert!(gcra.hit(&rate, &mut state, 5_100, 1).is_allowed());
        assert_eq!(
            state,
            GcraState {
                tat_ms: 5_200,
                tat_frac: 0
            }
        );
    }
}
