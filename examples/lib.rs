//! traffik's runnable examples. Each file in this folder is one; its first
//! line says how to run it, e.g.
//! `cargo run -p traffik-examples --example strategies`.
//!
//! The demo server's router is built here ([`demo_app`]), so that a test can
//! serve it and scrape its `/metrics`. Its limits are in `rules.toml`.

use std::collections::HashMap;
use std::num::NonZeroU64;

use axum::Router;
use axum::extract::Query;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use traffik_axum::config::Rules;
use traffik_axum::{OverLimit, RequestIdentity, ThrottledSocket};
use traffik_backends::AnyBackend;
use traffik_backends::memory::MemoryBackend;
use traffik_core::{ConfigError, Gcra, Throttle};

/// Where the demo's rules file is.
pub const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules.toml");

/// The demo's routes: every one under the rules of `rules` (a file, see
/// `examples/rules.toml`), the WebSocket's messages throttled in code on
/// `backend`, and `/metrics` in the Prometheus text format from `metrics`
/// (not throttled, so scraping never spends a budget).
///
/// # Errors
///
/// When the WebSocket's throttle cannot be built (it is valid).
pub async fn demo_app(
    rules: &Rules,
    backend: &AnyBackend,
    metrics: PrometheusHandle,
) -> Result<Router, ConfigError> {
    let stores = rules.stores().await;
    // /ws: each message counts; 3 at once, then one every 2 s; extra
    // messages are dropped with a notice.
    let rate = "1/2s"
        .parse()
        .map_err(|e| ConfigError::new(format!("{e}")))?;
    let messages = Throttle::builder("ws", rate)
        .strategy(Gcra::with_burst(
            NonZeroU64::new(3).unwrap_or(NonZeroU64::MIN),
        ))
        .build(backend.clone())?;

    let throttled = Router::new()
        .route("/items/{id}", get(|| async { "an item\n" }))
        .route("/login", post(login))
        .route(
            "/ws",
            get(
                move |upgrade: WebSocketUpgrade, identity: RequestIdentity| {
                    echo(upgrade, identity, messages.clone())
                },
            ),
        )
        .route(
            "/",
            get(|| async {
                "traffik demo: try /items/1, POST /login, /ws, /metrics, /admin/hot\n"
            }),
        )
        .layer(rules.layer());
    // Outside the throttles, as /metrics. An operator's view: behind
    // authentication in production.
    let memory: Vec<MemoryBackend> = stores
        .into_iter()
        .filter_map(|(_, store)| match store {
            AnyBackend::Memory(memory) => Some(memory),
            _ => None,
        })
        .collect();
    Ok(throttled
        .route("/metrics", get(move || async move { metrics.render() }))
        .route(
            "/admin/hot",
            get(move || {
                let hot: Vec<serde_json::Value> = memory
                    .iter()
                    .flat_map(|store| store.hottest(20))
                    .map(|hot| serde_json::json!({ "key": hot.key, "denials": hot.denials, "error": hot.error }))
                    .collect();
                let body = serde_json::Value::Array(hot).to_string();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        ))
}

/// `POST /login?password=...`: 200 for `open-sesame`, 401 otherwise.
async fn login(Query(form): Query<HashMap<String, String>>) -> (StatusCode, &'static str) {
    if form.get("password").is_some_and(|p| p == "open-sesame") {
        (StatusCode::OK, "welcome\n")
    } else {
        (StatusCode::UNAUTHORIZED, "wrong password\n")
    }
}

async fn echo(
    upgrade: WebSocketUpgrade,
    RequestIdentity(identity): RequestIdentity,
    throttle: Throttle<AnyBackend>,
) -> Response {
    upgrade.on_upgrade(move |socket: WebSocket| async move {
        let notice = OverLimit::Drop {
            notice: Some("rate limited: message dropped, retry in {retry_after}s".into()),
        };
        let mut socket = ThrottledSocket::new(socket, throttle, &identity, notice);
        while let Some(Ok(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// The rate-limited upstream the client examples call (shared with
/// traffik-client's tests).
#[path = "../traffik-client/tests/support/upstream.rs"]
pub mod upstream;
