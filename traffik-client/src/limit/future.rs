use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;

use super::Limiter;
use crate::{BoxError, Error, HttpResponse};

pin_project! {
    /// The future of a [`LimitService`](super::LimitService): a call that got
    /// its slot at once is sent as it is (no box); one that must wait is
    /// boxed; one refused at once is its error. Its fields are private.
    #[project = LimitProj]
    #[allow(missing_docs)]
    pub enum LimitFuture<F, T> {
        Sent {
            #[pin]
            inner: F,
            limiter: Option<Limiter>,
        },
        Waiting {
            work: BoxFuture<'static, Result<T, Error>>,
        },
        Refused {
            error: Option<Error>,
        },
    }
}

impl<F, T, E> Future for LimitFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    T: HttpResponse,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        match self.project() {
            LimitProj::Sent { inner, limiter } => {
                let outcome = ready!(inner.poll(cx)).map_err(Error::from_inner);
                if let (Ok(response), Some(limiter)) = (&outcome, limiter.take()) {
                    limiter.observe(response.status(), response.headers());
                }
                Poll::Ready(outcome)
            }
            LimitProj::Waiting { work } => work.as_mut().poll(cx),
            LimitProj::Refused { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                Error::new(
                    crate::Layer::Limit,
                    crate::ErrorKind::Deadline,
                    "polled after it ended",
                )
            }))),
        }
    }
}
