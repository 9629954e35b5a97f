use super::state::words_state;
use super::{Storage, Strategy, StrategyKind, until, window_end_ms, window_over};
use crate::{Decision, Rate};

/// Two aligned fixed windows, the previous one weighted by how much of it the
/// sliding window still covers: `previous × (period − elapsed) / period +
/// current` must stay within the count.
///
/// - Admits at most `count` per aligned window and smooths the edge a fixed
///   window has; an arbitrary interval of one period can still see up to
///   `2 × count` when the previous window's hits all came at its end.
/// - Exact integer arithmetic, no floating point.
/// - State: the current window's end and both counts, 24 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlidingWindowCounter;

/// [`SlidingWindowCounter`] state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlidingWindowCounterState {
    /// The end of the current window (exclusive), in ms.
    pub window_end_ms: u64,
    /// The cost admitted in the window before it.
    pub previous: u64,
    /// The cost admitted in the current window.
    pub current: u64,
}

words_state!(SlidingWindowCounterState {
    window_end_ms,
    previous,
    current
});

impl Strategy for SlidingWindowCounter {
    type State = SlidingWindowCounterState;
    const KIND: StrategyKind = StrategyKind::SlidingWindowCounter;
    const STORAGE: Storage = Storage::Counters { windows: 2 };

    fn capacity(&self, rate: &Rate) -> u64 {
        rate.count()
    }

    fn hit(
        &self,
        rate: &Rate,
        state: &mut SlidingWindowCounterState,
        now_ms: u64,
        cost: u64,
    ) -> Decision {
        let limit = rate.count();
        let period = rate.period_ms();
        if window_over(state.window_end_ms, now_ms) {
            let end = window_end_ms(now_ms, period);
            let previous_window = state.window_end_ms.saturating_add(period) == end;
            state.previous = if previous_window { state.current } else { 0 };
            state.current = 0;
            state.window_end_ms = end;
        }
        let end = state.window_end_ms;
        // How far into the current window we are; 0 if the clock went back.
        let elapsed = now_ms
            .saturating_add(period)
            .saturating_sub(end)
            .min(period - 1);
        // The previous window's weight, rounded up to whole hits.
        let carried = state
            .previous
            .saturating_mul(period - elapsed)
            .div_ceil(period);
        let used = state.current.saturating_add(carried);
        let remaining = limit.saturating_sub(used);
        let reset = reset_after(state, period, now_ms);
        if cost > limit {
            return Decision::cost_exceeds_capacity(limit, remaining, reset);
        }
        if cost <= remaining {
            state.current = state.current.saturating_add(cost);
            return Decision::allowed(limit, remaining - cost, reset_after(state, period, now_ms));
        }
        let retry = retry_after(state, period, limit, cost, elapsed);
        Decision::denied(limit, remaining, retry, reset)
    }

    fn state_from_counters(
        &self,
        rate: &Rate,
        now_ms: u64,
        counters: &[u64],
    ) -> SlidingWindowCounterState {
        let (previous, current) = match counters {
            [.., previous, current] => (*previous, *current),
            [current] => (0, *current),
            [] => (0, 0),
        };
        SlidingWindowCounterState {
            window_end_ms: window_end_ms(now_ms, rate.period_ms()),
            previous,
            current,
        }
    }

    fn refund(
        &self,
        rate: &Rate,
        state: &mut SlidingWindowCounterState,
        _now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) {
        // The cost sits in the counter of the window it was charged in:
        // the current one, or the previous one once the state rolled on.
        let window = window_end_ms(charged_ms, rate.period_ms());
        if state.window_end_ms == window {
            state.current = state.current.saturating_sub(cost);
        } else if state.window_end_ms == window.saturating_add(rate.period_ms()) {
            state.previous = state.previous.saturating_sub(cost);
        }
    }
}

/// How long until both windows' counts have slid out.
fn reset_after(state: &SlidingWindowCounterState, period: u64, now_ms: u64) -> u64 {
    let end = state.window_end_ms;
    if state.current > 0 {
        until(end.saturating_add(period), now_ms)
    } else if state.previous > 0 {
        until(end, now_ms)
    } else {
        0
    }
}

/// The shortest wait after which a hit of `cost` passes, when nothing else
/// hits meanwhile. The weighted count only falls with time, so the first
/// passing moment is found in closed form, in this window or the next.
fn retry_after(
    state: &SlidingWindowCounterState,
    period: u64,
    limit: u64,
    cost: u64,
    elapsed: u64,
) -> u64 {
    let to_end = period - elapsed;
    // Later in this window: previous × (period − e) ≤ (limit − current − cost) × period.
    let room = limit.checked_sub(state.current.saturating_add(cost));
    // The largest (period − e) that passes, if the previous window weighs anything.
    if let Some(left) =
        room.and_then(|room| room.saturating_mul(period).checked_div(state.previous))
    {
        let wait = to_end.saturating_sub(left).max(1);
        if wait < to_end {
            return wait;
        }
    }
    // In the next window, current becomes previous: current × (period − e) ≤ (limit − cost) × period.
    let Some(left) = limit
        .saturating_sub(cost)
        .saturating_mul(period)
        .checked_div(state.current)
    else {
        return to_end;
    };
    let into_next = period.saturating_sub(left);
    if into_next < period {
        to_end.saturating_add(into_next)
    } else {
        to_end.saturating_add(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighs_the_previous_window() {
        let rate: Rate = "10/s".parse().unwrap();
        let swc = SlidingWindowCounter;
        let mut state = SlidingWindowCounterState::default();
        assert!(swc.hit(&rate, &mut state, 10_900, 10).is_allowed());
        // 25% into the next window, the previous 10 weigh 7.5 → 8 used.
        let d = swc.hit(&rate, &mut state, 11_250, 2);
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 0);
        let denied = swc.hit(&rate, &mut state, 11_250, 1);
        // Needs 10 × (1000 − e) ≤ (10 − 2 − 1) × 1000 → e ≥ 300.
        assert_eq!(denied.retry_after_ms(), 50);
        assert!(!swc.hit(&rate, &mut state, 11_299, 1).is_allowed());
        assert!(swc.hit(&rate, &mut state, 11_300, 1).is_allowed());
    }
}
