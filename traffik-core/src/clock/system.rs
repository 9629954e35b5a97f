use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Clock;

/// The system's wall clock, read cheaply.
///
/// Reading the wall clock through the operating system costs tens of
/// nanoseconds on many machines, more than the rest of an in-memory
/// decision. `SystemClock` reads the CPU's time-stamp counter instead (via
/// `quanta`, which falls back to the OS clock where the counter is not
/// reliable) and adds it to the wall time read at an anchor. It re-reads the
/// wall clock once a second, so it follows NTP adjustments within a second.
///
/// A system time before the UNIX epoch reads as 0 rather than panicking.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

struct Anchor {
    counter: quanta::Clock,
    start: u64,
    /// Wall time in ms minus counter time in ms.
    offset_ms: AtomicU64,
    /// Counter time in ms when the offset was last read from the wall clock.
    anchored_ms: AtomicU64,
}

const REANCHOR_MS: u64 = 1_000;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Anchor {
    fn new() -> Anchor {
        let counter = quanta::Clock::new();
        let start = counter.raw();
        Anchor {
            counter,
            start,
            offset_ms: AtomicU64::new(wall_ms()),
            anchored_ms: AtomicU64::new(0),
        }
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        let elapsed_ms = self.counter.delta_as_nanos(self.start, self.counter.raw()) / 1_000_000;
        if elapsed_ms.wrapping_sub(self.anchored_ms.load(Ordering::Relaxed)) >= REANCHOR_MS {
            self.reanchor(elapsed_ms)
        } else {
            self.offset_ms
                .load(Ordering::Relaxed)
                .wrapping_add(elapsed_ms)
        }
    }

    #[cold]
    fn reanchor(&self, elapsed_ms: u64) -> u64 {
        let wall = wall_ms();
        self.offset_ms
            .store(wall.wrapping_sub(elapsed_ms), Ordering::Relaxed);
        self.anchored_ms.store(elapsed_ms, Ordering::Relaxed);
        wall
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        static ANCHOR: OnceLock<Anchor> = OnceLock::new();
        ANCHOR.get_or_init(Anchor::new).now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_wall_clock() {
        let ours = SystemClock.now_ms();
        let wall = wall_ms();
        assert!(ours > 1_577_836_800_000, "before 2020: {ours}");
        assert!(ours.abs_diff(wall) <= 5, "{ours} vs {wall}");
    }

    #[test]
    fn does_not_run_backwards_between_reads() {
        let mut last = SystemClock.now_ms();
        for _ in 0..100_000 {
            let now = SystemClock.now_ms();
            assert!(now + 2 >= last, "{now} after {last}");
            last = now;
        }
    }
}
