//! [`RulesFuture`]: the response future of a [`RulesService`](super::RulesService).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;

pub(super) type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of a [`RulesService`]: the layer's own when the
    /// rules are one layer (nothing boxed), boxed otherwise.
    pub struct RulesFuture<F> {
        #[pin]
        state: RulesState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = RulesStateProjection]
    enum RulesState<F> {
        One {
            #[pin]
            future: crate::ResponseFuture<F>,
        },
        Boxed {
            future: Boxed,
        },
    }
}

impl<F> RulesFuture<F> {
    pub(super) fn one(future: crate::ResponseFuture<F>) -> RulesFuture<F> {
        RulesFuture {
            state: RulesState::One { future },
        }
    }

    pub(super) fn boxed(future: Boxed) -> RulesFuture<F> {
        RulesFuture {
            state: RulesState::Boxed { future },
        }
    }
}

impl<F> Future for RulesFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RulesStateProjection::One { future } => future.poll(cx),
            RulesStateProjection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F> fmt::Debug for RulesFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RulesFuture")
    }
}
