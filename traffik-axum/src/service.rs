//! [`ThrottleService`]: decides in `call`.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};
use tower::Service;
use traffik_core::{Decision, Error, Hit, Limit, Reason};

use crate::RequestHead;
use crate::counting::Settle;
use crate::future::ResponseFuture;
use crate::headers::Quota;
use crate::identity::{Identity, IdentityExtractor, cached, keep};
use crate::layer::{Rejection, Shared};
use crate::rejection::Rejected;
use crate::rule::{DecidedAll, Key, Rule};

/// The service a [`ThrottleLayer`](crate::ThrottleLayer) wraps around yours.
pub struct ThrottleService<S, I> {
    inner: S,
    shared: Arc<Shared<I>>,
}

impl<S, I> ThrottleService<S, I> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<I>>) -> ThrottleService<S, I> {
        ThrottleService { inner, shared }
    }

    /// The service it wraps.
    #[cfg(feature = "config")]
    pub(crate) fn into_inner(self) -> S {
        self.inner
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
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let shared = &self.shared;
        let mut run = Run::default();
        // The request is read in place: splitting it into head and body and
        // joining them again would copy the head twice.
        if shared.decides_at_once {
            match identify_now(shared, &mut request) {
                Some(Ok(identity)) => {
                    run.identity = Some(identity);
                    match run.rules_now(shared, RequestHead::from(&request)) {
                        Step::Pass => {
                            // Decided at once: call the service that was
                            // driven to readiness, no clone needed.
                            let future = self.inner.call(request);
                            return ResponseFuture::inner(future, run.quotas, shared.headers);
                        }
                        Step::Respond(response) => return ResponseFuture::ready(response),
                        Step::Pending => {}
                    }
                }
                Some(Err(error)) => return ResponseFuture::ready(identity_error(shared, &error)),
                None => {}
            }
        }
        // Take the service that was driven to readiness; leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        ResponseFuture::waiting(Box::pin(async move {
            // The body is not `Sync`: the head is borrowed across the waits
            // on its own.
            let (mut parts, body) = request.into_parts();
            if run.identity.is_none() {
                match identify(&shared, &mut parts).await {
                    Ok(identity) => {
                        run.identity = Some(identity);
                    }
                    Err(error) => return Ok(identity_error(&shared, &error)),
                }
            }
            if let Some(response) = run.rules(&shared, RequestHead::from(&parts)).await {
                // Refused before the handler: there is no response of its
                // to count, so what earlier rules reserved goes back.
                run.release(&shared).await;
                return Ok(response);
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            if !run.settlements.is_empty() {
                let counted = run.counted(&shared, &response);
                run.settle_responses(&shared, counted).await;
            }
            crate::headers::write(response.headers_mut(), &run.quotas, shared.headers);
            Ok(response)
        }))
    }
}

/// One request's way through the rules.
#[derive(Default)]
struct Run {
    identity: Option<Identity>,
    /// The rule to run next.
    next: usize,
    /// What the quota headers will show.
    quotas: Vec<Quota>,
    /// What response-counted rules do once the response is known.
    settlements: Vec<Settlement>,
}

/// A response-counted rule's charge, settled once the response is known.
struct Settlement {
    rule: usize,
    key: Key,
    limit: Option<Limit>,
    cost: u64,
    /// When the reservation was charged (for a refund).
    charged: u64,
    /// Whether the cost was reserved (refund it if the response does not
    /// count) or only checked (charge it if the response counts).
    reserved: bool,
}

enum Step {
    /// Every rule admitted the request.
    Pass,
    /// The request is answered here (denied, exempt handled elsewhere, or
    /// failed).
    Respond(Response),
    /// A rule cannot decide without waiting: finish in the async path.
    Pending,
}

