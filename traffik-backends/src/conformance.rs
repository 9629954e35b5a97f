//! The conformance suite: what every [`Backend`] must do, generic over the
//! backend, run against each one by [`conformance_tests!`](crate::conformance_tests).
//!
//! The oracle is the pure strategy functions in `traffik-core`: a backend must
//! return exactly the decisions they return, for every strategy, cost and
//! time, under any concurrency.
//!
//! Each case uses a fresh namespace, so cases can share one store.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use traffik_core::{
    AnyStrategy, Backend, Decision, Decisions, FixedWindow, Gcra, LeakyBucket, Limit, ManualClock,
    Rate, Reason, SlidingWindowCounter, StrategyKind, Throttle, ThrottleGroup, TokenBucket,
};

/// Where the manual clock of every case starts: a time well after the epoch,
/// with a remainder so windows do not start on it.
pub const START_MS: u64 = 1_700_000_000_123;

/// Generates one `#[tokio::test]` per conformance case.
///
/// The argument is an expression that evaluates to a future of
/// `(backend, guard)`: the guard (a running server, say) is kept alive until
/// the case ends.
///
/// ```no_run
/// # #[cfg(feature = "memory")]
/// # mod cases {
/// use traffik_backends::memory::MemoryBackend;
///
/// traffik_backends::conformance_tests!(async { (MemoryBackend::new(), ()) });
/// # }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            decisions_match_the_pure_strategies,
            cost_is_counted_and_bounded,
            peek_does_not_consume,
            reset_forgets_a_key,
            state_expires_after_reset_after,
            keys_are_isolated,
            concurrent_hits_admit_exactly_the_limit,
            a_limit_per_call_overrides_the_throttle_limit,
            costs_that_can_never_pass_touch_nothing,
            identities_of_any_length_and_bytes_are_limited,
            a_group_charges_all_or_nothing,
            concurrent_groups_never_exceed_any_limit,
            a_refund_gives_back_a_reservation,
            concurrent_reservations_never_exceed_the_limit,
            a_lockout_escalates_exactly_and_forgives,
            a_block_lasts_until_the_throttle_has_room,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let (backend, _guard) = $fixture.await;
            $crate::conformance::$case(&backend).await;
        }
    )*};
}

/// A namespace no other case uses, in this process or another.
fn fresh_namespace() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "conformance-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The strategies every case runs: all six, and the buckets with a burst
/// other than the count.
fn strategies() -> Vec<AnyStrategy> {
    let burst = NonZeroU64::new(7).unwrap_or(NonZeroU64::MIN);
    let mut all: Vec<AnyStrategy> = StrategyKind::ALL
        .into_iter()
        .map(AnyStrategy::from)
        .collect();
    all.push(TokenBucket::with_burst(burst).into());
    all.push(LeakyBucket::with_burst(burst).into());
    all.push(Gcra::with_burst(burst).into());
    all
}

fn rate(text: &str) -> Rate {
    match text.parse() {
        Ok(rate) => rate,
        Err(error) => panic!("bad rate {text:?} in the conformance suite: {error}"),
    }
}

