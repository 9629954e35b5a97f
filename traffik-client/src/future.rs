//! [`LayerFuture`]: the future of every layer's service; [`Counted`]: the
//! stack's, counting calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;

use crate::metrics::Instruments;
use crate::{BoxError, Error};

pin_project! {
    /// The future of a layer's service: the layer's work, boxed; or, when
    /// the layer is off in the stack, the inner service's future as it is
    /// (no box, nothing added). Its fields are private to the layers.
    #[project = LayerProj]
    #[allow(missing_docs)]
    pub enum LayerFuture<F, T> {
        /// The layer is off: the inner future, its error converted.
        Passed {
            #[pin]
            inner: F,
        },
        /// The layer's work.
        Layered {
            work: BoxFuture<'static, Result<T, Error>>,
        },
    }
}

impl<F, T> LayerFuture<F, T> {
    pub(crate) fn layered(
        work: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> LayerFuture<F, T> {
        LayerFuture::Layered {
            work: Box::pin(work),
        }
    }
}

impl<F, T, E> Future for LayerFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        match self.project() {
            LayerProj::Passed { inner } => inner.poll(cx).map_err(Error::from_inner),
            LayerProj::Layered { work } => work.as_mut().poll(cx),
        }
    }
}

pin_project! {
    /// The stack's future: its layers', counted in
    /// `traffik_client_calls_total` when it ends.
    pub struct Counted<F> {
        #[pin]
        inner: F,
        instruments: Option<Arc<Instruments>>,
    }
}

impl<F> Counted<F> {
    pub(crate) fn new(inner: F, instruments: Option<Arc<Instruments>>) -> Counted<F> {
        Counted { inner, instruments }
    }
}

impl<F, T> Future for Counted<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error>> {
        let this = self.project();
        let outcome = ready!(this.inner.poll(cx));
        if let Some(instruments) = this.instruments.take() {
            instruments.called(outcome.as_ref().map(|_| ()).map_err(Error::kind));
        }
        Poll::Ready(outcome)
    }
}

/// The inner service that `poll_ready` readied, for one call, leaving a
/// clone in its place (the tower way for services that are `Clone`).
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
