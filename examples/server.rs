//! Run with `cargo run -p traffik-examples --example server` (set `PORT` to
//! change the port, `TRAFFIK_BACKEND` to use another backend, e.g.
//! `redis://127.0.0.1:6379` or `memcached://127.0.0.1:11211`).
//!
//! An axum server on 127.0.0.1 with throttled routes and a WebSocket echo,
//! on the in-memory backend by default. It prints the commands that show a
//! 429 and its headers.

use std::net::SocketAddr;
use std::num::NonZeroU64;

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use traffik_axum::{
    KeyScope, OverLimit, PeerIp, RequestIdentity, Rule, ThrottleLayer, ThrottledSocket,
};
use traffik_backends::AnyBackend;
use traffik_core::{FixedWindow, Gcra, SlidingWindowLog, Throttle};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let url = std::env::var("TRAFFIK_BACKEND").unwrap_or_else(|_| "memory://".into());
    // The deployment picks the store; nothing below depends on which.
    let backend = AnyBackend::from_url(&url).await?;
    let throttle =
        |name: &str, rate: &str| Throttle::builder(name, rate.parse().expect("a valid rate"));

    // Every route: 120 per minute per client, whatever the route.
    let global = ThrottleLayer::builder(PeerIp::new())
        .rule(
            Rule::new(throttle("global", "120/min").build(backend.clone())?)
                .scope(KeyScope::Global),
        )
        .build();
    // /items/{id}: 5 per 10 s per client, shared by every item (the route
    // template is the key), in fixed windows.
    let items = ThrottleLayer::builder(PeerIp::new())
        .rule(
            throttle("items", "5/10s")
                .strategy(FixedWindow)
                .build(backend.clone())?,
        )
        .build();
    // /login: exactly 3 in any minute.
    let login = ThrottleLayer::builder(PeerIp::new())
        .rule(
            throttle("login", "3/min")
                .strategy(SlidingWindowLog)
                .build(backend.clone())?,
        )
        .build();
    // /ws: each message counts; 3 at once, then one every 2 s; extra
    // messages are dropped with a notice.
    let messages = throttle("ws", "1/2s")
        .strategy(Gcra::with_burst(
            NonZeroU64::new(3).unwrap_or(NonZeroU64::MIN),
        ))
        .build(backend.clone())?;

    let app = Router::new()
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
            get(|| async { "traffik demo: try /items/1, /login, /ws\n" }),
        )
        .layer(global);

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
