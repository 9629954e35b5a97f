//! The Memcached backend against real memcached processes: the conformance
//! suite on one server and on two, round trips per decision, exactness
//! across OS processes, and faults.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::MemcachedServer;
use traffik_backends::conformance;
use traffik_backends::memcached::MemcachedBackend;
use traffik_core::{AnyStrategy, FailurePolicy, ManualClock, StrategyKind, Throttle};

/// A backend for tests on a manual clock: memcached still expires items on
/// its own clock, so the TTL margin covers the real time a test takes.
fn backend(url: &str) -> MemcachedBackend {
    MemcachedBackend::builder(url)
        .ttl_margin(Duration::from_secs(3_600))
        .build()
        .unwrap()
}

mod one_server {
    use super::*;
    traffik_backends::conformance_tests!(async {
        let server = MemcachedServer::start();
        (backend(&server.url()), server)
    });
}

mod two_servers {
    use super::*;
    traffik_backends::conformance_tests!(async {
        let (a, b) = (MemcachedServer::start(), MemcachedServer::start());
        let url = format!("memcached://127.0.0.1:{},127.0.0.1:{}", a.port, b.port);
        (backend(&url), (a, b))
    });
}

fn throttle(
    backend: &MemcachedBackend,
    kind: StrategyKind,
    rate: &str,
    clock: &ManualClock,
) -> Throttle<MemcachedBackend, ManualClock> {
    Throttle::builder(format!("t-{kind}"), rate.parse().unwrap())
        .strategy(AnyStrategy::from(kind))
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap()
}

/// Keys spread over both servers, and decisions stay exact (the two-server
/// conformance suite checks exactness; this checks the spreading).
#[tokio::test]
async fn keys_spread_over_several_servers() {
    let (a, b) = (MemcachedServer::start(), MemcachedServer::start());
    let backend = backend(&format!(
        "memcached://127.0.0.1:{},127.0.0.1:{}",
        a.port, b.port
    ));
    let clock = ManualClock::new(conformance::START_MS);
    let throttle = throttle(&backend, StrategyKind::Gcra, "5/min", &clock);
    for i in 0..200 {
        assert!(
            throttle
                .hit(&format!("user-{i}"))
                .await
                .unwrap()
                .is_allowed()
        );
    }
    let (on_a, on_b) = (a.stat("curr_items"), b.stat("curr_items"));
    assert_eq!(on_a + on_b, 200);
    assert!(on_a > 50 && on_b > 50, "{on_a} and {on_b}: not spread");
}

/// Counters decide in one round trip (the sliding window counter pipelines
/// its two commands); states in two when admitted, one when denied.
#[tokio::test]
async fn round_trips_per_decision() {
    let server = MemcachedServer::start();
    let backend = backend(&server.url());
    let clock = ManualClock::new(conformance::START_MS);
    let expected = [
        (StrategyKind::FixedWindow, 1, 2),
        (StrategyKind::SlidingWindowCounter, 1, 2),
        (StrategyKind::SlidingWindowLog, 2, 1),
        (StrategyKind::TokenBucket, 2, 1),
        (StrategyKind::LeakyBucket, 2, 1),
        (StrategyKind::Gcra, 2, 1),
    ];
    for (kind, admitted_trips, denied_trips) in expected {
        let throttle = throttle(&backend, kind, "1/min", &clock);
        let before = backend.round_trips();
        assert!(throttle.hit("k").await.unwrap().is_allowed());
        assert_eq!(
            backend.round_trips() - before,
            admitted_trips,
            "{kind} admitted"
        );
        let before = backend.round_trips();
        assert!(!throttle.hit("k").await.unwrap().is_allowed());
        assert_eq!(
            backend.round_trips() - before,
            denied_trips,
            "{kind} denied"
        );
    }
}

fn group_backend(url: &str) -> MemcachedBackend {
    MemcachedBackend::builder(url)
        .ttl_margin(Duration::from_secs(3_600))
        .cas_retries(1_000)
        .build()
        .expect("a backend")
}

/// Four OS processes with 32 tasks each decide one client's group of "10/s"
/// and "50/min" (every strategy for the minute): exactly 10 admitted; the
/// minute limit charged by exactly those when it is a counter, and by at
/// most one more hit per racing task when it is a blob (a refund that finds
/// the state changed leaves its charge).
#[test]
fn groups_never_exceed_a_limit_across_processes() {
    let server = MemcachedServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for kind in StrategyKind::ALL {
        let admitted =
            support::admitted_by_four_processes("memcached_group_worker", &server.url(), kind);
        assert_eq!(admitted, 10, "{kind}");
        let charged = runtime.block_on(support::group_charged(&group_backend(&server.url()), kind));
        match AnyStrategy::from(kind).storage() {
            traffik_core::Storage::Counters { .. } => assert_eq!(charged, admitted, "{kind}"),
            traffik_core::Storage::Blob => {
                assert!(
                    charged >= admitted && charged <= admitted + 128,
                    "{kind}: {charged}"
                );
            }
        }
    }
}

