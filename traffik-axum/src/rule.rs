//! [`Rule`]: one throttle on a layer, with how it keys, its limit and its cost.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::MatchedPath;
use http::HeaderValue;
use std::any::Any;

use traffik_core::{
    Answer, Backend, Clock, Decision, Enforcement, Error, Hit, Limit, Lockout, Scope, Throttle,
};

use crate::RequestHead;
use crate::counting::{Counting, Settle};
use crate::filter::Filter;
use crate::headers::{Policy, Quota, policy_member};
use crate::identity::Identity;
use crate::key::{Ipv4Text, KeyBuf};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A decision of an erased throttle: ready at once, or a boxed future.
pub(crate) type Decided<'a> = Answer<BoxFuture<'a, Result<Decision, Error>>>;

/// The decisions of a group of erased throttles.
pub(crate) type DecidedAll<'a> = Answer<BoxFuture<'a, Result<Vec<Decision>, Error>>>;

/// A throttle with its backend and clock types erased, so one layer can hold
/// throttles on different backends.
pub(crate) trait ErasedThrottle: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn scope(&self) -> &Scope;
    fn limit(&self) -> &Limit;
    fn is_local(&self) -> bool;
    fn as_any(&self) -> &dyn Any;
    /// One hit: ready at once when the backend decided at once (nothing is
    /// boxed then), a boxed future otherwise.
    fn hit<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        cost: u64,
    ) -> Decided<'a>;
    /// Whether `other` is a throttle of the same types on the same store:
    /// one call of this throttle's backend can decide both.
    fn joins(&self, other: &dyn ErasedThrottle) -> bool;
    /// Every hit at once, all or nothing, through this throttle's backend
    /// and clock.
    fn hit_all<'a>(&'a self, hits: Vec<Hit<'a>>, now: u64) -> DecidedAll<'a>;
    /// What a backend error means for this throttle's decision (`None`: the
    /// error is the answer).
    fn decision_for_error(&self, error: &Error, capacity: u64) -> Option<Decision>;
    /// Counts a decision made through [`hit_all`](ErasedThrottle::hit_all).
    fn record(&self, decision: &Decision);
    /// Notes that the store failed a decision (a rate-limited warning).
    fn failed(&self, error: &Error);
    /// The throttle's clock.
    fn now_ms(&self) -> u64;
    /// One hit at a time read from [`now_ms`](ErasedThrottle::now_ms): a
    /// reservation that may be refunded.
    fn hit_at<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        cost: u64,
        now: u64,
    ) -> Decided<'a>;
    /// What a hit would get, uncharged, through the failure policy.
    fn peek<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        cost: u64,
    ) -> Decided<'a>;
    /// Gives back a reservation made with [`hit_at`](ErasedThrottle::hit_at).
    fn refund<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        charged: u64,
        cost: u64,
    ) -> Answer<BoxFuture<'a, Result<(), Error>>>;
}

/// A [`Lockout`] with its backend and clock types erased.
pub(crate) trait ErasedLockout: Send + Sync + 'static {
    /// The denial of a blocked key, if it is.
    fn blocked<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
    ) -> BoxFuture<'a, Result<Option<Decision>, Error>>;
    /// Records an offence and blocks: the denial with the block's wait.
    fn offend<'a>(&'a self, id: &'a str, tag: usize, denial: Decision) -> BoxFuture<'a, Decision>;
}

impl<B: Backend, C: Clock> ErasedLockout for Lockout<B, C> {
    fn blocked<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
    ) -> BoxFuture<'a, Result<Option<Decision>, Error>> {
        Box::pin(self.blocked_tagged(id, tag))
    }

    fn offend<'a>(&'a self, id: &'a str, tag: usize, denial: Decision) -> BoxFuture<'a, Decision> {
        Box::pin(self.offend_tagged(id, tag, denial))
    }
}

impl<B: Backend, C: Clock> ErasedThrottle for Throttle<B, C> {
    fn name(&self) -> &str {
        Throttle::name(self)
    }

    fn scope(&self) -> &Scope {
        Throttle::scope(self)
    }

    fn limit(&self) -> &Limit {
        Throttle::limit(self)
    }

