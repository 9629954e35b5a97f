//! Property tests: every strategy against its documented bound, exact retry
//! times, remaining quota, and the equivalence of the three bucket strategies.

use std::num::NonZeroU64;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use traffik_core::{
    Decision, FixedWindow, Gcra, LeakyBucket, Rate, Reason, SlidingWindowCounter, SlidingWindowLog,
    Strategy, StrategyKind, TokenBucket,
};

/// A random sequence of hits: (milliseconds since the previous hit, cost).
fn hits(max_cost: u64, max_gap: u64) -> impl proptest::strategy::Strategy<Value = Vec<(u64, u64)>> {
    let gap = prop_oneof![3 => Just(0u64), 5 => 0..=max_gap / 8 + 1, 2 => 0..=max_gap];
    proptest::collection::vec((gap, 0..=max_cost), 1..120)
}

fn rates() -> impl proptest::strategy::Strategy<Value = Rate> {
    (
        1u64..=12,
        prop_oneof![1u64..=20, 90u64..=1_100, Just(60_000u64)],
    )
        .prop_map(|(count, period)| {
            Rate::new(count, std::time::Duration::from_millis(period)).unwrap()
        })
}

/// Runs the hits from a start time well after the epoch; returns every
/// decision with its time and cost.
fn run<S: Strategy>(strategy: &S, rate: &Rate, hits: &[(u64, u64)]) -> Vec<(u64, u64, Decision)> {
    let mut state = S::State::default();
    let mut now = 1_700_000_000_123;
    let mut out = Vec::with_capacity(hits.len());
    for &(gap, cost) in hits {
        now += gap;
        let before = strategy.peek(rate, &state, now, 0);
        let decision = strategy.hit(rate, &mut state, now, cost);
        // Remaining falls by the cost on an admitted hit, and not at all on a denied one.
        if decision.is_allowed() {
            assert_eq!(
                decision.remaining(),
                before.remaining() - cost,
                "{decision:?} at {now}"
            );
            assert_eq!(decision.retry_after_ms(), 0);
        } else {
            assert_eq!(
                decision.remaining(),
                before.remaining(),
                "{decision:?} at {now}"
            );
            let after = strategy.peek(rate, &state, now, 0);
            assert_eq!(
                after.remaining(),
                before.remaining(),
                "a denied hit consumed quota"
            );
        }
        if decision.reason() == Reason::OverLimit {
            // Single client: the hit passes at exactly now + retry_after and not 1 ms earlier.
            let retry = decision.retry_after_ms();
            assert!(retry >= 1);
            let late = strategy.peek(rate, &state, now + retry, cost);
            assert!(
                late.is_allowed(),
                "{:?}: {decision:?} then {late:?} at +{retry}",
                S::KIND
            );
            let early = strategy.peek(rate, &state, now + retry - 1, cost);
            assert!(
                !early.is_allowed(),
                "{:?}: {decision:?} but {early:?} at +{}",
                S::KIND,
                retry - 1
            );
        }
        if decision.reason() == Reason::CostExceedsCapacity {
            assert!(cost > strategy.capacity(rate));
            assert_eq!(decision.retry_after_ms(), u64::MAX);
        }
        // After reset_after the state is as good as new.
        let reset = decision.reset_after_ms();
        let fresh = strategy.peek(rate, &state, now + reset, 0);
        assert_eq!(
            fresh.remaining(),
            strategy.capacity(rate),
            "{:?} not full after reset_after",
            S::KIND
        );
        if reset > 0 {
            let not_yet = strategy.peek(rate, &state, now + reset - 1, 0);
            assert!(
                not_yet.remaining() < strategy.capacity(rate),
                "{:?} reset_after too late",
                S::KIND
            );
        }
        out.push((now, cost, decision));
    }
    out
}

fn admitted(decisions: &[(u64, u64, Decision)]) -> Vec<(u64, u64)> {
    decisions
        .iter()
        .filter(|(_, cost, d)| d.is_allowed() && *cost > 0)
        .map(|&(at, cost, _)| (at, cost))
        .collect()
}

/// The most cost admitted in any half-open interval `[t, t + len)`.
fn max_in_any_interval(admitted: &[(u64, u64)], len: u64) -> u64 {
    let mut best = 0;
    for (i, &(start, _)) in admitted.iter().enumerate() {
        let sum: u64 = admitted[i..]
            .iter()
            .take_while(|(at, _)| *at < start + len)
            .map(|(_, cost)| cost)
            .sum();
        best = best.max(sum);
    }
    best
}

/// The most cost admitted in any aligned window `[k·len, (k+1)·len)`.
fn max_in_aligned_window(admitted: &[(u64, u64)], len: u64) -> u64 {
    let mut sums = std::collections::BTreeMap::new();
    for &(at, cost) in admitted {
        *sums.entry(at / len).or_insert(0) += cost;
    }
    sums.values().copied().max().unwrap_or(0)
}

