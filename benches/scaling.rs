//! Run with `cargo bench -p traffik-benches --bench scaling` (add filter
//! words to run only the rows whose scenario or contender contains each).
//!
//! How aggregate throughput grows from one thread to two, for traffik's
//! in-memory backend (FixedWindow, GCRA) and governor's keyed limiter, in one
//! run. Each figure is the median over 11 alternating pairs of runs (one
//! thread, then two; the next pair two, then one), because this machine is
//! shared and noisy. The scaling ratio is the two-thread rate over the
//! one-thread rate: 2.0 is perfect on two cores. A calibration row that
//! shares nothing shows what the machine itself gives.
//!
//! Scenarios:
//! - `1k`: each thread walks its own 1,000 keys, spread over every shard
//!   (interleaved), stored by the thread itself in a first pass, as a
//!   server's worker stores the keys of the clients it serves;
//! - `1k_confined`: the same, each thread's keys in its own half of the
//!   shards (traffik only: governor's shards are not visible);
//! - `1k_256_shards`: the same keys over 256 shards, the default of a
//!   64-core machine (traffik only);
//! - `1m`: each thread walks its own 500,000 keys (1M in all);
//! - `1k_alternating`: 1,000 keys each, all stored beforehand by one other
//!   thread, the two threads' keys in turn (a worst case for the layout:
//!   neighbouring entries belong to different threads);
//! - `hot`: both threads on one shared key, where contention is the point;
//! - `churn`: every hit is a new key; the clock moves a second every 1,024
//!   hits of all threads together (each thread moves it for its share), so
//!   keys expire and sweeps run during the run (governor is never
//!   swept: it needs a caller to clean up, so its memory only grows; its row
//!   runs last, since freeing what it kept slows the allocator for a while).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{key, median, ready};
use traffik_core::backend::Key;
use traffik_core::{AnyStrategy, FixedWindow, Gcra, ManualClock, Throttle};

const PAIRS: usize = 11;
const HITS_PER_THREAD: u64 = 4_000_000;

/// A check: thread, how many threads run, hit number, key.
type Check<'a> = dyn Fn(usize, usize, u64, &String) -> bool + Sync + 'a;

