//! axum middleware for [traffik](traffik_core): per-route throttles, global
//! throttle middleware, client identity behind proxies, the IETF `RateLimit`
//! headers, and WebSocket message throttling.
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use traffik_axum::{PeerIp, ThrottleLayer};
//! use traffik_backends::memory::MemoryBackend;
//! use traffik_core::Throttle;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let api = Throttle::builder("api", "100/min".parse()?).build(MemoryBackend::new())?;
//!     let app = Router::new()
//!         .route("/items/{id}", get(|| async { "item" }))
//!         .route_layer(ThrottleLayer::builder(PeerIp::new()).rule(api).build());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//!     Ok(())
//! }
//! ```
//!
//! A denied request gets `429 Too Many Requests`, `Retry-After`, the
//! `RateLimit-Policy` and `RateLimit` fields and a problem+json body;
//! allowed ones carry the quota fields too. See `docs/axum.md`.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `ws` | yes | [`ThrottledSocket`]: throttle the messages of a WebSocket |
//! | `config` | no | [`config::Rules`]: rules from a TOML file, with hot reload |

#[cfg(feature = "config")]
pub mod config;
mod counting;
mod error;
mod filter;
mod future;
mod head;
mod headers;
mod identity;
mod key;
mod layer;
mod rejection;
mod rule;
mod service;
#[cfg(feature = "ws")]
mod websocket;

pub use counting::{Counting, Settle};
pub use error::{IdentityError, IdentityErrorKind};
pub use filter::Filter;
pub use future::ResponseFuture;
pub use head::RequestHead;
pub use headers::QuotaHeaders;
pub use identity::{
    ClientIp, FnIdentity, HeaderKey, Identity, IdentityExtractor, IpSource, NoFallback,
    OnBadSource, PeerIp, RequestIdentity,
};
pub use layer::{Rejection, ThrottleLayer, ThrottleLayerBuilder};
pub use rejection::{QUOTA_EXCEEDED, Rejected};
pub use rule::{KeyScope, Rule};
pub use service::ThrottleService;
#[cfg(feature = "ws")]
pub use websocket::{OverLimit, ThrottledSocket};
