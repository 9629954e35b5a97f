//! Run with `cargo bench -p traffik-benches --bench redis_groups`.
//!
//! Throttle groups on Redis, 64 concurrent tasks, one redis-server started
//! here (`scripts/setup.sh` installs it and `redis-benchmark`):
//!
//! 1. round trips per request for groups of 1, 2 and 3 throttles, counted by
//!    Redis itself (`INFO commandstats`: `EVALSHA` calls over requests);
//! 2. requests per second deciding three limits as one group against three
//!    single decisions one after the other, alternating three rounds;
//! 3. the group's rate against the server's own ceiling: `redis-benchmark
//!    -P 16` sending the very same `EVALSHA` (script, keys and arguments).
//!
//! Medians of three rounds.

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use traffik_backends::redis::{RedisBackend, group_call, group_script_source, redis};
use traffik_benches::{RedisServer, median};
use traffik_core::{
    AnyStrategy, FixedWindow, Gcra, Hit, Key, Throttle, ThrottleGroup, TokenBucket,
};

const TASKS: usize = 64;
const REQUESTS: usize = 60_000;
const RATE: &str = "1000000000/min";

fn throttles(backend: &RedisBackend) -> Vec<Throttle<RedisBackend>> {
    let strategies: [(&str, AnyStrategy); 3] = [
        ("burst", Gcra::new().into()),
        ("minute", FixedWindow.into()),
        ("bucket", TokenBucket::new().into()),
    ];
    strategies
        .into_iter()
        .map(|(name, strategy)| {
            Throttle::builder(name, RATE.parse().unwrap())
                .strategy(strategy)
                .build(backend.clone())
                .unwrap()
        })
        .collect()
}

/// Requests per second: each of `TASKS` tasks makes `REQUESTS / TASKS`
/// requests with `request`.
async fn rate<F, Fut>(request: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rate_with(TASKS, request).await
}

async fn rate_with<F, Fut>(tasks: usize, request: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = REQUESTS / tasks;
    let started = Instant::now();
    let tasks: Vec<_> = (0..tasks)
        .map(|task| {
            let request = request.clone();
            tokio::spawn(async move {
                for n in 0..per_task {
                    request(task * per_task + n).await;
                }
            })
        })
        .collect();
    let count = tasks.len();
    for task in tasks {
        task.await.expect("task");
    }
    (per_task * count) as f64 / started.elapsed().as_secs_f64()
}

fn evalsha_calls(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(connection)
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// `redis-benchmark -P 16 --csv` of one command: requests per second.
fn redis_benchmark(port: u16, command: &[String]) -> f64 {
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &TASKS.to_string(),
        ])
        .args(["-n", &REQUESTS.to_string(), "-P", "16", "--csv"])
        .args(command)
        .output()
        .expect("redis-benchmark is needed: run scripts/setup.sh");
    let text = String::from_utf8_lossy(&output.stdout);
    let row = text
        .lines()
        .last()
        .expect("redis-benchmark printed nothing");
    row.split("\",\"")
        .nth(1)
        .and_then(|f| f.trim_matches('"').parse().ok())
        .expect("a rate")
}

fn main() {
    // `cargo bench --no-run` compiles this; criterion flags are ignored.
    let port = 48_000 + (std::process::id() % 1_000) as u16;
    let _server = RedisServer::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = RedisBackend::builder(url.as_str()).build().unwrap();
    runtime.block_on(backend.warm_up()).unwrap();
    let all = throttles(&backend);
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_connection().unwrap();

    println!("{TASKS} tasks, {REQUESTS} requests per round, one client key per request");
    for size in 1..=3 {
        let group = Arc::new(ThrottleGroup::new(all[..size].iter().cloned()).unwrap());
        let before = evalsha_calls(&mut connection);
        runtime.block_on(rate(move |n| {
            let group = Arc::clone(&group);
            async move {
                let id = format!("c{}", n % 1_000);
                assert!(group.hit(&id).await.expect("decisions").is_allowed());
            }
        }));
        let calls = evalsha_calls(&mut connection) - before;
        println!(
            "  group of {size}: {:.3} round trips (EVALSHA calls) per request",
            calls as f64 / (REQUESTS / TASKS * TASKS) as f64
        );
    }

    let group = Arc::new(ThrottleGroup::new(all.iter().cloned()).unwrap());
    let singles = Arc::new(all.clone());
    let grouped = |group: Arc<ThrottleGroup<RedisBackend>>| {
        rate(move |n| {
            let group = Arc::clone(&group);
            async move {
                let id = format!("c{}", n % 1_000);
                assert!(group.hit(&id).await.expect("decisions").is_allowed());
            }
        })
    };
    let one_by_one = |singles: Arc<Vec<Throttle<RedisBackend>>>| {
        rate(move |n| {
            let singles = Arc::clone(&singles);
            async move {
                let id = format!("c{}", n % 1_000);
                for throttle in singles.iter() {
                    assert!(throttle.hit(&id).await.expect("decision").is_allowed());
                }
            }
        })
    };

    // The very same call for redis-benchmark: the group script, its keys
    // and arguments for one client.
    let source = group_script_source();
    let sha = redis::Script::new(source).get_hash().to_owned();
    let hits: Vec<Hit<'_>> = all
        .iter()
        .map(|throttle| Hit {
            key: Key::new(throttle.scope(), "c0"),
            limit: throttle.limit(),
            cost: 1,
        })
        .collect();
    let (keys, args) = group_call(&hits, None, 0);
    let mut command = vec!["EVALSHA".to_owned(), sha, keys.len().to_string()];
    command.extend(keys);
    command.extend(args);

    runtime.block_on(grouped(Arc::clone(&group)));
    runtime.block_on(one_by_one(Arc::clone(&singles)));
    redis_benchmark(port, &command);
    let (mut groups, mut threes, mut ceilings) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        groups.push(runtime.block_on(grouped(Arc::clone(&group))));
        threes.push(runtime.block_on(one_by_one(Arc::clone(&singles))));
        ceilings.push(redis_benchmark(port, &command));
    }
    // With few tasks the server is not saturated and each request waits
    // for its round trips: what a group saves.
    let few = 4;
    let (mut groups_few, mut threes_few) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let group = Arc::clone(&group);
        groups_few.push(runtime.block_on(rate_with(few, move |n| {
            let group = Arc::clone(&group);
            async move {
                let id = format!("c{}", n % 1_000);
                assert!(group.hit(&id).await.expect("decisions").is_allowed());
            }
        })));
        let singles = Arc::clone(&singles);
        threes_few.push(runtime.block_on(rate_with(few, move |n| {
            let singles = Arc::clone(&singles);
            async move {
                let id = format!("c{}", n % 1_000);
                for throttle in singles.iter() {
                    assert!(throttle.hit(&id).await.expect("decision").is_allowed());
                }
            }
        })));
    }
    let (group_few, three_few) = (median(groups_few), median(threes_few));
    let (group_rps, three_rps, ceiling) = (median(groups), median(threes), median(ceilings));
    println!("  3 limits as one group      {group_rps:>9.0} requests/s");
    println!(
        "  3 single decisions         {three_rps:>9.0} requests/s   group / singles {:.2}",
        group_rps / three_rps
    );
    println!(
        "  redis-benchmark -P 16      {ceiling:>9.0} requests/s   group / ceiling {:.2}",
        group_rps / ceiling
    );
    println!("{few} tasks (round trips, not the server, bound the rate):");
    println!("  3 limits as one group      {group_few:>9.0} requests/s");
    println!(
        "  3 single decisions         {three_few:>9.0} requests/s   group / singles {:.2}",
        group_few / three_few
    );
}
