//! Property tests: every strategy against its documented bound, exact retry
//! times, remaining quota, and the equivalence of the three bucket strategies.

use std::num::NonZeroU64;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::TestCaseError;
use traffik_core::{
    AnyStrategy, Decision, FixedWindow, Gcra, LeakyBucket, Rate, Reason, SlidingWindowCounter,
    SlidingWindowLog, State, Strategy, StrategyKind, TokenBucket, Visitor,
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
            let admitted = AnyStrategy::from(kind).visit(BurstAtOnce(&rate));
            prop_assert_eq!(admitted, rate.count(), "{}", kind);
        }
    }

    /// No arithmetic can overflow: any time, cost, rate and state.
    #[test]
    fn total_over_the_whole_domain(
        rate in any_rate(),
        burst in proptest::option::of(1u64..=1 << 20),
        words in proptest::collection::vec(any::<u64>(), 0..7),
        hits in proptest::collection::vec((any_time(), any_cost()), 1..12),
    ) {
        for strategy in every_strategy(burst) {
            if strategy.check(&rate).is_err() {
                continue;
            }
            strategy.visit(Total { rate: &rate, words: &words, hits: &hits })?;
        }
    }

    /// Refunding an admitted hit at once gives back exactly what it took:
    /// the quota is as if the hit never happened, on every strategy.
    #[test]
    fn a_refund_undoes_the_hit(rate in rates(), hits in hits(14, 2_500), burst in 1u64..=20) {
        for strategy in every_strategy(Some(burst)) {
            strategy.visit(RefundUndoes { rate: &rate, hits: &hits })?;
        }
    }

    /// A refund after the state moved on frees no more than the hit took:
    /// a hit refunded later never leaves more quota than if it had not
    /// happened at all.
    #[test]
    fn a_late_refund_frees_no_more_than_the_hit(
        rate in rates(),
        hits in hits(14, 2_500),
        delay in 0u64..5_000,
        burst in 1u64..=20,
    ) {
        for strategy in every_strategy(Some(burst)) {
            strategy.visit(LateRefund { rate: &rate, hits: &hits, delay })?;
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

/// How many hits of cost 1 a fresh key admits at one instant.
struct BurstAtOnce<'a>(&'a Rate);

impl Visitor for BurstAtOnce<'_> {
    type Output = u64;
    fn visit<S: Strategy>(self, strategy: &S) -> u64 {
        let mut state = S::State::default();
        (0..self.0.count() * 3)
            .filter(|_| {
                strategy
                    .hit(self.0, &mut state, 1_700_000_000_000, 1)
                    .is_allowed()
            })
            .count() as u64
    }
}

/// Every strategy, the buckets with and without a burst.
fn every_strategy(burst: Option<u64>) -> Vec<AnyStrategy> {
    let mut all: Vec<AnyStrategy> = StrategyKind::ALL
        .into_iter()
        .map(AnyStrategy::from)
        .collect();
    if let Some(burst) = burst.and_then(NonZeroU64::new) {
        all.push(TokenBucket::with_burst(burst).into());
        all.push(LeakyBucket::with_burst(burst).into());
        all.push(Gcra::with_burst(burst).into());
    }
    all
}

/// Any rate at all: every count and period `Rate` accepts, up to 2^51.
fn any_rate() -> impl proptest::strategy::Strategy<Value = Rate> {
    (1u64..=1 << 51, 0u32..=51).prop_filter_map("rate within 2^51", |(count, shift)| {
        let period = (1u64 << shift).max(1) + u64::from(shift % 7);
        Rate::new(
            count % (1 << 20) + 1,
            std::time::Duration::from_millis(period),
        )
        .ok()
    })
}

/// A time anywhere in `u64`, often near its ends.
fn any_time() -> impl proptest::strategy::Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..10_000).prop_map(|d| u64::MAX - d),
        0u64..10_000,
        Just(u64::MAX),
    ]
}

/// A cost anywhere in `u64`, often small or huge.
fn any_cost() -> impl proptest::strategy::Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..20,
        (0u64..20).prop_map(|d| u64::MAX - d)
    ]
}