fn throttle<B: Backend + Clone>(
    backend: &B,
    name: &str,
    rate: Rate,
    strategy: AnyStrategy,
    clock: &ManualClock,
) -> Throttle<B, ManualClock> {
    Throttle::builder(name, rate)
        .namespace(fresh_namespace())
        .strategy(strategy)
        .failure_policy(traffik_core::FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap_or_else(|error| panic!("conformance throttle {name}: {error}"))
}

async fn hit<B: Backend, C: traffik_core::Clock>(
    throttle: &Throttle<B, C>,
    identity: &str,
    cost: u64,
) -> Decision {
    match throttle.hit_n(identity, cost).await {
        Ok(decision) => decision,
        Err(error) => panic!("backend failed on {identity}: {error}"),
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// The pure strategy, for the oracle: its state kept as the strategy's own
/// codec bytes, so one oracle serves every strategy of the table.
struct Oracle {
    strategy: AnyStrategy,
    rate: Rate,
    state: Option<Vec<u8>>,
    scratch: Vec<u8>,
}

impl Oracle {
    fn new(strategy: AnyStrategy, rate: Rate) -> Oracle {
        Oracle {
            strategy,
            rate,
            state: None,
            scratch: Vec::new(),
        }
    }

    fn refund(&mut self, now: u64, charged: u64, cost: u64) {
        let outcome = self.strategy.refund_encoded(
            &self.rate,
            self.state.as_deref(),
            now,
            charged,
            cost,
            &mut self.scratch,
        );
        match outcome {
            Ok(true) => self.state = Some(std::mem::take(&mut self.scratch)),
            Ok(false) => {}
            Err(error) => panic!("the oracle's own state: {error}"),
        }
    }

    fn hit(&mut self, now: u64, cost: u64) -> Decision {
        let outcome = self.strategy.hit_encoded(
            &self.rate,
            self.state.as_deref(),
            now,
            cost,
            false,
            &mut self.scratch,
        );
        match outcome {
            Ok((decision, changed)) => {
                if changed {
                    self.state = Some(std::mem::take(&mut self.scratch));
                }
                decision
            }
            Err(error) => panic!("the oracle's own state: {error}"),
        }
    }
}

/// Random sequences of (advance, cost) give exactly the pure functions'
/// decisions, for every strategy and several rates, including sub-second
/// windows and rates whose interval is a fraction of a millisecond.
pub async fn decisions_match_the_pure_strategies<B: Backend + Clone>(backend: &B) {
    parity(
        backend,
        &["5/s", "3/1s", "10/250ms", "7/2min", "1000/s"],
        200,
    )
    .await;
}

/// Drives `steps` random hits per strategy and rate through `backend` and
/// through the pure strategy functions, and demands identical decisions.
///
/// # Panics
///
/// On the first decision that differs, naming the strategy, rate and step.
pub async fn parity<B: Backend + Clone>(backend: &B, rates: &[&str], steps: usize) {
    parity_at(backend, rates, steps, START_MS).await;
}

/// [`parity`] with the clock starting at `start_ms`: near the end of a
/// backend's exact range (2^53 ms for the Redis scripts, whose numbers are
/// Lua doubles) or of time itself (`u64::MAX`). Costs include `u64::MAX`.
///
/// # Panics
///
/// On the first decision that differs, naming the strategy, rate and step.
pub async fn parity_at<B: Backend + Clone>(
    backend: &B,
    rates: &[&str],
    steps: usize,
    start_ms: u64,
) {
    for text in rates {
        let rate = rate(text);
        for (index, strategy) in strategies().into_iter().enumerate() {
            let clock = ManualClock::new(start_ms);
            let throttle = throttle(backend, "parity", rate, strategy.clone(), &clock);
            let mut oracle = Oracle::new(strategy.clone(), rate);
            let mut sequence =
                Sequence(0x9e37_79b9_7f4a_7c15 ^ ((index as u64 + 1) * 7919) ^ rate.count());
            let span = rate.period_ms() * 3 / 2 + 1;
            let capacity = strategy.capacity(&rate);
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for step in 0..steps {
                let advance = match sequence.next(4) {
                    0 | 1 => 0,
                    2 => sequence.next(rate.period_ms() / 4 + 2),
                    _ => sequence.next(span),
                };
                clock.advance(Duration::from_millis(advance));
                let cost = match sequence.next(11) {
                    0 => 0,
                    1 => capacity + 1,
                    2 => 1 + sequence.next(capacity),
                    3 => 1 + sequence.next(capacity.min(3)),
                    4 => u64::MAX - sequence.next(3),
                    _ => 1,
                };
                let now = traffik_core::Clock::now_ms(&clock);
                // Now and then, a reservation made earlier is given back.
                if sequence.next(5) == 0 {
                    if let Some(at) = admitted.len().checked_sub(1 + sequence.next(3) as usize) {
                        let (charged, cost) = admitted.remove(at);
                        oracle.refund(now, charged, cost);
                        if let Err(error) = throttle.refund("client", charged, cost).await {
                            panic!("{strategy} at {text}, step {step}: the refund failed: {error}");
                        }
                    }
                }
                let expected = oracle.hit(now, cost);
                let got = hit(&throttle, "client", cost).await;
                assert_eq!(
                    got, expected,
                    "{strategy} at {text}, step {step}, cost {cost}"
                );
                if got.is_allowed() && cost > 0 {
                    admitted.push((now, cost));
                }
            }
        }
    }
}

/// Costs above one count as that many hits; a cost above the capacity is
/// denied for good; a denied cost consumes nothing.
pub async fn cost_is_counted_and_bounded<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("5/s");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "cost", rate, strategy.clone(), &clock);
        let capacity = strategy.capacity(&rate);
        let first = hit(&throttle, "k", 3).await;
        assert!(first.is_allowed(), "{strategy}");
        assert_eq!(first.remaining(), capacity - 3, "{strategy}");
        let too_big = hit(&throttle, "k", capacity + 1).await;
        assert_eq!(too_big.reason(), Reason::CostExceedsCapacity, "{strategy}");
        assert_eq!(too_big.retry_after(), Duration::MAX, "{strategy}");
        let denied = hit(&throttle, "k", capacity - 2).await;
        assert!(!denied.is_allowed(), "{strategy}");
        assert_eq!(denied.reason(), Reason::OverLimit, "{strategy}");
        assert!(denied.retry_after_ms() >= 1, "{strategy}");
        let free = hit(&throttle, "k", 0).await;
        assert!(free.is_allowed(), "{strategy}");
        assert_eq!(
            free.remaining(),
            capacity - 3,
            "{strategy}: a denied hit consumed quota"
        );
        let rest = hit(&throttle, "k", capacity - 3).await;
        assert!(rest.is_allowed(), "{strategy}");
        assert_eq!(rest.remaining(), 0, "{strategy}");
    }
}

