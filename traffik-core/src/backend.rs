//! The [`Backend`] trait: where the state of every key lives and how one
//! decision is made atomic.
//!
//! | backend | atomic by | round trips per decision |
//! |---|---|---|
//! | in-memory | the key's own entry, taken with one compare-and-swap, around the pure strategy (new keys under the shard's lock) | 0 |
//! | Redis | one Lua script per strategy (EVALSHA) | 1 |
//! | Memcached | arithmetic with TTL for counters; gets + cas for state | 1 or 2 |

mod answer;
mod key;

pub use answer::{Answer, Map};
pub use key::{Key, MAX_NAME, MAX_PART, Scope, digest, quoted_prefix as key_prefix};

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

    /// Gives back `cost` that a hit on `key` admitted at `charged_ms` took
    /// ([`Strategy::refund`](crate::Strategy::refund)), as of `now_ms`: a
    /// reservation whose request turned out not to count. Only what that
    /// hit still holds is given back, so a late refund never frees more
    /// than the hit took. A key the store no longer holds has nothing to
    /// give back. Refund only admitted hits, and each once.
    ///
    /// The answer's error is for when the store fails: the hit then stays
    /// charged (over-counted, never over-admitted).
    fn refund(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send>;

    /// Forgets `key`: its next hit starts from a full quota. `now_ms` is
    /// the caller's clock, for stores whose keys carry the current window.
    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send>;

    /// Decides every hit of one request at once, **all or nothing**: when
    /// every hit would be admitted, all are charged; when any would be
    /// denied, none is. The decisions come in the order of `hits`. After a
    /// denial, the hits that would have passed report their state as it
    /// stands, uncharged (a peek of cost 0), and the others their denial.
    ///
    /// The keys must be distinct: a repeated key is an
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) error.
    ///
    /// The provided implementation peeks every hit, then hits them one by
    /// one, stopping at a denial. It is **not atomic**: a concurrent caller
    /// can slip in between the peeks and the hits, and a hit denied then
    /// leaves the earlier ones charged (never more admitted than a limit
    /// allows: each hit is atomic on its own). The built-in backends override it with an atomic one (the
    /// in-memory backend under its shard locks with every key's entry held, Redis in one script);
    /// override it in yours when the store can do better.
    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a> {
        Answer::pending(async move {
            check_distinct(&hits)?;
            let mut decisions = Vec::with_capacity(hits.len());
            for hit in &hits {
                decisions.push(self.peek(hit.key, hit.limit, now_ms, hit.cost).await?);
            }
            if decisions.iter().all(Decision::is_allowed) {
                for (i, hit) in hits.iter().enumerate() {
                    decisions[i] = self.hit(hit.key, hit.limit, now_ms, hit.cost).await?;
                    if !decisions[i].is_allowed() {
                        // Another caller got there first: stop charging;
                        // the rest show their quota as it stands.
                        for (later, decision) in hits.iter().zip(&mut decisions).skip(i + 1) {
                            *decision = self.peek(later.key, later.limit, now_ms, 0).await?;
                        }
                        break;
                    }
                }
            } else {
                for (hit, decision) in hits.iter().zip(&mut decisions) {
                    if decision.is_allowed() {
                        *decision = self.peek(hit.key, hit.limit, now_ms, 0).await?;
                    }
                }
            }
            Ok(decisions)
        })
    }

    /// Whether `other` keeps its state in the same store as `self`, so that
    /// one [`hit_all`](Backend::hit_all) can decide keys of both. A
    /// [`ThrottleGroup`](crate::ThrottleGroup) checks it when it is built.
    /// Default: `false` (groups of your backend's throttles are refused
    /// until you say when they share a store).
    fn same_store(&self, other: &Self) -> bool
    where
        Self: Sized,
    {
        let _ = other;
        false
    }

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

    fn refund(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        (**self).refund(key, limit, now_ms, charged_ms, cost)
    }

    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a> {
        (**self).hit_all(hits, now_ms)
    }

    /// Two `Arc`s share a store when they point at one backend (`B` may be
    /// unsized, so its own `same_store` cannot be asked).
    fn same_store(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }

    fn is_local(&self) -> bool {
        (**self).is_local()
    }
}

/// One hit of a combined decision ([`Backend::hit_all`]).
#[derive(Clone, Copy, Debug)]
pub struct Hit<'a> {
    /// The key.
    pub key: Key<'a>,
    /// Its limit.
    pub limit: &'a Limit,
    /// What the request costs under this limit.
    pub cost: u64,
}

/// A [`Config`](crate::ErrorKind::Config) error when a key is repeated.
pub fn check_distinct(hits: &[Hit<'_>]) -> Result<(), Error> {
    for (i, hit) in hits.iter().enumerate() {
        let repeated = hits[..i].iter().any(|earlier| {
            earlier.key.scope().same(hit.key.scope())
                && earlier.key.identity() == hit.key.identity()
        });
        if repeated {
            return Err(Error::new(
                crate::ErrorKind::Config,
                format!(
                    "one request hits the throttle {:?} twice with the same key",
                    hit.key.scope().name()
                ),
            ));
        }
    }
    Ok(())
}
