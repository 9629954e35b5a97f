//! The Redis backend: one Lua script per strategy, one round trip per
//! decision, standalone or Redis Cluster.
//!
//! - **Atomic**: each decision is one `EVALSHA` of the strategy's script,
//!   which reads the key's state, applies the strategy and writes it back
//!   with a TTL inside Redis. The scripts mirror traffik-core's strategy
//!   functions file for file (a parity test checks it on random loads). A
//!   `NOSCRIPT` reply (after a restart or `SCRIPT FLUSH`) loads the script
//!   and retries, transparently.
//! - **Time**: by default the scripts read the Redis server's clock (`TIME`),
//!   so application hosts with skewed clocks still share one correct limit;
//!   [`TimeSource::Client`] uses the throttle's clock instead.
//! - **Keys**: `namespace:name:{identity}:strategy` (and `…:strategy:1` for
//!   a script that takes a second key, as the sliding window log does). The
//!   braces are a hash tag, so every key of a decision lives in one Redis
//!   Cluster slot. Every key has a TTL: the time until its quota
//!   is full again.
//! - **Connections**: a small pool of multiplexed connections (no checkout,
//!   no PING per decision), connected lazily and re-established after a
//!   failure; or a cluster connection that follows `MOVED`/`ASK`. Every call
//!   is bounded by the connect and response timeouts: a Redis that is down or
//!   hung makes decisions fail fast, and the throttle's failure policy
//!   applies.

mod backend;
mod error;
mod scripts;

pub use backend::{RedisBackend, RedisBackendBuilder, TimeSource, group_call};
pub use redis;
pub use scripts::group_source as group_script_source;
pub use scripts::refund_source as refund_script_source;
pub use scripts::source as script_source;
