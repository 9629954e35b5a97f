//! Sick stores, for real: Redis, one master of a three-master Redis
//! Cluster, and one of two Memcached servers are hung (`SIGSTOP`, then
//! `SIGCONT`) and crashed (`kill -9`, then started again) under every
//! failure policy at once; a Sentinel failover happens mid-run; the deny
//! cache answers a flood. The clocks of the decisions are manual; the
//! timeouts and the breakers' cool-downs are real, and short.

mod support;

use std::time::{Duration, Instant};

use support::{MemcachedServer, RedisCluster, RedisSentinels, RedisServer, Restartable};
use traffik_backends::guard::{BreakerConfig, BreakerState, GuardConfig};
use traffik_backends::memcached::MemcachedBackend;
use traffik_backends::redis::{RedisBackend, TimeSource};
use traffik_core::{
    Backend, Decision, Error, FailurePolicy, Gcra, Key, ManualClock, Reason, Scope, Throttle,
};

const START: u64 = 1_700_000_000_000;
/// Connect and response timeouts: a decision's deadline is their sum.
const TIMEOUT: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_millis(200);
/// What a loaded two-core machine may add to a deadline in scheduling.
const SLACK: Duration = Duration::from_millis(300);
const COOL_DOWN: Duration = Duration::from_millis(300);
/// Each policy's limit; the fallback's share is half of it.
const LIMIT: u64 = 10;

fn guard() -> GuardConfig {
    GuardConfig::default().breaker(
        BreakerConfig::new()
            .consecutive_failures(3)
            .cool_down(COOL_DOWN),
    )
}

fn redis(url: &str) -> RedisBackend {
    RedisBackend::builder(url)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .time_source(TimeSource::Client)
        .guard(guard())
        .build()
        .unwrap()
}

fn cluster(urls: Vec<String>) -> RedisBackend {
    RedisBackend::cluster_builder(urls)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .time_source(TimeSource::Client)
        .guard(guard())
        .build()
        .unwrap()
}

fn memcached(url: &str) -> MemcachedBackend {
    MemcachedBackend::builder(url)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .guard(guard())
        .build()
        .unwrap()
}

/// The four policies, one throttle each, on one backend.
struct Policies<B> {
    allow: Throttle<B, ManualClock>,
    deny: Throttle<B, ManualClock>,
    error: Throttle<B, ManualClock>,
    fallback: Throttle<B, ManualClock>,
}

impl<B: Backend + Clone> Policies<B> {
    fn new(backend: &B, clock: &ManualClock) -> Policies<B> {
        let make = |name: &str, policy| {
            Throttle::builder(name, format!("{LIMIT}/min").parse().unwrap())
                .strategy(Gcra::new())
                .failure_policy(policy)
                .clock(clock.clone())
                .build(backend.clone())
                .unwrap()
        };
        Policies {
            allow: make("allow", FailurePolicy::Allow),
            deny: make("deny", FailurePolicy::Deny),
            error: make("error", FailurePolicy::Error),
            fallback: make("fallback", FailurePolicy::fallback(2)),
        }
    }
}

/// A decision and how long it took.
async fn timed<F: std::future::Future<Output = Result<Decision, Error>>>(
    decision: F,
) -> (Result<Decision, Error>, Duration) {
    let started = Instant::now();
    let outcome = decision.await;
    (outcome, started.elapsed())
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGSTOP, then SIGCONT.
    Hang,
    /// kill -9, then a restart.
    Crash,
}

