//! [`Aimd`]: the local rate that backs off when the upstream throttles.

use std::time::Duration;

/// Additive increase, multiplicative decrease of this process's own pace,
/// under the shared limit:
///
/// - on throttling (a `429`, or a `503` with `Retry-After`):
///   `rate ← max(floor, rate × decrease)`;
/// - after each `probe_every` with no throttling:
///   `rate ← min(limit, rate + increase × limit)`.
///
/// The pace is a local GCRA (no burst) at `rate`: after throttling, calls
/// are spaced by `1 / rate` until the rate climbs back to the limit's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aimd {
    pub(crate) decrease: f64,
    pub(crate) increase: f64,
    pub(crate) floor: f64,
    pub(crate) probe_every: Duration,
}

impl Default for Aimd {
    /// Halve on throttling, climb back by a tenth of the limit per second,
    /// never below a twentieth of it.
    fn default() -> Aimd {
        Aimd {
            decrease: 0.5,
            increase: 0.1,
            floor: 0.05,
            probe_every: Duration::from_secs(1),
        }
    }
}

impl Aimd {
    /// The factor the rate is multiplied by on throttling (clamped to
    /// 0.01..=1).
    pub fn decrease(mut self, factor: f64) -> Aimd {
        self.decrease = clamp(factor, 0.01, 1.0);
        self
    }

    /// The share of the limit added per quiet `probe_every` (clamped to
    /// 0.001..=1).
    pub fn increase(mut self, share: f64) -> Aimd {
        self.increase = clamp(share, 0.001, 1.0);
        self
    }

    /// The lowest share of the limit the rate may fall to (clamped to
    /// 0.001..=1).
    pub fn floor(mut self, share: f64) -> Aimd {
        self.floor = clamp(share, 0.001, 1.0);
        self
    }

    /// How long without throttling before each increase (at least 1 ms).
    pub fn probe_every(mut self, every: Duration) -> Aimd {
        self.probe_every = every.max(Duration::from_millis(1));
        self
    }
}

fn clamp(value: f64, low: f64, high: f64) -> f64 {
    if value.is_nan() {
        high
    } else {
        value.clamp(low, high)
    }
}

/// The state of the adaptive pace.
#[derive(Debug)]
pub(crate) struct Pace {
    aimd: Aimd,
    /// The share of the limit allowed now, in `floor..=1`.
    share: f64,
    /// The limit's emission interval at full share, in ms.
    interval_ms: f64,
    /// The local GCRA's next free time, in ms (fractional).
    tat_ms: f64,
    last_change_ms: u64,
}

impl Pace {
    pub(crate) fn new(aimd: Aimd, interval_ms: f64) -> Pace {
        Pace {
            aimd,
            share: 1.0,
            interval_ms,
            tat_ms: 0.0,
            last_change_ms: 0,
        }
    }

    /// The share of the limit this process paces itself to.
    pub(crate) fn share(&self) -> f64 {
        self.share
    }

    fn climb(&mut self, now_ms: u64) {
        if self.share >= 1.0 {
            self.last_change_ms = now_ms;
            return;
        }
        let every = u64::try_from(self.aimd.probe_every.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let steps = now_ms.saturating_sub(self.last_change_ms) / every;
        if steps > 0 {
            #[allow(clippy::cast_precision_loss)]
            let gain = self.aimd.increase * steps as f64;
            self.share = (self.share + gain).min(1.0);
            self.last_change_ms = self
                .last_change_ms
                .saturating_add(steps.saturating_mul(every));
        }
    }

    /// Takes a pace slot for `cost` at `now_ms`: `0` when taken, else the
    /// ms to wait. At full share there is no local pace.
    pub(crate) fn take(&mut self, now_ms: u64, cost: u64) -> u64 {
        self.climb(now_ms);
        if self.share >= 1.0 {
            return 0;
        }
        #[allow(clippy::cast_precision_loss)]
        let now = now_ms as f64;
        if self.tat_ms > now {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            return (self.tat_ms - now).ceil().max(1.0) as u64;
        }
        #[allow(clippy::cast_precision_loss)]
        let step = self.interval_ms / self.share * cost as f64;
        self.tat_ms = now + step;
        0
    }

    /// Gives back a slot [`take`](Pace::take) gave that the shared limit
    /// then denied.
    pub(crate) fn untake(&mut self, cost: u64) {
        #[allow(clippy::cast_precision_loss)]
        let step = self.interval_ms / self.share * cost as f64;
        self.tat_ms -= step;
    }

    /// The upstream throttled: back off.
    pub(crate) fn throttled(&mut self, now_ms: u64) {
        self.share = (self.share * self.aimd.decrease).max(self.aimd.floor);
        self.last_change_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_throttling_and_climbs_back_a_tenth_per_second() {
        let mut pace = Pace::new(Aimd::default(), 100.0);
        assert_eq!(pace.take(0, 1), 0, "no local pace at full share");
        pace.throttled(1_000);
        assert!((pace.share() - 0.5).abs() < 1e-9);
        assert_eq!(pace.take(1_000, 1), 0);
        // Spaced by 1 / (0.5 × 10/s) = 200 ms.
        assert_eq!(pace.take(1_100, 1), 100);
        assert_eq!(pace.take(1_200, 1), 0);
        pace.throttled(1_200);
        pace.throttled(1_200);
        pace.throttled(1_200);
        pace.throttled(1_200);
        pace.throttled(1_200);
        assert!((pace.share() - 0.05).abs() < 1e-9, "never below the floor");
        pace.take(4_200, 1);
        assert!(
            (pace.share() - 0.35).abs() < 1e-9,
            "three quiet seconds: +0.3"
        );
        pace.take(20_000, 1);
        assert!((pace.share() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn nonsense_factors_are_clamped() {
        let aimd = Aimd::default().decrease(f64::NAN).increase(-3.0).floor(7.0);
        assert!((aimd.decrease - 1.0).abs() < 1e-9);
        assert!((aimd.increase - 0.001).abs() < 1e-9);
        assert!((aimd.floor - 1.0).abs() < 1e-9);
    }
}
