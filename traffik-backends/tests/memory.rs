//! The in-memory backend: the conformance suite, expiry, the key cap and
//! memory under a flood of identities.

use std::time::Duration;

use traffik_backends::memory::MemoryBackend;
use traffik_core::{
    Backend, Clock, Enforcement, FailurePolicy, FixedWindow, Gcra, Key, Limit, ManualClock, Reason,
    Scope, SlidingWindowLog, Throttle, ThrottleGroup,
};

traffik_backends::conformance_tests!(async {
    (
        MemoryBackend::builder()
            .shards(8)
            .sweep_interval(None)
            .build(),
        (),
    )
});

const START: u64 = 1_700_000_000_000;

fn throttle(
    backend: &MemoryBackend,
    clock: &ManualClock,
    rate: &str,
) -> Throttle<MemoryBackend, ManualClock> {
    Throttle::builder("flood", rate.parse().unwrap())
        .strategy(FixedWindow)
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap()
}

#[tokio::test]
async fn a_key_whose_quota_is_full_again_is_dropped() {
    let backend = MemoryBackend::builder().sweep_interval(None).build();
    let clock = ManualClock::new(START);
    let throttle = throttle(&backend, &clock, "10/s");
    throttle.hit("a").await.unwrap();
    assert_eq!(backend.len(), 1);
    // A peek of an unknown key stores nothing, nor does a zero-cost hit.
    throttle.peek("b").await.unwrap();
    throttle.hit_n("c", 0).await.unwrap();
    assert_eq!(backend.len(), 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(backend.sweep(clock.now_ms()), 1);
    assert!(backend.is_empty());
}

#[tokio::test]
async fn memory_stays_bounded_under_a_flood_of_unique_keys() {
    let backend = MemoryBackend::builder()
        .shards(16)
        .sweep_interval(None)
        .build();
    let clock = ManualClock::new(START);
    // Each key's state lives 100 ms; a new identity arrives every millisecond.
    let throttle = throttle(&backend, &clock, "1/100ms");
    let mut peak = 0;
    for i in 0..300_000u32 {
        assert!(throttle.hit(&format!("ip-{i}")).await.unwrap().is_allowed());
        clock.advance(Duration::from_millis(1));
        if i % 1_000 == 0 {
            peak = peak.max(backend.len());
        }
    }
    // Expiry has one-second granularity, so about 1,000–2,000 keys are
    // live; self-sweeping keeps the store within a small multiple of that.
    assert!(peak < 6_000, "{peak} keys held after a flood of 300,000");
    assert!(backend.len() < 6_000);
}

#[tokio::test]
async fn the_background_sweeper_empties_an_idle_backend() {
    let clock = ManualClock::new(START);
    let backend = MemoryBackend::builder()
        .sweep_interval(Some(Duration::from_millis(5)))
        .build();
    let throttle = throttle(&backend, &clock, "5/s");
    for i in 0..100 {
        throttle.hit(&i.to_string()).await.unwrap();
    }
    assert_eq!(backend.len(), 100);
    // The backend's time is the latest a decision was made at.
    clock.advance(Duration::from_secs(5));
    throttle.hit("one more").await.unwrap();
    // Real time: the sweeper thread runs every 5 ms; give it up to 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while backend.len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(backend.len(), 1, "{} keys left", backend.len());
}

/// Regression: the sweeper read the system clock while the throttles read
/// theirs, so with a manual clock behind the system's, live keys were swept
/// and their owners got a fresh budget.
#[tokio::test]
async fn the_sweeper_never_sweeps_a_live_key_of_another_clock() {
    let backend = MemoryBackend::builder()
        .sweep_interval(Some(Duration::from_millis(2)))
        .build();
    // Years behind the system clock.
    let clock = ManualClock::new(START);
    let throttle = throttle(&backend, &clock, "1/h");
    assert!(throttle.hit("k").await.unwrap().is_allowed());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(backend.len(), 1, "a live key was swept");
    assert!(!throttle.hit("k").await.unwrap().is_allowed());
}

/// Regression: at the cap every new key failed with `Capacity`, so a flood
/// of unique identities locked every newcomer out (and under a failure
/// policy that admitted errors, let them through unlimited). Now a new key
/// evicts the keys closest to expiry and is limited like any other.
#[tokio::test]
async fn at_the_cap_new_keys_evict_those_closest_to_expiry_and_stay_limited() {
    let backend = MemoryBackend::builder()
        .shards(1)
        .max_keys(100)
        .sweep_interval(None)
        .build();
    let clock = ManualClock::new(START);
    // A sliding log: each key expires a minute after its last hit.
    let throttle = Throttle::builder("flood", "3/min".parse().unwrap())
        .strategy(SlidingWindowLog)
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap();
    // The flood: 50 identities now, 50 more half a window later.
    for i in 0..50 {
        throttle.hit(&format!("early{i}")).await.unwrap();
    }
    clock.advance(Duration::from_secs(30));
    for i in 0..50 {
        throttle.hit(&format!("late{i}")).await.unwrap();
    }
    assert_eq!(backend.len(), 100);
    // A legitimate client after the flood: decided, counted and limited.
    let seen: Vec<bool> = futures_collect(&throttle, "newcomer", 4).await;
    assert_eq!(seen, [true, true, true, false]);
    // The early keys were closest to expiry: they, and only they, went.
    assert_eq!(backend.evictions(), 50);
    assert_eq!(backend.len(), 51);
    let late: Vec<bool> = futures_collect(&throttle, "late7", 3).await;
    assert_eq!(late, [true, true, false], "a later key lost its count");
}

async fn futures_collect(
    throttle: &Throttle<MemoryBackend, ManualClock>,
    key: &str,
    hits: usize,
) -> Vec<bool> {
    let mut seen = Vec::with_capacity(hits);
    for _ in 0..hits {
        seen.push(throttle.hit(key).await.unwrap().is_allowed());
    }
    seen
}

/// The key cap is not a store failure: under every failure policy a flood
/// past the cap leaves a new key limited, and no failure is counted.
#[tokio::test]
async fn the_cap_never_takes_the_failure_policy() {
    let backend = MemoryBackend::builder()
        .shards(1)
        .max_keys(8)
        .sweep_interval(None)
        .build();
    let clock = ManualClock::new(START);
    for policy in [
        FailurePolicy::Allow,
        FailurePolicy::Deny,
        FailurePolicy::Error,
    ] {
        let throttle = Throttle::builder("policy", "2/min".parse().unwrap())
            .strategy(Gcra::new())
            .failure_policy(policy)
            .clock(clock.clone())
            .build(backend.clone())
            .unwrap();
        for i in 0..64 {
            throttle.hit(&format!("{policy:?}-flood{i}")).await.unwrap();
        }
        let legit = format!("{policy:?}-legit");
        let seen = futures_collect(&throttle, &legit, 3).await;
        assert_eq!(seen, [true, true, false], "{policy:?}");
        assert_eq!(throttle.failures(), 0, "the cap is not a store failure");
        assert!(backend.len() <= 8);
    }
}

#[tokio::test]
async fn decides_synchronously_and_says_it_is_local() {
    let backend = MemoryBackend::builder().sweep_interval(None).build();
    assert!(traffik_core::Backend::is_local(&backend));
    let clock = ManualClock::new(START);
    let throttle = throttle(&backend, &clock, "2/s");
    let first = throttle
        .hit("k")
        .into_ready()
        .expect("the in-memory backend decides at once")
        .unwrap();
    assert_eq!(first.remaining(), 1);
    // The synchronous and the async path share one state.
    assert_eq!(throttle.hit("k").await.unwrap().remaining(), 0);
    assert!(
        !throttle
            .hit("k")
            .into_ready()
            .unwrap()
            .unwrap()
            .is_allowed()
    );
}

/// At the end of time (a clock a second short of `u64::MAX` ms) and with
/// costs up to `u64::MAX`, decisions are still exactly the pure functions'.
#[tokio::test]
async fn parity_at_the_end_of_time() {
    let backend = MemoryBackend::builder().sweep_interval(None).build();
    traffik_backends::conformance::parity_at(
        &backend,
        &["5/s", "3/1s", "10/250ms", "26000000/d"],
        200,
        u64::MAX - 1_000,
    )
    .await;
}

fn named(
    backend: &MemoryBackend,
    clock: &ManualClock,
    name: &str,
    rate: &str,
) -> Throttle<MemoryBackend, ManualClock> {
    Throttle::builder(name, rate.parse().unwrap())
        .strategy(FixedWindow)
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap()
}

#[test]
fn a_group_is_checked_when_it_is_built() {
    let clock = ManualClock::new(START);
    let one = MemoryBackend::builder().sweep_interval(None).build();
    let other = MemoryBackend::builder().sweep_interval(None).build();
    let a = named(&one, &clock, "a", "1/s");
    let b = named(&one, &clock, "b", "1/min");
    assert!(ThrottleGroup::new([a.clone(), b.clone()]).is_ok());
    let twice = ThrottleGroup::new([a.clone(), a.clone()]).unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
    let apart = ThrottleGroup::new([a, named(&other, &clock, "c", "1/s")]).unwrap_err();
    assert!(apart.to_string().contains("different stores"), "{apart}");
    let none: [Throttle<MemoryBackend, ManualClock>; 0] = [];
    assert!(ThrottleGroup::new(none).is_err());
}

#[test]
fn a_group_at_the_cap_evicts_to_make_room_for_its_keys() {
    let backend = MemoryBackend::builder()
        .shards(1)
        .max_keys(3)
        .sweep_interval(None)
        .build();
    let clock = ManualClock::new(START);
    let a = named(&backend, &clock, "a", "5/min");
    let b = named(&backend, &clock, "b", "1/min");
    a.hit("k1").into_ready().ok().unwrap().unwrap();
    a.hit("k2").into_ready().ok().unwrap().unwrap();
    // One key of room left; the group needs two and makes it.
    let limits = ThrottleGroup::new([a.clone(), b]).unwrap();
    assert!(
        limits
            .hit("k3")
            .into_ready()
            .ok()
            .unwrap()
            .unwrap()
            .is_allowed()
    );
    assert!(backend.len() <= 3);
    assert!(backend.evictions() >= 1);
    let again = limits.hit("k3").into_ready().ok().unwrap().unwrap();
    assert!(!again.is_allowed(), "the group's keys were not kept");
}

#[test]
fn a_group_that_sweeps_to_make_room_does_not_wait_for_its_own_keys() {
    // One shard that wants a sweep as the group arrives: the group holds
    // its known key's entry, expired, while it makes room for its new one.
    let backend = MemoryBackend::builder()
        .shards(1)
        .sweep_interval(None)
        .build();
    let clock = ManualClock::new(START);
    let a = named(&backend, &clock, "a", "5/s");
    let b = named(&backend, &clock, "b", "5/s");
    // 64 keys: the 65th is the group's new one, which crosses the shard's
    // first sweep mark.
    for i in 0..63 {
        a.hit(&format!("old-{i}"))
            .into_ready()
            .ok()
            .unwrap()
            .unwrap();
    }
    a.hit("k").into_ready().ok().unwrap().unwrap();
    clock.advance(Duration::from_secs(3));
    let limits = ThrottleGroup::new([a.clone(), b]).unwrap();
    let (done, waiting) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let decisions = limits.hit("k").into_ready().ok().unwrap().unwrap();
        let _ = done.send(decisions.is_allowed());
    });
    let allowed = waiting
        .recv_timeout(Duration::from_secs(10))
        .expect("the group waited for an entry it held itself");
    assert!(allowed);
    // The 63 expired keys are gone; the group's two keys stay.
    assert_eq!(backend.len(), 2);
}