/// The worker process of `groups_never_exceed_a_limit_across_processes`.
#[test]
#[ignore = "run by groups_never_exceed_a_limit_across_processes in child processes"]
fn memcached_group_worker() {
    support::work_group(group_backend);
}

/// Four OS processes with 32 concurrent tasks each hit one key: the total
/// admitted is exactly the limit, for every strategy.
#[test]
fn exact_across_processes() {
    let server = MemcachedServer::start();
    for kind in StrategyKind::ALL {
        let admitted = support::admitted_by_four_processes("memcached_worker", &server.url(), kind);
        assert_eq!(admitted, 100, "{kind}");
    }
}

/// The worker process of `exact_across_processes` (not a test of its own).
#[test]
#[ignore = "run by exact_across_processes in child processes"]
fn memcached_worker() {
    // Many racing writers on one key: allow enough CAS retries. One fixed
    // time in every process: no refill, no window edge.
    support::work(|url, kind| {
        let backend = MemcachedBackend::builder(url)
            .ttl_margin(Duration::from_secs(3_600))
            .cas_retries(1_000)
            .build()
            .expect("a backend");
        throttle(
            &backend,
            kind,
            "100/h",
            &ManualClock::new(conformance::START_MS),
        )
    });
}

/// When the retries run out, the decision is a denial ([`Reason::Contended`]),
/// never an error for the failure policy to turn into an allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contention_beyond_the_retries_is_a_denial() {
    let server = MemcachedServer::start();
    let backend = MemcachedBackend::builder(server.url())
        .cas_retries(0)
        .build()
        .unwrap();
    let clock = ManualClock::new(conformance::START_MS);
    let throttle = throttle(&backend, StrategyKind::Gcra, "100000/h", &clock);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let throttle = throttle.clone();
            tokio::spawn(async move {
                let mut contended = 0;
                for _ in 0..20 {
                    let decision = throttle.hit("hot").await.expect("contention is no error");
                    if !decision.is_allowed() {
                        assert_eq!(decision.reason(), traffik_core::Reason::Contended);
                        contended += 1;
                    }
                }
                contended
            })
        })
        .collect();
    let mut contended = 0;
    for task in tasks {
        contended += task.await.unwrap();
    }
    assert!(contended > 0, "32 writers with no retries never collided");
}

/// memcached is killed mid-run and started again: meanwhile decisions fail
/// fast and the failure policy decides; afterwards they resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_memcached_going_down_and_coming_back() {
    let mut server = MemcachedServer::start();
    let backend = MemcachedBackend::builder(server.url())
        .connect_timeout(Duration::from_millis(200))
        .response_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    support::outage(&mut server, backend).await;
}

/// `memcached+unix://` reaches a memcached listening on a unix socket.
#[tokio::test]
async fn unix_sockets() {
    let socket =
        std::env::temp_dir().join(format!("traffik-memcached-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let mut child = Command::new("memcached")
        .arg("-s")
        .arg(&socket)
        .args(["-u", "root", "-m", "16"])
        .spawn()
        .expect(
            "memcached is not installed: run scripts/setup.sh, or: apt-get install -y memcached",
        );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "memcached did not create its socket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backend = backend(&format!("memcached+unix://{}", socket.display()));
    let clock = ManualClock::new(conformance::START_MS);
    let throttle = throttle(&backend, StrategyKind::FixedWindow, "2/min", &clock);
    let decisions = [
        throttle.hit("k").await,
        throttle.hit("k").await,
        throttle.hit("k").await,
    ];
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&socket);
    let allowed: Vec<bool> = decisions
        .into_iter()
        .map(|d| d.unwrap().is_allowed())
        .collect();
    assert_eq!(allowed, [true, true, false]);
}

/// Regression: a TTL over 30 days, which memcached takes as an absolute
/// time, was computed from the system clock instead of the throttle's. With
/// the throttle's clock 100 days ahead, the item must live 60 days past it.
#[tokio::test]
async fn long_ttls_follow_the_throttles_clock() {
    use std::io::{BufRead, BufReader, Write};
    use traffik_core::Clock;
    let server = MemcachedServer::start();
    let backend = MemcachedBackend::builder(server.url()).build().unwrap();
    let day_ms = 86_400_000;
    let clock = ManualClock::new(traffik_core::SystemClock.now_ms() + 100 * day_ms);
    let throttle = throttle(&backend, StrategyKind::Gcra, "1/60d", &clock);
    assert!(throttle.hit("k").await.unwrap().is_allowed());
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .write_all(b"mg traffik:t-gcra:{k}:gcra t\r\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let ttl_s: u64 = line
        .trim()
        .strip_prefix("HD t")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reply {line:?}"));
    let expected_s = (clock.now_ms() - traffik_core::SystemClock.now_ms()) / 1_000 + 60 * 86_400;
    assert!(
        ttl_s.abs_diff(expected_s) < 60,
        "ttl {ttl_s} s, expected about {expected_s} s"
    );
}