impl Run {
    /// Runs the groups of rules that can decide at once, stopping at the
    /// first that cannot (it has not been charged).
    fn rules_now<I>(&mut self, shared: &Shared<I>, request: RequestHead<'_>) -> Step {
        let Some(identity) = &self.identity else {
            return Step::Pending;
        };
        if identity.is_exempt() {
            return Step::Pass;
        }
        while let Some(group) = shared.groups.get(self.next) {
            if let [one] = group.as_slice() {
                let rule = &shared.rules[*one];
                let key = rule.key(identity, request);
                // A pending answer has done nothing yet: the async path asks again.
                let answer = rule.throttle.hit(key.as_str(), key.tag(), None, 1);
                let Ok(outcome) = answer.into_ready() else {
                    return Step::Pending;
                };
                self.next += 1;
                if let Some(response) = settle(&mut self.quotas, shared, rule, None, outcome) {
                    return Step::Respond(response);
                }
                continue;
            }
            let keys: Vec<Key> = group
                .iter()
                .map(|&i| shared.rules[i].key(identity, request))
                .collect();
            let limits = vec![None; group.len()];
            let costs = vec![1; group.len()];
            let now = shared.rules[group[0]].throttle.now_ms();
            let Ok(outcome) = hit_group(shared, group, &keys, &limits, &costs, now).into_ready()
            else {
                return Step::Pending;
            };
            self.next += 1;
            if let Some(response) = settle_group(&mut self.quotas, shared, group, &limits, outcome)
            {
                return Step::Respond(response);
            }
        }
        Step::Pass
    }

    /// Runs the remaining groups; `Some` when the request is answered here.
    async fn rules<I>(&mut self, shared: &Shared<I>, request: RequestHead<'_>) -> Option<Response> {
        let identity = self.identity.clone()?;
        let identity = &identity;
        if identity.is_exempt() {
            return None;
        }
        while let Some(all) = shared.groups.get(self.next) {
            self.next += 1;
            // The rules of the group whose filters this request passes.
            let group: Vec<usize> = all
                .iter()
                .copied()
                .filter(|&i| shared.rules[i].applies(request))
                .collect();
            if group.is_empty() {
                continue;
            }
            let mut keys = Vec::with_capacity(group.len());
            let mut limits = Vec::with_capacity(group.len());
            let mut costs = Vec::with_capacity(group.len());
            for &i in &group {
                let rule = &shared.rules[i];
                keys.push(rule.key(identity, request));
                limits.push(match &rule.limit_by {
                    Some(limit_by) => limit_by(identity).await,
                    None => None,
                });
                costs.push(match &rule.cost_by {
                    Some(cost_by) => cost_by(request).await,
                    None => 1,
                });
            }
            if let [one] = group.as_slice() {
                let (key, limit, cost) = (keys.remove(0), limits.remove(0), costs[0]);
                if let Some(response) = self.one(shared, *one, key, limit, cost).await {
                    return Some(response);
                }
                continue;
            }
            let now = shared.rules[group[0]].throttle.now_ms();
            let outcome = hit_group(shared, &group, &keys, &limits, &costs, now).await;
            let reserved = outcome.as_ref().ok().map(|decisions| {
                decisions
                    .iter()
                    .map(|d| d.is_allowed() && d.reason() == Reason::WithinLimit)
                    .collect::<Vec<bool>>()
            });
            if let Some(response) = settle_group(&mut self.quotas, shared, &group, &limits, outcome)
            {
                return Some(response);
            }
            // Admitted: the response-counted rules of the group reserved.
            let charged = reserved.unwrap_or_default();
            for (((&i, key), limit), (&cost, charged_here)) in
                group.iter().zip(keys).zip(limits).zip(
                    costs
                        .iter()
                        .zip(charged.into_iter().chain(std::iter::repeat(false))),
                )
            {
                if shared.rules[i].counting.is_some() && charged_here {
                    self.settlements.push(Settlement {
                        rule: i,
                        key,
                        limit,
                        cost,
                        charged: now,
                        reserved: true,
                    });
                }
            }
        }
        None
    }

    /// One rule decided on its own: its block first, then a reservation, a
    /// check (check-then-charge) or a plain hit; a breach blocks the key.
    async fn one<I>(
        &mut self,
        shared: &Shared<I>,
        i: usize,
        key: Key,
        limit: Option<Limit>,
        cost: u64,
    ) -> Option<Response> {
        let rule = &shared.rules[i];
        let (id, tag) = (key.as_str(), key.tag());
        if let Some(lockout) = &rule.lockout {
            match lockout.blocked(id, tag).await {
                Ok(Some(denial)) => {
                    rule.throttle.record(&denial);
                    return settle(&mut self.quotas, shared, rule, limit.as_ref(), Ok(denial));
                }
                Ok(None) => {}
                Err(error) => return Some(unavailable(&error)),
            }
        }
        let check_first = rule
            .counting
            .as_ref()
            .is_some_and(|counting| counting.settle() == Settle::CheckThenCharge);
        let now = rule.throttle.now_ms();
        let mut outcome = if check_first {
            let peeked = rule.throttle.peek(id, tag, limit.as_ref(), cost).await;
            if let Ok(decision) = &peeked {
                if !decision.is_allowed() {
                    rule.throttle.record(decision);
                }
            }
            peeked
        } else {
            rule.throttle
                .hit_at(id, tag, limit.as_ref(), cost, now)
                .await
        };
        if let (Ok(decision), Some(lockout)) = (&outcome, &rule.lockout) {
            if decision.reason() == Reason::OverLimit {
                outcome = Ok(lockout.offend(id, tag, *decision).await);
            }
        }
        let counted = rule.counting.is_some()
            && matches!(&outcome, Ok(d) if d.is_allowed() && d.reason() == Reason::WithinLimit);
        if let Some(response) = settle(&mut self.quotas, shared, rule, limit.as_ref(), outcome) {
            return Some(response);
        }
        if counted {
            self.settlements.push(Settlement {
                rule: i,
                key,
                limit,
                cost,
                charged: now,
                reserved: !check_first,
            });
        }
        None
    }

