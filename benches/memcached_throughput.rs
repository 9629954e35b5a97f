//! Run with `cargo bench -p traffik-benches --bench memcached_throughput`.
//!
//! Decisions per second through traffik's Memcached backend with 64
//! concurrent tasks (each on its own key, a limit never reached), for every
//! strategy, against the same client and pool sending a bare increment at
//! the same concurrency, on one memcached started here, alternating three
//! rounds each. Prints medians, the ratio, p50/p99 latency and round trips
//! per decision. Needs `memcached` (`scripts/setup.sh`).

use std::sync::Arc;
use std::time::Instant;

use traffik_backends::memcached::MemcachedBackend;
use traffik_benches::{MemcachedServer, median};
use traffik_core::{AnyStrategy, StrategyKind, Throttle};

const TASKS: usize = 64;
const PER_TASK: usize = 1_000;

struct Round {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `op(task)` PER_TASK times in each of TASKS tasks.
async fn load<F, Fut>(op: F) -> Round
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(PER_TASK);
                for _ in 0..PER_TASK {
                    let at = Instant::now();
                    op(task).await;
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(TASKS * PER_TASK);
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    Round {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// The client alternative: async-memcached 0.9, a pool of as many
/// connections as traffik's, each behind a mutex, sending a bare `incr`.
async fn async_memcached_pool(
    port: u16,
    size: usize,
) -> Arc<Vec<tokio::sync::Mutex<async_memcached::Client>>> {
    use async_memcached::AsciiProtocol;
    let mut pool = Vec::with_capacity(size);
    for _ in 0..size {
        let address = format!("tcp://127.0.0.1:{port}");
        let mut client = async_memcached::Client::new(address)
            .await
            .expect("connect");
        for task in 0..TASKS {
            let key = format!("am:{task}");
            client.set(key, "0", Some(600), None).await.expect("set");
        }
        pool.push(tokio::sync::Mutex::new(client));
    }
    Arc::new(pool)
}

fn main() {
    let port = 48_000 + (std::process::id() % 1_000) as u16;
    let _server = MemcachedServer::start(port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = MemcachedBackend::builder(format!("memcached://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let keys: Arc<Vec<String>> =
        Arc::new((0..TASKS).map(|t| format!("{{bench:bare:{t}}}")).collect());
    println!(
        "{TASKS} tasks, each on its own key, {PER_TASK} operations per task, medians of 3 rounds:"
    );

    // The clients, bare increments side by side: traffik's own meta-protocol
    // client against async-memcached with a pool of the same size (4).
    let pool = runtime.block_on(async_memcached_pool(port, 4));
    let theirs = {
        let pool = Arc::clone(&pool);
        move |task: usize| {
            let pool = Arc::clone(&pool);
            async move {
                use async_memcached::AsciiProtocol;
                let mut client = pool[task % pool.len()].lock().await;
                client
                    .increment(format!("am:{task}"), 1)
                    .await
                    .expect("incr");
            }
        }
    };
    let ours = {
        let (backend, keys) = (backend.clone(), Arc::clone(&keys));
        move |task: usize| {
            let (backend, keys) = (backend.clone(), Arc::clone(&keys));
            async move {
                backend.bench_bare_incr(&keys[task]).await.expect("incr");
            }
        }
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(runtime.block_on(load(ours.clone())));
        b.push(runtime.block_on(load(theirs.clone())));
    }
    let rate = |rounds: &[Round]| median(rounds.iter().map(|r| r.rps).collect());
    let p50 = |rounds: &[Round]| median(rounds.iter().map(|r| r.p50_ms).collect());
    let p99 = |rounds: &[Round]| median(rounds.iter().map(|r| r.p99_ms).collect());
    println!(
        "  bare incr: traffik's client {:.0}/s (p50 {:.3} ms, p99 {:.3} ms), async-memcached pool {:.0}/s (p50 {:.3} ms, p99 {:.3} ms), ratio {:.2}",
        rate(&a),
        p50(&a),
        p99(&a),
        rate(&b),
        p50(&b),
        p99(&b),
        rate(&a) / rate(&b),
    );
    for kind in StrategyKind::ALL {
        let throttle = Arc::new(
            Throttle::builder("bench", "1000000000/min".parse().unwrap())
                .strategy(AnyStrategy::from(kind))
                .build(backend.clone())
                .unwrap(),
        );
        let ids: Arc<Vec<String>> = Arc::new((0..TASKS).map(|t| format!("client-{t}")).collect());
        let decide = {
            let (throttle, ids) = (Arc::clone(&throttle), Arc::clone(&ids));
            move |task: usize| {
                let (throttle, ids) = (Arc::clone(&throttle), Arc::clone(&ids));
                async move {
                    assert!(
                        throttle
                            .hit(&ids[task])
                            .await
                            .expect("decision")
                            .is_allowed()
                    );
                }
            }
        };
        let bare = {
            let (backend, keys) = (backend.clone(), Arc::clone(&keys));
            move |task: usize| {
                let (backend, keys) = (backend.clone(), Arc::clone(&keys));
                async move {
                    backend.bench_bare_incr(&keys[task]).await.expect("incr");
                }
            }
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            theirs.push(runtime.block_on(load(bare.clone())));
            ours.push(runtime.block_on(load(decide.clone())));
        }
        // Round trips per admitted decision, measured on a fresh round.
        let before = backend.round_trips();
        runtime.block_on(load(decide.clone()));
        let trips = (backend.round_trips() - before) as f64 / (TASKS * PER_TASK) as f64;
        let rps = median(ours.iter().map(|r| r.rps).collect());
        let base = median(theirs.iter().map(|r| r.rps).collect());
        println!(
            "  {:<24} {rps:>8.0}/s  p50 {:.3} ms  p99 {:.3} ms  {trips:.2} round trips  | bare incr {base:>8.0}/s  p50 {:.3} ms  p99 {:.3} ms  | ratio {:.2}",
            kind.as_str(),
            median(ours.iter().map(|r| r.p50_ms).collect()),
            median(ours.iter().map(|r| r.p99_ms).collect()),
            median(theirs.iter().map(|r| r.p50_ms).collect()),
            median(theirs.iter().map(|r| r.p99_ms).collect()),
            rps / base
        );
    }
}
