use std::sync::Arc;

use tower::Layer;

use super::{RetryBudget, RetryPolicy, RetryService};
use crate::breaker::Breaker;
use crate::limit::Limiter;

/// Retries calls under a [`RetryPolicy`], optionally drawing on a
/// [`RetryBudget`], taking each retry's slot from a [`Limiter`], and
/// stopping while a [`Breaker`] is open.
#[derive(Clone, Debug)]
pub struct RetryLayer {
    pub(crate) policy: Arc<RetryPolicy>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) limiter: Option<Limiter>,
    pub(crate) breaker: Option<Breaker>,
}

impl RetryLayer {
    /// Retries under `policy`, with no budget, limiter or breaker.
    pub fn new(policy: RetryPolicy) -> RetryLayer {
        RetryLayer {
            policy: Arc::new(policy),
            budget: None,
            limiter: None,
            breaker: None,
        }
    }

    /// Each retry needs a token of `budget`.
    pub fn with_budget(mut self, budget: RetryBudget) -> RetryLayer {
        self.budget = Some(budget);
        self
    }

    /// Each retry waits for a slot of `limiter`, like any call, and the
    /// responses retried past are fed to it ([`Limiter::observe`]).
    pub fn with_limiter(mut self, limiter: Limiter) -> RetryLayer {
        self.limiter = Some(limiter);
        self
    }

    /// No retry while `breaker` is open (and none spends budget then).
    pub fn with_breaker(mut self, breaker: Breaker) -> RetryLayer {
        self.breaker = Some(breaker);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;

    fn layer(&self, inner: S) -> RetryService<S> {
        RetryService {
            inner,
            layer: Some(self.clone()),
        }
    }
}