/// Costs above the capacity, up to `u64::MAX`, are denied without touching
/// state: no counter wraps, and the hits after them are decided as if they
/// had not happened (a spent budget stays spent, a fresh one stays whole).
pub async fn costs_that_can_never_pass_touch_nothing<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("5/min");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "huge", rate, strategy.clone(), &clock);
        let capacity = strategy.capacity(&rate);
        for cost in [capacity + 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            // A fresh key stays whole.
            let huge = hit(&throttle, "fresh", cost).await;
            assert_eq!(
                huge.reason(),
                Reason::CostExceedsCapacity,
                "{strategy} {cost}"
            );
            let peek = throttle
                .peek("fresh")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                peek.remaining(),
                capacity - 1,
                "{strategy} {cost}: a fresh key was charged"
            );
        }
        // A spent key stays spent.
        for _ in 0..capacity {
            assert!(hit(&throttle, "spent", 1).await.is_allowed(), "{strategy}");
        }
        for cost in [u64::MAX, u64::MAX - 1, capacity + 1] {
            let huge = hit(&throttle, "spent", cost).await;
            assert!(!huge.is_allowed(), "{strategy} {cost}");
            for _ in 0..3 {
                let after = hit(&throttle, "spent", 1).await;
                assert!(
                    !after.is_allowed(),
                    "{strategy}: admitted after a cost of {cost}"
                );
            }
        }
    }
}

/// Identities of any length and bytes work and stay limited: long ones,
/// ones full of spaces, control characters, `%`, braces or non-ASCII, and
/// short ones that look like the digest of a long one. Two long identities
/// that differ only at the end have budgets of their own.
pub async fn identities_of_any_length_and_bytes_are_limited<B: Backend + Clone>(backend: &B) {
    let clock = ManualClock::new(START_MS);
    let throttle = throttle(backend, "odd", rate("1/min"), FixedWindow.into(), &clock);
    let long_a = format!("{}a", "x".repeat(300));
    let long_b = format!("{}b", "x".repeat(300));
    let forged = traffik_core::backend::digest(&long_a);
    let identities = [
        long_a.clone(),
        long_b,
        "y".repeat(10_000),
        " ".repeat(120),
        "%".repeat(90),
        "\t\r\n\u{7f}\u{1}end".to_owned(),
        "{}}{".to_owned(),
        "é€😀".repeat(40),
        forged,
        String::new(),
    ];
    for identity in &identities {
        let first = hit(&throttle, identity, 1).await;
        assert!(first.is_allowed(), "{:?}", identity.get(..20));
        for _ in 0..3 {
            let again = hit(&throttle, identity, 1).await;
            assert!(
                !again.is_allowed(),
                "{:?}: a fresh budget",
                identity.get(..20)
            );
        }
    }
}

