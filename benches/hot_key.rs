//! Run with `cargo bench -p traffik-benches --bench hot_key`.
//!
//! One thread, one hot key, ~15-byte String keys: governor's keyed limiter
//! (`check_key`) against traffik's `Throttle::hit` on the in-memory backend,
//! for every strategy, in one criterion group so the report is a ratio.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{key, ready};
use traffik_core::{AnyStrategy, ManualClock, SlidingWindowLog, StrategyKind, Throttle};

fn hot_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_key");
    group.throughput(Throughput::Elements(1));
    let hot = key(42);

    // A limit that is never reached, so every check walks the admit path.
    let governor = RateLimiter::keyed(Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap()));
    group.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check_key(black_box(&hot)).is_ok()))
    });

    for kind in StrategyKind::ALL {
        if kind == StrategyKind::SlidingWindowLog {
            continue;
        }
        let throttle = Throttle::builder("bench", "1000000000/min".parse().unwrap())
            .strategy(AnyStrategy::from(kind))
            .build(MemoryBackend::new())
            .unwrap();
        group.bench_function(BenchmarkId::new("traffik", kind.as_str()), |b| {
            b.iter(|| black_box(ready(throttle.hit(black_box(&hot))).unwrap().is_allowed()))
        });
    }
    group.finish();

    // SlidingWindowLog keeps one entry per admitted hit, so its state grows
    // with the limit. A manual clock moves 1 ms per hit, so every admitted hit
    // is an entry of its own; at `limit` per `2 × limit` ms about half the hits
    // pass and the log holds `limit` entries.
    let mut group = c.benchmark_group("sliding_window_log");
    group.throughput(Throughput::Elements(1));
    group.bench_function("governor", |b| {
        b.iter(|| black_box(governor.check_key(black_box(&hot)).is_ok()))
    });
    for limit in [10u64, 100, 1_000, 10_000] {
        let clock = ManualClock::new(1_700_000_000_000);
        let throttle =
            Throttle::builder("bench", format!("{limit}/{}ms", 2 * limit).parse().unwrap())
                .strategy(SlidingWindowLog)
                .clock(clock.clone())
                .build(MemoryBackend::new())
                .unwrap();
        group.bench_function(BenchmarkId::new("traffik", limit), |b| {
            b.iter(|| {
                clock.advance(Duration::from_millis(1));
                black_box(ready(throttle.hit(black_box(&hot))).unwrap().is_allowed())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hot_key);
criterion_main!(benches);
