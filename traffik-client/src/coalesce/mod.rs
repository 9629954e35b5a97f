//! Coalescing of identical in-flight requests: [`Coalesce`] and
//! [`CoalesceLayer`].
//!
//! Requests are identical when their method, URL and the values of the
//! [`vary`](Coalesce::vary) headers are (by default `Accept`,
//! `Accept-Encoding`, `Accept-Language`, `Authorization` and `Cookie`, so
//! that no response crosses credentials). Only GET and HEAD coalesce by
//! default.
//!
//! - The first request (the leader) makes the one upstream call; the
//!   others wait for its outcome, woken by it: no polling.
//! - The response is read whole when it declares a length of at most
//!   [`max_body`](Coalesce::max_body) bytes, and every waiter gets a copy:
//!   status, headers and body. A longer (or undeclared) body goes to one
//!   caller, and the others make their own calls.
//! - An error reaches every waiter.
//! - The call belongs to no caller in particular: if the leader is
//!   cancelled, the call goes on for the waiters, with no second request.
//!   When every caller is gone, the call is cancelled.

mod config;
mod layer;
mod service;

pub use config::{Coalesce, KeyStats};
pub use layer::CoalesceLayer;
pub use service::CoalesceService;