/// For the bucket strategies: in every closed interval `[a, b]`, admitted ≤
/// burst + ⌊(b − a) × count / period⌋.
fn check_bucket_bound(admitted: &[(u64, u64)], rate: &Rate, burst: u64) {
    for i in 0..admitted.len() {
        let mut sum = 0;
        for &(at, cost) in &admitted[i..] {
            sum += cost;
            let span = at - admitted[i].0;
            let bound = burst + span * rate.count() / rate.period_ms();
            assert!(sum <= bound, "{sum} admitted in {span} ms, bound {bound}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fixed_window_bound(rate in rates(), hits in hits(14, 2_500)) {
        let out = run(&FixedWindow, &rate, &hits);
        let got = admitted(&out);
        prop_assert!(max_in_aligned_window(&got, rate.period_ms()) <= rate.count());
        prop_assert!(max_in_any_interval(&got, rate.period_ms()) <= 2 * rate.count());
    }

    #[test]
    fn sliding_window_counter_bound(rate in rates(), hits in hits(14, 2_500)) {
        let out = run(&SlidingWindowCounter, &rate, &hits);
        let got = admitted(&out);
        prop_assert!(max_in_aligned_window(&got, rate.period_ms()) <= rate.count());
        prop_assert!(max_in_any_interval(&got, rate.period_ms()) <= 2 * rate.count());
    }

    #[test]
    fn sliding_window_log_is_exact(rate in rates(), hits in hits(14, 2_500)) {
        let out = run(&SlidingWindowLog, &rate, &hits);
        prop_assert!(max_in_any_interval(&admitted(&out), rate.period_ms()) <= rate.count());
    }

    #[test]
    fn bucket_strategies_bound_and_agree(
        rate in rates(),
        burst in proptest::option::of(1u64..=20),
        hits in hits(22, 2_500),
    ) {
        let burst = burst.map(|b| NonZeroU64::new(b).unwrap());
        let (tb, lb, gcra) = match burst {
            Some(b) => (TokenBucket::with_burst(b), LeakyBucket::with_burst(b), Gcra::with_burst(b)),
            None => (TokenBucket::new(), LeakyBucket::new(), Gcra::new()),
        };
        let tb_out = run(&tb, &rate, &hits);
        let lb_out = run(&lb, &rate, &hits);
        let gcra_out = run(&gcra, &rate, &hits);
        prop_assert_eq!(&tb_out, &lb_out);
        prop_assert_eq!(&tb_out, &gcra_out);
        check_bucket_bound(&admitted(&tb_out), &rate, tb.capacity(&rate));
    }

    /// With no pause long enough to refill, a strategy admits exactly its
    /// capacity from a fresh key.
    #[test]
    fn a_fresh_key_admits_exactly_the_capacity(rate in rates()) {
        for kind in StrategyKind::ALL {
            let strategy = traffik_core::AnyStrategy::from(kind);
            let admitted = match strategy {
                traffik_core::AnyStrategy::FixedWindow(s) => burst_at_once(&s, &rate),
                traffik_core::AnyStrategy::SlidingWindowCounter(s) => burst_at_once(&s, &rate),
                traffik_core::AnyStrategy::SlidingWindowLog(s) => burst_at_once(&s, &rate),
                traffik_core::AnyStrategy::TokenBucket(s) => burst_at_once(&s, &rate),
                traffik_core::AnyStrategy::LeakyBucket(s) => burst_at_once(&s, &rate),
                traffik_core::AnyStrategy::Gcra(s) => burst_at_once(&s, &rate),
                _ => unreachable!(),
            };
            prop_assert_eq!(admitted, rate.count(), "{}", kind);
        }
    }

    #[test]
    fn rate_display_round_trips(count in 1u64..=1_000_000, multiplier in 1u64..=500, unit in 0usize..5) {
        let unit_ms = [1, 1_000, 60_000, 3_600_000, 86_400_000][unit];
        if let Ok(rate) = Rate::new(count, std::time::Duration::from_millis(multiplier * unit_ms)) {
            let text = rate.to_string();
            prop_assert_eq!(text.parse::<Rate>(), Ok(rate), "{}", text);
        }
    }

    #[test]
    fn rate_parsing_never_panics(text in "\\PC{0,24}") {
        let _ = text.parse::<Rate>();
    }

    #[test]
    fn rate_parsing_never_panics_on_near_misses(text in "[0-9 ./,a-z-]{0,16}") {
        if let Ok(rate) = text.parse::<Rate>() {
            prop_assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        }
    }
}

fn burst_at_once<S: Strategy>(strategy: &S, rate: &Rate) -> u64 {
    let mut state = S::State::default();
    (0..rate.count() * 3)
        .filter(|_| {
            strategy
                .hit(rate, &mut state, 1_700_000_000_000, 1)
                .is_allowed()
        })
        .count() as u64
}
