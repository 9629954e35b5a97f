#![recursion_limit = "256"]

//! traffik-client: call rate-limited APIs politely, from one process or
//! many.
//!
//! ```no_run
//! # #[cfg(all(feature = "reqwest", feature = "redis"))]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use traffik_client::breaker::Breaker;
//! use traffik_client::coalesce::Coalesce;
//! use traffik_client::limit::Limiter;
//! use traffik_client::retry::{RetryBudget, RetryPolicy};
//! use traffik_client::StackBuilder;
//!
//! // One limit for every process that shares this Redis.
//! let redis = traffik_backends::AnyBackend::from_url("redis://127.0.0.1:6379").await?;
//! let limiter = Limiter::builder("data-provider", "10/s".parse()?)
//!     .backend(redis.clone())
//!     .build()?;
//! let client = traffik_client::reqwest::Client::new(
//!     reqwest::Client::new(),
//!     StackBuilder::new()
//!         .coalesce(Coalesce::new("data-provider"))
//!         .breaker(Breaker::builder("data-provider").build()?)
//!         .limiter(limiter)
//!         .retry(RetryPolicy::new())
//!         .retry_budget(RetryBudget::builder("data-provider").backend(redis).build()?)
//!         .attempt_timeout(Duration::from_secs(2))
//!         .total_timeout(Duration::from_secs(10)),
//! );
//! let quote = client.get("https://data.example.com/quote/ACME").send().await?;
//! # Ok(()) }
//! ```
//!
//! The layers, outermost first (each usable alone, as a tower layer):
//!
//! | layer | does | gives up with |
//! |---|---|---|
//! | [`timeout::TotalTimeoutLayer`] | the call's deadline, for every layer inside | `TotalTimeout` |
//! | [`coalesce::CoalesceLayer`] | identical GETs in flight make one call | `Body` |
//! | [`breaker::BreakerLayer`] | fails fast while the upstream is down | `CircuitOpen` |
//! | [`limit::LimitLayer`] | waits for a slot of the shared limit, fairly; reads `Retry-After` and `RateLimit` | `QueueFull`, `Shed`, `Deadline`, `TooCostly`, `Store` |
//! | [`retry::RetryLayer`] | retries what is safe to, within a budget, each retry with a slot | `RetriesExhausted` |
//! | [`timeout::AttemptTimeoutLayer`] | bounds each attempt | `AttemptTimeout` |
//!
//! [`StackBuilder`] assembles them in that order; [`Error`] says which
//! layer gave up ([`Error::layer`]) and why ([`Error::kind`]). See
//! `docs/client.md` for how to choose the settings.
//!
//! The in-memory backend (limits of one process) is always there.
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `reqwest` | yes | [`reqwest::Client`]: the stack around a `reqwest::Client` |
//! | `redis` | no | limits, budgets and breakers shared through Redis |
//! | `memcached` | no | the same through Memcached |
//! | `metrics` | no | the counters of [`metrics`] through the `metrics` facade |

pub mod breaker;
mod call;
mod clock;
pub mod coalesce;
mod error;
pub mod feedback;
mod future;
mod hold;
pub mod limit;
pub mod metrics;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod retry;
mod stack;
pub mod timeout;

pub use call::{BufferedResponse, Call, CallOptions, HttpRequest, HttpResponse, ShareableResponse};
pub use clock::TokioClock;
pub use error::{BoxError, Error, ErrorKind, Layer};
pub use future::{Counted, LayerFuture};
pub use stack::{Stack, StackBuilder};
pub use traffik_backends::AnyBackend;
