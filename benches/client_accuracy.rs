//! Run with `cargo bench -p traffik-benches --bench client_accuracy`.
//!
//! traffik-client's limit in front of a real upstream (traffik-axum at the
//! same rate, on a loopback port), shared through a real redis-server
//! started here, with client processes that are real processes (this
//! binary, run again as a worker):
//!
//! 1. accuracy: 1 and 3 processes, each with a backlog of calls at once,
//!    through one limit of 20/s in Redis: the rate the upstream saw, from its
//!    first arrival to its last, beyond the limit's burst of 2 (a limit of
//!    rate r and burst b admits at most b + r·t in any t: `(n − b) / t` is
//!    the figure it keeps at or below r), against the configured 20/s; and
//!    its 429s;
//! 2. Redis round trips per call, counted by Redis (`INFO commandstats`:
//!    `EVALSHA`, `EVAL` and `SCRIPT LOAD` calls over the upstream's calls);
//! 3. queue waits (p50, p99) at 90 % of the limit, arrivals spaced at
//!    random (exponential gaps), read from the client's own
//!    `traffik_client_wait_seconds` histogram;
//! 4. coalescing: 50 identical concurrent GETs, upstream calls made.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use traffik_backends::AnyBackend;
use traffik_benches::{RedisServer, free_port, upstream};
use traffik_client::StackBuilder;
use traffik_client::coalesce::Coalesce;
use traffik_client::limit::Limiter;
use traffik_client::reqwest::Client;
use traffik_core::Gcra;

const RATE: u64 = 20;
const WORKER: &str = "TRAFFIK_ACCURACY_WORKER";

fn limiter(backend: AnyBackend) -> Limiter {
    Limiter::builder("accuracy", format!("{RATE}/s").parse().unwrap())
        .strategy(Gcra::with_burst(2.try_into().unwrap()))
        .backend(backend)
        .build()
        .unwrap()
}

/// A worker process: `calls` calls through the shared limit, all at once
/// (`gap_ms` 0) or spaced by exponential gaps of mean `gap_ms`; prints its
/// queue wait quantiles.
async fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split(' ').collect();
    let [redis, url, calls, gap_ms] = parts[..] else {
        panic!("bad worker spec")
    };
    let (calls, gap_ms): (usize, f64) = (calls.parse().unwrap(), gap_ms.parse().unwrap());
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new().limiter(limiter(AnyBackend::from_url(redis).await.unwrap())),
    );
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        if gap_ms > 0.0 {
            let gap = -gap_ms * (1.0 - fastrand::f64()).ln();
            tokio::time::sleep(Duration::from_secs_f64(gap / 1e3)).await;
        }
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(matches!(task.await.unwrap(), Ok(200)));
    }
    let rendered = metrics.render();
    let quantile = |q: &str| {
        rendered
            .lines()
            .find(|l| {
                l.starts_with("traffik_client_wait_seconds{")
                    && l.contains(&format!("quantile=\"{q}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    println!("ok={ok} p50={} p99={}", quantile("0.5"), quantile("0.99"));
}

struct Run {
    rate: f64,
    busiest: usize,
    throttled: u64,
    calls: usize,
    round_trips: u64,
    p50_ms: f64,
    p99_ms: f64,
}

fn redis_commands(port: u16) -> u64 {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()
        .expect("redis-cli is needed: run scripts/setup.sh");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // What clients send: scripts, and loading them. The commands a
        // script runs inside Redis (HMGET, TIME, ...) are counted apart by
        // Redis and are no round trip.
        .filter(|l| {
            ["cmdstat_evalsha:", "cmdstat_eval:", "cmdstat_script|load:"]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn run(processes: usize, calls: usize, gap_ms: f64) -> Run {
    let port = free_port();
    let _redis = RedisServer::start(port);
    let redis = format!("redis://127.0.0.1:{port}");
    let api = upstream::start(&format!("{RATE}/s")).await;
    let before = redis_commands(port);
    let exe = std::env::current_exe().unwrap();
    let workers: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .env(
                    WORKER,
                    format!("{redis} {} {calls} {gap_ms}", api.url("/data")),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|w| w.wait_with_output().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let (mut p50, mut p99) = (0.0f64, 0.0f64);
    for output in &outputs {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(&format!("ok={calls}")),
            "a worker failed: {text}"
        );
        let value = |key: &str| {
            text.split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        p50 = p50.max(value("p50=") * 1e3);
        p99 = p99.max(value("p99=") * 1e3);
    }
    let (rate, busiest) = api.data_rate(2);
    Run {
        rate,
        busiest,
        throttled: api.seen.throttled.load(Ordering::Relaxed),
        calls: api.seen.data.lock().len(),
        round_trips: redis_commands(port) - before,
        p50_ms: p50,
        p99_ms: p99,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var(WORKER) {
        runtime.block_on(worker(&spec));
        return;
    }
    // `cargo bench` passes `--bench`; a filter would be the next argument.
    runtime.block_on(async {
        println!("limit {RATE}/s (GCRA, burst 2) in Redis; upstream traffik-axum at {RATE}/s\n");
        println!("| processes | calls | upstream rate beyond the burst | vs configured | most in 1 s | 429s | Redis round trips per call |");
        println!("|---|---|---|---|---|---|---|");
        for (processes, calls) in [(1, 200), (3, 67)] {
            let r = run(processes, calls, 0.0).await;
            #[allow(clippy::cast_precision_loss)]
            let per_call = r.round_trips as f64 / r.calls as f64;
            println!(
                "| {processes} | {} | {:.3}/s | {:+.2} % | {} | {} | {per_call:.3} |",
                r.calls,
                r.rate,
                (r.rate / RATE as f64 - 1.0) * 100.0,
                r.busiest,
                r.throttled
            );
        }
        // 90 % of the limit: mean gap 1 / (0.9 × rate).
        let gap = 1e3 / (0.9 * RATE as f64);
        let r = run(1, 180, gap).await;
        println!("\nqueue wait at 90 % load (1 process, 180 calls): p50 {:.1} ms, p99 {:.1} ms", r.p50_ms, r.p99_ms);

        let api = upstream::start("1000/s").await;
        api.seen.delay_ms.store(200, Ordering::Relaxed);
        let coalesce = Coalesce::new("accuracy");
        let client = Client::new(reqwest::Client::new(), StackBuilder::new().coalesce(coalesce.clone()));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (client, url) = (client.clone(), api.url("/data?q=1"));
                tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 200);
        }
        let totals = coalesce.totals();
        #[allow(clippy::cast_precision_loss)]
        let hit_rate = totals.hits as f64 / (totals.hits + totals.misses) as f64 * 100.0;
        println!(
            "coalescing: 50 identical GETs made {} upstream call(s); hit rate {hit_rate:.0} %",
            api.seen.data.lock().len()
        );
    });
}
