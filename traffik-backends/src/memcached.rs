//! The Memcached backend, for teams that already run Memcached.
//!
//! - **Counters** (FixedWindow, SlidingWindowCounter): one meta arithmetic
//!   command (`ma … N<ttl> J<cost> D<cost>`) adds the cost, creating the
//!   window's counter with its TTL when it is new, and returns the new
//!   value; the decision is the pure strategy function applied to what was
//!   there before. The sliding window counter pipelines a read of the
//!   previous window's counter with it: one round trip either way. A denied
//!   hit takes its cost back with a second command. The window's index is in
//!   the key, so windows shorter than memcached's one-second TTL resolution
//!   work; the TTL only has to outlive the window.
//!
//!   Under contention at the limit, a hit that is later taken back can make
//!   a concurrent hit see the counter over the limit for the length of one
//!   round trip: the backend never admits more than the limit, and with
//!   costs of one it admits exactly the limit.
//! - **States** (TokenBucket, LeakyBucket, GCRA, SlidingWindowLog): `mg`
//!   with the CAS token, the pure strategy, then `ms` with the token (or in
//!   add mode for a new key). A writer that got there first makes the store
//!   fail and the decision starts over on the new state, up to
//!   `cas_retries` times; then the decision is an
//!   [`ErrorKind::Contention`](traffik_core::ErrorKind::Contention) error
//!   (the failure policy applies), never a silent allow. Denials write
//!   nothing: one round trip.
//! - **Time**: memcached has no clock to offer: decisions use the throttle's
//!   clock. Items expire on memcached's, with a margin (`ttl_margin`).
//! - **Servers and connections**: several servers share the keys by
//!   rendezvous hashing of the part of the key between braces (stable across
//!   processes); each server has a small pool of connections, made on first
//!   use and dropped after any failure, so a restarted memcached is picked up
//!   again. Every exchange is bounded by the connect and response timeouts.
//! - **Client**: a small meta-protocol client of traffik's own
//!   (`client.rs`), because the sliding window counter's one round trip
//!   needs a read and an arithmetic pipelined in one write.
//!
//! The code is split by job: `client.rs` speaks the protocol, `pool.rs`
//! holds the connections, `servers.rs` picks a key's server, `apply.rs`
//! runs a strategy by its [`Storage`](traffik_core::Storage) layout (it
//! never names a strategy), and `backend.rs` is the public type.

mod apply;
mod backend;
mod client;
mod pool;
mod servers;

pub use backend::{MemcachedBackend, MemcachedBackendBuilder};
