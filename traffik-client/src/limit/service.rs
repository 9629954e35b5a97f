use std::task::{Context, Poll};

use tower::Service;

use super::{LimitFuture, Limiter};
use crate::future::take_ready;
use crate::{BoxError, Call, Error, HttpRequest, HttpResponse};

/// Waits for a slot of the [`Limiter`], sends the call, and reads the
/// response's feedback ([`Limiter::observe`]).
#[derive(Clone, Debug)]
pub struct LimitService<S> {
    pub(crate) inner: S,
    /// `None`: calls pass through (the stack without a limit).
    pub(crate) limiter: Option<Limiter>,
}

impl<S> LimitService<S> {
    /// `inner` behind `limiter`.
    pub fn new(inner: S, limiter: Limiter) -> LimitService<S> {
        LimitService {
            inner,
            limiter: Some(limiter),
        }
    }
}

impl<S, R, Res> Service<Call<R>> for LimitService<S>
where
    S: Service<Call<R>, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: HttpRequest,
    Res: HttpResponse,
{
    type Response = Res;
    type Error = Error;
    type Future = LimitFuture<S::Future, Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_inner)
    }

    fn call(&mut self, mut call: Call<R>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let Some(limiter) = self.limiter.clone() else {
            return LimitFuture::Sent {
                inner: inner.call(call),
                limiter: None,
            };
        };
        call.start();
        let options = call.options;
        // The common case: the queue is empty and the store answers at
        // once. Then nothing is boxed.
        match limiter.try_now(options.cost) {
            Some(Ok(permit)) => {
                permit.consume();
                call.mark_sent();
                return LimitFuture::Sent {
                    inner: inner.call(call),
                    limiter: Some(limiter),
                };
            }
            Some(Err(error)) => return LimitFuture::Refused { error: Some(error) },
            None => {}
        }
        LimitFuture::Waiting {
            work: Box::pin(async move {
                let permit = limiter
                    .acquire(options.cost, options.priority, options.deadline)
                    .await?;
                permit.consume();
                call.mark_sent();
                let response = inner.call(call).await.map_err(Error::from_inner)?;
                limiter.observe(response.status(), response.headers());
                Ok(response)
            }),
        }
    }
}
