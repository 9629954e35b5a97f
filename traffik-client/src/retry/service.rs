use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{RetryLayer, RetryPolicy};
use crate::feedback::Feedback;
use crate::future::{LayerFuture, take_ready};
use crate::metrics;
use crate::{BoxError, Call, Error, ErrorKind, HttpRequest, HttpResponse, Layer};

/// The service of a [`RetryLayer`].
#[derive(Clone, Debug)]
pub struct RetryService<S> {
    pub(crate) inner: S,
    /// `None`: calls pass through (the stack without retries).
    pub(crate) layer: Option<RetryLayer>,
}

impl<S, R, Res> Service<Call<R>> for RetryService<S>
where
    S: Service<Call<R>, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: HttpRequest,
    Res: HttpResponse,
{
    type Response = Res;
    type Error = Error;
    type Future = LayerFuture<S::Future, Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_inner)
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        let inner = take_ready(&mut self.inner);
        let Some(layer) = self.layer.clone() else {
            let mut inner = inner;
            let future = inner.call(call);
            return LayerFuture::Passed { inner: future };
        };
        LayerFuture::layered(retrying(inner, layer, call))
    }
}

async fn retrying<S, R, Res>(
    mut inner: S,
    layer: RetryLayer,
    mut call: Call<R>,
) -> Result<Res, Error>
where
    S: Service<Call<R>, Response = Res> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: HttpRequest,
    Res: HttpResponse,
{
    let policy = &layer.policy;
    call.start();
    let options = call.options;
    let repeatable = policy.may_repeat(call.request.method(), call.request.headers(), &options);
    if let Some(budget) = &layer.budget {
        budget.deposit();
    }
    let upstream = layer.limiter.as_ref().map(|l| l.name_arc().clone());
    let mut retry = 0u32;
    loop {
        let spare = (repeatable && retry < policy.max_retries)
            .then(|| call.request.try_clone().map(|copy| call.again(copy)))
            .flatten();
        let outcome = match inner.ready().await.map_err(Error::from_inner) {
            Ok(ready) => ready.call(call).await.map_err(Error::from_inner),
            Err(error) => Err(error),
        };
        let asked = match &outcome {
            Ok(response) if policy.retries_status(response.status()) => {
                Feedback::parse(response.headers(), crate::clock::wall_ms()).retry_after
            }
            // The call's deadline passed: nothing more to try.
            Err(error) if error.kind() == ErrorKind::TotalTimeout => return outcome,
            Err(error) if RetryPolicy::retries_error(error) => None,
            _ => return outcome,
        };
        let Some(spare) = spare else {
            return if repeatable && retry >= policy.max_retries {
                exhausted(outcome, retry + 1)
            } else {
                outcome
            };
        };
        if layer.breaker.as_ref().is_some_and(|b| b.is_open()) {
            return outcome;
        }
        let wait = policy.wait(retry, asked);
        if options
            .deadline
            .is_some_and(|deadline| Instant::now() + wait >= deadline)
        {
            return exhausted(outcome, retry + 1);
        }
        if let Some(budget) = &layer.budget {
            // Boxed, as the wait below: a retry is rare, and its futures
            // would make every call's larger.
            if !Box::pin(budget.withdraw()).await {
                if let Some(upstream) = &upstream {
                    metrics::count(metrics::RETRIES, upstream, "reason", "budget");
                }
                return exhausted(outcome, retry + 1);
            }
        }
        if let Some(upstream) = &upstream {
            let reason = if outcome.is_ok() { "status" } else { "error" };
            metrics::count(metrics::RETRIES, upstream, "reason", reason);
        }
        if let (Ok(response), Some(limiter)) = (&outcome, &layer.limiter) {
            limiter.observe(response.status(), response.headers());
        }
        drop(outcome);
        Box::pin(tokio::time::sleep(wait)).await;
        if let Some(limiter) = &layer.limiter {
            Box::pin(limiter.acquire(options.cost, options.priority, options.deadline))
                .await?
                .consume();
        }
        spare.mark_sent();
        retry += 1;
        call = spare;
    }
}

/// The last outcome, once retrying stops: a response as it is; an error
/// as [`ErrorKind::RetriesExhausted`], its cause the last attempt's.
fn exhausted<Res>(outcome: Result<Res, Error>, attempts: u32) -> Result<Res, Error> {
    match outcome {
        Err(error) => Err(Error::new(
            Layer::Retry,
            ErrorKind::RetriesExhausted,
            "retries stopped with the last attempt failed",
        )
        .with_attempts(attempts)
        .with_source(std::sync::Arc::new(error))),
        other => other,
    }
}
