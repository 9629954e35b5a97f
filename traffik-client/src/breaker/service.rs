use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::time::Instant;
use tower::Service;

use super::Breaker;
use crate::future::{LayerFuture, take_ready};
use crate::{BoxError, Call, Error, HttpRequest, HttpResponse, Layer};

/// The service of a [`BreakerLayer`](super::BreakerLayer): fails fast while
/// open, and records each call's outcome.
#[derive(Clone, Debug)]
pub struct BreakerService<S> {
    pub(crate) inner: S,
    /// `None`: calls pass through (the stack without a breaker).
    pub(crate) breaker: Option<Breaker>,
}

impl<S, R, Res> Service<Call<R>> for BreakerService<S>
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

    fn call(&mut self, mut call: Call<R>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let Some(breaker) = self.breaker.clone() else {
            let future = inner.call(call);
            return LayerFuture::Passed { inner: future };
        };
        LayerFuture::layered(async move {
            let permit = breaker.acquire().await?;
            // When the request went out matters only to slow-call
            // tracking: without it, no cell is allocated.
            let sent = breaker.times_calls().then(|| Arc::new(Mutex::new(None)));
            call.sent.clone_from(&sent);
            let start = Instant::now();
            let outcome = inner.call(call).await.map_err(Error::from_inner);
            let sent_for = sent
                .and_then(|sent| *sent.lock())
                .unwrap_or(start)
                .elapsed();
            match &outcome {
                Ok(response) => permit.record(breaker.fails(response.status()), sent_for),
                // The limit's refusals (queue full, deadline) and an open
                // circuit say nothing about the upstream.
                Err(error)
                    if matches!(
                        error.layer(),
                        Layer::Upstream | Layer::Timeout | Layer::Retry
                    ) =>
                {
                    permit.record(true, sent_for);
                }
                Err(_) => drop(permit),
            }
            outcome
        })
    }
}