/// `peek` reports what a hit would get and changes nothing.
pub async fn peek_does_not_consume<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("4/min");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "peek", rate, strategy.clone(), &clock);
        let capacity = strategy.capacity(&rate);
        for _ in 0..10 {
            let peeked = throttle.peek("k").await.unwrap_or_else(|e| panic!("{e}"));
            assert!(peeked.is_allowed(), "{strategy}");
            assert_eq!(peeked.remaining(), capacity - 1, "{strategy}");
        }
        for _ in 0..capacity {
            assert!(hit(&throttle, "k", 1).await.is_allowed(), "{strategy}");
        }
        let peeked = throttle.peek("k").await.unwrap_or_else(|e| panic!("{e}"));
        let denied = hit(&throttle, "k", 1).await;
        assert!(!peeked.is_allowed(), "{strategy}");
        assert_eq!(peeked, denied, "{strategy}: peek and hit disagree");
    }
}

/// `reset` gives a key its full quota back.
pub async fn reset_forgets_a_key<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("2/h");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "reset", rate, strategy.clone(), &clock);
        let capacity = strategy.capacity(&rate);
        while hit(&throttle, "k", 1).await.is_allowed() {}
        throttle.reset("k").await.unwrap_or_else(|e| panic!("{e}"));
        let after = hit(&throttle, "k", 1).await;
        assert!(after.is_allowed(), "{strategy}");
        assert_eq!(after.remaining(), capacity - 1, "{strategy}");
        // Resetting a key that was never hit is fine.
        throttle
            .reset("never-seen")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Once `reset_after` has passed, the key has its full quota again, and not
/// a millisecond before.
pub async fn state_expires_after_reset_after<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("3/2s");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "expiry", rate, strategy.clone(), &clock);
        let capacity = strategy.capacity(&rate);
        let mut last = hit(&throttle, "k", 1).await;
        while last.is_allowed() {
            last = hit(&throttle, "k", 1).await;
        }
        let reset = last.reset_after_ms();
        assert!(reset > 0, "{strategy}");
        clock.advance(Duration::from_millis(reset - 1));
        let before = throttle.peek("k").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            before.remaining() < capacity - 1,
            "{strategy}: full before reset_after"
        );
        clock.advance(Duration::from_millis(1));
        let after = hit(&throttle, "k", 1).await;
        assert_eq!(
            after.remaining(),
            capacity - 1,
            "{strategy}: not full at reset_after"
        );
    }
}

/// Identities and throttles share nothing.
pub async fn keys_are_isolated<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("1/min");
        let clock = ManualClock::new(START_MS);
        let first = throttle(backend, "first", rate, strategy.clone(), &clock);
        let second = throttle(backend, "second", rate, strategy.clone(), &clock);
        assert!(hit(&first, "alice", 1).await.is_allowed(), "{strategy}");
        assert!(hit(&first, "bob", 1).await.is_allowed(), "{strategy}");
        assert!(hit(&second, "alice", 1).await.is_allowed(), "{strategy}");
        let capacity = strategy.capacity(&rate);
        for _ in 1..capacity {
            assert!(hit(&first, "alice", 1).await.is_allowed(), "{strategy}");
        }
        assert!(!hit(&first, "alice", 1).await.is_allowed(), "{strategy}");
        assert!(hit(&first, "alice:2", 1).await.is_allowed(), "{strategy}");
    }
}

