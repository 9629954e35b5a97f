//! End to end, in real time: traffik-client in front of a real upstream
//! (traffik-axum at 10/s on a loopback port), through reqwest.

#[path = "support/upstream.rs"]
mod upstream;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use traffik_client::breaker::{Breaker, BreakerState, Window};
use traffik_client::coalesce::Coalesce;
use traffik_client::limit::Limiter;
use traffik_client::reqwest::Client;
use traffik_client::retry::RetryPolicy;
use traffik_client::{ErrorKind, Layer, StackBuilder};
use traffik_core::Gcra;

/// The client's limit: the upstream's rate with a burst of 2, far below
/// the upstream's 10, so network jitter never bunches calls into a 429,
/// while a call a little late does not lose its slot.
fn limiter(name: &str) -> Limiter {
    Limiter::builder(name, "10/s".parse().unwrap())
        .strategy(Gcra::with_burst(2.try_into().unwrap()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_all_succeed_paced_at_the_limit() {
    let upstream = upstream::start("10/s").await;
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new().limiter(limiter("paced")),
    );
    let start = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (client, url) = (client.clone(), upstream.url("/data"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let elapsed = start.elapsed();
    assert_eq!(upstream.seen.throttled.load(Ordering::Relaxed), 0, "no 429");
    // 50 calls, two at once and then one per 100 ms: 4.8 s, not much more.
    assert!(elapsed >= Duration::from_millis(4_750), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(5_500), "{elapsed:?}");
    let (rate, busiest) = upstream.data_rate(2);
    assert!(rate <= 10.05 && rate > 9.7, "rate {rate}");
    // The limit admits at most 2 + 10 in any second by its own clock (and
    // arrival jitter cannot add a whole call to that).
    assert!(busiest <= 12, "{busiest} in one second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_it_the_same_fifty_calls_get_429s() {
    let upstream = upstream::start("10/s").await;
    let client = reqwest::Client::new();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (client, url) = (client.clone(), upstream.url("/data"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    let mut throttled = 0;
    for call in calls {
        throttled += usize::from(call.await.unwrap() == 429);
    }
    // The burst of 10 passes; nearly all the rest are refused.
    assert!(throttled >= 35, "{throttled} of 50 were 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_gets_make_one_upstream_call() {
    let upstream = upstream::start("10/s").await;
    upstream.seen.delay_ms.store(300, Ordering::Relaxed);
    let coalesce = Coalesce::new("quotes");
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new()
            .coalesce(coalesce.clone())
            .limiter(limiter("quotes")),
    );
    let url = upstream.url("/data?symbol=ACME");
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status();
                let length = response.headers()["content-length"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                (status, length, response.text().await.unwrap())
            })
        })
        .collect();
    for call in calls {
        let (status, length, body) = call.await.unwrap();
        assert_eq!(
            (status.as_u16(), length.as_str(), body.as_str()),
            (200, "12", r#"{"quote":42}"#)
        );
    }
    assert_eq!(upstream.seen.data.lock().len(), 1, "one upstream call");
    let stats = coalesce.stats_for(&http::Method::GET, &url);
    assert_eq!((stats.misses, stats.hits, stats.shared), (1, 49, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_burst_trips_the_breaker_which_then_recovers() {
    let upstream = upstream::start("100/s").await;
    upstream.seen.failing.store(true, Ordering::Relaxed);
    let breaker = Breaker::builder("flaky")
        .window(Window::Count(10))
        .min_calls(5)
        .open_for(Duration::from_millis(400))
        .probes(2)
        .build()
        .unwrap();
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new()
            .breaker(breaker.clone())
            .retry(RetryPolicy::new().max_retries(0)),
    );
    let url = upstream.url("/flaky");
    for _ in 0..5 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 503);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let error = client.get(&url).send().await.unwrap_err();
    assert_eq!(
        (error.layer(), error.kind()),
        (Layer::Breaker, ErrorKind::CircuitOpen)
    );
    assert_eq!(
        upstream.seen.flaky.load(Ordering::Relaxed),
        5,
        "open: no call made"
    );

    upstream.seen.failing.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..2 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(upstream.seen.flaky.load(Ordering::Relaxed), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let upstream = upstream::start("100/s").await;
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new().limiter(limiter("busy")).retry(
            RetryPolicy::new().backoff(Duration::from_millis(10), Duration::from_millis(20)),
        ),
    );
    let response = client.get(upstream.url("/busy")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let at = upstream.seen.busy.lock().clone();
    assert_eq!(at.len(), 2, "one retry");
    let gap = at[1] - at[0];
    assert!(
        gap >= Duration::from_millis(1_000) && gap < Duration::from_millis(1_300),
        "{gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_not_retried_unless_it_carries_an_idempotency_key() {
    let upstream = upstream::start("100/s").await;
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new()
            .retry(RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(2))),
    );
    let url = upstream.url("/orders");
    assert_eq!(
        client.post(&url).body("{}").send().await.unwrap().status(),
        503
    );
    assert_eq!(upstream.seen.orders.load(Ordering::Relaxed), 1, "sent once");
    let keyed = client
        .post(&url)
        .header("idempotency-key", "order-7")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 503);
    assert_eq!(
        upstream.seen.orders.load(Ordering::Relaxed),
        4,
        "then 1 + 2 retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_get_a_slot_in_time_fails_at_once() {
    let upstream = upstream::start("100/s").await;
    let client = Client::new(
        reqwest::Client::new(),
        StackBuilder::new().limiter(
            Limiter::builder("slow", "1/min".parse().unwrap())
                .strategy(Gcra::with_burst(1.try_into().unwrap()))
                .build()
                .unwrap(),
        ),
    );
    assert_eq!(
        client
            .get(upstream.url("/data"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let start = Instant::now();
    let error = client
        .get(upstream.url("/data"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        (error.layer(), error.kind()),
        (Layer::Limit, ErrorKind::Deadline)
    );
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        error.retry_after().unwrap() > Duration::from_secs(55),
        "{error}"
    );
}
