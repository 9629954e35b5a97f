//! [`StackBuilder`]: the layers in their one right order.
//!
//! ```text
//! call ─► total timeout (the call's deadline)
//!      ─► coalesce      identical GETs in flight share one call: they take one slot
//!      ─► breaker       open? fail fast, before waiting for a slot it would waste
//!      ─► limit/queue   wait for a slot of the shared limit; read the feedback
//!      ─► retry         budget, breaker still closed, a new slot per retry
//!      ─► attempt timeout
//!      ─► the HTTP client
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use crate::breaker::{Breaker, BreakerService};
use crate::coalesce::{Coalesce, CoalesceService};
use crate::future::Counted;
use crate::limit::{LimitService, Limiter};
use crate::metrics::Instruments;
use crate::retry::{RetryBudget, RetryLayer, RetryPolicy, RetryService};
use crate::timeout::{AttemptTimeoutService, TotalTimeoutService};
use crate::{BoxError, Call, Error, HttpRequest, ShareableResponse};

/// Assembles the layers in the order of [the crate's table](crate); each is off
/// until given.
#[derive(Clone, Debug, Default)]
pub struct StackBuilder {
    coalesce: Option<Coalesce>,
    breaker: Option<Breaker>,
    limiter: Option<Limiter>,
    retry: Option<RetryPolicy>,
    budget: Option<RetryBudget>,
    attempt_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
}

type Layers<S> = TotalTimeoutService<
    CoalesceService<BreakerService<LimitService<RetryService<AttemptTimeoutService<S>>>>>,
>;

/// The assembled stack around an HTTP client `S`: a tower service of
/// [`Call`]s. Clones share every layer's state.
#[derive(Clone, Debug)]
pub struct Stack<S> {
    layers: Layers<S>,
    /// The upstream's instruments, for `traffik_client_calls_total`.
    instruments: Option<Arc<Instruments>>,
}

impl StackBuilder {
    /// A stack with every layer off.
    pub fn new() -> StackBuilder {
        StackBuilder::default()
    }

    /// Coalesces identical in-flight requests.
    pub fn coalesce(mut self, coalesce: Coalesce) -> StackBuilder {
        self.coalesce = Some(coalesce);
        self
    }

    /// Puts a circuit breaker in front.
    pub fn breaker(mut self, breaker: Breaker) -> StackBuilder {
        self.breaker = Some(breaker);
        self
    }

    /// Waits for a slot of `limiter` before each attempt.
    pub fn limiter(mut self, limiter: Limiter) -> StackBuilder {
        self.limiter = Some(limiter);
        self
    }

    /// Retries under `policy`.
    pub fn retry(mut self, policy: RetryPolicy) -> StackBuilder {
        self.retry = Some(policy);
        self
    }

    /// Each retry needs a token of `budget` (with [`retry`](StackBuilder::retry)).
    pub fn retry_budget(mut self, budget: RetryBudget) -> StackBuilder {
        self.budget = Some(budget);
        self
    }

    /// Bounds each attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> StackBuilder {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Bounds each call, waits and retries included.
    pub fn total_timeout(mut self, timeout: Duration) -> StackBuilder {
        self.total_timeout = Some(timeout);
        self
    }

    /// The stack around `client`.
    pub fn service<S>(self, client: S) -> Stack<S> {
        let retry = self.retry.map(|policy| {
            let mut layer = RetryLayer::new(policy);
            layer.budget = self.budget;
            layer.limiter = self.limiter.clone();
            layer.breaker = self.breaker.clone();
            layer
        });
        let attempt = AttemptTimeoutService::new(client, self.attempt_timeout);
        let retry = RetryService {
            inner: attempt,
            layer: retry,
        };
        let limit = LimitService {
            inner: retry,
            limiter: self.limiter,
        };
        let name = limit
            .limiter
            .as_ref()
            .map(|l| Arc::new(Instruments::new(l.name_arc().clone())));
        let breaker = BreakerService {
            inner: limit,
            breaker: self.breaker,
        };
        let coalesce = CoalesceService {
            inner: breaker,
            coalesce: self.coalesce,
        };
        Stack {
            layers: TotalTimeoutService {
                inner: coalesce,
                timeout: self.total_timeout,
            },
            instruments: name,
        }
    }
}

impl<S, R> Service<Call<R>> for Stack<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: ShareableResponse,
    R: HttpRequest,
{
    type Response = S::Response;
    type Error = Error;
    type Future = Counted<<Layers<S> as Service<Call<R>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.layers.poll_ready(cx)
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        Counted::new(self.layers.call(call), self.instruments.clone())
    }
}
