//! [`TokioClock`]: the time of the client's limits, from tokio's clock.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use traffik_core::Clock;

/// Milliseconds since the UNIX epoch as tokio's clock sees them: the
/// system's time when the clock is made, advanced by tokio's monotonic
/// [`Instant`]. In production it is the wall clock that never jumps back;
/// under `#[tokio::test(start_paused = true)]` it moves only when tokio's
/// paused time does, so the limiter's waits, the breaker's windows and the
/// retries' backoff are exact in tests. Clones share one origin.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    epoch_ms: u64,
    origin: Instant,
}

impl TokioClock {
    /// A clock that starts at the system's time now.
    pub fn new() -> TokioClock {
        TokioClock {
            epoch_ms: wall_ms(),
            origin: Instant::now(),
        }
    }

    /// tokio's monotonic time now (for timers).
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// The instant that is `ms` on this clock.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.origin + std::time::Duration::from_millis(ms.saturating_sub(self.epoch_ms))
    }

    /// This clock's milliseconds at `instant`.
    pub fn ms_at(&self, instant: Instant) -> u64 {
        let elapsed = instant.saturating_duration_since(self.origin).as_millis();
        self.epoch_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

/// The wall clock's milliseconds since the UNIX epoch (an HTTP-date in a
/// response is wall time).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for TokioClock {
    fn default() -> TokioClock {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time_to_the_millisecond() {
        let clock = TokioClock::new();
        let start = clock.now_ms();
        tokio::time::sleep(std::time::Duration::from_millis(1_234)).await;
        assert_eq!(clock.now_ms() - start, 1_234);
        assert_eq!(clock.ms_at(clock.instant_at(start + 10)), start + 10);
    }
}
