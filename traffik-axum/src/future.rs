//! [`ResponseFuture`]: what [`ThrottleService`](crate::ThrottleService) returns.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use pin_project_lite::pin_project;

use crate::headers::{Quota, QuotaHeaders, write};
use crate::rule::BoxFuture;

pin_project! {
    /// The response future of [`ThrottleService`](crate::ThrottleService).
    ///
    /// When the identity and every decision are known at once (in-memory
    /// throttles, built-in extractors) it is the inner service's future, or
    /// a ready rejection: nothing is boxed. Otherwise it is a boxed future
    /// that waits for the identity and the backends.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Inner {
            #[pin]
            future: F,
            quotas: Vec<Quota>,
            headers: QuotaHeaders,
        },
        // Boxed: a denial is rarer than a pass, and a smaller future is
        // cheaper to move on every request.
        Ready {
            response: Option<Box<Response>>,
        },
        Waiting {
            future: BoxFuture<'static, Result<Response, Infallible>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    /// The inner service's response, with the quota headers of `quotas`.
    pub(crate) fn inner(future: F, quotas: Vec<Quota>, headers: QuotaHeaders) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                quotas,
                headers,
            },
        }
    }

    /// A response decided already (a rejection).
    pub(crate) fn ready(response: Response) -> Self {
        ResponseFuture {
            state: State::Ready {
                response: Some(Box::new(response)),
            },
        }
    }

    /// The slow path: wait for the identity and the backends.
    pub(crate) fn waiting(future: BoxFuture<'static, Result<Response, Infallible>>) -> Self {
        ResponseFuture {
            state: State::Waiting { future },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Inner {
                future,
                quotas,
                headers,
            } => {
                // The response is written in place: moving it out and back
                // costs two copies of it per request.
                let mut poll = future.poll(cx);
                if let Poll::Ready(Ok(response)) = &mut poll {
                    write(response.headers_mut(), quotas, *headers);
                }
                poll
            }
            StateProjection::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(*response)),
                None => Poll::Pending,
            },
            StateProjection::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}
