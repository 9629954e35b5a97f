//! The server `benches/wrk.sh` loads: `/plain` (no throttle) and
//! `/throttled` (a GCRA throttle on the in-memory backend that never denies),
//! same handler, same process. `wrk-server PORT`.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use traffik_axum::{PeerIp, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{Gcra, Throttle};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(3999);
    let throttle = Throttle::builder("api", "1000000000/min".parse()?)
        .strategy(Gcra::new())
        .build(MemoryBackend::new())?;
    let app = Router::new()
        .route(
            "/throttled",
            get(|| async { "hello" })
                .layer(ThrottleLayer::builder(PeerIp::new()).rule(throttle).build()),
        )
        .route("/plain", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