/// 64 tasks hitting one key at once admit exactly the limit.
pub async fn concurrent_hits_admit_exactly_the_limit<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("50/h");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "concurrency", rate, strategy.clone(), &clock);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let throttle = throttle.clone();
                tokio::spawn(async move {
                    let mut admitted = 0u64;
                    for _ in 0..3 {
                        if hit(&throttle, "shared", 1).await.is_allowed() {
                            admitted += 1;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap_or_else(|e| panic!("task failed: {e}"));
        }
        assert_eq!(admitted, strategy.capacity(&rate), "{strategy}");
    }
}

/// `hit_with` applies the limit it is given (premium keys get more).
pub async fn a_limit_per_call_overrides_the_throttle_limit<B: Backend + Clone>(backend: &B) {
    let clock = ManualClock::new(START_MS);
    let throttle = throttle(backend, "tiers", rate("2/min"), Gcra::new().into(), &clock);
    let premium = Limit::new(rate("5/min"), Gcra::new()).unwrap_or_else(|e| panic!("{e}"));
    let mut admitted = 0;
    for _ in 0..10 {
        let decision = throttle
            .hit_with("vip", &premium, 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decision.limit(), 5);
        admitted += u64::from(decision.is_allowed());
    }
    assert_eq!(admitted, 5);
}

fn group<B: Backend + Clone>(
    throttles: Vec<Throttle<B, ManualClock>>,
) -> ThrottleGroup<B, ManualClock> {
    ThrottleGroup::new(throttles).unwrap_or_else(|error| panic!("conformance group: {error}"))
}

async fn hit_group<B: Backend>(group: &ThrottleGroup<B, ManualClock>, identity: &str) -> Decisions {
    match group.hit(identity).await {
        Ok(decisions) => decisions,
        Err(error) => panic!("backend failed on the group for {identity}: {error}"),
    }
}

/// A group admits when every throttle does and then charges each; when one
/// denies, none is charged. Every strategy, as the tight limit and as the
/// loose one, in either order.
pub async fn a_group_charges_all_or_nothing<B: Backend + Clone>(backend: &B) {
    for tight_strategy in strategies() {
        for loose_strategy in [AnyStrategy::from(Gcra::new()), FixedWindow.into()] {
            for tight_first in [true, false] {
                let clock = ManualClock::new(START_MS);
                let tight = throttle(
                    backend,
                    "tight",
                    rate("2/min"),
                    tight_strategy.clone(),
                    &clock,
                );
                let loose = throttle(
                    backend,
                    "loose",
                    rate("20/min"),
                    loose_strategy.clone(),
                    &clock,
                );
                let capacity = tight_strategy.capacity(&rate("2/min"));
                let (members, t, l) = if tight_first {
                    (vec![tight.clone(), loose.clone()], 0, 1)
                } else {
                    (vec![loose.clone(), tight.clone()], 1, 0)
                };
                let limits = group(members);
                for n in 0..capacity {
                    let decisions = hit_group(&limits, "client").await;
                    assert!(decisions.is_allowed(), "{tight_strategy} hit {n}");
                    assert_eq!(decisions.as_slice().len(), 2);
                }
                let denied = hit_group(&limits, "client").await;
                assert!(
                    !denied.is_allowed(),
                    "{tight_strategy}: over the tight limit"
                );
                assert_eq!(
                    denied.violated().collect::<Vec<_>>(),
                    [t],
                    "{tight_strategy}"
                );
                assert!(denied.retry_after() > Duration::ZERO, "{tight_strategy}");
                // The loose limit shows its quota as it stands: charged by
                // the admitted requests only.
                let loose_capacity = loose_strategy.capacity(&rate("20/min"));
                let shown = denied.get(l).map(Decision::remaining);
                assert_eq!(
                    shown,
                    Some(loose_capacity - capacity),
                    "{tight_strategy} shown"
                );
                let peek = loose.peek("client").await.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    peek.remaining(),
                    loose_capacity - capacity - 1,
                    "{tight_strategy} peek"
                );
                // Once the loose limit alone denies, the tight one is spared too.
                clock.advance(Duration::from_secs(60));
                let fresh = hit_group(&limits, "other").await;
                assert!(fresh.is_allowed());
                let tight_peek = tight.peek("other").await.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(tight_peek.remaining(), capacity - 2, "{tight_strategy}");
            }
        }
    }
}

