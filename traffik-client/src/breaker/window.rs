//! The outcomes the breaker judges by: the last N calls, or the calls of
//! the last T.

use std::collections::VecDeque;

/// Buckets of a time window.
const BUCKETS: u64 = 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Tally {
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u64::from(failed);
        self.slow += u64::from(slow);
    }

    fn remove(&mut self, other: Tally) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }
}

#[derive(Debug)]
pub(crate) enum Outcomes {
    Count {
        size: usize,
        last: VecDeque<Tally>,
        total: Tally,
    },
    Time {
        bucket_ms: u64,
        /// (bucket start, tally), oldest first.
        buckets: VecDeque<(u64, Tally)>,
        total: Tally,
    },
}

impl Outcomes {
    pub(crate) fn count(size: u32) -> Outcomes {
        Outcomes::Count {
            size: usize::try_from(size.max(1)).unwrap_or(usize::MAX),
            last: VecDeque::new(),
            total: Tally::default(),
        }
    }

    pub(crate) fn time(span_ms: u64) -> Outcomes {
        Outcomes::Time {
            bucket_ms: (span_ms / BUCKETS).max(1),
            buckets: VecDeque::new(),
            total: Tally::default(),
        }
    }

    pub(crate) fn record(&mut self, now_ms: u64, failed: bool, slow: bool) {
        match self {
            Outcomes::Count { size, last, total } => {
                let mut one = Tally::default();
                one.add(failed, slow);
                last.push_back(one);
                total.add(failed, slow);
                while last.len() > *size {
                    if let Some(old) = last.pop_front() {
                        total.remove(old);
                    }
                }
            }
            Outcomes::Time {
                bucket_ms,
                buckets,
                total,
            } => {
                let start = now_ms - now_ms % *bucket_ms;
                match buckets.back_mut() {
                    Some((at, tally)) if *at == start => tally.add(failed, slow),
                    _ => {
                        let mut tally = Tally::default();
                        tally.add(failed, slow);
                        buckets.push_back((start, tally));
                    }
                }
                total.add(failed, slow);
            }
        }
    }

    /// The tally of the window as of `now_ms`.
    pub(crate) fn tally(&mut self, now_ms: u64) -> Tally {
        match self {
            Outcomes::Count { total, .. } => *total,
            Outcomes::Time {
                bucket_ms,
                buckets,
                total,
            } => {
                let horizon = now_ms.saturating_sub(*bucket_ms * BUCKETS);
                while let Some((at, tally)) = buckets.front() {
                    if *at + *bucket_ms > horizon {
                        break;
                    }
                    total.remove(*tally);
                    buckets.pop_front();
                }
                *total
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Outcomes::Count { last, total, .. } => {
                last.clear();
                *total = Tally::default();
            }
            Outcomes::Time { buckets, total, .. } => {
                buckets.clear();
                *total = Tally::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_window_keeps_the_last_n() {
        let mut window = Outcomes::count(3);
        window.record(0, true, false);
        window.record(0, true, true);
        window.record(0, false, false);
        window.record(0, false, false);
        assert_eq!(
            window.tally(0),
            Tally {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
    }

    #[test]
    fn a_time_window_forgets_what_is_older_than_its_span() {
        let mut window = Outcomes::time(10_000);
        window.record(500, true, false);
        window.record(5_500, false, false);
        assert_eq!(window.tally(9_999).calls, 2);
        assert_eq!(
            window.tally(11_000),
            Tally {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(window.tally(16_000).calls, 0);
    }
}
