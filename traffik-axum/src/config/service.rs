//! [`RulesService`]: each request under the rules of its generation.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::Request;
use tower::util::BoxCloneService;
use tower::{Layer, Service};

use super::future::{Boxed, RulesFuture};
use super::identity::ConfigIdentity;
use super::rules::Inner;

/// The service of a [`RulesLayer`](super::RulesLayer): each request runs under the rules in
/// force when the service was made ready for it.
#[derive(Clone)]
pub struct RulesService<S> {
    pub(super) rules: Arc<Inner>,
    /// Always `Some` between calls.
    pub(super) built: Option<Built<S>>,
}

/// The rules of one generation around the service.
#[derive(Clone)]
pub(super) enum Built<S> {
    /// One layer (one identity, the common case), built once per
    /// generation: a request pays nothing for the rules being reloadable.
    One {
        generation: u64,
        service: crate::ThrottleService<S, ConfigIdentity>,
    },
    /// No layer, or several: stacked per request. Generation 0: not built.
    Bare { generation: u64, inner: S },
}

impl<S> Built<S> {
    fn generation(&self) -> u64 {
        match self {
            Built::One { generation, .. } | Built::Bare { generation, .. } => *generation,
        }
    }

    fn into_inner(self) -> S {
        match self {
            Built::One { service, .. } => service.into_inner(),
            Built::Bare { inner, .. } => inner,
        }
    }
}

impl<S> fmt::Debug for RulesService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesService").finish_non_exhaustive()
    }
}

type Handler = BoxCloneService<Request<Body>, Response, Infallible>;

/// What a service left unbuilt answers (it cannot be: it is rebuilt in
/// one step; only a panic in between could leave it so).
fn unbuilt() -> Response {
    crate::rejection::problem(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "the rules service lost its rules",
    )
}

impl<S> Service<Request<Body>> for RulesService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RulesFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        let generation = self.rules.generation.load(Ordering::Acquire);
        let stale = self
            .built
            .as_ref()
            .is_none_or(|built| built.generation() != generation);
        if stale {
            if let Some(old) = self.built.take() {
                let inner = old.into_inner();
                let compiled = self.rules.current.load();
                self.built = Some(match compiled.layers.as_slice() {
                    [layer] => Built::One {
                        generation,
                        service: layer.layer(inner),
                    },
                    _ => Built::Bare { generation, inner },
                });
            }
        }
        match &mut self.built {
            Some(Built::One { service, .. }) => service.poll_ready(cx),
            Some(Built::Bare { inner, .. }) => inner.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match &mut self.built {
            // Made ready under the rules of its generation: the request runs
            // under them whatever is reloaded meanwhile.
            Some(Built::One { service, .. }) => RulesFuture::one(service.call(request)),
            Some(Built::Bare { inner, .. }) => {
                let compiled = self.rules.current.load();
                let clone = inner.clone();
                let mut ready = std::mem::replace(inner, clone);
                let future: Boxed = match compiled.layers.as_slice() {
                    [] => Box::pin(ready.call(request)),
                    layers => {
                        let mut service: Handler = BoxCloneService::new(ready);
                        for layer in layers.iter().rev() {
                            service = BoxCloneService::new(layer.layer(service));
                        }
                        Box::pin(service.call(request))
                    }
                };
                RulesFuture::boxed(future)
            }
            None => RulesFuture::boxed(Box::pin(std::future::ready(Ok(unbuilt())))),
        }
    }
}
