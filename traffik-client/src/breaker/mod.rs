//! A three-state circuit breaker: [`Breaker`] and [`BreakerLayer`].
//!
//! ```text
//!            failure rate ≥ threshold, or slow-call rate ≥ threshold,
//!            over the window, with at least `min_calls` calls
//!   Closed ───────────────────────────────────────────────► Open
//!     ▲                                                   │  every call fails fast
//!     │ every probe passed                     open_for   │  (ErrorKind::CircuitOpen)
//!     │                                        elapsed    ▼
//!     └──────────────────────────────────────────── HalfOpen: at most `probes` calls;
//!                                  a probe that fails ─► Open again
//! ```
//!
//! Failures are transport errors, timeouts and 5xx responses (a
//! predicate of yours can say otherwise); a `429` is throttling, the
//! limiter's business, not a failure. A call is slow when its request took
//! at least [`slow_call`](BreakerBuilder::slow_call) from being sent (time
//! waiting for a slot does not count).

mod layer;
mod service;
mod state;
mod window;

pub use layer::BreakerLayer;
pub use service::BreakerService;
pub use state::{Breaker, BreakerBuilder, BreakerPermit, BreakerState, Window};