/// The fault matrix for one store: `key` lives on `server`. While it is
/// sick, every decision ends within the deadline, each policy answers as it
/// says, the fallback admits exactly its share, and the breaker opens. Once
/// the server is back, decisions come from the store again within the
/// cool-down and a probe, and the store is charged with what the fallback
/// admitted.
async fn matrix<B: Backend + Clone>(
    backend: &B,
    server: &mut impl Restartable,
    fault: Fault,
    key: &str,
    elsewhere: Option<&str>,
    breaker_opened: impl Fn() -> bool,
) {
    let clock = ManualClock::new(START);
    let policies = Policies::new(backend, &clock);
    let healthy = policies.deny.hit(key).await.unwrap();
    assert_eq!(healthy.reason(), Reason::WithinLimit, "{fault:?}");
    match fault {
        Fault::Hang => server.pause(),
        Fault::Crash => server.kill(),
    }
    let mut fallback_admitted = 0;
    for round in 0..12 {
        let (allow, a) = timed(policies.allow.hit(key)).await;
        let (deny, d) = timed(policies.deny.hit(key)).await;
        let (error, e) = timed(policies.error.hit(key)).await;
        let (fallback, f) = timed(policies.fallback.hit(key)).await;
        for took in [a, d, e, f] {
            assert!(
                took < DEADLINE + SLACK,
                "{fault:?}, round {round}: a decision took {took:?}"
            );
        }
        let allow = allow.unwrap();
        assert!(
            allow.is_allowed() && allow.reason() == Reason::BackendFailure,
            "{allow:?}"
        );
        let deny = deny.unwrap();
        assert!(
            !deny.is_allowed() && deny.reason() == Reason::BackendFailure,
            "{deny:?}"
        );
        let error = error.unwrap_err();
        assert!(error.kind().is_store_failure(), "{error}");
        let fallback = fallback.unwrap();
        assert_eq!(fallback.reason(), Reason::Fallback, "{fallback:?}");
        fallback_admitted += u64::from(fallback.is_allowed());
    }
    assert_eq!(
        fallback_admitted,
        LIMIT / 2,
        "{fault:?}: the fallback's share"
    );
    assert!(breaker_opened(), "{fault:?}: the breaker never opened");
    // A client of a server that is well is decided by it all along.
    if let Some(other) = elsewhere {
        let decision = policies.error.hit(other).await.unwrap();
        assert_eq!(decision.reason(), Reason::WithinLimit, "{fault:?}");
    }

    match fault {
        Fault::Hang => server.resume(),
        Fault::Crash => server.restart(),
    }
    let back = Instant::now();
    loop {
        if let Ok(decision) = policies.deny.hit(key).await {
            if decision.reason() == Reason::WithinLimit {
                break;
            }
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "{fault:?}: decisions did not come back to the store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The store answered, so the fallback's debts were sent to it: the
    // key's budget there is what is left after the fallback's admissions.
    let settled = Instant::now();
    loop {
        let peek = policies.fallback.peek(key).await.unwrap();
        if peek.reason() == Reason::WithinLimit && peek.remaining() + 1 == LIMIT - fallback_admitted
        {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "{fault:?}: the store was not charged with the fallback's admissions: {peek:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_and_crashed_under_every_policy() {
    let mut server = RedisServer::start();
    for (n, fault) in [Fault::Hang, Fault::Crash].into_iter().enumerate() {
        let backend = redis(&server.url());
        let opened = || backend.breaker_openings() > 0;
        matrix(
            &backend,
            &mut server,
            fault,
            &format!("client-{n}"),
            None,
            opened,
        )
        .await;
        assert_eq!(backend.breaker_state(), BreakerState::Closed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_memcached_servers_hung_and_crashed_under_every_policy() {
    let mut servers = [MemcachedServer::start(), MemcachedServer::start()];
    let url = format!(
        "memcached://127.0.0.1:{},127.0.0.1:{}",
        servers[0].port, servers[1].port
    );
    for (n, fault) in [Fault::Hang, Fault::Crash].into_iter().enumerate() {
        let backend = memcached(&url);
        let scope = Scope::new("traffik", "deny").unwrap();
        let limit = traffik_core::Limit::new("10/min".parse().unwrap(), Gcra::new()).unwrap();
        // A client on server 0, and one on server 1, which stays well.
        let on = |server: usize| {
            (0..)
                .map(|i| format!("client-{n}-{i}"))
                .find(|id| backend.server_of(Key::new(&scope, id), &limit).unwrap() == server)
                .unwrap()
        };
        let (sick, well) = (on(0), on(1));
        let opened = || backend.breaker_states()[0] != BreakerState::Closed;
        let (first, _) = servers.split_at_mut(1);
        let sick_server = &mut first[0];
        matrix(&backend, sick_server, fault, &sick, Some(&well), || {
            let opened = opened();
            opened && backend.breaker_states()[1] == BreakerState::Closed
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_of_a_redis_cluster_hung_and_crashed_under_every_policy() {
    let mut cluster_servers = RedisCluster::start();
    for (n, fault) in [Fault::Hang, Fault::Crash].into_iter().enumerate() {
        let backend = cluster(cluster_servers.urls());
        // A client whose slot the first master serves, and one it does not.
        let slots = owned_slots(&cluster_servers.nodes[0]);
        let node = &cluster_servers.nodes[0];
        let on_first = |id: &String| {
            let slot: u16 = node
                .cli(&["cluster", "keyslot", id])
                .trim()
                .parse()
                .unwrap();
            slots.iter().any(|(from, to)| (*from..=*to).contains(&slot))
        };
        let ids = (0..).map(|i| format!("client-{n}-{i}"));
        let key = ids.clone().find(|id| on_first(id)).unwrap();
        let other = ids.clone().find(|id| !on_first(id)).unwrap();
        // The slot map is read in the background: wait until each master
        // has its breaker.
        let started = Instant::now();
        while backend.node_breakers().len() < 3 {
            let _ = backend
                .reset(
                    Key::new(&Scope::new("traffik", "map").unwrap(), "k"),
                    &limit(),
                    START,
                )
                .await;
            assert!(started.elapsed() < Duration::from_secs(5), "no slot map");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let opened = || {
            let states = backend.node_breakers();
            states
                .iter()
                .filter(|(_, s)| *s != BreakerState::Closed)
                .count()
                == 1
        };
        matrix(
            &backend,
            &mut cluster_servers.nodes[0],
            fault,
            &key,
            Some(&other),
            opened,
        )
        .await;
    }
}

fn limit() -> traffik_core::Limit {
    traffik_core::Limit::new("10/min".parse().unwrap(), Gcra::new()).unwrap()
}

/// The slot ranges a cluster node serves, from `CLUSTER NODES`.
fn owned_slots(node: &RedisServer) -> Vec<(u16, u16)> {
    let nodes = node.cli(&["cluster", "nodes"]);
    let mine = nodes
        .lines()
        .find(|line| line.contains("myself"))
        .expect("the node itself");
    mine.split(' ')
        .skip(8)
        .filter_map(|range| {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            Some((from.parse().ok()?, to.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_follow_a_sentinel_failover() {
    let set = RedisSentinels::start();
    let before = set.master_port();
    assert_eq!(before, set.master.port);
    let backend = redis(&set.url());
    let clock = ManualClock::new(START);
    let throttle = Throttle::builder("failover", "100000/min".parse().unwrap())
        .failure_policy(FailurePolicy::Deny)
        .clock(clock)
        .build(backend.clone())
        .unwrap();
    assert_eq!(
        throttle.hit("k").await.unwrap().reason(),
        Reason::WithinLimit
    );
    let said = set.sentinels[0].cli(&["sentinel", "failover", "traffik"]);
    assert!(said.contains("OK"), "{said}");
    let started = Instant::now();
    let (mut from_store, mut by_policy) = (0, 0);
    let mut moved = false;
    // Decisions all along; after the failover, from the new master.
    loop {
        let decision = throttle.hit("k").await.expect("the policy decides");
        match decision.reason() {
            Reason::WithinLimit => from_store += 1,
            Reason::BackendFailure => {
                assert!(!decision.is_allowed(), "the deny policy admitted");
                by_policy += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
        moved = moved || set.master_port() == set.replica.port;
        if moved && decision.reason() == Reason::WithinLimit {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no decision from the new master ({from_store} from a store, {by_policy} by policy)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new master holds the key's count (the replica had it).
    let replica_keys = set.replica.cli(&["dbsize"]);
    assert_ne!(replica_keys.trim(), "0", "the new master holds no keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deny_cache_answers_a_flood_on_a_denied_key_without_round_trips() {
    let server = RedisServer::start();
    let backend = redis(&server.url());
    let clock = ManualClock::new(START);
    let login = Throttle::builder("login", "1/min".parse().unwrap())
        .failure_policy(FailurePolicy::Error)
        .clock(clock.clone())
        .build(backend.clone())
        .unwrap();
    assert!(login.hit("mallory").await.unwrap().is_allowed());
    let before = backend.round_trips();
    for i in 0..1_000u64 {
        clock.advance(Duration::from_millis(10));
        let denied = login.hit("mallory").await.unwrap();
        assert!(!denied.is_allowed());
        // The wait shrinks as time passes, exactly as the store's would.
        assert_eq!(denied.retry_after_ms(), 60_000 - 10 * (i + 1), "{i}");
    }
    let trips = backend.round_trips() - before;
    assert!(trips <= 10, "{trips} round trips for 1000 denied hits");
    // Another client is decided by the store.
    assert!(login.hit("alice").await.unwrap().is_allowed());
    // A reset from this process clears what it cached.
    login.reset("mallory").await.unwrap();
    assert!(login.hit("mallory").await.unwrap().is_allowed());
    // Once the denial's wait is over, the store decides again.
    assert!(!login.hit("alice").await.unwrap().is_allowed());
    clock.advance(Duration::from_secs(60));
    assert!(login.hit("alice").await.unwrap().is_allowed());
}