    fn is_local(&self) -> bool {
        self.backend().is_local()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    #[inline]
    fn hit<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        cost: u64,
    ) -> Decided<'a> {
        let limit = limit.unwrap_or_else(|| Throttle::limit(self));
        boxed(self.hit_tagged(id, tag, limit, cost))
    }

    fn joins(&self, other: &dyn ErasedThrottle) -> bool {
        // A shadow throttle's denial would hold back the group: alone.
        let enforced = |throttle: &Throttle<B, C>| throttle.enforcement() == Enforcement::Enforce;
        enforced(self)
            && other
                .as_any()
                .downcast_ref::<Throttle<B, C>>()
                .is_some_and(|other| enforced(other) && self.backend().same_store(other.backend()))
    }

    fn hit_all<'a>(&'a self, hits: Vec<Hit<'a>>, now: u64) -> DecidedAll<'a> {
        boxed(self.backend().hit_all(hits, now))
    }

    fn decision_for_error(&self, error: &Error, capacity: u64) -> Option<Decision> {
        Throttle::decision_for_error(self, error, capacity)
    }

    fn record(&self, decision: &Decision) {
        Throttle::record(self, decision);
    }

    fn failed(&self, error: &Error) {
        Throttle::failed(self, error, self.clock().now_ms());
    }

    fn now_ms(&self) -> u64 {
        self.clock().now_ms()
    }

    fn hit_at<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        cost: u64,
        now: u64,
    ) -> Decided<'a> {
        let limit = limit.unwrap_or_else(|| Throttle::limit(self));
        boxed(self.hit_tagged_at(id, tag, limit, cost, now))
    }

    fn peek<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        cost: u64,
    ) -> Decided<'a> {
        let limit = limit.unwrap_or_else(|| Throttle::limit(self));
        let key = traffik_core::Key::with_tag(self.scope(), id, tag);
        let now = self.clock().now_ms();
        let capacity = limit.capacity();
        boxed(
            self.backend()
                .peek(key, limit, now, cost)
                .map(move |outcome| match outcome {
                    Ok(decision) => Ok(self.enforce(id, decision)),
                    Err(error) => {
                        if error.kind().is_store_failure() {
                            Throttle::failed(self, &error, now);
                        }
                        Throttle::decision_for_error(self, &error, capacity).ok_or(error)
                    }
                }),
        )
    }

    fn refund<'a>(
        &'a self,
        id: &'a str,
        tag: usize,
        limit: Option<&'a Limit>,
        charged: u64,
        cost: u64,
    ) -> Answer<BoxFuture<'a, Result<(), Error>>> {
        let limit = limit.unwrap_or_else(|| Throttle::limit(self));
        boxed(self.refund_tagged(id, tag, limit, charged, cost))
    }
}

/// An answer with its future boxed when it is pending: nothing is boxed for
/// an answer that is ready.
#[inline]
fn boxed<'a, T: Send + 'a>(
    answer: Answer<impl Future<Output = T> + Send + 'a>,
) -> Answer<BoxFuture<'a, T>> {
    match answer.into_ready() {
        Ok(output) => Answer::ready(output),
        Err(pending) => Answer::pending(Box::pin(pending)),
    }
}

/// What a throttle's keys are made of, besides the identity.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum KeyScope {
    /// The identity alone: one budget per client across every route the
    /// layer covers.
    Global,
    /// The identity and the route template (axum's `MatchedPath`, such as
    /// `/items/{id}`): `/items/1` and `/items/2` share one budget, other
    /// routes have their own. The default. Requests that matched no route
    /// share the template `*`, so random paths cannot create keys.
    #[default]
    Route,
    /// The identity, the method and the route template.
    MethodRoute,
    /// The identity and whatever the function returns.
    Custom(Arc<dyn Fn(RequestHead<'_>) -> String + Send + Sync>),
}

impl fmt::Debug for KeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyScope::Global => "Global",
            KeyScope::Route => "Route",
            KeyScope::MethodRoute => "MethodRoute",
            KeyScope::Custom(_) => "Custom",
        })
    }
}