/// Drives random times, costs and states (arbitrary words decoded into each
/// strategy's state) through a strategy: nothing may panic (overflow checks
/// are on in tests), and every decision must be self-consistent.
struct Total<'a> {
    rate: &'a Rate,
    words: &'a [u64],
    hits: &'a [(u64, u64)],
}

impl Visitor for Total<'_> {
    type Output = Result<(), TestCaseError>;
    fn visit<S: Strategy>(self, strategy: &S) -> Self::Output {
        let capacity = strategy.capacity(self.rate);
        let mut text = Vec::new();
        for (i, word) in self.words.iter().enumerate() {
            if i > 0 {
                text.push(b' ');
            }
            text.extend_from_slice(word.to_string().as_bytes());
        }
        // Any words as a state, when they decode; a fresh state otherwise.
        let mut state = S::State::decode(&text).unwrap_or_default();
        for &(now, cost) in self.hits {
            let peeked = strategy.peek(self.rate, &state, now, cost);
            let decision = strategy.hit(self.rate, &mut state, now, cost);
            prop_assert_eq!(peeked, decision, "{:?}: peek and hit disagree", S::KIND);
            prop_assert!(
                decision.remaining() <= capacity,
                "{:?}: {:?}",
                S::KIND,
                decision
            );
            prop_assert_eq!(decision.limit(), capacity);
            if decision.is_allowed() {
                prop_assert!(cost <= capacity);
                prop_assert_eq!(decision.retry_after_ms(), 0);
            } else {
                prop_assert!(decision.retry_after_ms() >= 1);
            }
            if cost > capacity {
                prop_assert_eq!(decision.reason(), Reason::CostExceedsCapacity);
            }
            // A refund of any cost, at any charge time, stays total and
            // never frees more than the capacity.
            let before = strategy.peek(self.rate, &state, now, 1).remaining();
            let mut refunded = state.clone();
            strategy.refund(
                self.rate,
                &mut refunded,
                now,
                now.saturating_sub(cost % 5_000),
                cost,
            );
            let after = strategy.peek(self.rate, &refunded, now, 1);
            prop_assert!(
                after.remaining() >= before,
                "{:?}: a refund took quota",
                S::KIND
            );
            prop_assert!(after.remaining() <= capacity);
            // Whatever the state became, it encodes and decodes to itself.
            let mut bytes = Vec::new();
            state.encode(&mut bytes);
            let back = S::State::decode(&bytes);
            prop_assert!(back.is_some(), "{:?}: {:?} does not decode", S::KIND, bytes);
        }
        Ok(())
    }
}

/// Regression: at the end of time (a clock at `u64::MAX - 1`) the sliding
/// window counter and GCRA overflowed ("attempt to add with overflow"), and a
/// fixed window starting a new window on every hit at `u64::MAX` admitted
/// without limit. Time now saturates: the last window never closes.
#[test]
fn the_end_of_time_neither_overflows_nor_lifts_the_limit() {
    let rate: Rate = "3/min".parse().unwrap();
    for kind in StrategyKind::ALL {
        let strategy = AnyStrategy::from(kind);
        for start in [u64::MAX - 1, u64::MAX] {
            let admitted = strategy.visit(AdmittedAt {
                rate: &rate,
                times: &[start, start, u64::MAX, u64::MAX, u64::MAX, u64::MAX],
            });
            assert!(admitted <= 3, "{kind} admitted {admitted} of 6 at {start}");
        }
    }
}

/// How many hits of cost 1 at `times` are admitted from a fresh state.
struct AdmittedAt<'a> {
    rate: &'a Rate,
    times: &'a [u64],
}

impl Visitor for AdmittedAt<'_> {
    type Output = usize;
    fn visit<S: Strategy>(self, strategy: &S) -> usize {
        let mut state = S::State::default();
        self.times
            .iter()
            .filter(|&&now| strategy.hit(self.rate, &mut state, now, 1).is_allowed())
            .count()
    }
}

/// Checks, for one strategy, that its word codec is a bijection: any words
/// read as a state and write back as the same words, and a state survives
/// the round trip through words and through the byte codec alike.
struct WordsRoundTrip {
    words: [u64; 4],
}

