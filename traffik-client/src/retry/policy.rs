use std::time::Duration;

use http::{Method, StatusCode};

use crate::{CallOptions, Error};

/// Which calls are retried, how often, and how long apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) honour_retry_after: bool,
    pub(crate) max_retry_after: Duration,
    pub(crate) statuses: Vec<u16>,
    pub(crate) unsafe_methods: bool,
}

impl Default for RetryPolicy {
    /// Two retries, backoff from 100 ms capped at 5 s, `Retry-After`
    /// honoured up to 30 s, statuses 408, 429, 502, 503, 504.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            honour_retry_after: true,
            max_retry_after: Duration::from_secs(30),
            statuses: vec![408, 429, 502, 503, 504],
            unsafe_methods: false,
        }
    }
}

impl RetryPolicy {
    /// The default policy.
    pub fn new() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// At most `retries` retries after the first attempt.
    pub fn max_retries(mut self, retries: u32) -> RetryPolicy {
        self.max_retries = retries;
        self
    }

    /// The backoff's first step and its cap.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> RetryPolicy {
        self.base = base;
        self.cap = cap.max(base);
        self
    }

    /// Whether an upstream's `Retry-After` sets the wait when it asks for
    /// longer than the backoff (default `true`).
    pub fn honour_retry_after(mut self, honour: bool) -> RetryPolicy {
        self.honour_retry_after = honour;
        self
    }

    /// The longest `Retry-After` honoured; a longer one waits this long.
    pub fn max_retry_after(mut self, max: Duration) -> RetryPolicy {
        self.max_retry_after = max;
        self
    }

    /// The statuses retried (default 408, 429, 502, 503, 504).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> RetryPolicy {
        self.statuses = statuses.into_iter().map(|s| s.as_u16()).collect();
        self
    }

    /// Retries POST and PATCH too, without an `Idempotency-Key` (default
    /// off: the upstream may have acted on the first attempt).
    pub fn retry_unsafe_methods(mut self, retry: bool) -> RetryPolicy {
        self.unsafe_methods = retry;
        self
    }

    /// Whether a request may be sent twice.
    pub(crate) fn may_repeat(
        &self,
        method: &Method,
        headers: &http::HeaderMap,
        options: &CallOptions,
    ) -> bool {
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        ) || headers.contains_key("idempotency-key")
            || options.retry_unsafe
            || self.unsafe_methods
    }

    pub(crate) fn retries_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status.as_u16())
    }

    pub(crate) fn retries_error(error: &Error) -> bool {
        error.is_connect() || error.is_timeout()
    }

    /// The wait before retry `retry` (from 0), given what the upstream
    /// asked for.
    pub(crate) fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.cap);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(fastrand::u64(0..=ceiling_ms));
        match retry_after.filter(|_| self.honour_retry_after) {
            Some(asked) => jitter.max(asked.min(self.max_retry_after)),
            None => jitter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn post_and_patch_repeat_only_with_a_key_or_consent() {
        let policy = RetryPolicy::new();
        let none = http::HeaderMap::new();
        let options = CallOptions::new();
        assert!(policy.may_repeat(&Method::GET, &none, &options));
        assert!(policy.may_repeat(&Method::PUT, &none, &options));
        assert!(!policy.may_repeat(&Method::POST, &none, &options));
        assert!(!policy.may_repeat(&Method::PATCH, &none, &options));
        let mut keyed = http::HeaderMap::new();
        keyed.insert("idempotency-key", "k-1".parse().unwrap());
        assert!(policy.may_repeat(&Method::POST, &keyed, &options));
        assert!(policy.may_repeat(&Method::POST, &none, &options.retry_unsafe()));
        assert!(RetryPolicy::new().retry_unsafe_methods(true).may_repeat(
            &Method::PATCH,
            &none,
            &options
        ));
    }

    #[test]
    fn the_retried_statuses() {
        let policy = RetryPolicy::new();
        for status in [408, 429, 502, 503, 504] {
            assert!(policy.retries_status(StatusCode::from_u16(status).unwrap()));
        }
        for status in [200, 400, 401, 404, 409, 422, 500, 501] {
            assert!(!policy.retries_status(StatusCode::from_u16(status).unwrap()));
        }
    }

    proptest! {
        // Full jitter stays within the capped exponential; Retry-After
        // raises the wait, held to its maximum; nothing overflows.
        #[test]
        fn waits_are_bounded(retry in any::<u32>(), asked in proptest::option::of(any::<u64>())) {
            let policy = RetryPolicy::new();
            let asked = asked.map(Duration::from_millis);
            let wait = policy.wait(retry, asked);
            let ceiling = policy.base.saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX)).min(policy.cap);
            match asked {
                Some(asked) => {
                    prop_assert!(wait >= asked.min(policy.max_retry_after));
                    prop_assert!(wait <= ceiling.max(policy.max_retry_after));
                }
                None => prop_assert!(wait <= ceiling),
            }
        }
    }
}
