//! Retries that cannot storm: [`RetryPolicy`], [`RetryBudget`] and
//! [`RetryLayer`].
//!
//! | | retried | never retried |
//! |---|---|---|
//! | responses | 408, 429, 502, 503, 504 (configurable) | every other status |
//! | errors | connect errors, timeouts | the rest (the request may have been processed) |
//! | methods | GET, HEAD, OPTIONS, TRACE, PUT, DELETE; POST and PATCH with an `Idempotency-Key` header or [`CallOptions::retry_unsafe`](crate::CallOptions::retry_unsafe) | POST, PATCH otherwise |
//!
//! The wait before retry `n` (from 0) is full jitter, uniform in
//! `0..=min(cap, base × 2ⁿ)`, or the upstream's `Retry-After` when it asks
//! for longer (held to [`max_retry_after`](RetryPolicy::max_retry_after)).
//! A retry needs a token of the [`RetryBudget`], a slot of the
//! [`Limiter`](crate::limit::Limiter) like any call, and a closed circuit.

mod budget;
mod layer;
mod policy;
mod service;

pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use layer::RetryLayer;
pub use policy::RetryPolicy;
pub use service::RetryService;
