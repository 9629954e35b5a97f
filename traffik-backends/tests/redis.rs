//! The Redis backend against real redis-server processes: the conformance
//! suite on a standalone server and on a three-master cluster, parity of the
//! Lua scripts with the Rust strategies, one round trip per decision, the
//! server's clock, exactness across OS processes, and faults.

mod support;

use std::time::Duration;

use support::{RedisCluster, RedisServer};
use traffik_backends::conformance;
use traffik_backends::redis::{RedisBackend, TimeSource};
use traffik_core::{AnyStrategy, Clock, FailurePolicy, ManualClock, StrategyKind, Throttle};

/// A backend on the caller's (manual) clock. Redis still expires keys on
/// its own clock, so the TTL margin covers the real time a test takes.
fn client_time(url: &str) -> RedisBackend {
    RedisBackend::builder(url)
        .time_source(TimeSource::Client)
        .ttl_margin(Duration::from_secs(3_600))
        .build()
        .unwrap()
}

mod standalone {
    use super::*;
    traffik_backends::conformance_tests!(async {
        let server = RedisServer::start();
        (client_time(&server.url()), server)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_are_charged_exactly_under_concurrency() {
    let server = RedisServer::start();
    let backend = client_time(&server.url());
    traffik_backends::conformance::concurrent_groups_charge_exactly(&backend).await;
}

mod cluster {
    use super::*;
    traffik_backends::conformance_tests!(async {
        let cluster = tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .unwrap();
        let backend = RedisBackend::cluster_builder(cluster.urls())
            .time_source(TimeSource::Client)
            .ttl_margin(Duration::from_secs(3_600))
            .build()
            .unwrap();
        (backend, cluster)
    });
}

/// The scripts agree with the Rust functions on large numbers too: long
/// periods, big counts, fractions of a millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_match_the_rust_strategies_on_large_rates() {
    let server = RedisServer::start();
    let backend = client_time(&server.url());
    conformance::parity(
        &backend,
        &["1000000/day", "7919/h", "999983/97s", "3/7ms", "26000000/d"],
        150,
    )
    .await;
}

/// Near the top of Lua's exact integers (2^53 ms), with costs up to
/// `u64::MAX`, the scripts still agree with the Rust functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_match_the_rust_strategies_near_the_end_of_luas_exact_range() {
    let server = RedisServer::start();
    let backend = client_time(&server.url());
    let start = (1u64 << 53) - (1u64 << 40) + 123;
    conformance::parity_at(
        &backend,
        &["5/s", "7919/h", "26000000/d", "3/7ms"],
        120,
        start,
    )
    .await;
}

fn throttle(
    backend: &RedisBackend,
    kind: StrategyKind,
    rate: &str,
    clock: &ManualClock,
) -> Throttle<RedisBackend, ManualClock> {
    Throttle::builder(format!("t-{kind}"), rate.parse().unwrap())
        .strategy(AnyStrategy::from(kind))
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap()
}

fn command_calls(server: &RedisServer) -> Vec<(String, u64)> {
    server
        .cli(&["info", "commandstats"])
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|s| s.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// In steady state a decision is exactly one EVALSHA: no EVAL, no SCRIPT
/// LOAD, no PING, nothing else from the client. (The commands a script runs
/// inside Redis are counted by Redis too; they are not round trips.)
#[tokio::test]
async fn one_round_trip_per_decision() {
    let server = RedisServer::start();
    let backend = client_time(&server.url());
    backend.warm_up().await.unwrap();
    let clock = ManualClock::new(conformance::START_MS);
    let throttles: Vec<_> = StrategyKind::ALL
        .iter()
        .map(|&k| throttle(&backend, k, "10/s", &clock))
        .collect();
    server.cli(&["config", "resetstat"]);
    let per_strategy = 25;
    for throttle in &throttles {
        for i in 0..per_strategy {
            throttle.hit(&format!("user-{}", i % 3)).await.unwrap();
            clock.advance(Duration::from_millis(7));
        }
    }
    let decisions = per_strategy * throttles.len() as u64;
    let calls = command_calls(&server);
    let inside_scripts = [
        "hmget", "hset", "pexpire", "get", "set", "lindex", "llen", "ltrim", "lrange", "rpush",
        "lset", "del", "time",
    ];
    let ours = ["info", "config|resetstat"];
    for (name, count) in &calls {
        if name == "evalsha" {
            assert_eq!(*count, decisions, "evalsha calls");
        } else {
            assert!(
                inside_scripts.contains(&name.as_str()) || ours.contains(&name.as_str()),
                "a decision sent `{name}` ({count} times)"
            );
        }
    }
    assert!(calls.iter().any(|(name, _)| name == "evalsha"), "{calls:?}");
}

/// After SCRIPT FLUSH (or a restart), the next decision reloads its script.
#[tokio::test]
async fn noscript_reloads_transparently() {
    let server = RedisServer::start();
    let backend = client_time(&server.url());
    let clock = ManualClock::new(conformance::START_MS);
    let throttle = throttle(&backend, StrategyKind::Gcra, "3/min", &clock);
    assert_eq!(throttle.hit("k").await.unwrap().remaining(), 2);
    server.cli(&["script", "flush"]);
    assert_eq!(throttle.hit("k").await.unwrap().remaining(), 1);
}

/// Every key carries the namespace, the identity as its hash tag, and a TTL:
/// at most two periods (the sliding window counter keeps the previous
/// window).
#[tokio::test]
async fn every_key_has_a_ttl() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).build().unwrap();
    let clock = ManualClock::new(conformance::START_MS);
    for kind in StrategyKind::ALL {
        let throttle = throttle(&backend, kind, "4/h", &clock);
        for i in 0..6 {
            throttle.hit(&format!("id-{i}")).await.unwrap();
            throttle.hit("id-0").await.unwrap();
        }
    }
    let keys = server.cli(&["--scan"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert!(keys.len() >= 36, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("traffik:t-"), "{key}");
        assert!(key.contains(":{id-"), "the hash tag is the identity: {key}");
        let ttl: i64 = server.cli(&["pttl", key]).trim().parse().unwrap();
        assert!(ttl > 0 && ttl <= 2 * 3_600_000, "{key} has pttl {ttl}");
    }
}

/// Two application hosts whose clocks differ by two seconds share one limit
/// when the scripts read the server's clock.
#[tokio::test]
async fn skewed_hosts_share_one_limit_on_server_time() {
    let server = RedisServer::start();
    let backend = RedisBackend::builder(server.url()).build().unwrap();
    assert_eq!(backend.time_source(), TimeSource::Server);
    for kind in StrategyKind::ALL {
        let system = traffik_core::SystemClock.now_ms();
        let ahead = ManualClock::new(system + 2_000);
        let behind = ManualClock::new(system - 2_000);
        let a = throttle(&backend, kind, "5/min", &ahead);
        let b = throttle(&backend, kind, "5/min", &behind);
        let mut admitted = 0;
        for _ in 0..10 {
            admitted += u64::from(a.hit("shared").await.unwrap().is_allowed());
            admitted += u64::from(b.hit("shared").await.unwrap().is_allowed());
        }
        assert_eq!(admitted, 5, "{kind}");
    }
}

/// Four OS processes with 32 concurrent tasks each hit one key: the total
/// admitted is exactly the limit, for every strategy.
#[test]
fn exact_across_processes() {
    let server = RedisServer::start();
    for kind in StrategyKind::ALL {
        let admitted = support::admitted_by_four_processes("redis_worker", &server.url(), kind);
        assert_eq!(admitted, 100, "{kind}");
    }
}

/// The worker process of `exact_across_processes` (not a test of its own).
#[test]
#[ignore = "run by exact_across_processes in child processes"]
fn redis_worker() {
    // One fixed time in every process: no refill, no window edge.
    support::work(|url, kind| {
        let clock = ManualClock::new(conformance::START_MS);
        throttle(&client_time(url), kind, "100/h", &clock)
    });
}

/// Four OS processes with 32 tasks each decide one client's group of "10/s"
/// and "50/min" (every strategy for the minute): exactly 10 admitted, and
/// the minute limit charged by exactly those.
#[test]
fn groups_are_exact_across_processes() {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for kind in StrategyKind::ALL {
        let admitted =
            support::admitted_by_four_processes("redis_group_worker", &server.url(), kind);
        assert_eq!(admitted, 10, "{kind}");
        let charged = runtime.block_on(support::group_charged(&client_time(&server.url()), kind));
        assert_eq!(
            charged, admitted,
            "{kind}: the minute limit was charged wrongly"
        );
    }
}

/// The worker process of `groups_are_exact_across_processes`.
#[test]
#[ignore = "run by groups_are_exact_across_processes in child processes"]
fn redis_group_worker() {
    support::work_group(client_time);
}

/// Redis stops mid-run and comes back: meanwhile every decision fails fast
/// and the failure policy decides; afterwards decisions resume, with no
/// restart of the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_redis_going_down_and_coming_back() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::builder(server.url())
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    support::outage(&mut server, backend).await;
}

