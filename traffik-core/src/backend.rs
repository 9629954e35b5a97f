//! The [`Backend`] trait: where the state of every key lives and how one
//! decision is made atomic.
//!
//! | backend | atomic by | round trips per decision |
//! |---|---|---|
//! | in-memory | the shard's lock around the pure strategy | 0 |
//! | Redis | one Lua script per strategy (EVALSHA) | 1 |
//! | Memcached | arithmetic with TTL for counters; gets + cas for state | 1 or 2 |

mod answer;
mod key;

pub use answer::{Answer, Map};
pub use key::{Key, Scope};

use std::future::Future;
use std::sync::Arc;

use crate::{Decision, Error, Limit};

/// A store of per-key strategy state that applies one hit atomically.
///
/// Implementations must make [`hit`](Backend::hit) atomic per key (no lost
/// update under any concurrency), give every stored key a time to live (the
/// decision's [`reset_after`](Decision::reset_after) is the natural one), and
/// bound every call by a timeout, returning [`Error`] rather than hanging.
///
/// `now_ms` is the caller's clock. A backend may use its own time source
/// instead (Redis uses the server's clock by default so that hosts with
/// skewed clocks share one correct limit); it says so in its docs.
///
/// Every method returns an [`Answer`]: ready at once when the store lives in
/// this process, pending on a `Send` future (no boxing) when it is remote.
/// That is the one path for every caller: `.await` it, or take a ready
/// answer at once with [`Answer::into_ready`]. A pending answer must do
/// nothing until it is first polled.
pub trait Backend: Send + Sync + 'static {
    /// Applies a hit of `cost` to `key` under `limit`, atomically.
    ///
    /// The answer's error is for when the store fails, times out or is
    /// full. A denial is not an error.
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send>;

    /// The decision a hit of `cost` would get, without counting it.
    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send>;

    /// Forgets `key`: its next hit starts from a full quota. `now_ms` is
    /// the caller's clock, for stores whose keys carry the current window.
    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send>;

    /// Whether the store lives in this process (its answers are ready at
    /// once). Middleware runs local throttles before remote ones. Default:
    /// `false`.
    fn is_local(&self) -> bool {
        false
    }
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    #[inline]
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        (**self).hit(key, limit, now_ms, cost)
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        (**self).peek(key, limit, now_ms, cost)
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        (**self).reset(key, limit, now_ms)
    }

    fn is_local(&self) -> bool {
        (**self).is_local()
    }
}