    /// Whether the response counts, for each settlement (the response is
    /// not `Sync`, so it is not held across the settling).
    fn counted<I>(&self, shared: &Shared<I>, response: &Response) -> Vec<bool> {
        self.settlements
            .iter()
            .map(|settlement| {
                shared.rules[settlement.rule]
                    .counting
                    .as_ref()
                    .is_some_and(|counting| counting.counts(response))
            })
            .collect()
    }

    /// Gives back what response-counted rules reserved for a request that
    /// a later rule refused (it never reached the handler, so nothing of
    /// its counts).
    async fn release<I>(&mut self, shared: &Shared<I>) {
        if !self.settlements.is_empty() {
            let none = vec![false; self.settlements.len()];
            self.settle_responses(shared, none).await;
        }
    }

    /// Once the response is known: a reservation whose response does not
    /// count is given back; a check whose response counts is charged (and
    /// a charge over the limit is a breach, for a penalized rule). A store
    /// that fails here leaves the reservation charged, never the other way.
    async fn settle_responses<I>(&mut self, shared: &Shared<I>, counted: Vec<bool>) {
        for (settlement, counts) in std::mem::take(&mut self.settlements)
            .into_iter()
            .zip(counted)
        {
            let rule = &shared.rules[settlement.rule];
            let (id, tag) = (settlement.key.as_str(), settlement.key.tag());
            let limit = settlement.limit.as_ref();
            if settlement.reserved && !counts {
                let refund =
                    rule.throttle
                        .refund(id, tag, limit, settlement.charged, settlement.cost);
                if let Err(error) = refund.await {
                    rule.throttle.failed(&error);
                }
            } else if !settlement.reserved && counts {
                let now = rule.throttle.now_ms();
                let charged = rule
                    .throttle
                    .hit_at(id, tag, limit, settlement.cost, now)
                    .await;
                if let (Ok(decision), Some(lockout)) = (charged, &rule.lockout) {
                    if decision.reason() == Reason::OverLimit {
                        lockout.offend(id, tag, decision).await;
                    }
                }
            }
        }
    }
}

/// One call that decides every rule of a group (rules on one store), all
/// or nothing.
fn hit_group<'a, I>(
    shared: &'a Shared<I>,
    group: &[usize],
    keys: &'a [Key],
    limits: &'a [Option<Limit>],
    costs: &[u64],
    now: u64,
) -> DecidedAll<'a> {
    let hits = group
        .iter()
        .zip(keys)
        .zip(limits)
        .zip(costs)
        .map(|(((&i, key), limit), &cost)| {
            let throttle = &shared.rules[i].throttle;
            Hit {
                key: traffik_core::Key::with_tag(throttle.scope(), key.as_str(), key.tag()),
                limit: limit.as_ref().unwrap_or_else(|| throttle.limit()),
                cost,
            }
        })
        .collect();
    shared.rules[group[0]].throttle.hit_all(hits, now)
}

/// Records one decision; `Some` when it ends the request (a denial or a
/// failure under `FailurePolicy::Error`).
fn settle<I>(
    quotas: &mut Vec<Quota>,
    shared: &Shared<I>,
    rule: &Rule,
    limit: Option<&Limit>,
    outcome: Result<Decision, Error>,
) -> Option<Response> {
    let decision = match outcome {
        Ok(decision) => decision,
        Err(error) => return Some(unavailable(&error)),
    };
    if !decision.is_allowed() {
        let mut denied = std::mem::take(quotas);
        denied.push(rule.quota(limit, decision));
        return Some(reject(shared, denied));
    }
    // A decision the failure policy made knows nothing of the quota; a
    // shadowed one shows nothing to the client.
    let shown = !matches!(decision.reason(), Reason::BackendFailure | Reason::Shadowed);
    if shared.headers_on_success && shown {
        quotas.push(rule.quota(limit, decision));
    }
    None
}