type LimitFn = Arc<dyn Fn(&Identity) -> BoxFuture<'static, Option<Limit>> + Send + Sync>;
type CostFn = Arc<dyn Fn(RequestHead<'_>) -> BoxFuture<'static, u64> + Send + Sync>;

/// One throttle on a [`ThrottleLayer`](crate::ThrottleLayer): the throttle,
/// how it keys requests, and optionally a limit per identity and a cost per
/// request.
///
/// ```
/// # fn demo(backend: traffik_backends::memory::MemoryBackend) -> Result<(), Box<dyn std::error::Error>> {
/// use traffik_axum::{Identity, KeyScope, Rule};
/// use traffik_core::{Gcra, Limit, Throttle};
///
/// let premium = Limit::new("1000/min".parse()?, Gcra::new())?;
/// let api = Throttle::builder("api", "100/min".parse()?).build(backend)?;
/// let rule = Rule::new(api)
///     .scope(KeyScope::Global)
///     // Premium keys get more; everyone else the throttle's own limit.
///     .limit_by(move |identity| {
///         let premium = premium.clone();
///         let vip = identity.text().is_some_and(|key| key.starts_with("vip-"));
///         async move { vip.then_some(premium) }
///     })
///     // Uploads cost one per started megabyte.
///     .cost_by(|request| {
///         let bytes = request.headers().get("content-length")
///             .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
///             .unwrap_or(0);
///         async move { 1 + bytes / 1_000_000 }
///     });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) throttle: Arc<dyn ErasedThrottle>,
    /// The throttle's name, shared by every quota header that names it.
    pub(crate) policy: Arc<Policy>,
    /// Its `RateLimit-Policy` member under its own limit.
    pub(crate) member: HeaderValue,
    pub(crate) scope: KeyScope,
    pub(crate) limit_by: Option<LimitFn>,
    pub(crate) cost_by: Option<CostFn>,
    /// Which requests the rule applies to (`None`: all).
    pub(crate) filter: Option<Arc<Filter>>,
    /// Which responses it counts (`None`: every request).
    pub(crate) counting: Option<Counting>,
    /// Blocks for keys that breach it.
    pub(crate) lockout: Option<Arc<dyn ErasedLockout>>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("throttle", &self.throttle.name())
            .field("limit", self.throttle.limit())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<B: Backend, C: Clock> From<Throttle<B, C>> for Rule {
    fn from(throttle: Throttle<B, C>) -> Rule {
        Rule::new(throttle)
    }
}

impl<B: Backend, C: Clock> From<Lockout<B, C>> for Rule {
    fn from(lockout: Lockout<B, C>) -> Rule {
        Rule::penalized(lockout)
    }
}

impl Rule {
    /// A rule for `throttle`, keyed by identity and route.
    pub fn new<B: Backend, C: Clock>(throttle: Throttle<B, C>) -> Rule {
        let policy = Arc::new(Policy::new(throttle.name()));
        let member = policy_member(&policy, throttle.limit());
        Rule {
            policy,
            member,
            throttle: Arc::new(throttle),
            scope: KeyScope::default(),
            limit_by: None,
            cost_by: None,
            filter: None,
            counting: None,
            lockout: None,
        }
    }

    /// A rule for a throttle with a penalty: a key that breaches it is
    /// blocked, for longer at each repeat offence (see [`Lockout`]).
    pub fn penalized<B: Backend, C: Clock>(lockout: Lockout<B, C>) -> Rule {
        let throttle: Arc<dyn ErasedThrottle> = lockout.shared_throttle().clone();
        let policy = Arc::new(Policy::new(throttle.name()));
        let member = policy_member(&policy, throttle.limit());
        Rule {
            policy,
            member,
            throttle,
            scope: KeyScope::default(),
            limit_by: None,
            cost_by: None,
            filter: None,
            counting: None,
            lockout: Some(Arc::new(lockout)),
        }
    }

    /// Applies the rule only to the requests `filter` matches; the others
    /// pass it uncounted.
    pub fn filter(mut self, filter: Filter) -> Rule {
        self.filter = (!filter.is_empty()).then(|| Arc::new(filter));
        self
    }

    /// Counts only the responses `counting` matches, reserving the cost
    /// when the request arrives and refunding it when the response does
    /// not count (or checking first and charging after, see [`Settle`]).
    pub fn count(mut self, counting: Counting) -> Rule {
        self.counting = Some(counting);
        self
    }

    /// Whether the rule applies to `request`.
    #[inline]
    pub(crate) fn applies(&self, request: RequestHead<'_>) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter.matches(request))
    }

    /// Whether the rule is decided on its own, never in a store's combined
    /// call: its penalty or its check-then-charge counting takes steps of
    /// its own.
    pub(crate) fn alone(&self) -> bool {
        self.lockout.is_some()
            || self
                .counting
                .as_ref()
                .is_some_and(|counting| counting.settle() == Settle::CheckThenCharge)
    }

    /// Whether the rule needs more than one decision per request (filters,
    /// response counting, a penalty): the layer's path that boxes nothing
    /// is not for it.
    pub(crate) fn is_plain(&self) -> bool {
        self.filter.is_none() && self.counting.is_none() && self.lockout.is_none()
    }

    /// What the keys are made of (default: [`KeyScope::Route`]).
    pub fn scope(mut self, scope: KeyScope) -> Rule {
        self.scope = scope;
        self
    }

    /// The limit for an identity; `None` keeps the throttle's own. The
    /// function may be async.
    pub fn limit_by<F, Fut>(mut self, function: F) -> Rule
    where
        F: Fn(&Identity) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Limit>> + Send + 'static,
    {
        self.limit_by = Some(Arc::new(move |identity| Box::pin(function(identity))));
        self
    }

    /// The cost of a request (default 1). The function may be async.
    pub fn cost_by<F, Fut>(mut self, function: F) -> Rule
    where
        F: Fn(RequestHead<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = u64> + Send + 'static,
    {
        self.cost_by = Some(Arc::new(move |request| Box::pin(function(request))));
        self
    }

    /// The throttle's name (the policy name in the headers).
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// How a decision of this rule shows in the quota headers (`limit`: the
    /// limit applied, when it is not the throttle's own).
    pub(crate) fn quota(&self, limit: Option<&Limit>, decision: Decision) -> Quota {
        let (member, capacity) = match limit {
            Some(limit) => (policy_member(&self.policy, limit), limit.capacity()),
            None => (self.member.clone(), self.throttle.limit().capacity()),
        };
        Quota {
            policy: Arc::clone(&self.policy),
            member,
            capacity,
            decision,
        }
    }

    /// The key of a request: the identity, then what the scope adds. A
    /// global key of an IPv4 identity is not copied into a buffer.
    #[inline]
    pub(crate) fn key(&self, identity: &Identity, request: RequestHead<'_>) -> Key {
        let custom;
        let suffix = match &self.scope {
            KeyScope::Global => return Key::of(identity),
            KeyScope::Route => Suffix::Route(route(request)),
            KeyScope::MethodRoute => Suffix::MethodRoute(request.method().as_str(), route(request)),
            KeyScope::Custom(function) => {
                custom = function(request);
                Suffix::Custom(&custom)
            }
        };
        Key::scoped(identity, suffix)
    }

    /// Orders rules tightest first: rates compared as hits per millisecond
    /// (`Less` when this rule allows fewer than `other`).
    pub(crate) fn tighter_than(&self, other: &Rule) -> std::cmp::Ordering {
        let (a, b) = (self.throttle.limit().rate(), other.throttle.limit().rate());
        (u128::from(a.count()) * u128::from(b.period_ms()))
            .cmp(&(u128::from(b.count()) * u128::from(a.period_ms())))
    }
}

/// The route template of a request; `*` when it matched none, so random
/// paths cannot create keys.
fn route(request: RequestHead<'_>) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("*", MatchedPath::as_str)
}

/// A request's key for one rule.
pub(crate) enum Key {
    /// An IPv4 address, written on the stack.
    Ipv4(Ipv4Text),
    /// Built from the identity and the scope; the identity is the first
    /// `tag` bytes.
    Built(KeyBuf, usize),
}

/// What a key scope adds to the identity.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Suffix<'a> {
    /// The route template.
    Route(&'a str),
    /// The method, then the route template.
    MethodRoute(&'a str, &'a str),
    /// A custom scope's text.
    Custom(&'a str),
}

impl Key {
    /// The key of an identity and what its scope adds.
    #[inline]
    pub(crate) fn scoped(identity: &Identity, suffix: Suffix<'_>) -> Key {
        let mut key = KeyBuf::new();
        identity.push_key(&mut key);
        let tag = key.as_str().len();
        match suffix {
            Suffix::Route(route) => key.push_suffix("r", route),
            Suffix::MethodRoute(method, route) => {
                key.push_suffix("m", method);
                key.push_suffix("r", route);
            }
            Suffix::Custom(text) => key.push_suffix("c", text),
        }
        Key::Built(key, tag)
    }

    /// The key of an identity alone.
    #[inline]
    pub(crate) fn of(identity: &Identity) -> Key {
        match identity {
            Identity::Ip(std::net::IpAddr::V4(ip)) => Key::Ipv4(Ipv4Text::new(*ip)),
            other => {
                let mut key = KeyBuf::new();
                other.push_key(&mut key);
                let tag = key.as_str().len();
                Key::Built(key, tag)
            }
        }
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Ipv4(ip) => ip.as_str(),
            Key::Built(key, _) => key.as_str(),
        }
    }

    /// How many of the key's first bytes name the client.
    #[inline]
    pub(crate) fn tag(&self) -> usize {
        match self {
            Key::Ipv4(ip) => ip.as_str().len(),
            Key::Built(_, tag) => *tag,
        }
    }
}