#[test]
fn groups_over_many_shards_never_deadlock() {
    // Threads decide groups whose keys fall in shards in every order.
    let backend = MemoryBackend::builder()
        .shards(4)
        .sweep_interval(None)
        .build();
    let clock = ManualClock::new(START);
    let throttles: Vec<_> = (0..6)
        .map(|i| named(&backend, &clock, &format!("t{i}"), "1000000/min"))
        .collect();
    let forward = ThrottleGroup::new(throttles.clone()).unwrap();
    let backward = ThrottleGroup::new(throttles.into_iter().rev()).unwrap();
    std::thread::scope(|scope| {
        for worker in 0..4 {
            let group = if worker % 2 == 0 { &forward } else { &backward };
            scope.spawn(move || {
                for n in 0..2_000 {
                    let identity = format!("id{}", n % 37);
                    let decisions = group.hit(&identity).into_ready().ok().unwrap().unwrap();
                    assert!(decisions.is_allowed());
                }
            });
        }
    });
    // Every group call charged all six throttles once.
    let total: u64 = (0..37)
        .map(|id| {
            let decision = forward.throttles()[0]
                .peek(&format!("id{id}"))
                .into_ready()
                .ok()
                .unwrap()
                .unwrap();
            1_000_000 - 1 - decision.remaining()
        })
        .sum();
    assert_eq!(total, 4 * 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_are_charged_exactly_under_concurrency() {
    let backend = MemoryBackend::builder()
        .shards(8)
        .sweep_interval(None)
        .build();
    traffik_backends::conformance::concurrent_groups_charge_exactly(&backend).await;
}

/// A recorder that keeps counters by name and labels, for the assertions.
#[derive(Default)]
struct Counts(
    std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<std::sync::atomic::AtomicU64>>,
    >,
);

impl Counts {
    fn get(&self, name: &str, labels: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(&format!("{name}{{{labels}}}"))
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl metrics::Recorder for Counts {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let counter = std::sync::Arc::clone(self.0.lock().unwrap().entry(name).or_default());
        metrics::Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn decisions_are_counted_by_throttle_and_outcome() {
    let counts = Counts::default();
    metrics::with_local_recorder(&counts, || {
        let backend = MemoryBackend::builder().sweep_interval(None).build();
        let clock = ManualClock::new(START);
        let login = named(&backend, &clock, "login", "5/min");
        for _ in 0..7 {
            login.hit("alice").into_ready().ok().unwrap().unwrap();
        }
        // Every limit's decision in a group is counted too.
        let other = named(&backend, &clock, "other", "100/min");
        let group = ThrottleGroup::new([other, login]).unwrap();
        group.hit("alice").into_ready().ok().unwrap().unwrap();
    });
    assert_eq!(
        counts.get("traffik_decisions_total", "throttle=login,outcome=allowed"),
        5
    );
    assert_eq!(
        counts.get("traffik_decisions_total", "throttle=login,outcome=denied"),
        3
    );
    assert_eq!(
        counts.get("traffik_decisions_total", "throttle=other,outcome=allowed"),
        1
    );
    // 5/min: the 5th hit left nothing (less than a fifth).
    assert_eq!(counts.get("traffik_near_limit_total", "throttle=login"), 1);
}

#[test]
fn shadow_mode_denies_nobody_and_counts_what_it_would_deny() {
    let counts = Counts::default();
    let backend = MemoryBackend::builder().sweep_interval(None).build();
    let clock = ManualClock::new(START);
    let trial = Throttle::builder("trial", "2/min".parse().unwrap())
        .strategy(FixedWindow)
        .enforcement(Enforcement::Shadow)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap();
    metrics::with_local_recorder(&counts, || {
        for n in 0..5 {
            let decision = trial.hit("bob").into_ready().ok().unwrap().unwrap();
            assert!(decision.is_allowed(), "hit {n} was denied in shadow mode");
            let expected = if n < 2 {
                Reason::WithinLimit
            } else {
                Reason::Shadowed
            };
            assert_eq!(decision.reason(), expected);
        }
    });
    assert_eq!(
        counts.get(
            "traffik_decisions_total",
            "throttle=trial,outcome=shadow_denied"
        ),
        3
    );
    // A shadowed hit is not counted: the quota shows the two admitted.
    let peek = trial.peek("bob").into_ready().ok().unwrap().unwrap();
    assert_eq!(peek.remaining(), 0);
    assert!(
        ThrottleGroup::new([trial]).is_err(),
        "a shadow throttle joined a group"
    );
}

#[test]
fn partial_enforcement_is_stable_per_identity_and_near_its_share() {
    let half = Enforcement::percent(50.0);
    let enforced = (0..10_000)
        .filter(|n| half.enforces(&format!("client-{n}")))
        .count();
    assert!((4_700..=5_300).contains(&enforced), "{enforced}");
    for n in 0..100 {
        let id = format!("client-{n}");
        assert_eq!(half.enforces(&id), half.enforces(&id));
    }
    assert!(Enforcement::percent(100.0).enforces("x"));
    assert!(!Enforcement::percent(0.0).enforces("x"));
    assert_eq!(
        Enforcement::percent(250.0),
        Enforcement::Partial { per_10k: 10_000 }
    );
    assert_eq!(
        Enforcement::percent(f64::NAN),
        Enforcement::Partial { per_10k: 0 }
    );
}

#[test]
fn hottest_lists_the_keys_denied_most_when_asked_to_count_them() {
    let scope = Scope::new("app", "api").unwrap();
    let limit = Limit::new("1/min".parse().unwrap(), Gcra::new()).unwrap();
    let hit = |backend: &MemoryBackend, identity: &str| {
        backend
            .hit(Key::new(&scope, identity), &limit, 1_000, 1)
            .into_ready()
            .unwrap()
            .unwrap()
    };
    let counting = MemoryBackend::builder().hot_keys(256).build();
    let silent = MemoryBackend::new();
    for (identity, hits) in [("mallory", 30), ("eve", 10), ("alice", 1)] {
        for _ in 0..hits {
            hit(&counting, identity);
            hit(&silent, identity);
        }
    }
    let top = counting.hottest(10);
    let named: Vec<_> = top
        .iter()
        .map(|hot| (hot.key.as_str(), hot.denials))
        .collect();
    // Admitted hits are not counted: alice was never denied.
    assert_eq!(named, [("app:api:mallory", 29), ("app:api:eve", 9)]);
    assert!(silent.hottest(10).is_empty());
    counting.clear_hot_keys();
    assert!(counting.hottest(10).is_empty());
}
