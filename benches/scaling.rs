//! Run with `cargo bench -p traffik-benches --bench scaling`.
//!
//! Aggregate throughput on disjoint keys from one thread and from two, for
//! traffik's in-memory backend (GCRA and FixedWindow) and governor's keyed
//! limiter. Each thread walks its own 1,000 keys. The two-thread figure over
//! the one-thread figure is the scaling ratio (2.0 is perfect). A calibration
//! row that shares nothing shows what this machine's two cores can give.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{key, ready};
use traffik_core::{AnyStrategy, FixedWindow, Gcra, Throttle};

const KEYS_PER_THREAD: u64 = 1_000;

/// Runs `per_thread` checks on each of `threads` threads at once, each on its
/// own keys; returns the wall time of the slowest.
fn run_threads(
    threads: u64,
    per_thread: u64,
    check: &(dyn Fn(&String) -> bool + Sync),
) -> Duration {
    let keys: Vec<Vec<String>> = (0..threads)
        .map(|t| {
            (0..KEYS_PER_THREAD)
                .map(|i| key(t * KEYS_PER_THREAD + i))
                .collect()
        })
        .collect();
    let barrier = Barrier::new(threads as usize);
    std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter()
            .map(|keys| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..per_thread {
                        black_box(check(&keys[(i % KEYS_PER_THREAD) as usize]));
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

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("scaling");
    let governor = RateLimiter::keyed(Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()));
    let throttles: Vec<(&str, Throttle<MemoryBackend>)> = [
        ("traffik_gcra", AnyStrategy::from(Gcra::new())),
        ("traffik_fixed_window", AnyStrategy::from(FixedWindow)),
    ]
    .into_iter()
    .map(|(name, strategy)| {
        let throttle = Throttle::builder("bench", "1000000000/min".parse().unwrap())
            .strategy(strategy)
            .build(MemoryBackend::new())
            .unwrap();
        (name, throttle)
    })
    .collect();
    for threads in [1u64, 2] {
        group.throughput(Throughput::Elements(threads));
        // Calibration: work that shares nothing (hashing the key), so its
        // two-thread ratio is this machine's own ceiling.
        group.bench_function(BenchmarkId::new("baseline_unshared", threads), |b| {
            b.iter_custom(|iters| {
                run_threads(threads, iters, &|k| {
                    k.bytes()
                        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
                        > 1
                })
            })
        });
        group.bench_function(BenchmarkId::new("governor", threads), |b| {
            b.iter_custom(|iters| run_threads(threads, iters, &|k| governor.check_key(k).is_ok()))
        });
        for (name, throttle) in &throttles {
            group.bench_function(BenchmarkId::new(*name, threads), |b| {
                b.iter_custom(|iters| {
                    run_threads(threads, iters, &|k| {
                        ready(throttle.hit(k)).unwrap().is_allowed()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, scaling);
criterion_main!(benches);
