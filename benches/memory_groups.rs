//! Run with `cargo bench -p traffik-benches --bench memory_groups`.
//!
//! One thread, one client: three limits (GCRA, FixedWindow, TokenBucket)
//! decided as one `ThrottleGroup` on the in-memory backend, against the
//! same three throttles hit one after the other, in one criterion group.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{key, ready};
use traffik_core::{AnyStrategy, FixedWindow, Gcra, Throttle, ThrottleGroup, TokenBucket};

fn groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("three_limits");
    group.throughput(Throughput::Elements(1));
    let client = key(42);
    let store = MemoryBackend::new();
    let strategies: [(&str, AnyStrategy); 3] = [
        ("burst", Gcra::new().into()),
        ("minute", FixedWindow.into()),
        ("bucket", TokenBucket::new().into()),
    ];
    // Limits never reached: every decision walks the admit path.
    let throttles: Vec<Throttle<MemoryBackend>> = strategies
        .into_iter()
        .map(|(name, strategy)| {
            Throttle::builder(name, "1000000000/min".parse().unwrap())
                .strategy(strategy)
                .build(store.clone())
                .unwrap()
        })
        .collect();
    let limits = ThrottleGroup::new(throttles.iter().cloned()).unwrap();
    group.bench_function("three_single_decisions", |b| {
        b.iter(|| {
            for throttle in &throttles {
                black_box(
                    ready(throttle.hit(black_box(&client)))
                        .unwrap()
                        .is_allowed(),
                );
            }
        })
    });
    group.bench_function("one_group_of_three", |b| {
        b.iter(|| black_box(ready(limits.hit(black_box(&client))).unwrap().is_allowed()))
    });
    group.finish();
}

criterion_group!(benches, groups);
criterion_main!(benches);
