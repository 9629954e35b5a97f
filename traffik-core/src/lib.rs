//! The core of traffik: rates, six exact strategies, the [`Backend`] trait
//! and [`Throttle`].
//!
//! ```
//! use traffik_core::{Decision, Rate, SlidingWindowLog, Strategy};
//!
//! // Strategies are pure functions: time is an argument.
//! let rate: Rate = "2/s".parse()?;
//! let mut state = Default::default();
//! assert!(SlidingWindowLog.hit(&rate, &mut state, 1_000, 1).is_allowed());
//! assert!(SlidingWindowLog.hit(&rate, &mut state, 1_400, 1).is_allowed());
//! let denied: Decision = SlidingWindowLog.hit(&rate, &mut state, 1_500, 1);
//! assert_eq!(denied.retry_after().as_millis(), 500);
//! # Ok::<(), traffik_core::RateError>(())
//! ```
//!
//! A [`Throttle`] puts a named [`Limit`] on a [`Backend`]; the backends live
//! in `traffik-backends` (in-memory, Redis, Memcached).
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `serde` | yes | `Rate` (de)serializes as a string such as `"100/min"` |
//! | `metrics` | no | decisions counted through the `metrics` facade ([`observe`]) |
//!
//! This crate has no dependency on an async runtime, a network client or a
//! web framework.

pub mod backend;
pub mod clock;
pub mod decision;
pub mod error;
pub mod group;
pub mod limit;
pub mod observe;
pub mod penalty;
pub mod rate;
pub mod strategy;
pub mod throttle;

pub use backend::{Answer, Backend, Hit, Key, Scope, check_distinct};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::{Decision, Reason};
pub use error::{ConfigError, Error, ErrorKind, RateError, RateErrorKind};
pub use group::{Decisions, GroupHit, ThrottleGroup};
pub use limit::Limit;
pub use observe::{Enforcement, Outcome};
pub use penalty::{Lockout, Penalty};
pub use rate::Rate;
pub use strategy::{
    AnyStrategy, FixedWindow, Gcra, LeakyBucket, SlidingWindowCounter, SlidingWindowLog, State,
    Storage, Strategy, StrategyKind, TokenBucket, Visitor,
};
pub use throttle::{DEFAULT_NAMESPACE, FailurePolicy, Throttle, ThrottleBuilder};
