//! What stands in front of every remote store: a local deny cache, a
//! circuit breaker (kept by each backend, per server where it has several),
//! and the fallback limiter of [`FailurePolicy::Fallback`].
//!
//! ```text
//! hit ─► deny cache ──denied until retry_after──► denial, no round trip
//!     ─► breaker ──open──► store failure at once ─► fallback (share) or failure policy
//!     ─► one round trip ─► denial? remember it ─► success after a fallback? charge the store
//! ```
//!
//! [`FailurePolicy::Fallback`]: traffik_core::FailurePolicy::Fallback

mod breaker;
mod deny;
mod fallback;

use std::future::Future;
use std::pin::Pin;

use traffik_core::backend::Hit;
use traffik_core::{Answer, Decision, Error, ErrorKind, Key, Limit};

pub(crate) use breaker::{Breaker, Permit};
pub use breaker::{BreakerConfig, BreakerState};
use deny::DenyCache;
use fallback::{Fallback, Owed};

use crate::observe::{Operation, StoreMetrics};

/// How a remote backend guards its store: its circuit breaker, its deny
/// cache and its fallback limiter.
///
/// | setting | default | URL option |
/// |---|---|---|
/// | [`breaker`](GuardConfig::breaker) | [`BreakerConfig::default`] | `breaker_failures`, `breaker_cool_down_ms` |
/// | [`deny_cache`](GuardConfig::deny_cache) | 10,000 denials | `deny_cache` (0: off) |
/// | [`fallback_keys`](GuardConfig::fallback_keys) | 100,000 keys | `fallback_keys` |
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuardConfig {
    pub(crate) breaker: BreakerConfig,
    pub(crate) deny_cache: usize,
    pub(crate) fallback_keys: usize,
}

impl Default for GuardConfig {
    fn default() -> GuardConfig {
        GuardConfig {
            breaker: BreakerConfig::default(),
            deny_cache: 10_000,
            fallback_keys: 100_000,
        }
    }
}

impl GuardConfig {
    /// The circuit breaker's settings.
    #[must_use]
    pub fn breaker(mut self, breaker: BreakerConfig) -> GuardConfig {
        self.breaker = breaker;
        self
    }

    /// How many denials the deny cache holds at most (0 turns it off).
    #[must_use]
    pub fn deny_cache(mut self, entries: usize) -> GuardConfig {
        self.deny_cache = entries;
        self
    }

    /// How many keys the fallback limiter holds, and owes the store, at most.
    #[must_use]
    pub fn fallback_keys(mut self, keys: usize) -> GuardConfig {
        self.fallback_keys = keys.max(1);
        self
    }

    /// The settings a URL's query names, and the URL without them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when one of them is not a number.
    pub(crate) fn read_url(mut self, url: &str) -> Result<(GuardConfig, String), Error> {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((self, url.to_owned()));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    let shown: String = value.chars().take(32).collect();
                    Error::new(
                        ErrorKind::Config,
                        format!("backend url option {name} wants a whole number, not {shown:?}"),
                    )
                })
            };
            match name {
                "breaker_failures" => {
                    let failures = u32::try_from(number()?).unwrap_or(u32::MAX);
                    self.breaker = if failures == 0 {
                        BreakerConfig::disabled().cool_down(self.breaker.cool_down_time())
                    } else {
                        self.breaker.consecutive_failures(failures)
                    };
                }
                "breaker_cool_down_ms" => {
                    self.breaker = self
                        .breaker
                        .cool_down(std::time::Duration::from_millis(number()?));
                }
                "deny_cache" => self.deny_cache = usize::try_from(number()?).unwrap_or(usize::MAX),
                "fallback_keys" => {
                    self.fallback_keys = usize::try_from(number()?).unwrap_or(usize::MAX).max(1);
                }
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((self, url))
    }
}

/// A key as the deny cache and the fallback's ledger keep it:
/// `prefix \0 tag \0 rest`, so no key can pass for another by moving where
/// its tag ends.
fn key_text(key: &Key<'_>) -> String {
    let (tag, rest) = key.tag_and_rest();
    format!("{}\u{0}{tag}\u{0}{rest}", key.scope().prefix())
}

/// A remote backend's deny cache and fallback.
pub(crate) struct Guard {
    deny: DenyCache,
    fallback: Fallback,
    metrics: StoreMetrics,
}

