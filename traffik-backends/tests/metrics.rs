//! What the backends record, scraped from a real Prometheus recorder: store
//! latency per operation, deny-cache hits and a breaker's transitions on a
//! real Redis that is killed and started again, the in-memory store's keys
//! and evictions. One test: the recorder is the process's.

mod support;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use support::RedisServer;
use traffik_backends::guard::{BreakerConfig, BreakerState, GuardConfig};
use traffik_backends::memory::MemoryBackend;
use traffik_backends::redis::{RedisBackend, TimeSource};
use traffik_core::{Backend, Gcra, Key, Limit, Scope};

const NOW: u64 = 1_700_000_000_000;

/// The value of the sample `name{labels}` in `text` (labels in any order,
/// each given as `k="v"`), or `None` when absent.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.split(['{', ' ']).next() == Some(name)
                && labels.iter().all(|label| line.contains(label))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_record_latency_deny_cache_hits_breaker_transitions_and_memory_keys() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let scope = Scope::new("m", "api").unwrap();
    let limit = Limit::new("2/min".parse().unwrap(), Gcra::new()).unwrap();

    // Redis: two admitted, one denied by the store, then three denials the
    // deny cache answers.
    let mut server = RedisServer::start();
    let redis = RedisBackend::builder(server.url())
        .connect_timeout(Duration::from_millis(100))
        .response_timeout(Duration::from_millis(100))
        .time_source(TimeSource::Client)
        .guard(
            GuardConfig::default().breaker(
                BreakerConfig::new()
                    .consecutive_failures(2)
                    .cool_down(Duration::from_millis(200)),
            ),
        )
        .build()
        .unwrap();
    for n in 0..6 {
        let decision = redis
            .hit(Key::new(&scope, "alice"), &limit, NOW, 1)
            .await
            .unwrap();
        assert_eq!(decision.is_allowed(), n < 2, "hit {n}");
    }
    redis
        .peek(Key::new(&scope, "bob"), &limit, NOW, 1)
        .await
        .unwrap();

    // The store dies: two failures open the breaker; back up, the probe
    // after the cool-down closes it.
    server.kill();
    for _ in 0..3 {
        let _ = redis.hit(Key::new(&scope, "carol"), &limit, NOW, 1).await;
    }
    assert_eq!(redis.breaker_state(), BreakerState::Open);
    server.restart();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut closed = false;
    for _ in 0..20 {
        if redis
            .hit(Key::new(&scope, "carol"), &limit, NOW, 1)
            .await
            .is_ok()
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the store never answered again");

    // Memory: three keys at a cap of two evict; the sweeper reports the
    // keys it holds.
    let memory = MemoryBackend::builder()
        .shards(1)
        .max_keys(2)
        .sweep_interval(Some(Duration::from_millis(20)))
        .build();
    for identity in ["a", "b", "c"] {
        memory
            .hit(Key::new(&scope, identity), &limit, NOW, 1)
            .into_ready()
            .unwrap()
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = handle.render();
    let hits = sample(
        &text,
        "traffik_backend_latency_seconds_count",
        &[r#"backend="redis""#, r#"operation="hit""#],
    );
    // 3 store answers for alice, 3 failures, the probe (and what came
    // before the store was back).
    assert!(hits.is_some_and(|n| n >= 7.0), "{hits:?}\n{text}");
    let peeks = sample(
        &text,
        "traffik_backend_latency_seconds_count",
        &[r#"backend="redis""#, r#"operation="peek""#],
    );
    assert_eq!(peeks, Some(1.0), "{text}");
    let cached = sample(
        &text,
        "traffik_deny_cache_hits_total",
        &[r#"backend="redis""#],
    );
    assert_eq!(cached, Some(3.0), "{text}");
    for (to, at_least) in [("open", 1.0), ("half_open", 1.0), ("closed", 1.0)] {
        let moved = sample(
            &text,
            "traffik_breaker_transitions_total",
            &[r#"backend="redis""#, &format!(r#"to="{to}""#)],
        );
        assert!(
            moved.is_some_and(|n| n >= at_least),
            "to {to}: {moved:?}\n{text}"
        );
    }
    let open = sample(&text, "traffik_breaker_open", &[r#"backend="redis""#]);
    assert_eq!(open, Some(0.0), "{text}");
    // At the cap a shard evicts at least an eighth of itself, at least one.
    let evicted = memory.evictions() as f64;
    assert!(evicted >= 1.0);
    assert_eq!(
        sample(&text, "traffik_memory_evictions_total", &[]),
        Some(evicted),
        "{text}"
    );
    assert_eq!(
        sample(&text, "traffik_memory_keys", &[]),
        Some(3.0 - evicted),
        "{text}"
    );
    // No label carries a key.
    assert!(!text.contains("alice") && !text.contains("carol"), "{text}");
}
