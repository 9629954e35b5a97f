//! The demo, on its own rules file, serves its decision counts at
//! `/metrics`: a real server on a loopback port, a real HTTP client, and the
//! Prometheus text it renders.

mod support;

use metrics_exporter_prometheus::PrometheusBuilder;
use traffik_axum::config::Rules;
use traffik_backends::AnyBackend;
use traffik_examples::{RULES, demo_app};

#[tokio::test]
async fn metrics_count_what_the_throttles_decided() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    let backend = AnyBackend::from_url("memory://").await.unwrap();
    let rules = Rules::load(RULES).await.unwrap();
    let app = demo_app(&rules, &backend, handle).await.unwrap();
    let address = support::serve(app);
    let http = reqwest::Client::new();
    // /items/{id} allows 5 per 10 s in fixed windows of the real clock: the
    // 7 requests start well inside one window, so none rolls over mid-run.
    let into_window = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 10_000;
    if into_window > 7_000 {
        tokio::time::sleep(std::time::Duration::from_millis(
            10_050 - into_window as u64,
        ))
        .await;
    }
    // 5 pass, 2 are denied.
    for n in 0..7 {
        http.get(format!("http://{address}/items/{n}"))
            .send()
            .await
            .unwrap();
    }
    // Scraping twice spends nothing.
    http.get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    let text = http
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The in-memory store counted its denials: the client's two on items.
    let hot: serde_json::Value = http
        .get(format!("http://{address}/admin/hot"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = hot
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| {
            entry["key"]
                .as_str()
                .is_some_and(|key| key.contains(":items:"))
        })
        .unwrap_or_else(|| panic!("no items key in {hot}"));
    assert_eq!(items["denials"], 2, "{hot}");
    assert!(
        items["key"].as_str().unwrap().contains("ip:127.0.0.1"),
        "{hot}"
    );
    let value = |series: &str| -> u64 {
        text.lines()
            .find(|line| line.starts_with(series))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(
        value(r#"traffik_decisions_total{throttle="items",outcome="allowed"}"#),
        5
    );
    assert_eq!(
        value(r#"traffik_decisions_total{throttle="items",outcome="denied"}"#),
        2
    );
    assert_eq!(
        value(r#"traffik_decisions_total{throttle="global",outcome="allowed"}"#),
        7
    );
    assert!(
        !text.contains("203.0.113") && !text.contains("127.0.0.1"),
        "an identity leaked:\n{text}"
    );
}
