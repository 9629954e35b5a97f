//! traffik: a rate limiter for Rust services, in one dependency.
//!
//! ```
//! # #[cfg(feature = "memory")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use traffik::memory::MemoryBackend;
//! use traffik::{SlidingWindowLog, Throttle};
//!
//! let logins = Throttle::builder("login", "5 per 15 minutes".parse()?)
//!     .strategy(SlidingWindowLog)
//!     .build(MemoryBackend::new())?;
//! let decision = logins.hit("alice@example.com").await?;
//! assert!(decision.is_allowed());
//! assert_eq!(decision.remaining(), 4);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "memory"))]
//! # fn main() {}
//! ```
//!
//! Six exact strategies, each a pure function of (rate, state, now, cost);
//! backends that make one decision atomic, in this process or shared by
//! many; and a tower layer for axum. This crate re-exports
//! [`traffik-core`](traffik_core), [`traffik-backends`](traffik_backends)
//! and, with the `axum` feature, [`traffik-axum`](https://docs.rs/traffik-axum)
//! under stable paths, the way `tracing` re-exports `tracing-core`.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryBackend`]: sharded, in-process, zero I/O |
//! | `redis` | no | `redis::RedisBackend`: one Lua script per decision, Redis Cluster |
//! | `memcached` | no | `memcached::MemcachedBackend`: counters and CAS, several servers |
//! | `axum` | no | `axum::ThrottleLayer`: identity, 429 with `RateLimit` headers, WebSocket throttling |
//! | `config` | no | `axum::config::Rules`: rules from a TOML file, hot reload (docs/configuration.md) |
//! | `client` | no | `client`: call rate-limited APIs (shared limit, queue, retries, breaker, coalescing; docs/client.md) |
//! | `conformance` | no | `conformance`: the suite a backend of your own must pass |
//! | `serde` | no | [`Rate`] (de)serializes as a string such as `"100/min"` |
//! | `metrics` | no | decisions counted through the `metrics` facade (`traffik::observe`) |
//!
//! [`AnyBackend::from_url`] picks the backend a deployment names
//! (`memory://`, `redis://…`, `memcached://…`), so handler code never
//! depends on which.

#[cfg(any(feature = "memory", feature = "redis", feature = "memcached"))]
pub use traffik_backends::AnyBackend;
pub use traffik_core::{
    Answer, AnyStrategy, Backend, Clock, ConfigError, DEFAULT_NAMESPACE, Decision, Decisions,
    Enforcement, Error, ErrorKind, FailurePolicy, FixedWindow, Gcra, Hit, Key, LeakyBucket, Limit,
    ManualClock, Rate, RateError, RateErrorKind, Reason, Scope, SlidingWindowCounter,
    SlidingWindowLog, State, Storage, Strategy, StrategyKind, SystemClock, Throttle,
    ThrottleBuilder, ThrottleGroup, TokenBucket, Visitor,
};

/// The core's modules, for the items not re-exported at the top.
pub use traffik_core::{
    backend, clock, decision, error, group, limit, observe, rate, strategy, throttle,
};

/// The conformance suite every backend runs.
#[cfg(feature = "conformance")]
pub use traffik_backends::{conformance, conformance_tests};

#[cfg(any(feature = "redis", feature = "memcached"))]
pub use traffik_backends::guard;
#[cfg(feature = "memcached")]
pub use traffik_backends::memcached;
#[cfg(feature = "memory")]
pub use traffik_backends::memory;
#[cfg(feature = "redis")]
pub use traffik_backends::redis;

/// The axum middleware: [`traffik-axum`](https://docs.rs/traffik-axum).
#[cfg(feature = "axum")]
pub use traffik_axum as axum;

/// The outbound client: [`traffik-client`](https://docs.rs/traffik-client).
#[cfg(feature = "client")]
pub use traffik_client as client;

/// The guides in `docs/`, compiled: every Rust snippet in them is a doctest,
/// so none can rot.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "config",
    feature = "redis",
    feature = "memcached",
    feature = "client"
))]
pub mod guides {
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
    #[doc = include_str!("../../docs/axum.md")]
    pub struct Axum;
    #[doc = include_str!("../../docs/backends.md")]
    pub struct Backends;
    #[doc = include_str!("../../docs/strategies.md")]
    pub struct Strategies;
    #[doc = include_str!("../../docs/performance.md")]
    pub struct Performance;
    #[doc = include_str!("../../docs/operations.md")]
    pub struct Operations;
    #[doc = include_str!("../../docs/configuration.md")]
    pub struct Configuration;
    #[doc = include_str!("../../docs/client.md")]
    pub struct Client;
}
