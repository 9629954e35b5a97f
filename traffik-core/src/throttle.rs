//! [`Throttle`]: hit a key, get a [`Decision`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{Answer, Backend, Key, Scope};
use crate::observe::{DecisionSpan, Enforcement, FailureLog, Instruments, Outcome};
use crate::{AnyStrategy, Clock, ConfigError, Decision, Error, Limit, Rate, Reason, SystemClock};

/// What a [`Throttle`] does when its backend fails (times out, is down, is
/// full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Admit the hit (fail open) and count the failure
    /// ([`Throttle::failures`]). The default: a broken limiter should not take
    /// the service down with it.
    #[default]
    Allow,
    /// Deny the hit (fail closed) with the throttle's failure retry time.
    Deny,
    /// Return the [`Error`] to the caller.
    Error,
    /// Decide on an in-memory limiter of this process's share of the limit,
    /// `1 / instances` of its count and burst (at least 1), while the store
    /// cannot answer: the remote backends (`traffik-backends`' Redis and
    /// Memcached) keep one, hand back to the store when it answers again,
    /// and then charge it with what the fallback admitted. Decisions are
    /// [`Reason::Fallback`]. With `instances` set
    /// to the number of processes sharing the store, the fleet admits at
    /// most about the limit during an outage. A backend without a fallback
    /// (or a store failure that reaches the throttle anyway) is denied, as
    /// under [`Deny`](FailurePolicy::Deny).
    Fallback {
        /// How many processes share the limit.
        instances: std::num::NonZeroU32,
    },
}

impl FailurePolicy {
    /// [`FailurePolicy::Fallback`] for `instances` processes (at least 1).
    pub const fn fallback(instances: u32) -> FailurePolicy {
        FailurePolicy::Fallback {
            instances: match std::num::NonZeroU32::new(instances) {
                Some(n) => n,
                None => std::num::NonZeroU32::MIN,
            },
        }
    }
}

/// The namespace throttles use unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "traffik";

/// A named limit on a backend: `hit(key)` gives a [`Decision`].
///
/// ```
/// use traffik_core::{Backend, FailurePolicy, Gcra, Throttle};
///
/// async fn login(backend: impl Backend) -> Result<(), Box<dyn std::error::Error>> {
/// let login = Throttle::builder("login", "5/min".parse()?)
///     .strategy(Gcra::new())
///     .failure_policy(FailurePolicy::Deny)
///     .build(backend)?;
///
/// let decision = login.hit("alice@example.com").await?;
/// if decision.is_allowed() {
///     // go on
/// } else {
///     println!("try again in {:?}", decision.retry_after());
/// }
/// # Ok(())
/// }
/// ```
///
/// The key stored in the backend is `namespace:name:identity`. A throttle is
/// cheap to clone when its backend and clock are (clones share the failure
/// count).
#[derive(Debug)]
pub struct Throttle<B, C = SystemClock> {
    scope: Arc<Scope>,
    limit: Limit,
    backend: B,
    clock: C,
    policy: FailurePolicy,
    failure_retry_after_ms: u64,
    failures: Arc<AtomicU64>,
    enforcement: Enforcement,
    instruments: Arc<Instruments>,
    failure_log: Arc<FailureLog>,
}

impl<B: Clone, C: Clone> Clone for Throttle<B, C> {
    fn clone(&self) -> Self {
        Throttle {
            scope: Arc::clone(&self.scope),
            limit: self.limit.clone(),
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            policy: self.policy,
            failure_retry_after_ms: self.failure_retry_after_ms,
            failures: Arc::clone(&self.failures),
            enforcement: self.enforcement,
            instruments: Arc::clone(&self.instruments),
            failure_log: Arc::clone(&self.failure_log),
        }
    }
}

impl Throttle<()> {
    /// Starts a throttle called `name` that allows `rate`.
    pub fn builder(name: impl Into<String>, rate: Rate) -> ThrottleBuilder<SystemClock> {
        ThrottleBuilder {
            name: name.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            rate,
            strategy: AnyStrategy::default(),
            clock: SystemClock,
            policy: FailurePolicy::default(),
            failure_retry_after: Duration::from_secs(1),
            enforcement: Enforcement::default(),
        }
    }
}