/// 32 tasks race on one client's group of "10/s" and "50/min" (mixed
/// strategies) at one instant: exactly the tight limit's quota is admitted,
/// and the loose limit is charged by at least the admitted requests. A
/// counter limit is charged by exactly them; a state kept as a blob by at
/// most one more hit per racing task (the bound of a store that takes
/// charges back, such as Memcached).
pub async fn concurrent_groups_never_exceed_any_limit<B: Backend + Clone>(backend: &B) {
    let mixes: [(AnyStrategy, AnyStrategy); 3] = [
        (Gcra::new().into(), FixedWindow.into()),
        (TokenBucket::new().into(), SlidingWindowCounter.into()),
        (FixedWindow.into(), Gcra::new().into()),
    ];
    for (burst_strategy, minute_strategy) in mixes {
        let (admitted, charged) = race_a_group(backend, &burst_strategy, &minute_strategy).await;
        let what = format!("{burst_strategy} + {minute_strategy}");
        assert_eq!(admitted, burst_strategy.capacity(&rate("10/s")), "{what}");
        match minute_strategy.storage() {
            traffik_core::Storage::Counters { .. } => {
                assert_eq!(
                    charged, admitted,
                    "{what}: the minute limit was charged wrongly"
                );
            }
            traffik_core::Storage::Blob => {
                assert!(
                    charged >= admitted && charged <= admitted + 32,
                    "{what}: {charged}"
                );
            }
        }
    }
}

/// For stores that decide a group atomically (in memory, Redis): the race of
/// [`concurrent_groups_never_exceed_any_limit`] charges every limit by
/// exactly the admitted requests, whatever the strategies.
pub async fn concurrent_groups_charge_exactly<B: Backend + Clone>(backend: &B) {
    for minute_strategy in strategies() {
        let burst_strategy = AnyStrategy::from(FixedWindow);
        let (admitted, charged) = race_a_group(backend, &burst_strategy, &minute_strategy).await;
        let tightest = minute_strategy.capacity(&rate("50/min")).min(10);
        assert_eq!(admitted, tightest, "{minute_strategy}");
        assert_eq!(charged, admitted, "{minute_strategy}: overcharged");
    }
}

