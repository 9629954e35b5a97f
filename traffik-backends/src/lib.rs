//! Backends for [traffik](traffik_core): where the state of every key lives.
//!
//! | feature | default | backend |
//! |---|---|---|
//! | `memory` | yes | [`memory::MemoryBackend`]: sharded, in-process, zero I/O |
//! | `redis` | no | `redis::RedisBackend`: one Lua script per decision, Redis Cluster ready |
//! | `memcached` | no | `memcached::MemcachedBackend`: counters and CAS, several servers |
//! | `conformance` | no | `conformance_tests!`: the suite every backend must pass |
//!
//! ```
//! # #[cfg(feature = "memory")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use traffik_backends::AnyBackend;
//! use traffik_core::{SlidingWindowLog, Throttle};
//!
//! // The deployment picks the store; handler code does not change.
//! let url = std::env::var("TRAFFIK_BACKEND").unwrap_or_else(|_| "memory://".into());
//! let backend = AnyBackend::from_url(&url).await?;
//! let logins = Throttle::builder("login", "5/15min".parse()?)
//!     .strategy(SlidingWindowLog)
//!     .build(backend)?;
//! let decision = logins.hit("alice@example.com").await?;
//! assert!(decision.is_allowed());
//! # Ok(())
//! # }
//! ```

#[cfg(any(feature = "memory", feature = "redis", feature = "memcached"))]
mod any;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(any(feature = "redis", feature = "memcached"))]
pub mod guard;
#[cfg(feature = "memcached")]
pub mod memcached;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(any(feature = "memory", feature = "redis", feature = "memcached"))]
mod observe;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(any(feature = "memory", feature = "redis", feature = "memcached"))]
pub use any::AnyBackend;
pub use traffik_core;
