//! End to end: a real axum server on a loopback port, a real HTTP client
//! (reqwest) and a real WebSocket client (tokio-tungstenite).

mod support;

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use support::{Server, serve};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use traffik_axum::{OverLimit, PeerIp, RequestIdentity, ThrottleLayer, ThrottledSocket};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{Gcra, SlidingWindowLog, Throttle};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text)).await.unwrap();
}

/// The next text or close frame (pings and pongs skipped).
async fn next_text_or_close(client: &mut Client) -> Option<Message> {
    loop {
        let message = client.next().await?.ok()?;
        if matches!(message, Message::Text(_) | Message::Close(_)) {
            return Some(message);
        }
    }
}

#[tokio::test]
async fn http_429_with_headers_over_a_real_connection() {
    let api = Throttle::builder("api", "3/min".parse().unwrap())
        .strategy(SlidingWindowLog)
        .build(MemoryBackend::new())
        .unwrap();
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route_layer(ThrottleLayer::builder(PeerIp::new()).rule(api).build());
    let server = serve(app).await;
    let client = reqwest::Client::new();
    let url = |id: u32| format!("http://{}/items/{id}", server.address);
    for id in 0..3 {
        let response = client.get(url(id)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"api\";r={}", 2 - id)),
            "{state}"
        );
        assert_eq!(response.text().await.unwrap(), "item");
    }
    let denied = client.get(url(3)).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    let retry: u64 = denied.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(denied.headers()["ratelimit-policy"], "\"api\";q=3;w=60");
    assert_eq!(denied.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&denied.text().await.unwrap()).unwrap();
    assert_eq!(problem["violated-policies"][0], "api");
}

async fn echo(
    upgrade: WebSocketUpgrade,
    identity: RequestIdentity,
    throttle: Throttle<MemoryBackend>,
    mode: OverLimit,
) -> Response {
    upgrade.on_upgrade(move |socket: WebSocket| async move {
        let mut socket = ThrottledSocket::new(socket, throttle, &identity.0, mode);
        while let Some(Ok(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// Three WebSocket routes, one per over-limit behaviour, each allowing two
/// messages and then (for `wait`) one every 200 ms.
async fn websocket_server() -> Server {
    let memory = MemoryBackend::new();
    let messages = |name: &str, rate: &str| {
        Throttle::builder(name, rate.parse().unwrap())
            .strategy(Gcra::with_burst(NonZeroU64::new(2).unwrap()))
            .build(memory.clone())
            .unwrap()
    };
    let (drop, close, wait) = (
        messages("drop", "1/min"),
        messages("close", "1/min"),
        messages("wait", "5/s"),
    );
    let upgrades = Throttle::builder("upgrades", "100/min".parse().unwrap())
        .build(memory.clone())
        .unwrap();
    let app = Router::new()
        .route(
            "/drop",
            get(move |u, i| {
                echo(
                    u,
                    i,
                    drop.clone(),
                    OverLimit::Drop {
                        notice: Some("slow down, retry in {retry_after}s".into()),
                    },
                )
            }),
        )
        .route(
            "/close",
            get(move |u, i| {
                echo(
                    u,
                    i,
                    close.clone(),
                    OverLimit::Close {
                        reason: "too many messages".into(),
                    },
                )
            }),
        )
        .route(
            "/wait",
            get(move |u, i| echo(u, i, wait.clone(), OverLimit::Wait)),
        )
        .route_layer(ThrottleLayer::builder(PeerIp::new()).rule(upgrades).build());
    serve(app).await
}

async fn connect(server: &Server, path: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", server.address))
        .await
        .unwrap();
    client
}

/// Sends three messages to a route that admits two: the first two echo back.
async fn send_three_and_see_two_echoes(client: &mut Client) {
    for n in 0..3 {
        send_text(client, &format!("m{n}")).await;
    }
    for n in 0..2 {
        let echo = next_text_or_close(client).await;
        assert_eq!(echo, Some(Message::text(format!("m{n}"))));
    }
}

#[tokio::test]
async fn websocket_drop_tells_the_client_and_keeps_the_connection() {
    let server = websocket_server().await;
    let mut client = connect(&server, "/drop").await;
    send_three_and_see_two_echoes(&mut client).await;
    assert_eq!(
        next_text_or_close(&mut client).await,
        Some(Message::text("slow down, retry in 60s"))
    );
}

#[tokio::test]
async fn websocket_close_ends_the_connection_with_1008() {
    let server = websocket_server().await;
    let mut client = connect(&server, "/close").await;
    send_three_and_see_two_echoes(&mut client).await;
    match next_text_or_close(&mut client).await {
        Some(Message::Close(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Policy);
            assert_eq!(frame.reason.as_str(), "too many messages");
        }
        other => panic!("expected a 1008 close, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_wait_delivers_every_message_at_the_rate() {
    let server = websocket_server().await;
    let mut client = connect(&server, "/wait").await;
    let started = Instant::now();
    for n in 0..4 {
        send_text(&mut client, &format!("m{n}")).await;
    }
    for n in 0..4 {
        assert_eq!(
            next_text_or_close(&mut client).await,
            Some(Message::text(format!("m{n}")))
        );
    }
    // Two at once (the burst), then one every 200 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(380), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

/// Regression: the messages of exempt clients all counted against one
/// shared budget keyed "exempt". Exempt means never throttled: every message
/// passes, and the backend is never asked.
#[tokio::test]
async fn websocket_messages_of_exempt_clients_are_never_throttled() {
    use traffik_axum::{FnIdentity, Identity};
    let memory = MemoryBackend::new();
    let messages = Throttle::builder("exempt-ws", "1/min".parse().unwrap())
        .build(memory.clone())
        .unwrap();
    let upgrades = Throttle::builder("upgrades", "100/min".parse().unwrap())
        .build(memory.clone())
        .unwrap();
    let everyone_exempt = FnIdentity::new(|_| Identity::Exempt);
    let app = Router::new()
        .route(
            "/ws",
            get(move |u, i| {
                echo(
                    u,
                    i,
                    messages.clone(),
                    OverLimit::Close {
                        reason: "throttled".into(),
                    },
                )
            }),
        )
        .route_layer(
            ThrottleLayer::builder(everyone_exempt)
                .rule(upgrades)
                .build(),
        );
    let server = serve(app).await;
    for _ in 0..2 {
        let mut client = connect(&server, "/ws").await;
        for n in 0..5 {
            send_text(&mut client, &format!("m{n}")).await;
            assert_eq!(
                next_text_or_close(&mut client).await,
                Some(Message::text(format!("m{n}")))
            );
        }
    }
    assert!(memory.is_empty(), "an exempt client reached the backend");
}
