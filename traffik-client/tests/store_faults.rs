//! The limit's store falls sick under the client (real redis-server
//! processes, real signals): calls keep going on the fallback limiter,
//! within this process's share of the limit, and never hang.

#[path = "../../traffik-backends/tests/support/mod.rs"]
mod servers;

use std::time::{Duration, Instant};

use servers::Restartable;
use traffik_backends::AnyBackend;
use traffik_client::limit::Limiter;
use traffik_core::{FailurePolicy, Gcra};

async fn limiter(url: &str) -> Limiter {
    Limiter::builder("faults", "10/s".parse().unwrap())
        .strategy(Gcra::with_burst(2.try_into().unwrap()))
        .backend(AnyBackend::from_url(url).await.unwrap())
        .failure_policy(FailurePolicy::fallback(1))
        .build()
        .unwrap()
}

/// Slots granted within `span`, with calls that each wait at most 2 s.
async fn granted_within(limiter: &Limiter, span: Duration) -> (usize, Duration) {
    let start = Instant::now();
    let mut granted = 0;
    let mut slowest = Duration::ZERO;
    while start.elapsed() < span {
        let asked = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        if let Ok(permit) = limiter.acquire(1, 0, Some(deadline)).await {
            permit.consume();
            granted += 1;
        }
        slowest = slowest.max(asked.elapsed());
    }
    (granted, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_store_falls_back_to_this_processs_share_and_recovers() {
    let mut redis = servers::RedisServer::start();
    let limiter = limiter(&redis.url()).await;
    let (before, _) = granted_within(&limiter, Duration::from_millis(500)).await;
    assert!(before >= 5, "{before} granted with the store up");
    Restartable::kill(&mut redis);
    let (during, slowest) = granted_within(&limiter, Duration::from_secs(1)).await;
    assert!(during >= 5, "the fallback keeps calls going: {during}");
    assert!(during <= 2 + 10 + 2, "and within the share: {during}");
    assert!(
        slowest < Duration::from_millis(2_100),
        "nothing hangs: {slowest:?}"
    );
    Restartable::restart(&mut redis);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = granted_within(&limiter, Duration::from_secs(1)).await;
    assert!(after >= 5, "back on the store: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_costs_a_bounded_wait_then_the_fallback() {
    let mut redis = servers::RedisServer::start();
    // The store's breaker opens after 2 timeouts (500 ms each) in a row.
    let limiter = limiter(&format!("{}?breaker_failures=2", redis.url())).await;
    limiter.acquire(1, 0, None).await.unwrap().consume();
    Restartable::pause(&mut redis);
    let (during, slowest) = granted_within(&limiter, Duration::from_secs(3)).await;
    Restartable::resume(&mut redis);
    assert!(during >= 10, "the fallback keeps calls going: {during}");
    assert!(during <= 2 + 30 + 2, "within the share: {during}");
    assert!(
        slowest < Duration::from_millis(2_100),
        "nothing hangs: {slowest:?}"
    );
}
