//! Run with `cargo run -p traffik-examples --example server` (set `PORT` to
//! change the port, `TRAFFIK_BACKEND` to use another backend, e.g.
//! `redis://127.0.0.1:6379` or `memcached://127.0.0.1:11211`).
//!
//! An axum server on 127.0.0.1 with throttled routes and a WebSocket echo,
//! on the in-memory backend by default. It prints the commands that show a
//! 429 and its headers.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;
use traffik_backends::AnyBackend;
use traffik_examples::demo_app;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let url = std::env::var("TRAFFIK_BACKEND").unwrap_or_else(|_| "memory://".into());
    // The deployment picks the store; nothing below depends on which.
    let backend = AnyBackend::from_url(&url).await?;
    // Decisions are counted through the `metrics` facade; this exporter
    // renders them for Prometheus at /metrics.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let app = demo_app(&backend, metrics)?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address = listener.local_addr()?;
    println!("traffik demo on http://{address} (backend: {url})");
    println!();
    println!("  # 5 pass, the 6th gets 429 with Retry-After and RateLimit headers:");
    println!(
        "  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{address}/items/$i; done"
    );
    println!("  curl -i http://{address}/items/7");
    println!();
    println!("  # exactly 3 logins in any minute:");
    println!("  for i in 1 2 3 4; do curl -s -i http://{address}/login | head -1; done");
    println!();
    println!(
        "  # WebSocket echo, 3 messages at once then one every 2 s (websocat: cargo install websocat):"
    );
    println!("  websocat ws://{address}/ws");
    println!();
    println!("  # what was allowed and denied, per throttle:");
    println!("  curl -s http://{address}/metrics | grep traffik_decisions_total");
    println!();
    println!("Ctrl-C to stop.");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
