//! Run with `cargo run -p traffik-examples --example server` (set `PORT` to
//! change the port, `TRAFFIK_RULES` to read another rules file).
//!
//! An axum server on 127.0.0.1 whose limits come from `examples/rules.toml`,
//! reloaded live when the file changes or on SIGHUP, on the in-memory
//! backend unless the file says otherwise. It prints the commands that show
//! a 429, a login lockout and a reload.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;
use traffik_axum::config::Rules;
use traffik_backends::AnyBackend;
use traffik_examples::{RULES, demo_app};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let path = std::env::var("TRAFFIK_RULES").unwrap_or_else(|_| RULES.to_owned());
    // Reload messages and refusals are logged through `tracing`.
    tracing_subscriber::fmt().with_target(false).init();
    let rules = Rules::load(&path).await?;
    let _watch = rules.watch()?;
    // Decisions are counted through the `metrics` facade; this exporter
    // renders them for Prometheus at /metrics.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let app = demo_app(&rules, &AnyBackend::from_url("memory://").await?, metrics).await?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let address = listener.local_addr()?;
    let shown = std::env::current_dir()
        .ok()
        .and_then(|dir| {
            std::path::Path::new(&path)
                .strip_prefix(dir)
                .ok()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| path.clone());
    println!("traffik demo on http://{address}");
    println!(
        "rules: {shown} (throttles: {}); edit and save it to change them live, \
         or `kill -HUP {}`",
        rules.throttles().join(", "),
        std::process::id()
    );
    println!();
    println!("  # 5 pass, the 6th gets 429 with Retry-After and RateLimit headers:");
    println!(
        "  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' http://{address}/items/$i; done"
    );
    println!("  curl -i http://{address}/items/7");
    println!();
    println!("  # 5 failed logins, then locked out for 15 minutes (then an hour, then a day):");
    println!(
        "  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\\n' -X POST 'http://{address}/login?password=guess'; done"
    );
    println!("  curl -i -X POST 'http://{address}/login?password=open-sesame'");
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