impl<B: Backend, C: Clock> Throttle<B, C> {
    /// Hits `identity` once.
    ///
    /// The answer is ready at once on an in-memory backend
    /// ([`Answer::into_ready`]) and a future otherwise; `.await` works on
    /// both. The clock is read once.
    ///
    /// Its error comes only with [`FailurePolicy::Error`], when the backend
    /// fails.
    #[inline]
    pub fn hit<'a>(
        &'a self,
        identity: &'a str,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send + 'a> {
        self.hit_with(identity, &self.limit, 1)
    }

    /// Hits `identity` with a cost (a request that counts as several). See
    /// [`hit`](Throttle::hit).
    #[inline]
    pub fn hit_n<'a>(
        &'a self,
        identity: &'a str,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send + 'a> {
        self.hit_with(identity, &self.limit, cost)
    }

    /// Hits `identity` under another limit than the throttle's own, for
    /// limits that depend on who is asking (premium keys get more). See
    /// [`hit`](Throttle::hit).
    #[inline(always)]
    pub fn hit_with<'a>(
        &'a self,
        identity: &'a str,
        limit: &'a Limit,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send + 'a> {
        let key = Key::new(&self.scope, identity);
        let now = self.clock.now_ms();
        let capacity = limit.capacity();
        let answer = self.backend.hit(key, limit, now, cost);
        let span = DecisionSpan::start(answer.is_ready());
        answer.map(move |outcome| self.decided(identity, outcome, capacity, now, span))
    }

    /// [`hit_with`](Throttle::hit_with) for an identity whose first `tag`
    /// bytes name the client (see [`Key::with_tag`]): middleware that adds a
    /// route to the identity keeps every key of one client together.
    #[inline]
    pub fn hit_tagged<'a>(
        &'a self,
        identity: &'a str,
        tag: usize,
        limit: &'a Limit,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send + 'a> {
        self.hit_tagged_at(identity, tag, limit, cost, self.clock.now_ms())
    }

