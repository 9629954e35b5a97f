use std::collections::VecDeque;

use super::state::{parse_decimal, push_decimal};
use super::{State, Strategy, StrategyKind, until, window_over};
use crate::{Decision, Rate};

/// Remembers every admitted hit of the last period and admits a hit only if
/// the cost in the window `(now − period, now]` stays within the count.
///
/// - Exact: no interval of one period ever holds more than `count`.
/// - State grows with the limit: one 16-byte entry per admitted hit (hits of
///   the same millisecond share one), so up to `count` entries per key. Fine
///   for "5 logins per 15 minutes", costly for "10,000 per hour"; use
///   [`SlidingWindowCounter`](super::SlidingWindowCounter) or
///   [`Gcra`](super::Gcra) for large limits.
/// - Deciding costs O(entries that expired since the last hit), and a denial
///   scans for its retry time: O(count) at worst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlidingWindowLog;

/// [`SlidingWindowLog`] state: admitted hits, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlidingWindowLogState {
    /// `(time_ms, cost)` of each admitted hit, oldest first.
    pub entries: VecDeque<(u64, u64)>,
    /// The sum of the costs in `entries`.
    pub total: u64,
}

/// `at cost at cost …`, oldest first; the total is their sum.
impl State for SlidingWindowLogState {
    fn encode(&self, out: &mut Vec<u8>) {
        for (i, (at, cost)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            push_decimal(out, *at);
            out.push(b' ');
            push_decimal(out, *cost);
        }
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut state = SlidingWindowLogState::default();
        if bytes.is_empty() {
            return Some(state);
        }
        let mut words = bytes.split(|&b| b == b' ');
        while let Some(at) = words.next() {
            let at = parse_decimal(at)?;
            let cost = parse_decimal(words.next()?)?;
            state.entries.push_back((at, cost));
            state.total = state.total.saturating_add(cost);
        }
        Some(state)
    }
}

impl Strategy for SlidingWindowLog {
    type State = SlidingWindowLogState;
    const KIND: StrategyKind = StrategyKind::SlidingWindowLog;

    fn capacity(&self, rate: &Rate) -> u64 {
        rate.count()
    }

    fn hit(
        &self,
        rate: &Rate,
        state: &mut SlidingWindowLogState,
        now_ms: u64,
        cost: u64,
    ) -> Decision {
        let limit = rate.count();
        let period = rate.period_ms();
        // An entry at t counts while now < t + period (for ever, when
        // t + period is past the end of time).
        while let Some(&(at, spent)) = state.entries.front() {
            if !window_over(at.saturating_add(period), now_ms) {
                break;
            }
            state.entries.pop_front();
            state.total = state.total.saturating_sub(spent);
        }
        let reset = |state: &SlidingWindowLogState| {
            state
                .entries
                .back()
                .map_or(0, |&(at, _)| until(at.saturating_add(period), now_ms))
        };
        let remaining = limit.saturating_sub(state.total);
        if cost > limit {
            return Decision::cost_exceeds_capacity(limit, remaining, reset(state));
        }
        if cost <= remaining {
            if cost > 0 {
                // Never log out of order, even if the clock went back.
                let at = state
                    .entries
                    .back()
                    .map_or(now_ms, |&(last, _)| last.max(now_ms));
                match state.entries.back_mut() {
                    Some((last, spent)) if *last == at => *spent = spent.saturating_add(cost),
                    _ => state.entries.push_back((at, cost)),
                }
                state.total = state.total.saturating_add(cost);
            }
            return Decision::allowed(limit, remaining - cost, reset(state));
        }
        // Wait until enough of the oldest entries have slid out.
        let mut to_free = state.total.saturating_add(cost).saturating_sub(limit);
        let mut retry = reset(state);
        for &(at, spent) in &state.entries {
            if spent >= to_free {
                retry = until(at.saturating_add(period), now_ms);
                break;
            }
            to_free -= spent;
        }
        Decision::denied(limit, remaining, retry, reset(state))
    }

    fn refund(
        &self,
        _rate: &Rate,
        state: &mut SlidingWindowLogState,
        _now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) {
        // A hit is logged at its time, or at the newest entry's when the
        // clock went back: the oldest entries not older than the charge.
        let mut left = cost;
        for (at, spent) in state.entries.iter_mut() {
            if left == 0 {
                break;
            }
            if *at >= charged_ms {
                let back = (*spent).min(left);
                *spent -= back;
                left -= back;
                state.total = state.total.saturating_sub(back);
            }
        }
        state.entries.retain(|&(_, spent)| spent > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_oldest_entries_to_slide_out() {
        let rate: Rate = "3/1s".parse().unwrap();
        let log = SlidingWindowLog;
        let mut state = SlidingWindowLogState::default();
        assert!(log.hit(&rate, &mut state, 100, 1).is_allowed());
        assert!(log.hit(&rate, &mut state, 400, 1).is_allowed());
        assert!(log.hit(&rate, &mut state, 400, 1).is_allowed());
        assert_eq!(state.entries.len(), 2);
        let denied = log.hit(&rate, &mut state, 500, 2);
        // Two must go: the one at 100 leaves at 1100, the two at 400 at 1400.
        assert_eq!(denied.retry_after_ms(), 900);
        assert!(!log.hit(&rate, &mut state, 1_399, 2).is_allowed());
        assert!(log.hit(&rate, &mut state, 1_400, 2).is_allowed());
    }
}
