use super::state::words_state;
use super::{Storage, Strategy, StrategyKind, until, window_end_ms, window_over};
use crate::{Decision, Rate};

/// Counts hits in windows of one period, aligned to multiples of the period
/// since the UNIX epoch, so every node agrees where a window starts and ends.
///
/// - Admits at most `count` per aligned window; an arbitrary interval of one
///   period that straddles an edge can see up to `2 × count`.
/// - Any window size works, sub-second included; no lock beyond the key's.
/// - State: the window's end and its count, 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FixedWindow;

/// [`FixedWindow`] state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    /// The end of the window `count` belongs to (exclusive), in ms.
    pub window_end_ms: u64,
    /// The cost admitted in that window.
    pub count: u64,
}

words_state!(FixedWindowState {
    window_end_ms,
    count
});

impl Strategy for FixedWindow {
    type State = FixedWindowState;
    const KIND: StrategyKind = StrategyKind::FixedWindow;
    const STORAGE: Storage = Storage::Counters { windows: 1 };

    fn capacity(&self, rate: &Rate) -> u64 {
        rate.count()
    }

    fn hit(&self, rate: &Rate, state: &mut FixedWindowState, now_ms: u64, cost: u64) -> Decision {
        let limit = rate.count();
        if window_over(state.window_end_ms, now_ms) {
            state.window_end_ms = window_end_ms(now_ms, rate.period_ms());
            state.count = 0;
        }
        // A state from the future (the clock went back) counts until its end;
        // the last window of time never ends.
        let until_end = until(state.window_end_ms, now_ms);
        let reset = |count: u64| if count == 0 { 0 } else { until_end };
        let remaining = limit.saturating_sub(state.count);
        if cost > limit {
            Decision::cost_exceeds_capacity(limit, remaining, reset(state.count))
        } else if cost <= remaining {
            state.count = state.count.saturating_add(cost);
            Decision::allowed(limit, remaining - cost, reset(state.count))
        } else {
            Decision::denied(limit, remaining, until_end, until_end)
        }
    }

    fn state_from_counters(&self, rate: &Rate, now_ms: u64, counters: &[u64]) -> FixedWindowState {
        FixedWindowState {
            window_end_ms: window_end_ms(now_ms, rate.period_ms()),
            count: counters.last().copied().unwrap_or(0),
        }
    }

    fn refund(
        &self,
        rate: &Rate,
        state: &mut FixedWindowState,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) {
        // Only the window the hit was counted in holds its cost.
        let window = window_end_ms(charged_ms, rate.period_ms());
        if state.window_end_ms == window && !window_over(window, now_ms) {
            state.count = state.count.saturating_sub(cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let rate: Rate = "2/500ms".parse().unwrap();
        let mut state = FixedWindowState::default();
        assert!(FixedWindow.hit(&rate, &mut state, 1_250, 1).is_allowed());
        assert!(FixedWindow.hit(&rate, &mut state, 1_499, 1).is_allowed());
        let denied = FixedWindow.hit(&rate, &mut state, 1_499, 1);
        assert_eq!(denied.retry_after_ms(), 1);
        assert!(FixedWindow.hit(&rate, &mut state, 1_500, 2).is_allowed());
        assert_eq!(
            state,
            FixedWindowState {
                window_end_ms: 2_000,
                count: 2
            }
        );
    }
}
