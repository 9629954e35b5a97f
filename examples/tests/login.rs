//! The demo's login route, on its own rules file (`examples/rules.toml`),
//! over real HTTP: only failed logins count, the sixth in 15 minutes locks
//! the client out, the lockout grows with each breach, and a block lasts
//! until the window has room. The rules run on a manual clock.

mod support;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use traffik_axum::config::{LoadOptions, Rules};
use traffik_backends::AnyBackend;
use traffik_core::ManualClock;
use traffik_examples::{RULES, demo_app};

/// Logs in with `password`: the status and `Retry-After`, if any.
async fn login(http: &reqwest::Client, url: &str, password: &str) -> (u16, Option<u64>) {
    let response = http
        .post(format!("{url}/login?password={password}"))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_out_for_longer_at_each_breach() {
    let clock = ManualClock::new(1_700_000_000_123);
    let rules = Rules::load_with(RULES, LoadOptions::new().clock(clock.clone()))
        .await
        .unwrap();
    let backend = AnyBackend::from_url("memory://").await.unwrap();
    let metrics = PrometheusBuilder::new().build_recorder().handle();
    let app = demo_app(&rules, &backend, metrics).await.unwrap();
    let url = format!("http://{}", support::serve(app));
    let http = reqwest::Client::new();

    // Successful logins are never counted.
    for _ in 0..10 {
        assert_eq!(login(&http, &url, "open-sesame").await, (200, None));
    }
    // Five failures pass; the sixth breaches: locked out until the first
    // failure leaves the 15-minute window.
    for _ in 0..5 {
        assert_eq!(login(&http, &url, "guess").await, (401, None));
    }
    assert_eq!(login(&http, &url, "guess").await, (429, Some(900)));
    // Locked out even with the right password, with the time left.
    clock.advance(Duration::from_secs(60));
    assert_eq!(login(&http, &url, "open-sesame").await, (429, Some(840)));
    // Once the block ends, the right password is let in (and not counted).
    clock.advance(Duration::from_secs(840));
    assert_eq!(login(&http, &url, "open-sesame").await, (200, None));
    // The next breach locks out for the second step, an hour.
    for _ in 0..5 {
        assert_eq!(login(&http, &url, "guess").await, (401, None));
    }
    assert_eq!(login(&http, &url, "guess").await, (429, Some(3_600)));
    // And the one after that for a day.
    clock.advance(Duration::from_secs(3_600));
    for _ in 0..5 {
        assert_eq!(login(&http, &url, "guess").await, (401, None));
    }
    assert_eq!(login(&http, &url, "guess").await, (429, Some(86_400)));
}
