use std::time::{SystemTime, UNIX_EPOCH};

use super::Clock;

/// The system's wall clock.
///
/// A system time before the UNIX epoch reads as 0 rather than panicking.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_time_after_2020() {
        // 2020-01-01T00:00:00Z
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
