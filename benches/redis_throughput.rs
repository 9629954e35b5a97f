//! Run with `cargo bench -p traffik-benches --bench redis_throughput`.
//!
//! Decisions per second through traffik's Redis backend with 64 concurrent
//! tasks, against `redis-benchmark` sending the very same EVALSHA (same
//! script, key and arguments) with 64 connections, on one redis-server
//! started here, alternating three rounds each. Prints medians, the ratio,
//! and p50/p99 latency per decision. Needs `redis-server` and
//! `redis-benchmark` (`scripts/setup.sh`).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use traffik_backends::redis::{RedisBackend, redis, script_source};
use traffik_benches::{RedisServer, median};
use traffik_core::{Gcra, StrategyKind, Throttle};

const TASKS: usize = 64;
const DECISIONS: usize = 100_000;
const RATE: &str = "1000000000/min";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Round {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `redis-benchmark --csv`: rps, then p50 and p99 in ms.
fn redis_benchmark(port: u16, args: &[String]) -> Round {
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &TASKS.to_string(),
        ])
        .args(["-n", &DECISIONS.to_string(), "--csv"])
        .args(args)
        .output()
        .expect("redis-benchmark is needed: run scripts/setup.sh");
    let text = String::from_utf8_lossy(&output.stdout);
    let row = text
        .lines()
        .last()
        .expect("redis-benchmark printed nothing");
    let fields: Vec<f64> = row
        .split("\",\"")
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap())
        .collect();
    Round {
        rps: fields[0],
        p50_ms: fields[3],
        p99_ms: fields[5],
    }
}

async fn traffik(throttle: Arc<Throttle<RedisBackend>>) -> Round {
    let per_task = DECISIONS / TASKS;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let throttle = Arc::clone(&throttle);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let at = Instant::now();
                    let decision = throttle.hit("hot").await.expect("decision");
                    assert!(decision.is_allowed());
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(DECISIONS);
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Round {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        p99_ms: percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    }
}

fn main() {
    // `cargo bench --no-run` compiles this; criterion flags are ignored.
    let port = 47_000 + (std::process::id() % 1_000) as u16;
    let _server = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // The exact command a decision sends: the GCRA script, its key, its arguments.
    let source = script_source(StrategyKind::Gcra);
    let sha = redis::Script::new(source).get_hash().to_owned();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_connection().unwrap();
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(source)
        .query::<String>(&mut connection)
        .unwrap();
    let rate: traffik_core::Rate = RATE.parse().unwrap();
    let (drain, unit) = rate.reduced();
    let command: Vec<String> = [
        "EVALSHA",
        &sha,
        "1",
        "traffik:bench:{hot}:gcra",
        "",
        &rate.count().to_string(),
        &rate.period_ms().to_string(),
        &drain.to_string(),
        &unit.to_string(),
        &rate.count().to_string(),
        "1",
        "0",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();

    for pool in [1usize, 2, 4] {
        let backend = RedisBackend::builder(url.as_str())
            .pool_size(pool)
            .build()
            .unwrap();
        let throttle = Arc::new(
            Throttle::builder("bench", RATE.parse().unwrap())
                .strategy(Gcra::new())
                .build(backend)
                .unwrap(),
        );
        runtime.block_on(throttle.backend().warm_up()).unwrap();
        // Warm both up once.
        runtime.block_on(traffik(Arc::clone(&throttle)));
        redis_benchmark(port, &command);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            theirs.push(redis_benchmark(port, &command));
            ours.push(runtime.block_on(traffik(Arc::clone(&throttle))));
        }
        let rps = median(ours.iter().map(|r| r.rps).collect());
        let base = median(theirs.iter().map(|r| r.rps).collect());
        println!(
            "pool_size={pool}, {TASKS} tasks / connections, {DECISIONS} decisions per round, medians of 3 rounds:"
        );
        println!(
            "  redis-benchmark EVALSHA  {base:>9.0} /s   p50 {:.3} ms   p99 {:.3} ms",
            median(theirs.iter().map(|r| r.p50_ms).collect()),
            median(theirs.iter().map(|r| r.p99_ms).collect())
        );
        println!(
            "  traffik RedisBackend     {rps:>9.0} /s   p50 {:.3} ms   p99 {:.3} ms   ratio {:.2}",
            median(ours.iter().map(|r| r.p50_ms).collect()),
            median(ours.iter().map(|r| r.p99_ms).collect()),
            rps / base
        );
    }
}
