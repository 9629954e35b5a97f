//! A rate-limited upstream for the client's tests, examples and benches: a
//! real axum server on a loopback port, behind traffik-axum at 10/s (GCRA,
//! burst 10, one budget for every caller), answering 429 with
//! `Retry-After` and the `RateLimit` fields as any well-behaved API does.
//!
//! | route | answers |
//! |---|---|
//! | `GET /data` | 200, a JSON body with a length, after `delay` (to let identical calls overlap) |
//! | `GET /flaky` | 503 while `failing` is set, else 200 |
//! | `GET /busy` | the first call: 429 with `Retry-After: 1`; then 200 |
//! | `POST /orders` | 503 (the upstream fails after acting on it: a retry would order twice) |
//! | `GET /free` | 200, outside the limit (for overhead measurements) |

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use parking_lot::Mutex;
use traffik_axum::{KeyScope, PeerIp, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{Gcra, Throttle};

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    /// When each call of `/data` that passed the limit arrived.
    pub data: Mutex<Vec<Instant>>,
    /// Requests the limit refused (429 from traffik-axum).
    pub throttled: AtomicU64,
    /// Calls of `/flaky`.
    pub flaky: AtomicU64,
    /// When each call of `/busy` arrived.
    pub busy: Mutex<Vec<Instant>>,
    /// Calls of `/orders`.
    pub orders: AtomicU64,
    /// While set, `/flaky` answers 503.
    pub failing: AtomicBool,
    /// How long `/data` takes.
    pub delay_ms: AtomicU64,
}

/// A running upstream (stopped when dropped).
pub struct Upstream {
    /// Where it listens.
    pub address: SocketAddr,
    /// What it saw.
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The rate of the requests that passed the limit, beyond a client's
    /// `burst`: `(n − burst) / (last arrival − first)`, the figure a limit
    /// of "rate, burst" keeps at or below its rate (it admits at most
    /// `burst + rate × t` in any `t`); and the most that arrived in any one
    /// second.
    pub fn data_rate(&self, burst: usize) -> (f64, usize) {
        let mut at = self.seen.data.lock().clone();
        at.sort();
        let busiest = (0..at.len())
            .map(|i| {
                at[i..]
                    .iter()
                    .take_while(|t| **t - at[i] < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0);
        let span = match (at.first(), at.last()) {
            (Some(first), Some(last)) if last > first => (*last - *first).as_secs_f64(),
            _ => return (0.0, busiest),
        };
        #[allow(clippy::cast_precision_loss)]
        (at.len().saturating_sub(burst) as f64 / span, busiest)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn data(State(seen): State<Arc<Seen>>) -> impl IntoResponse {
    seen.data.lock().push(Instant::now());
    let delay = seen.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    ([("content-type", "application/json")], r#"{"quote":42}"#)
}

async fn flaky(State(seen): State<Arc<Seen>>) -> StatusCode {
    seen.flaky.fetch_add(1, Ordering::Relaxed);
    if seen.failing.load(Ordering::Relaxed) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn busy(State(seen): State<Arc<Seen>>) -> impl IntoResponse {
    let mut calls = seen.busy.lock();
    calls.push(Instant::now());
    let mut headers = HeaderMap::new();
    if calls.len() == 1 {
        headers.insert("retry-after", "1".parse().unwrap());
        (StatusCode::TOO_MANY_REQUESTS, headers)
    } else {
        (StatusCode::OK, headers)
    }
}

async fn orders(State(seen): State<Arc<Seen>>) -> StatusCode {
    seen.orders.fetch_add(1, Ordering::Relaxed);
    StatusCode::SERVICE_UNAVAILABLE
}

/// Starts the upstream at `rate` (e.g. `"10/s"`).
pub async fn start(rate: &str) -> Upstream {
    let seen = Arc::new(Seen::default());
    let limit = Throttle::builder("upstream", rate.parse().unwrap())
        .strategy(Gcra::new())
        .build(MemoryBackend::new())
        .unwrap();
    let counted = Arc::clone(&seen);
    let limited = Router::new()
        .route("/data", get(data))
        .route("/flaky", get(flaky))
        .route("/busy", get(busy))
        .route("/orders", post(orders))
        .layer(
            ThrottleLayer::builder(PeerIp::new())
                .rule(Rule::new(limit).scope(KeyScope::Global))
                .build(),
        )
        .layer(axum::middleware::map_response(
            move |response: axum::response::Response| {
                let counted = Arc::clone(&counted);
                async move {
                    if response.status() == StatusCode::TOO_MANY_REQUESTS
                        && response
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v == "application/problem+json")
                    {
                        counted.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    response
                }
            },
        ));
    let app = Router::new()
        .route(
            "/free",
            get(|| async { ([("content-type", "application/json")], r#"{"ok":true}"#) }),
        )
        .merge(limited)
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Upstream {
        address,
        seen,
        task,
    }
}
