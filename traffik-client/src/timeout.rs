//! Timeouts per attempt ([`AttemptTimeoutLayer`]) and in total
//! ([`TotalTimeoutLayer`]).
//!
//! The total timeout is the call's deadline: it covers the wait for a
//! slot, every attempt and the waits between them, and the limiter uses it
//! to fail at once a call that cannot get a slot in time. The attempt
//! timeout bounds one request; a timed-out attempt may be retried.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer as TowerLayer, Service};

use crate::future::LayerFuture;
use crate::{BoxError, Call, Error, ErrorKind, Layer};

/// Bounds each attempt ([`ErrorKind::AttemptTimeout`]).
#[derive(Clone, Copy, Debug)]
pub struct AttemptTimeoutLayer {
    timeout: Duration,
}

impl AttemptTimeoutLayer {
    /// Attempts of at most `timeout`.
    pub fn new(timeout: Duration) -> AttemptTimeoutLayer {
        AttemptTimeoutLayer { timeout }
    }
}

impl<S> TowerLayer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeoutService<S>;

    fn layer(&self, inner: S) -> AttemptTimeoutService<S> {
        AttemptTimeoutService {
            inner,
            timeout: Some(self.timeout),
        }
    }
}

/// The service of an [`AttemptTimeoutLayer`]: sends the request with the
/// client underneath, within the attempt timeout and the call's deadline.
#[derive(Clone, Debug)]
pub struct AttemptTimeoutService<S> {
    pub(crate) inner: S,
    pub(crate) timeout: Option<Duration>,
}

impl<S> AttemptTimeoutService<S> {
    /// `inner` (a plain HTTP client: this service hands it the request
    /// alone) with attempts of at most `timeout`, if given.
    pub fn new(inner: S, timeout: Option<Duration>) -> AttemptTimeoutService<S> {
        AttemptTimeoutService { inner, timeout }
    }
}

impl<S, R> Service<Call<R>> for AttemptTimeoutService<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = LayerFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_inner)
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        let by_timeout = self.timeout.and_then(|t| Instant::now().checked_add(t));
        let deadline = match (by_timeout, call.options.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let attempt_bound = by_timeout.is_some_and(|t| deadline == Some(t));
        let future = self.inner.call(call.request);
        let Some(deadline) = deadline else {
            return LayerFuture::Passed { inner: future };
        };
        LayerFuture::layered(async move {
            {
                match tokio::time::timeout_at(deadline, future).await {
                    Ok(outcome) => outcome.map_err(Error::from_inner),
                    Err(_) if attempt_bound => Err(Error::new(
                        Layer::Timeout,
                        ErrorKind::AttemptTimeout,
                        "the attempt took longer than the attempt timeout",
                    )),
                    Err(_) => Err(total()),
                }
            }
        })
    }
}

fn total() -> Error {
    Error::new(
        Layer::Timeout,
        ErrorKind::TotalTimeout,
        "the call took longer than its total timeout",
    )
}

/// Bounds a whole call ([`ErrorKind::TotalTimeout`]): sets its deadline for
/// the layers inside, and enforces it.
#[derive(Clone, Copy, Debug)]
pub struct TotalTimeoutLayer {
    timeout: Option<Duration>,
}

impl TotalTimeoutLayer {
    /// Calls of at most `timeout` in all.
    pub fn new(timeout: Duration) -> TotalTimeoutLayer {
        TotalTimeoutLayer {
            timeout: Some(timeout),
        }
    }
}

impl<S> TowerLayer<S> for TotalTimeoutLayer {
    type Service = TotalTimeoutService<S>;

    fn layer(&self, inner: S) -> TotalTimeoutService<S> {
        TotalTimeoutService {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of a [`TotalTimeoutLayer`]. Without a timeout of its own it
/// still enforces a call's own deadline ([`CallOptions`](crate::CallOptions)).
#[derive(Clone, Debug)]
pub struct TotalTimeoutService<S> {
    pub(crate) inner: S,
    pub(crate) timeout: Option<Duration>,
}

impl<S, R> Service<Call<R>> for TotalTimeoutService<S>
where
    S: Service<Call<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = Error;
    type Future = LayerFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_inner)
    }

    fn call(&mut self, mut call: Call<R>) -> Self::Future {
        call.start();
        if let Some(by_total) = self.timeout.and_then(|t| Instant::now().checked_add(t)) {
            call.options.deadline =
                Some(call.options.deadline.map_or(by_total, |d| d.min(by_total)));
        }
        let deadline = call.options.deadline;
        let future = self.inner.call(call);
        let Some(deadline) = deadline else {
            return LayerFuture::Passed { inner: future };
        };
        LayerFuture::layered(async move {
            {
                match tokio::time::timeout_at(deadline, future).await {
                    Ok(outcome) => outcome.map_err(Error::from_inner),
                    Err(_) => Err(total()),
                }
            }
        })
    }
}