/// What a guarded backend can do without its guard.
pub(crate) trait Remote: Clone + Send + Sync + 'static {
    /// Its guard.
    fn guard(&self) -> &Guard;

    /// One decision (or peek) straight from the store.
    fn decide(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
        peek: bool,
    ) -> impl Future<Output = Result<Decision, Error>> + Send;

    /// One combined decision straight from the store.
    fn decide_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a;
}

impl Guard {
    /// The guard of a store of kind `backend` (a metric label).
    pub(crate) fn new(config: &GuardConfig, backend: &'static str) -> Guard {
        Guard {
            deny: DenyCache::new(config.deny_cache, backend),
            fallback: Fallback::new(config.fallback_keys),
            metrics: StoreMetrics::new(backend),
        }
    }

    /// After a reset of `key` from this process: no denial of it stands
    /// here (the cache is cleared: resets are rare), and the fallback forgets
    /// it.
    pub(crate) fn reset(&self, key: Key<'_>, limit: &Limit, now_ms: u64) {
        self.deny.clear();
        self.fallback.forget(key, limit, now_ms);
    }

    /// After a refund of `key` from this process: a denial of it may no
    /// longer stand.
    pub(crate) fn refunded(&self, key: &Key<'_>, limit: &Limit) {
        self.deny.forget(key, limit);
    }

    /// How many denials the deny cache holds.
    pub(crate) fn cached_denials(&self) -> usize {
        self.deny.len()
    }

    /// How many keys the fallback owes the store.
    pub(crate) fn owed_keys(&self) -> usize {
        self.fallback.owed_keys()
    }
}

/// A hit (or peek) through the guard: a denial the deny cache holds at once;
/// otherwise the store's answer, remembered when it is a denial, or on a
/// store failure the fallback's where the limit has one.
pub(crate) fn hit<R: Remote>(
    remote: &R,
    key: Key<'_>,
    limit: &Limit,
    now_ms: u64,
    cost: u64,
    peek: bool,
) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
    let cached = (!peek)
        .then(|| remote.guard().deny.hit(&key, limit, now_ms, cost))
        .flatten();
    match cached {
        Some(denied) => Answer::ready(Ok(denied)),
        None => Answer::pending(decide(remote, key, limit, now_ms, cost, peek)),
    }
}

/// A combined decision through the guard, as [`hit`].
pub(crate) fn hit_all<'a, R: Remote>(
    remote: &'a R,
    hits: Vec<Hit<'a>>,
    now_ms: u64,
) -> Answer<impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a> {
    match remote.guard().deny.hit_all(&hits, now_ms) {
        Some(denied) => Answer::ready(Ok(denied)),
        None => Answer::pending(decide_all(remote, hits, now_ms)),
    }
}

/// [`hit`] past the deny cache.
async fn decide<R: Remote>(
    remote: &R,
    key: Key<'_>,
    limit: &Limit,
    now_ms: u64,
    cost: u64,
    peek: bool,
) -> Result<Decision, Error> {
    let guard = remote.guard();
    // Boxed: the client's futures nest deep, and an application's future
    // that awaits a decision would otherwise be too deep a type to lay out.
    let decided: Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send + '_>> =
        Box::pin(remote.decide(key, limit, now_ms, cost, peek));
    let started = guard.metrics.start();
    let decided = decided.await;
    let operation = if peek {
        Operation::Peek
    } else {
        Operation::Hit
    };
    guard.metrics.finish(operation, started);
    match decided {
        Ok(decision) => {
            if !peek && decision.is_allowed() {
                guard.deny.admitted(&key, limit);
            } else if !peek {
                guard
                    .deny
                    .remember(&[(&key, limit, cost)], &[decision], now_ms);
            }
            settle_debts(remote, now_ms);
            Ok(decision)
        }
        Err(error) if error.kind().is_store_failure() => guard
            .fallback
            .hit(key, limit, now_ms, cost, peek)
            .unwrap_or(Err(error)),
        Err(error) => Err(error),
    }
}

