//! traffik's runnable examples. Each file in this folder is one; its first
//! line says how to run it, e.g.
//! `cargo run -p traffik-examples --example strategies`.
//!
//! The demo server's router is built here ([`demo_app`]), so that a test can
//! serve it and scrape its `/metrics`.

use std::num::NonZeroU64;

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use traffik_axum::{
    KeyScope, OverLimit, PeerIp, RequestIdentity, Rule, ThrottleLayer, ThrottledSocket,
};
use traffik_backends::AnyBackend;
use traffik_core::{ConfigError, FixedWindow, Gcra, SlidingWindowLog, Throttle};

/// The demo's routes on `backend`, and `/metrics` in the Prometheus text
/// format from `metrics` (not throttled, so scraping never spends a budget).
///
/// # Errors
///
/// When a throttle cannot be built (the demo's are all valid).
pub fn demo_app(backend: &AnyBackend, metrics: PrometheusHandle) -> Result<Router, ConfigError> {
    let throttle = |name: &str, rate: &str| {
        Ok::<_, ConfigError>(Throttle::builder(
            name,
            rate.parse().map_err(|e| ConfigError::new(format!("{e}")))?,
        ))
    };

    // Every route: 120 per minute per client, whatever the route.
    let global = ThrottleLayer::builder(PeerIp::new())
        .rule(
            Rule::new(throttle("global", "120/min")?.build(backend.clone())?)
                .scope(KeyScope::Global),
        )
        .build();
    // /items/{id}: 5 per 10 s per client, shared by every item (the route
    // template is the key), in fixed windows.
    let items = ThrottleLayer::builder(PeerIp::new())
        .rule(
            throttle("items", "5/10s")?
                .strategy(FixedWindow)
                .build(backend.clone())?,
        )
        .build();
    // /login: exactly 3 in any minute.
    let login = ThrottleLayer::builder(PeerIp::new())
        .rule(
            throttle("login", "3/min")?
                .strategy(SlidingWindowLog)
                .build(backend.clone())?,
        )
        .build();
    // /ws: each message counts; 3 at once, then one every 2 s; extra
    // messages are dropped with a notice.
    let messages = throttle("ws", "1/2s")?
        .strategy(Gcra::with_burst(
            NonZeroU64::new(3).unwrap_or(NonZeroU64::MIN),
        ))
        .build(backend.clone())?;

    let throttled = Router::new()
        .route("/items/{id}", get(|| async { "an item\n" }).layer(items))
        .route("/login", get(|| async { "welcome\n" }).layer(login))
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
            get(|| async { "traffik demo: try /items/1, /login, /ws, /metrics\n" }),
        )
        .layer(global);
    Ok(throttled.route("/metrics", get(move || async move { metrics.render() })))
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