/// Runs `hits` checks on each of `threads` threads at once, each on its own
/// keys; returns the wall time of the slowest.
fn run(threads: usize, keys: &[Vec<String>], hits: u64, check: &Check<'_>) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let keys = &keys[t];
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let n = keys.len() as u64;
                    for i in 0..hits {
                        black_box(check(t, threads, i, &keys[(i % n) as usize]));
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// The medians of `PAIRS` alternating pairs: (ns per hit on one thread,
/// two-thread rate over one-thread rate).
fn pairs(keys: &[Vec<String>], hits: u64, check: &Check<'_>) -> (f64, f64) {
    let mut one = Vec::new();
    let mut ratios = Vec::new();
    for pair in 0..PAIRS {
        let (t1, t2) = if pair % 2 == 0 {
            let t1 = run(1, keys, hits, check);
            (t1, run(2, keys, hits, check))
        } else {
            let t2 = run(2, keys, hits, check);
            (run(1, keys, hits, check), t2)
        };
        one.push(t1.as_nanos() as f64 / hits as f64);
        ratios.push(2.0 * t1.as_secs_f64() / t2.as_secs_f64());
    }
    (median(one), median(ratios))
}

fn throttle(
    strategy: AnyStrategy,
    rate: &str,
    clock: &ManualClock,
) -> Throttle<MemoryBackend, ManualClock> {
    Throttle::builder("bench", rate.parse().unwrap())
        .strategy(strategy)
        .clock(clock.clone())
        .build(MemoryBackend::new())
        .unwrap()
}

/// `per_thread` keys for each of two threads, from `0`.
fn disjoint(per_thread: u64) -> Vec<Vec<String>> {
    (0..2)
        .map(|t| (0..per_thread).map(|i| key(t * per_thread + i)).collect())
        .collect()
}

/// 1,000 keys per thread, thread 0's in the lower half of the shards and
/// thread 1's in the upper half.
fn confined(throttle: &Throttle<MemoryBackend, ManualClock>) -> Vec<Vec<String>> {
    let backend = throttle.backend();
    let half = backend.shard_count() / 2;
    let kind = throttle.limit().strategy().kind();
    let mut keys = vec![Vec::new(), Vec::new()];
    for i in 0.. {
        let k = key(i);
        let side = usize::from(backend.shard_of(Key::new(throttle.scope(), &k), kind) >= half);
        if keys[side].len() < 1_000 {
            keys[side].push(k);
        }
        if keys.iter().all(|k| k.len() == 1_000) {
            break;
        }
    }
    keys
}

struct Row {
    scenario: &'static str,
    contender: &'static str,
    ns_one: f64,
    ratio: f64,
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |scenario: &str, contender: &str| {
        filters
            .iter()
            .all(|f| scenario.contains(f.as_str()) || contender.contains(f.as_str()))
    };
    let mut rows = Vec::new();
    let mut measure = |scenario: &'static str,
                       contender: &'static str,
                       keys: &[Vec<String>],
                       hits: u64,
                       check: &Check<'_>| {
        if !wanted(scenario, contender) {
            return;
        }
        let (ns_one, ratio) = pairs(keys, hits, check);
        eprintln!(
            "{scenario:<12} {contender:<22} {ns_one:>7.1} ns/hit on one thread, {ratio:.2}x on two"
        );
        rows.push(Row {
            scenario,
            contender,
            ns_one,
            ratio,
        });
    };
    let never = "1000000000/min";
    let governor_quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    let strategies = [
        ("traffik_fixed_window", AnyStrategy::from(FixedWindow)),
        ("traffik_gcra", AnyStrategy::from(Gcra::new())),
    ];
    let clock = ManualClock::new(1_700_000_000_000);

    for (scenario, per_thread) in [("1k", 1_000u64), ("1m", 500_000)] {
        let keys = disjoint(per_thread);
        measure(
            scenario,
            "baseline_unshared",
            &keys,
            HITS_PER_THREAD,
            &|_, _, _, k| {
                k.bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
                    > 1
            },
        );
        // Keys are stored by the threads that use them, as a server's
        // workers do: one pass of each thread over its own keys.
        if wanted(scenario, "governor") {
            let governor = RateLimiter::keyed(governor_quota);
            let check: &Check<'_> = &|_, _, _, k| governor.check_key(k).is_ok();
            run(2, &keys, per_thread, check);
            measure(scenario, "governor", &keys, HITS_PER_THREAD, check);
        }
        for (name, strategy) in &strategies {
            if !wanted(scenario, name) {
                continue;
            }
            let throttle = throttle(strategy.clone(), never, &clock);
            let check: &Check<'_> = &|_, _, _, k| ready(throttle.hit(k)).unwrap().is_allowed();
            run(2, &keys, per_thread, check);
            measure(scenario, name, &keys, HITS_PER_THREAD, check);
        }
    }

    // Many shards, as the default gives a many-core machine (4 per core):
    // each shard holds a few keys of each thread.
    for (name, strategy) in &strategies {
        if !wanted("1k_256_shards", name) {
            continue;
        }
        let throttle = Throttle::builder("bench", never.parse().unwrap())
            .strategy(strategy.clone())
            .clock(clock.clone())
            .build(MemoryBackend::builder().shards(256).build())
            .unwrap();
        let keys = disjoint(1_000);
        let check: &Check<'_> = &|_, _, _, k| ready(throttle.hit(k)).unwrap().is_allowed();
        run(2, &keys, 1_000, check);
        measure("1k_256_shards", name, &keys, HITS_PER_THREAD, check);
    }

    for (name, strategy) in &strategies {
        if !wanted("1k_alternating", name) {
            continue;
        }
        let throttle = throttle(strategy.clone(), never, &clock);
        let keys = disjoint(1_000);
        for i in 0..1_000 {
            for thread in &keys {
                let _ = ready(throttle.hit(&thread[i]));
            }
        }
        measure(
            "1k_alternating",
            name,
            &keys,
            HITS_PER_THREAD,
            &|_, _, _, k| ready(throttle.hit(k)).unwrap().is_allowed(),
        );
    }

    for (name, strategy) in &strategies {
        if !wanted("1k_confined", name) {
            continue;
        }
        let throttle = throttle(strategy.clone(), never, &clock);
        let keys = confined(&throttle);
        measure(
            "1k_confined",
            name,
            &keys,
            HITS_PER_THREAD,
            &|_, _, _, k| ready(throttle.hit(k)).unwrap().is_allowed(),
        );
    }

    let hot = vec![vec![key(42)], vec![key(42)]];
    if wanted("hot", "governor") {
        let governor = RateLimiter::keyed(governor_quota);
        measure("hot", "governor", &hot, HITS_PER_THREAD, &|_, _, _, k| {
            governor.check_key(k).is_ok()
        });
    }
    for (name, strategy) in &strategies {
        let throttle = throttle(strategy.clone(), never, &clock);
        measure("hot", name, &hot, HITS_PER_THREAD, &|_, _, _, k| {
            ready(throttle.hit(k)).unwrap().is_allowed()
        });
    }

    // Churn: a new key per hit, named by thread and a counter that runs on
    // across runs, so no run meets the keys of another.
    let churn_hits = HITS_PER_THREAD / 4;
    let unused = vec![vec![String::new()], vec![String::new()]];
    let fresh = [AtomicU64::new(0), AtomicU64::new(0)];
    let name_of = |t: usize| {
        let n = fresh[t].fetch_add(1, Ordering::Relaxed);
        format!("churn:{t}:{n:012}")
    };
    for (name, strategy) in &strategies {
        let throttle = throttle(strategy.clone(), "10/s", &clock);
        measure("churn", name, &unused, churn_hits, &|t, threads, i, _| {
            // A second per 1,024 hits of all threads together: each thread
            // moves the clock for its own share of them.
            if (i + t as u64 * 1_024) % (1_024 * threads as u64) == 0 {
                clock.advance(Duration::from_secs(1));
            }
            ready(throttle.hit(&name_of(t))).unwrap().is_allowed()
        });
    }

    if wanted("churn", "governor") {
        let governor = RateLimiter::keyed(governor_quota);
        measure("churn", "governor", &unused, churn_hits, &|t, _, _, _| {
            governor.check_key(&name_of(t)).is_ok()
        });
    }
    println!("\n| scenario | contender | ns/hit, 1 thread | 2 threads / 1 thread |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {:.1} | {:.2}x |",
            row.scenario, row.contender, row.ns_one, row.ratio
        );
    }
}
