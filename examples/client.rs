//! Run with `cargo run -p traffik-examples --example client`.
//!
//! traffik-client in front of an upstream that allows 10 requests a second
//! (a traffik-axum server on a loopback port, started here): what bare
//! reqwest gets, and what the client's limit, coalescing, breaker and
//! retries do instead.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use traffik_client::StackBuilder;
use traffik_client::breaker::{Breaker, BreakerState, Window};
use traffik_client::coalesce::Coalesce;
use traffik_client::limit::Limiter;
use traffik_client::reqwest::Client;
use traffik_client::retry::RetryPolicy;
use traffik_core::Gcra;
use traffik_examples::upstream;

/// 50 concurrent GETs of `url` through `send`; the statuses' counts.
async fn fifty<F, Fut>(send: F) -> (usize, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let calls: Vec<_> = (0..50).map(|_| tokio::spawn(send())).collect();
    let (mut ok, mut throttled) = (0, 0);
    for call in calls {
        match call.await.unwrap_or(0) {
            200 => ok += 1,
            429 => throttled += 1,
            _ => {}
        }
    }
    (ok, throttled)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = upstream::start("10/s").await;
    println!(
        "traffik-client against an upstream limited at 10/s ({})\n",
        api.address
    );
    let http = reqwest::Client::new();

    let url = api.url("/data");
    let (ok, throttled) = fifty(|| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    })
    .await;
    println!("  50 concurrent GETs, bare reqwest:       {ok:>2} ok, {throttled:>2} × 429");

    tokio::time::sleep(Duration::from_secs(1)).await;
    // The upstream's rate with a small burst (2, to the upstream's 10):
    // network jitter cannot bunch calls into a 429.
    let limiter = Limiter::builder("data", "10/s".parse()?)
        .strategy(Gcra::with_burst(2.try_into()?))
        .build()?;
    let client = Client::new(http.clone(), StackBuilder::new().limiter(limiter.clone()));
    api.seen.data.lock().clear();
    let start = Instant::now();
    let (ok, throttled) = fifty(|| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    })
    .await;
    let took = start.elapsed().as_secs_f64();
    println!(
        "  50 concurrent GETs, through the client: {ok:>2} ok, {throttled:>2} × 429, in {took:.1} s (at {:.2}/s beyond its burst of 2)",
        api.data_rate(2).0
    );

    api.seen.delay_ms.store(300, Ordering::Relaxed);
    let before = api.seen.data.lock().len();
    let coalesce = Coalesce::new("data");
    let client = Client::new(
        http.clone(),
        StackBuilder::new()
            .coalesce(coalesce.clone())
            .limiter(limiter),
    );
    let quote = api.url("/data?symbol=ACME");
    let (ok, _) = fifty(|| {
        let (client, url) = (client.clone(), quote.clone());
        async move {
            client
                .get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    })
    .await;
    let made = api.seen.data.lock().len() - before;
    let stats = coalesce.stats_for(&reqwest::Method::GET, &quote);
    println!(
        "  50 identical GETs, coalesced:           {ok:>2} ok from {made} upstream call ({} joined it)",
        stats.hits
    );

    api.seen.failing.store(true, Ordering::Relaxed);
    let breaker = Breaker::builder("flaky")
        .window(Window::Count(10))
        .min_calls(5)
        .open_for(Duration::from_millis(500))
        .probes(2)
        .build()?;
    let client = Client::new(
        http.clone(),
        StackBuilder::new()
            .breaker(breaker.clone())
            .retry(RetryPolicy::new().max_retries(0)),
    );
    let flaky = api.url("/flaky");
    let mut sent = 0;
    while breaker.state() == BreakerState::Closed {
        let _ = client.get(&flaky).send().await;
        sent += 1;
    }
    let refused = client
        .get(&flaky)
        .send()
        .await
        .map_err(|e| e.to_string())
        .unwrap_err();
    api.seen.failing.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(550)).await;
    let mut probes = 0;
    while breaker.state() != BreakerState::Closed {
        client.get(&flaky).send().await?;
        probes += 1;
    }
    println!(
        "  a 503 burst:                            the breaker opened after {sent} calls (then: \"{refused}\"), closed after {probes} probes"
    );

    let client = Client::new(http.clone(), StackBuilder::new().retry(RetryPolicy::new()));
    let response = client.get(api.url("/busy")).send().await?;
    let at = api.seen.busy.lock().clone();
    println!(
        "  a 429 with Retry-After: 1:              {} after one retry, {:.2} s later",
        response.status(),
        (at[1] - at[0]).as_secs_f64()
    );

    let response = client.post(api.url("/orders")).body("{}").send().await?;
    println!(
        "  a POST answered 503:                    {}, sent {} time (POST is not retried without an Idempotency-Key)",
        response.status(),
        api.seen.orders.load(Ordering::Relaxed)
    );
    Ok(())
}