impl traffik_core::Visitor for WordsRoundTrip {
    type Output = Result<(), TestCaseError>;

    fn visit<S: traffik_core::Strategy>(self, _: &S) -> Self::Output {
        use traffik_core::strategy::State;
        let n = S::State::WORDS;
        prop_assert!(n <= 3, "in-memory tables hold at most 3 words");
        let state = S::State::from_words(&self.words[..n]);
        let mut back = [0u64; 4];
        state.to_words(&mut back[..n]);
        prop_assert_eq!(&back[..n], &self.words[..n]);
        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        let decoded = S::State::decode(&bytes);
        prop_assert!(decoded.is_some(), "{:?} does not decode", bytes);
        let mut again = [0u64; 4];
        decoded.unwrap().to_words(&mut again[..n]);
        prop_assert_eq!(&again[..n], &self.words[..n]);
        // Short slices read missing words as 0 and never panic.
        let _ = S::State::from_words(&self.words[..n.saturating_sub(1)]);
        state.to_words(&mut []);
        Ok(())
    }
}

proptest! {
    #[test]
    fn the_word_codec_is_a_bijection(words in proptest::array::uniform4(any::<u64>())) {
        for kind in traffik_core::StrategyKind::ALL {
            traffik_core::AnyStrategy::from(kind).visit(WordsRoundTrip { words })?;
        }
    }
}

/// Runs the hits; after each admitted one, a copy of the state is refunded
/// at once and must decide every later cost as the state before the hit.
struct RefundUndoes<'a> {
    rate: &'a Rate,
    hits: &'a [(u64, u64)],
}

impl Visitor for RefundUndoes<'_> {
    type Output = Result<(), TestCaseError>;
    fn visit<S: Strategy>(self, strategy: &S) -> Self::Output {
        let mut state = S::State::default();
        let mut now = 1_700_000_000_123;
        for &(gap, cost) in self.hits {
            now += gap;
            let before = state.clone();
            let decision = strategy.hit(self.rate, &mut state, now, cost);
            if !decision.is_allowed() || cost == 0 {
                continue;
            }
            let mut refunded = state.clone();
            strategy.refund(self.rate, &mut refunded, now, now, cost);
            for probe in 0..=strategy.capacity(self.rate) {
                prop_assert_eq!(
                    strategy.peek(self.rate, &refunded, now, probe),
                    strategy.peek(self.rate, &before, now, probe),
                    "{:?}: refund of {} at {}",
                    S::KIND,
                    cost,
                    now
                );
            }
        }
        Ok(())
    }
}

/// After the hits, one more hit is refunded `delay` ms later: then and at
/// every later time, that key has at most the quota of one where the hit
/// never happened.
struct LateRefund<'a> {
    rate: &'a Rate,
    hits: &'a [(u64, u64)],
    delay: u64,
}

impl Visitor for LateRefund<'_> {
    type Output = Result<(), TestCaseError>;
    fn visit<S: Strategy>(self, strategy: &S) -> Self::Output {
        let mut without = S::State::default();
        let mut now = 1_700_000_000_123;
        let (last, earlier) = self.hits.split_last().expect("one hit at least");
        for &(gap, cost) in earlier {
            now += gap;
            strategy.hit(self.rate, &mut without, now, cost);
        }
        now += last.0;
        let mut with = without.clone();
        let cost = last.1;
        if !strategy.hit(self.rate, &mut with, now, cost).is_allowed() {
            return Ok(());
        }
        let charged = now;
        strategy.refund(self.rate, &mut with, charged + self.delay, charged, cost);
        for later in [0, 1, 7, 100, 999, 5_000, 60_000] {
            let at = charged + self.delay + later;
            for probe in 0..=strategy.capacity(self.rate) {
                let (a, b) = (
                    strategy.peek(self.rate, &with, at, probe),
                    strategy.peek(self.rate, &without, at, probe),
                );
                prop_assert!(
                    a.is_allowed() <= b.is_allowed() && a.remaining() <= b.remaining(),
                    "{:?}: refunded {:?} frees more than never hit {:?}",
                    S::KIND,
                    a,
                    b
                );
            }
        }
        Ok(())
    }
}
