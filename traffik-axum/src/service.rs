//! [`ThrottleService`]: decides in `call`.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Request, StatusCode, header};
use tower::Service;
use traffik_core::{Error, Reason};

use crate::headers::{Quota, write};
use crate::identity::{Identity, IdentityCache, IdentityExtractor, key_of};
use crate::layer::{Rejection, Shared};
use crate::rejection::Rejected;
use crate::rule::BoxFuture;

/// The service a [`ThrottleLayer`](crate::ThrottleLayer) wraps around yours.
pub struct ThrottleService<S, I> {
    inner: S,
    shared: Arc<Shared<I>>,
}

impl<S, I> ThrottleService<S, I> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<I>>) -> ThrottleService<S, I> {
        ThrottleService { inner, shared }
    }
}

impl<S: Clone, I> Clone for ThrottleService<S, I> {
    fn clone(&self) -> Self {
        ThrottleService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, I> fmt::Debug for ThrottleService<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleService").finish_non_exhaustive()
    }
}

impl<S, I> Service<Request<Body>> for ThrottleService<S, I>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    I: IdentityExtractor,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(decide(shared, inner, request))
    }
}

async fn decide<S, I>(
    shared: Arc<Shared<I>>,
    mut inner: S,
    request: Request<Body>,
) -> Result<Response, Infallible>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
    I: IdentityExtractor,
{
    let (mut parts, body) = request.into_parts();
    let identity = match identify(&shared, &mut parts).await {
        Ok(identity) => identity,
        Err(error) => {
            return Ok((StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response());
        }
    };
    if identity.is_exempt() {
        return inner.call(Request::from_parts(parts, body)).await;
    }
    let identity_key = key_of(&identity);
    let mut quotas = Vec::with_capacity(shared.rules.len());
    for rule in &shared.rules {
        let key = rule.key(&identity_key, &parts);
        let limit = match &rule.limit_by {
            Some(limit_by) => limit_by(&identity).await,
            None => None,
        };
        let cost = match &rule.cost_by {
            Some(cost_by) => cost_by(&parts).await,
            None => 1,
        };
        let outcome = match rule.throttle.hit_now(key.as_str(), limit.as_ref(), cost) {
            Some(outcome) => outcome,
            None => rule.throttle.hit(key.as_str(), limit.as_ref(), cost).await,
        };
        let decision = match outcome {
            Ok(decision) => decision,
            Err(error) => return Ok(unavailable(&error)),
        };
        let quota = || Quota {
            policy: rule.name().to_owned(),
            limit: limit
                .clone()
                .unwrap_or_else(|| rule.throttle.limit().clone()),
            decision,
        };
        if !decision.is_allowed() {
            quotas.push(quota());
            let status = if decision.reason() == Reason::BackendFailure {
                shared.failure_status
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            let rejected = Rejected { status, quotas };
            return Ok(match &shared.rejection {
                Rejection::PlainText => rejected.plain_text(),
                Rejection::Custom(respond) => respond(rejected),
                _ => rejected.problem_json(),
            });
        }
        // A decision the failure policy made knows nothing of the quota.
        if shared.headers_on_success && decision.reason() != Reason::BackendFailure {
            quotas.push(quota());
        }
    }
    let mut response = inner.call(Request::from_parts(parts, body)).await?;
    if shared.headers_on_success {
        write(response.headers_mut(), &quotas, shared.headers);
    }
    Ok(response)
}

/// The identity of the request, from the cache when another layer with the
/// same extractor already found it.
async fn identify<I: IdentityExtractor>(
    shared: &Shared<I>,
    parts: &mut Parts,
) -> Result<Identity, crate::IdentityError> {
    let extractor = I::cache_id(&shared.identity);
    if let Some(found) = parts
        .extensions
        .get::<IdentityCache>()
        .and_then(|c| c.get(extractor))
    {
        return Ok(found.clone());
    }
    let identity = shared.identity.identify(parts).await?;
    match parts.extensions.get_mut::<IdentityCache>() {
        Some(cache) => cache.insert(extractor, identity.clone()),
        None => {
            parts
                .extensions
                .insert(IdentityCache::new(extractor, identity.clone()));
        }
    }
    Ok(identity)
}

/// A throttle with [`FailurePolicy::Error`](traffik_core::FailurePolicy::Error)
/// whose backend failed.
fn unavailable(error: &Error) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("rate limiter unavailable: {error}\n"),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