/// A Redis that is down when the service starts: building the backend
/// works, decisions fail (policy applies), and they start working when Redis
/// appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start() {
    let port = support::free_port(false);
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let throttle = Throttle::builder("late", "10/s".parse().unwrap())
        .failure_policy(FailurePolicy::Error)
        .build(backend)
        .unwrap();
    let error = throttle.hit("k").await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            traffik_core::ErrorKind::Unavailable | traffik_core::ErrorKind::Timeout
        ),
        "{error}"
    );
    let _server = support_start_on(port);
    assert!(throttle.hit("k").await.unwrap().is_allowed());
}

fn support_start_on(port: u16) -> RedisServer {
    let mut server = RedisServer::start();
    server.kill();
    server.port = port;
    server.restart();
    server
}

/// `redis+unix://` URLs reach a server over its unix socket, and a password
/// in the URL authenticates.
#[tokio::test]
async fn unix_sockets_and_passwords() {
    let socket = std::env::temp_dir().join(format!("traffik-redis-{}.sock", std::process::id()));
    let socket_arg = socket.to_string_lossy().into_owned();
    let server =
        RedisServer::start_with_args(&["--unixsocket", &socket_arg, "--requirepass", "s3cret"]);
    assert!(server.dir().exists());
    let clock = ManualClock::new(conformance::START_MS);
    for url in [
        format!("redis+unix://{socket_arg}?pass=s3cret"),
        format!("redis://:s3cret@127.0.0.1:{}", server.port),
    ] {
        let backend = RedisBackend::builder(url.as_str()).build().unwrap();
        let throttle = throttle(&backend, StrategyKind::FixedWindow, "2/min", &clock);
        assert!(throttle.hit("k").await.unwrap().is_allowed(), "{url}");
    }
    let wrong = RedisBackend::builder(format!("redis://:wrong@127.0.0.1:{}", server.port))
        .build()
        .unwrap();
    let throttle = throttle(&wrong, StrategyKind::FixedWindow, "2/min", &clock);
    assert!(
        throttle.hit("k").await.is_err(),
        "a wrong password must not decide"
    );
    let _ = std::fs::remove_file(socket);
}

