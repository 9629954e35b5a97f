//! Run with `cargo bench -p traffik-benches --bench faults` (needs
//! `redis-server` and `memcached`: `scripts/setup.sh`).
//!
//! What the guard in front of remote stores buys, on real servers started
//! here:
//!
//! 1. **Hung store.** Redis, then Memcached, stopped with `SIGSTOP` under 64
//!    concurrent tasks: decision latency (p50/p99) without a breaker and
//!    with the default one once it is open; after `SIGCONT`, how long until
//!    decisions come from the store again.
//! 2. **Deny cache.** One client floods a denied key on Redis from 64 tasks:
//!    decisions/s and round trips per denied hit with the cache and
//!    without, three alternating rounds, medians.
//! 3. **Hot-key contention.** 4 processes × 32 tasks × 32 hits on one key
//!    at 2000/hour on Memcached, TokenBucket and GCRA (CAS loops) beside
//!    FixedWindow (counters): contention outcomes, admitted against the
//!    limit, p50/p99.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use traffik_backends::guard::{BreakerConfig, GuardConfig};
use traffik_backends::memcached::MemcachedBackend;
use traffik_backends::redis::RedisBackend;
use traffik_benches::{MemcachedServer, RedisServer, free_port, median, percentiles};
use traffik_core::{AnyStrategy, Backend, FailurePolicy, Reason, StrategyKind, Throttle};

const TASKS: usize = 64;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(strategy) = std::env::var("TRAFFIK_CONTENTION_WORKER") {
        Box::pin(contention_worker(&strategy)).await;
        return;
    }
    println!("# 1. A hung store (SIGSTOP), 64 tasks");
    // Boxed: the futures of every measurement in one would be too deep a
    // type to lay out.
    Box::pin(hung_redis()).await;
    Box::pin(hung_memcached()).await;
    println!("\n# 2. A flood on one denied key, Redis, 64 tasks");
    Box::pin(deny_cache()).await;
    println!("\n# 3. One hot key on Memcached, 4 processes x 32 tasks x 32 hits, 2000/hour");
    contention();
    println!("\n# 4. What the guard costs a healthy Redis, 64 tasks on keys of their own");
    Box::pin(guard_cost()).await;
}

/// Decisions/s on a healthy Redis, limits never reached, with the default
/// guard and with the breaker and the deny cache off; three alternating
/// rounds, medians.
async fn guard_cost() {
    let port = free_port();
    let _server = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let guarded = RedisBackend::builder(&url).build().expect("a backend");
    let bare = RedisBackend::builder(&url)
        .guard(
            GuardConfig::default()
                .breaker(BreakerConfig::disabled())
                .deny_cache(0),
        )
        .build()
        .expect("a backend");
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, backend) in [&guarded, &bare].into_iter().enumerate() {
            let open = throttle(backend.clone(), "1000000000/min", FailurePolicy::Error);
            let (latencies, took) = load(&open, 1_000, |t| format!("r{round}-{i}-{t}")).await;
            rates[i].push(latencies.len() as f64 / took.as_secs_f64());
        }
    }
    let (with, without) = (median(rates[0].clone()), median(rates[1].clone()));
    println!(
        "guarded {with:.0} decisions/s, unguarded {without:.0} decisions/s, ratio {:.3}",
        with / without
    );
}

/// `per_task` decisions of `throttle` from each of TASKS tasks, on keys
/// `key(task)`: their latencies and how long the whole took.
async fn load<B: Backend + Clone>(
    throttle: &Throttle<B>,
    per_task: usize,
    key: impl Fn(usize) -> String,
) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let throttle = throttle.clone();
            let key = key(task);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let at = Instant::now();
                    let _ = throttle.hit(&key).await;
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a task"));
    }
    (all, started.elapsed())
}

fn throttle<B: Backend>(backend: B, rate: &str, policy: FailurePolicy) -> Throttle<B> {
    Throttle::builder("bench", rate.parse().expect("a rate"))
        .failure_policy(policy)
        .build(backend)
        .expect("a throttle")
}

/// Latency while hung, without and with the breaker, and the time to
/// recover; `make(breaker)` builds a backend on the store, `signal` stops
/// and continues it.
async fn hung<B: Backend + Clone>(
    name: &str,
    make: impl Fn(BreakerConfig) -> B,
    signal: impl Fn(&str),
) {
    let rate = "1000000000/min";
    let without = throttle(make(BreakerConfig::disabled()), rate, FailurePolicy::Deny);
    let with = throttle(make(BreakerConfig::default()), rate, FailurePolicy::Deny);
    for throttle in [&without, &with] {
        let warm = throttle.hit("warm").await.expect("a decision");
        assert_eq!(warm.reason(), Reason::WithinLimit, "{name} is not up");
    }
    signal("STOP");
    let (slow, _) = load(&without, 3, |t| format!("k{t}")).await;
    // The breaker opens on the first timeouts; then every decision is
    // refused in process.
    let _ = load(&with, 1, |t| format!("k{t}")).await;
    let (fast, took) = load(&with, 500, |t| format!("k{t}")).await;
    let opened = fast.len() as f64 / took.as_secs_f64();
    signal("CONT");
    let back = Instant::now();
    while !with
        .hit("k0")
        .await
        .is_ok_and(|d| d.reason() == Reason::WithinLimit)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recovered = back.elapsed();
    let (s50, s99) = percentiles(slow);
    let (f50, f99) = percentiles(fast);
    println!(
        "{name}: no breaker p50 {s50:.1} ms, p99 {s99:.1} ms | breaker open p50 {:.1} µs, \
         p99 {:.1} µs, {opened:.0} decisions/s | after SIGCONT a store decision in {} ms",
        f50 * 1e3,
        f99 * 1e3,
        recovered.as_millis()
    );
}