/// 32 tasks × 4 requests on `[50/min, 10/s]` for one client at one instant:
/// how many were admitted, and how much of the minute limit was charged.
async fn race_a_group<B: Backend + Clone>(
    backend: &B,
    burst_strategy: &AnyStrategy,
    minute_strategy: &AnyStrategy,
) -> (u64, u64) {
    let clock = ManualClock::new(START_MS);
    let burst = throttle(
        backend,
        "burst",
        rate("10/s"),
        burst_strategy.clone(),
        &clock,
    );
    let minute = throttle(
        backend,
        "minute",
        rate("50/min"),
        minute_strategy.clone(),
        &clock,
    );
    let limits = group(vec![minute.clone(), burst]);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let limits = limits.clone();
            tokio::spawn(async move {
                let mut admitted = 0u64;
                for _ in 0..4 {
                    admitted += u64::from(hit_group(&limits, "shared").await.is_allowed());
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap_or_else(|e| panic!("task failed: {e}"));
    }
    // A peek of cost 1 shows what would be left after one more hit.
    let left = minute
        .peek("shared")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let capacity = minute_strategy.capacity(&rate("50/min"));
    let unspent = left.remaining() + u64::from(left.is_allowed());
    (admitted, capacity - unspent)
}

/// A reservation given back frees exactly its cost, at once and on every
/// strategy; a refund after the window it was charged in closed frees
/// nothing; a key the store does not hold has nothing to give back.
pub async fn a_refund_gives_back_a_reservation<B: Backend + Clone>(backend: &B) {
    for strategy in strategies() {
        let rate = rate("5/s");
        let clock = ManualClock::new(START_MS);
        let throttle = throttle(backend, "refund", rate, strategy.clone(), &clock);
        let capacity = strategy.capacity(&rate);
        let charged = traffik_core::Clock::now_ms(&clock);
        for _ in 0..capacity {
            assert!(hit(&throttle, "k", 1).await.is_allowed(), "{strategy}");
        }
        assert!(
            !hit(&throttle, "k", 1).await.is_allowed(),
            "{strategy}: full"
        );
        if let Err(error) = throttle.refund("k", charged, 2).await {
            panic!("{strategy}: the refund failed: {error}");
        }
        assert!(
            hit(&throttle, "k", 2).await.is_allowed(),
            "{strategy}: 2 given back"
        );
        assert!(
            !hit(&throttle, "k", 1).await.is_allowed(),
            "{strategy}: and no more"
        );
        // A key never hit: nothing to give, nothing created.
        if let Err(error) = throttle.refund("never", charged, 3).await {
            panic!("{strategy}: the refund failed: {error}");
        }
        let fresh = throttle.peek("never").await.ok();
        assert_eq!(
            fresh.map(|d| d.remaining()),
            Some(capacity - 1),
            "{strategy}"
        );
    }
    // A fixed window's refund after its window closed frees nothing in the
    // next one.
    let clock = ManualClock::new(START_MS);
    let throttle = throttle(backend, "late", rate("2/s"), FixedWindow.into(), &clock);
    let charged = traffik_core::Clock::now_ms(&clock);
    assert!(hit(&throttle, "k", 2).await.is_allowed());
    clock.advance(Duration::from_secs(1));
    assert!(hit(&throttle, "k", 2).await.is_allowed());
    if let Err(error) = throttle.refund("k", charged, 2).await {
        panic!("the refund failed: {error}");
    }
    assert!(
        !hit(&throttle, "k", 1).await.is_allowed(),
        "a late refund freed quota"
    );
}

/// Many tasks reserve at once, and those whose work "did not count" give
/// back: at no time are more than the limit's hits both admitted and kept.
pub async fn concurrent_reservations_never_exceed_the_limit<B: Backend + Clone>(backend: &B) {
    let clock = ManualClock::new(START_MS);
    let throttle = throttle(
        backend,
        "reserve",
        rate("10/min"),
        FixedWindow.into(),
        &clock,
    );
    let throttle = std::sync::Arc::new(throttle);
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        let throttle = std::sync::Arc::clone(&throttle);
        tasks.push(tokio::spawn(async move {
            let charged = traffik_core::Clock::now_ms(throttle.clock());
            let decision = hit(&throttle, "k", 1).await;
            // Every other admitted request is refunded (its response did
            // not count); the others keep their charge.
            if decision.is_allowed() && i % 2 == 0 {
                if let Err(error) = throttle.refund("k", charged, 1).await {
                    panic!("the refund failed: {error}");
                }
                return 0;
            }
            u64::from(decision.is_allowed())
        }));
    }
    let mut kept = 0;
    for task in tasks {
        match task.await {
            Ok(k) => kept += k,
            Err(error) => panic!("a task failed: {error}"),
        }
    }
    assert!(kept <= 10, "{kept} charges kept under a limit of 10");
    let left = match throttle.peek("k").await {
        Ok(decision) => decision.remaining(),
        Err(error) => panic!("peek failed: {error}"),
    };
    // A peek shows what would be left after one more hit.
    assert_eq!(
        left,
        (10 - kept).saturating_sub(1),
        "the quota left is what the kept charges left"
    );
}

/// A block is never shorter than the throttle's own wait: a step shorter
/// than the window (1 minute of a 5-per-15-minutes limit) blocks until the
/// window has room, so the first request after the block is not at once
/// another offence, and the block holds as long as the denial said.
pub async fn a_block_lasts_until_the_throttle_has_room<B: Backend + Clone>(backend: &B) {
    let clock = ManualClock::new(START_MS);
    let penalty =
        traffik_core::Penalty::escalating([Duration::from_secs(60), Duration::from_secs(300)])
            .unwrap_or_else(|error| panic!("penalty: {error}"));
    let lockout = throttle(
        backend,
        "login",
        rate("5/15min"),
        traffik_core::SlidingWindowLog.into(),
        &clock,
    )
    .penalized(penalty)
    .unwrap_or_else(|error| panic!("lockout: {error}"));
    let hit = || async {
        match lockout.hit("mallory").await {
            Ok(decision) => decision,
            Err(error) => panic!("lockout hit failed: {error}"),
        }
    };
    for _ in 0..5 {
        assert!(hit().await.is_allowed());
    }
    let breach = hit().await;
    assert_eq!(
        (breach.reason(), breach.retry_after_ms()),
        (Reason::Blocked, 900_000),
        "blocked until the oldest hit leaves the window"
    );
    // Past the first step, the block holds: no new offence.
    clock.advance(Duration::from_secs(60));
    let knock = hit().await;
    assert_eq!(
        (knock.reason(), knock.retry_after_ms()),
        (Reason::Blocked, 840_000)
    );
    let offences = lockout
        .offences("mallory")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(offences, 1, "waiting out a block is no offence");
    clock.advance(Duration::from_secs(840));
    assert!(
        hit().await.is_allowed(),
        "in again when the window has room"
    );
}

/// A key that breaches its limit is blocked for the first step, then for
/// longer at each repeat offence, up to the last step; a blocked key is
/// denied with exactly the time left and its knocking is not counted;
/// offences are forgiven one per quiet period; an operator can block and
/// unblock; other keys are untouched.
pub async fn a_lockout_escalates_exactly_and_forgives<B: Backend + Clone>(backend: &B) {
    let clock = ManualClock::new(START_MS);
    let penalty =
        traffik_core::Penalty::escalating([Duration::from_secs(10), Duration::from_secs(60)])
            .and_then(|penalty| penalty.forgive_after(Duration::from_secs(3_600)));
    let penalty = penalty.unwrap_or_else(|error| panic!("penalty: {error}"));
    let lockout = throttle(
        backend,
        "login",
        rate("2/s"),
        Gcra::with_burst(NonZeroU64::MIN.saturating_add(1)).into(),
        &clock,
    )
    .penalized(penalty)
    .unwrap_or_else(|error| panic!("lockout: {error}"));
    let hit = |identity: &'static str| {
        let lockout = &lockout;
        async move {
            match lockout.hit(identity).await {
                Ok(decision) => decision,
                Err(error) => panic!("lockout hit failed: {error}"),
            }
        }
    };
    let offences = |identity: &'static str| {
        let lockout = &lockout;
        async move {
            lockout
                .offences(identity)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert!(hit("mallory").await.is_allowed());
    assert!(hit("mallory").await.is_allowed());
    // The breach: blocked for the first step.
    let first = hit("mallory").await;
    assert_eq!(first.reason(), Reason::Blocked, "{first:?}");
    assert_eq!(first.retry_after_ms(), 10_000);
    assert_eq!(offences("mallory").await, 1);
    // Knocking while blocked: exact time left, nothing counted.
    clock.advance(Duration::from_millis(4_321));
    let knock = hit("mallory").await;
    assert_eq!(
        (knock.reason(), knock.retry_after_ms()),
        (Reason::Blocked, 5_679)
    );
    assert_eq!(offences("mallory").await, 1, "knocking is no offence");
    // Others are untouched.
    assert!(hit("alice").await.is_allowed());
    clock.advance(Duration::from_millis(5_679));
    assert!(hit("mallory").await.is_allowed(), "the block ended");
    assert!(hit("mallory").await.is_allowed());
    let second = hit("mallory").await;
    assert_eq!(
        (second.reason(), second.retry_after_ms()),
        (Reason::Blocked, 60_000)
    );
    clock.advance(Duration::from_secs(60));
    assert!(hit("mallory").await.is_allowed());
    assert!(hit("mallory").await.is_allowed());
    let third = hit("mallory").await;
    assert_eq!(
        (third.reason(), third.retry_after_ms()),
        (Reason::Blocked, 60_000),
        "the last step holds"
    );
    assert_eq!(offences("mallory").await, 2, "counted up to the steps");
    // A quiet hour forgives one offence, another the second.
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(offences("mallory").await, 1);
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(offences("mallory").await, 0);
    // An operator's block and unblock.
    if let Err(error) = lockout.block("alice", Duration::from_secs(90)).await {
        panic!("block: {error}");
    }
    let blocked = hit("alice").await;
    assert_eq!(
        (blocked.reason(), blocked.retry_after_ms()),
        (Reason::Blocked, 90_000)
    );
    if let Err(error) = lockout.unblock("alice").await {
        panic!("unblock: {error}");
    }
    assert!(hit("alice").await.is_allowed(), "unblocked");
}