/// A wrong or missing password is a configuration error, not an unavailable
/// store, with the client's error as its source: for a missing password the
/// server's own words; for a wrong one the client's (redis-rs reports a
/// refused AUTH without the server's WRONGPASS line).
#[tokio::test]
async fn refused_credentials_are_configuration_errors_with_the_servers_words() {
    use std::error::Error as _;
    let server = RedisServer::start_with_args(&["--requirepass", "s3cret"]);
    let clock = ManualClock::new(conformance::START_MS);
    for (url, said) in [
        (
            format!("redis://:wrong@127.0.0.1:{}", server.port),
            ["authentication failed"; 2],
        ),
        // The server answers NOAUTH, or, to a command as large as a script,
        // "unauthenticated multibulk length".
        (server.url(), ["NOAUTH", "unauthenticated"]),
    ] {
        let backend = RedisBackend::builder(url.as_str()).build().unwrap();
        let throttle = throttle(&backend, StrategyKind::FixedWindow, "2/min", &clock);
        let error = throttle.hit("k").await.unwrap_err();
        assert_eq!(
            error.kind(),
            traffik_core::ErrorKind::Config,
            "{url}: {error}"
        );
        let message = error.to_string();
        assert!(said.iter().any(|s| message.contains(s)), "{url}: {message}");
        assert!(error.source().is_some(), "{url}: the cause is lost");
    }
}

/// Store failures warn (feature `tracing`, target `traffik`), at most once a
/// second per throttle, with how many were skipped in between.
#[tokio::test]
async fn store_failures_warn_at_most_once_a_second() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Writer(std::sync::Arc::clone(&log));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Nothing listens there: every decision fails at once.
    let port = support::free_port(false);
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let clock = ManualClock::new(conformance::START_MS);
    let api = throttle(&backend, StrategyKind::Gcra, "5/min", &clock);
    for _ in 0..20 {
        assert!(api.hit("k").await.is_err());
    }
    let text = || String::from_utf8(log.lock().unwrap().clone()).unwrap();
    // The circuit breaker's own warning (it opens on the way; this crate's
    // `tracing` feature) is another line: these count the throttle's.
    let failed = "the store failed a decision";
    assert_eq!(text().matches(failed).count(), 1, "{}", text());
    let opened = usize::from(cfg!(feature = "tracing"));
    assert_eq!(
        text().matches("circuit opened").count(),
        opened,
        "{}",
        text()
    );
    clock.advance(Duration::from_secs(1));
    assert!(api.hit("k").await.is_err());
    assert_eq!(text().matches(failed).count(), 2, "{}", text());
    assert!(text().contains("skipped=19"), "{}", text());
}

#[derive(Clone)]
struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An operator's block of a key whose identity is tagged (the layer's
/// route-scoped keys: the client, then `|r:/login`) is the block the
/// layer's check finds. Redis keeps the tag in the key's hash-tag braces,
/// so a block made untagged was another key, and the client stayed free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_block_of_a_tagged_key_is_the_one_hits_find() {
    let server = RedisServer::start();
    let clock = ManualClock::new(1_700_000_000_000);
    let lockout = Throttle::builder("login", "5/15min".parse().unwrap())
        .clock(clock.clone())
        .build(client_time(&server.url()))
        .unwrap()
        .penalized(traffik_core::Penalty::fixed(Duration::from_secs(60)).unwrap())
        .unwrap();
    let key = "alice|r:/login";
    let tag = "alice".len();
    lockout
        .block_tagged(key, tag, Duration::from_secs(600))
        .await
        .unwrap();
    let blocked = lockout.blocked_tagged(key, tag).await.unwrap();
    assert_eq!(
        blocked.map(|denial| denial.retry_after_ms()),
        Some(600_000),
        "the block is not where the layer looks"
    );
    lockout.unblock_tagged(key, tag).await.unwrap();
    assert_eq!(lockout.blocked_tagged(key, tag).await.unwrap(), None);
}