    /// [`hit_tagged`](Throttle::hit_tagged) at a time the caller read from
    /// this throttle's [`clock`](Throttle::clock): the charge time to give
    /// to [`refund_tagged`](Throttle::refund_tagged) when the hit is a
    /// reservation.
    #[inline]
    pub fn hit_tagged_at<'a>(
        &'a self,
        identity: &'a str,
        tag: usize,
        limit: &'a Limit,
        cost: u64,
        now: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send + 'a> {
        let key = Key::with_tag(&self.scope, identity, tag);
        let capacity = limit.capacity();
        let answer = self.backend.hit(key, limit, now, cost);
        let span = DecisionSpan::start(answer.is_ready());
        answer.map(move |outcome| self.decided(identity, outcome, capacity, now, span))
    }

    /// The decision a hit of cost 1 would get now, without counting it.
    ///
    /// Its error comes only with [`FailurePolicy::Error`], when the backend
    /// fails.
    pub fn peek<'a>(
        &'a self,
        identity: &'a str,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send + 'a> {
        let key = Key::new(&self.scope, identity);
        let now = self.clock.now_ms();
        let capacity = self.limit.capacity();
        self.backend
            .peek(key, &self.limit, now, 1)
            .map(move |outcome| self.settle(outcome, capacity))
    }

    /// Gives back `cost` that an admitted hit of `identity` took at
    /// `charged_ms` (read from [`clock`](Throttle::clock) before the hit):
    /// reserve, then settle. See [`Backend::refund`].
    ///
    /// Its error comes when the backend fails, whatever the failure policy;
    /// the hit then stays charged.
    pub fn refund<'a>(
        &'a self,
        identity: &'a str,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send + 'a> {
        self.refund_tagged(identity, identity.len(), &self.limit, charged_ms, cost)
    }

    /// [`refund`](Throttle::refund) of a hit made with
    /// [`hit_tagged_at`](Throttle::hit_tagged_at) (same tag and limit).
    pub fn refund_tagged<'a>(
        &'a self,
        identity: &'a str,
        tag: usize,
        limit: &'a Limit,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send + 'a> {
        let key = Key::with_tag(&self.scope, identity, tag);
        self.backend
            .refund(key, limit, self.clock.now_ms(), charged_ms, cost)
    }

    /// Forgets `identity`: its next hit starts from a full quota.
    ///
    /// Its error comes when the backend fails, whatever the failure policy.
    pub fn reset<'a>(
        &'a self,
        identity: &'a str,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send + 'a> {
        self.backend.reset(
            Key::new(&self.scope, identity),
            &self.limit,
            self.clock.now_ms(),
        )
    }

    /// A hit's outcome: the failure policy for a backend error, shadow mode
    /// for a denial not enforced for `identity`, counted.
    #[inline(always)]
    fn decided(
        &self,
        identity: &str,
        outcome: Result<Decision, Error>,
        capacity: u64,
        now_ms: u64,
        span: DecisionSpan,
    ) -> Result<Decision, Error> {
        if let Err(error) = &outcome {
            if error.kind().is_store_failure() {
                self.failed(error, now_ms);
            }
        }
        match self.settle(outcome, capacity) {
            Ok(decision) => {
                let decision = self.enforce(identity, decision);
                let outcome = Outcome::of(&decision);
                self.instruments.record(outcome, Some(&decision));
                span.finish(self.name(), outcome);
                Ok(decision)
            }
            Err(error) => {
                self.instruments.record(Outcome::FailureError, None);
                span.finish(self.name(), Outcome::FailureError);
                Err(error)
            }
        }
    }

    /// Notes that the store failed a decision at `now_ms`: a warning (feature
    /// `tracing`), at most one a second per throttle.
    pub fn failed(&self, error: &Error, now_ms: u64) {
        self.failure_log.failed(self.name(), error, now_ms);
    }

    /// A denial the throttle does not enforce for `identity` becomes a
    /// [`Reason::Shadowed`] pass. Failure-policy denials are enforced.
    #[inline]
    pub fn enforce(&self, identity: &str, decision: Decision) -> Decision {
        let shadowable = !decision.is_allowed() && decision.reason() != Reason::BackendFailure;
        if shadowable && !self.enforcement.enforces(identity) {
            Decision::shadowed(decision)
        } else {
            decision
        }
    }

    /// Counts a decision made outside [`hit`](Throttle::hit), as middleware
    /// deciding several throttles at once does.
    pub fn record(&self, decision: &Decision) {
        self.instruments
            .record(Outcome::of(decision), Some(decision));
    }

    #[inline]
    fn settle(&self, outcome: Result<Decision, Error>, capacity: u64) -> Result<Decision, Error> {
        match outcome {
            Ok(decision) => Ok(decision),
            Err(error) => match self.decision_for_error(&error, capacity) {
                Some(decision) => Ok(decision),
                None => Err(error),
            },
        }
    }

    /// What a backend error means for a decision under a limit of
    /// `capacity`: contention is a denial ([`Reason::Contended`]); a store
    /// failure is what the failure policy says (`None` under
    /// [`FailurePolicy::Error`]), counted in [`failures`](Throttle::failures);
    /// an input or capacity error is `None`: it is returned, never admitted.
    pub fn decision_for_error(&self, error: &Error, capacity: u64) -> Option<Decision> {
        match error.kind() {
            crate::ErrorKind::Contention => {
                Some(Decision::contended(capacity, self.failure_retry_after_ms))
            }
            kind if kind.is_store_failure() => self.failure_decision(capacity),
            _ => None,
        }
    }

    /// The decision this throttle's failure policy gives a decision its
    /// backend failed to make, under a limit of `capacity` (`None` under
    /// [`FailurePolicy::Error`]: the error is the answer), counted in
    /// [`failures`](Throttle::failures). For callers that decide through the
    /// backend themselves, as middleware deciding several throttles at once.
    pub fn failure_decision(&self, capacity: u64) -> Option<Decision> {
        self.failures.fetch_add(1, Ordering::Relaxed);
        match self.policy {
            FailurePolicy::Allow => Some(Decision::backend_failure(true, capacity, 0)),
            FailurePolicy::Deny | FailurePolicy::Fallback { .. } => Some(
                Decision::backend_failure(false, capacity, self.failure_retry_after_ms),
            ),
            FailurePolicy::Error => None,
        }
    }
}