/// Records a group's decisions; `Some` when they end the request.
fn settle_group<I>(
    quotas: &mut Vec<Quota>,
    shared: &Shared<I>,
    group: &[usize],
    limits: &[Option<Limit>],
    outcome: Result<Vec<Decision>, Error>,
) -> Option<Response> {
    let decisions = match outcome {
        Ok(decisions) => decisions,
        // Each throttle's failure policy; an `Error` policy answers.
        Err(error) => {
            for &i in group {
                shared.rules[i].throttle.failed(&error);
            }
            let mut decisions = Vec::with_capacity(group.len());
            for (&i, limit) in group.iter().zip(limits) {
                let throttle = &shared.rules[i].throttle;
                let capacity = limit
                    .as_ref()
                    .unwrap_or_else(|| throttle.limit())
                    .capacity();
                match throttle.decision_for_error(&error, capacity) {
                    Some(decision) => decisions.push(decision),
                    None => return Some(unavailable(&error)),
                }
            }
            decisions
        }
    };
    for (&i, decision) in group.iter().zip(&decisions) {
        shared.rules[i].throttle.record(decision);
    }
    let allowed = decisions.iter().all(Decision::is_allowed);
    if allowed && !shared.headers_on_success {
        return None;
    }
    let mut shown = std::mem::take(quotas);
    for ((&i, limit), decision) in group.iter().zip(limits).zip(decisions) {
        if allowed && decision.reason() == Reason::BackendFailure {
            continue;
        }
        shown.push(shared.rules[i].quota(limit.as_ref(), decision));
    }
    if allowed {
        *quotas = shown;
        return None;
    }
    Some(reject(shared, shown))
}

/// The response to a denied request, with the quotas it shows.
fn reject<I>(shared: &Shared<I>, quotas: Vec<Quota>) -> Response {
    let failed = quotas
        .iter()
        .filter(|quota| !quota.decision.is_allowed())
        .all(|quota| quota.decision.reason() == Reason::BackendFailure);
    let status = if failed {
        shared.failure_status
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    let rejected = Rejected { status, quotas };
    match &shared.rejection {
        Rejection::PlainText => rejected.plain_text(),
        Rejection::Custom(respond) => respond(rejected),
        _ => rejected.problem_json(),
    }
}

/// The identity, if it is known without waiting: from the cache, or from an
/// extractor that can tell at once.
fn identify_now<I: IdentityExtractor>(
    shared: &Shared<I>,
    request: &mut Request<Body>,
) -> Option<Result<Identity, crate::IdentityError>> {
    if let Some(found) = cached(&*shared.identity, request.extensions()) {
        return Some(Ok(found));
    }
    // A pending answer has done nothing yet: the async path asks again.
    let result = shared
        .identity
        .identify(RequestHead::from(&*request))
        .into_ready()
        .ok()?;
    if let Ok(identity) = &result {
        keep(&*shared.identity, request.extensions_mut(), identity);
    }
    Some(result)
}

/// The identity of the request, from the cache when another layer with the
/// same extractor already found it.
async fn identify<I: IdentityExtractor>(
    shared: &Shared<I>,
    parts: &mut http::request::Parts,
) -> Result<Identity, crate::IdentityError> {
    if !shared.identity.caches() {
        return shared.identity.identify(RequestHead::from(&*parts)).await;
    }
    if let Some(found) = cached(&*shared.identity, &parts.extensions) {
        return Ok(found);
    }
    let identity = shared.identity.identify(RequestHead::from(&*parts)).await?;
    keep(&*shared.identity, &mut parts.extensions, &identity);
    Ok(identity)
}

/// A request whose identity could not be found: `400` when it is the
/// client's mistake, `500` (logged once per layer) when it is the
/// deployment's. Both with a problem+json body that says what is missing.
fn identity_error<I>(shared: &Shared<I>, error: &crate::IdentityError) -> Response {
    let status = match error.kind() {
        crate::IdentityErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        _ => {
            if !shared.misconfiguration_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    target: "traffik",
                    "traffik cannot identify clients: {error}; every request on this layer \
                     is answered 500 until this is fixed"
                );
            }
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    crate::rejection::problem(status, error.message())
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