async fn hung_redis() {
    let port = free_port();
    let server = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let make = |breaker| {
        RedisBackend::builder(&url)
            .guard(GuardConfig::default().breaker(breaker))
            .build()
            .expect("a backend")
    };
    hung("redis", make, |signal| server.signal(signal)).await;
}

async fn hung_memcached() {
    let port = free_port();
    let server = MemcachedServer::start(port);
    let url = format!("memcached://127.0.0.1:{port}");
    let make = |breaker| {
        MemcachedBackend::builder(&url)
            .guard(GuardConfig::default().breaker(breaker))
            .build()
            .expect("a backend")
    };
    hung("memcached", make, |signal| server.signal(signal)).await;
}

async fn deny_cache() {
    let port = free_port();
    let _server = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let make = |entries| {
        RedisBackend::builder(&url)
            .guard(GuardConfig::default().deny_cache(entries))
            .build()
            .expect("a backend")
    };
    let (cached, uncached) = (make(10_000), make(0));
    let per_task = 2_000;
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut trips: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _round in 0..3 {
        for (i, backend) in [&cached, &uncached].into_iter().enumerate() {
            let flood = throttle(backend.clone(), "1/hour", FailurePolicy::Error);
            let _ = flood.hit("mallory").await;
            let before = backend.round_trips();
            let (latencies, took) = load(&flood, per_task, |_| "mallory".to_owned()).await;
            let hits = latencies.len() as f64;
            rates[i].push(hits / took.as_secs_f64());
            trips[i].push((backend.round_trips() - before) as f64 / hits);
            let _ = flood.reset("mallory").await;
        }
    }
    let with = median(rates[0].clone());
    let without = median(rates[1].clone());
    println!(
        "deny cache on: {with:.0} decisions/s, {:.4} round trips per denied hit | off: \
         {without:.0} decisions/s, {:.2} round trips per denied hit | ratio {:.1}x",
        median(trips[0].clone()),
        median(trips[1].clone()),
        with / without
    );
}

/// The parent: starts memcached, runs four worker processes per strategy,
/// sums what they report.
fn contention() {
    let port = free_port();
    let _server = MemcachedServer::start(port);
    let url = format!("memcached://127.0.0.1:{port}");
    let exe = std::env::current_exe().expect("this bench");
    for kind in [
        StrategyKind::FixedWindow,
        StrategyKind::TokenBucket,
        StrategyKind::Gcra,
    ] {
        let started = Instant::now();
        let workers: Vec<_> = (0..4)
            .map(|_| {
                Command::new(&exe)
                    .env("TRAFFIK_CONTENTION_WORKER", kind.as_str())
                    .env("TRAFFIK_CONTENTION_URL", &url)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("a worker process")
            })
            .collect();
        let mut totals = [0u64; 3];
        let mut latencies = Vec::new();
        for worker in workers {
            let output = worker.wait_with_output().expect("a worker");
            let text = String::from_utf8_lossy(&output.stdout);
            let line = text.lines().last().unwrap_or_default();
            let mut numbers = line.split(' ').map(|n| n.parse::<f64>().unwrap_or(0.0));
            for total in &mut totals {
                *total += numbers.next().unwrap_or(0.0) as u64;
            }
            latencies.extend(numbers.map(Duration::from_secs_f64));
        }
        let took = started.elapsed();
        // 2000/hour refills one hit every 1.8 s.
        let refilled = (took.as_millis() / 1_800) as u64;
        let (p50, p99) = percentiles(latencies);
        println!(
            "{kind}: admitted {} (limit 2000 + {refilled} refilled), contended {}, errors {}, \
             p50 {p50:.2} ms, p99 {p99:.2} ms, {} ms in all",
            totals[0],
            totals[1],
            totals[2],
            took.as_millis()
        );
    }
}

/// A worker: 32 tasks × 32 hits on one key; prints `admitted contended
/// errors` and then every latency in seconds, on one line.
async fn contention_worker(strategy: &str) {
    let url = std::env::var("TRAFFIK_CONTENTION_URL").expect("the url");
    let backend = MemcachedBackend::builder(&url).build().expect("a backend");
    let strategy: AnyStrategy = strategy.parse().expect("a strategy");
    let throttle = Arc::new(
        Throttle::builder(
            format!("hot-{}", strategy.kind()),
            "2000/hour".parse().expect("a rate"),
        )
        .strategy(strategy)
        .failure_policy(FailurePolicy::Error)
        .build(backend)
        .expect("a throttle"),
    );
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let throttle = Arc::clone(&throttle);
            tokio::spawn(async move {
                let mut seen = ([0u64; 3], Vec::with_capacity(32));
                for _ in 0..32 {
                    let at = Instant::now();
                    let outcome = throttle.hit("one-hot-key").await;
                    seen.1.push(at.elapsed());
                    match outcome {
                        Ok(d) if d.reason() == Reason::Contended => seen.0[1] += 1,
                        Ok(d) => seen.0[0] += u64::from(d.is_allowed()),
                        Err(_) => seen.0[2] += 1,
                    }
                }
                seen
            })
        })
        .collect();
    let mut counts = [0u64; 3];
    let mut latencies = Vec::new();
    for task in tasks {
        let (c, l) = task.await.expect("a task");
        for (total, n) in counts.iter_mut().zip(c) {
            *total += n;
        }
        latencies.extend(l);
    }
    let mut line = format!("{} {} {}", counts[0], counts[1], counts[2]);
    for latency in latencies {
        line.push_str(&format!(" {}", latency.as_secs_f64()));
    }
    println!("{line}");
}