impl<B, C> Throttle<B, C> {
    /// The throttle's name.
    pub fn name(&self) -> &str {
        self.scope.name()
    }

    /// The namespace its keys live in.
    pub fn namespace(&self) -> &str {
        self.scope.namespace()
    }

    /// `namespace:name`, shared by all its keys.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The limit it enforces.
    pub fn limit(&self) -> &Limit {
        &self.limit
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    /// How many backend failures the failure policy has handled (all clones
    /// count together).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether and for whom denials are enforced.
    pub fn enforcement(&self) -> Enforcement {
        self.enforcement
    }
}

/// Builds a [`Throttle`]; start with [`Throttle::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ThrottleBuilder<C> {
    name: String,
    namespace: String,
    rate: Rate,
    strategy: AnyStrategy,
    clock: C,
    policy: FailurePolicy,
    failure_retry_after: Duration,
    enforcement: Enforcement,
}

impl<C: Clock> ThrottleBuilder<C> {
    /// Whether denials are enforced (default: [`Enforcement::Enforce`]);
    /// [`Enforcement::Shadow`] to try a limit without denying anyone.
    pub fn enforcement(mut self, enforcement: Enforcement) -> Self {
        self.enforcement = enforcement;
        self
    }

    /// The strategy (default: [`Gcra`](crate::Gcra) with a burst of the
    /// rate's count).
    pub fn strategy(mut self, strategy: impl Into<AnyStrategy>) -> Self {
        self.strategy = strategy.into();
        self
    }

    /// The namespace (default: `traffik`), to keep several applications
    /// apart on one shared store.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// What to do when the backend fails (default: [`FailurePolicy::Allow`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The retry time a [`FailurePolicy::Deny`] denial reports (default: 1 s;
    /// rounded down to whole milliseconds, at least 1).
    pub fn failure_retry_after(mut self, retry_after: Duration) -> Self {
        self.failure_retry_after = retry_after;
        self
    }

    /// The clock (default: [`SystemClock`]); tests use a
    /// [`ManualClock`](crate::ManualClock).
    pub fn clock<C2: Clock>(self, clock: C2) -> ThrottleBuilder<C2> {
        ThrottleBuilder {
            name: self.name,
            namespace: self.namespace,
            rate: self.rate,
            strategy: self.strategy,
            clock,
            policy: self.policy,
            failure_retry_after: self.failure_retry_after,
            enforcement: self.enforcement,
        }
    }

    /// The throttle, on `backend`.
    ///
    /// # Errors
    ///
    /// When the name or namespace is empty or holds `:`, `{`, `}` or white
    /// space, or the strategy cannot compute exactly with the rate.
    pub fn build<B: Backend>(self, backend: B) -> Result<Throttle<B, C>, ConfigError> {
        let scope = Scope::new(&self.namespace, &self.name)?;
        let mut limit = Limit::new(self.rate, self.strategy)?;
        if let FailurePolicy::Fallback { instances } = self.policy {
            limit = limit.with_fallback(instances);
        }
        let retry_ms = u64::try_from(self.failure_retry_after.as_millis()).unwrap_or(u64::MAX);
        Ok(Throttle {
            scope: Arc::new(scope),
            limit,
            backend,
            clock: self.clock,
            policy: self.policy,
            failure_retry_after_ms: retry_ms.max(1),
            failures: Arc::new(AtomicU64::new(0)),
            enforcement: self.enforcement,
            instruments: Arc::new(Instruments::new(&self.name)),
            failure_log: Arc::new(FailureLog::default()),
        })
    }
}
