//! The shared outbound limit: [`Limiter`] and [`LimitLayer`].
//!
//! ```text
//! call ─► queue empty and the limit open? ──yes──► one hit of the shared throttle
//!      │                                             ├─ admitted: go
//!      │                                             └─ denied: wait in the queue
//!      └─no──► the queue (priority, then arrival) ◄── one dispatcher per process:
//!              deadline can't be met? fail at once    tries the head when the limit
//!              full? shed by policy                   opens, sleeps exactly until then
//! ```

mod adaptive;
mod future;
mod layer;
mod limiter;
mod queue;
mod service;

pub use adaptive::Aimd;
pub use future::LimitFuture;
pub use layer::LimitLayer;
pub(crate) use limiter::Grant;
pub use limiter::{Limiter, LimiterBuilder, Permit};
pub use queue::Shed;
pub use service::LimitService;