/// [`hit_all`] past the deny cache.
async fn decide_all<'a, R: Remote>(
    remote: &'a R,
    hits: Vec<Hit<'a>>,
    now_ms: u64,
) -> Result<Vec<Decision>, Error> {
    let guard = remote.guard();
    let again = hits.clone();
    // Boxed, as in `hit`.
    let decided: Pin<Box<dyn Future<Output = Result<Vec<Decision>, Error>> + Send + '_>> =
        Box::pin(remote.decide_all(hits, now_ms));
    let started = guard.metrics.start();
    let decided = decided.await;
    guard.metrics.finish(Operation::HitAll, started);
    match decided {
        Ok(decisions) => {
            let asked: Vec<_> = again.iter().map(|h| (&h.key, h.limit, h.cost)).collect();
            guard.deny.remember(&asked, &decisions, now_ms);
            settle_debts(remote, now_ms);
            Ok(decisions)
        }
        Err(error) if error.kind().is_store_failure() => {
            guard.fallback.hit_all(&again, now_ms).unwrap_or(Err(error))
        }
        Err(error) => Err(error),
    }
}

/// The store answered: if the fallback admitted hits that still count,
/// charge the store with them, in the background.
fn settle_debts<R: Remote>(remote: &R, now_ms: u64) {
    let fallback = &remote.guard().fallback;
    if !fallback.owes() {
        return;
    }
    let owed = fallback.take(now_ms);
    if owed.is_empty() || tokio::runtime::Handle::try_current().is_err() {
        fallback.restore(owed);
        return;
    }
    let remote = remote.clone();
    tokio::spawn(async move {
        charge(&remote, owed, now_ms).await;
    });
}

/// Charges the store with what the fallback admitted: each key's cost as a
/// hit, or, where the store denies that much, what it still has room for,
/// so the key ends the outage with no more budget than the store would
/// have left it. What cannot be charged (the store failed again) is owed
/// still.
async fn charge<R: Remote>(remote: &R, owed: Vec<Owed>, now_ms: u64) {
    let mut owed = owed.into_iter();
    while let Some(debt) = owed.next() {
        let key = debt.key();
        let charged = match remote
            .decide(key, &debt.limit, now_ms, debt.cost, false)
            .await
        {
            Ok(decision) if !decision.is_allowed() && decision.remaining() > 0 => remote
                .decide(key, &debt.limit, now_ms, decision.remaining(), false)
                .await
                .map(|_| ()),
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        if charged.is_err() {
            remote
                .guard()
                .fallback
                .restore(std::iter::once(debt).chain(owed));
            return;
        }
    }
}

/// A breaker's permit around `work`: refused at once while it is open.
pub(crate) async fn through<T>(
    breaker: &Breaker,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let permit: Permit<'_> = breaker.admit()?;
    let outcome = work.await;
    permit.record(&outcome);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any URL: the options are read or refused, never a panic, and an
        /// error stays short.
        #[test]
        fn any_url_is_read_or_refused(url in "\\PC{0,300}", options in "[a-z_=&0-9x]{0,80}") {
            let url = format!("{url}?{options}");
            match GuardConfig::default().read_url(&url) {
                Ok((_, rest)) => prop_assert!(rest.len() <= url.len()),
                Err(error) => prop_assert!(error.to_string().len() < 200),
            }
        }
    }

    #[test]
    fn url_options_set_the_guard_and_leave_the_rest() {
        let (config, url) = GuardConfig::default()
            .read_url("redis://h:6379/0?breaker_failures=7&protocol=resp3&breaker_cool_down_ms=250&deny_cache=0&fallback_keys=9")
            .unwrap();
        assert_eq!(url, "redis://h:6379/0?protocol=resp3");
        let expected = GuardConfig::default()
            .breaker(
                BreakerConfig::new()
                    .consecutive_failures(7)
                    .cool_down(std::time::Duration::from_millis(250)),
            )
            .deny_cache(0)
            .fallback_keys(9);
        assert_eq!(config, expected);
        let (off, bare) = GuardConfig::default()
            .read_url("memcached://h:1?breaker_failures=0")
            .unwrap();
        assert_eq!(bare, "memcached://h:1");
        assert_eq!(off.breaker, BreakerConfig::disabled());
        let long = "9".repeat(10_000);
        let error = GuardConfig::default()
            .read_url(&format!("redis://h?deny_cache=x{long}"))
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().len() < 200, "{error}");
    }
}
