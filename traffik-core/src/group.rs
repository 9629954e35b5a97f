//! [`ThrottleGroup`]: several throttles decided together, all or nothing.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::backend::{Answer, Backend, Hit, Key};
use crate::{Clock, ConfigError, Decision, Error, SystemClock, Throttle};

/// Several throttles on one store, decided together for each request: **all
/// or nothing**. When every throttle admits, each is charged; when any
/// denies, none is, so a client held back by its daily quota does not also
/// burn its per-second budget.
///
/// One call decides them all: one lock pass in memory, one script call on
/// Redis (see [`Backend::hit_all`] for what each backend guarantees).
///
/// ```
/// # async fn demo<B: traffik_core::Backend + Clone>(store: B) -> Result<(), Box<dyn std::error::Error>> {
/// use traffik_core::{FixedWindow, Gcra, Throttle, ThrottleGroup};
///
/// // Ten a second in bursts, and a thousand a day, on one store.
/// let burst = Throttle::builder("burst", "10/s".parse()?).strategy(Gcra::new()).build(store.clone())?;
/// let daily = Throttle::builder("daily", "1000/day".parse()?).strategy(FixedWindow).build(store)?;
/// let limits = ThrottleGroup::new([burst, daily])?;
///
/// let decisions = limits.hit("client-7").await?;
/// if !decisions.is_allowed() {
///     // Neither quota was charged; wait this long before trying again.
///     let _wait = decisions.retry_after();
/// }
/// # Ok(()) }
/// ```
pub struct ThrottleGroup<B, C = SystemClock> {
    throttles: Vec<Throttle<B, C>>,
}

impl<B, C> fmt::Debug for ThrottleGroup<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.throttles.iter().map(Throttle::name))
            .finish()
    }
}

impl<B: Clone, C: Clone> Clone for ThrottleGroup<B, C> {
    fn clone(&self) -> Self {
        ThrottleGroup {
            throttles: self.throttles.clone(),
        }
    }
}

impl<B: Backend, C: Clock> ThrottleGroup<B, C> {
    /// A group of `throttles`, decided in this order.
    ///
    /// # Errors
    ///
    /// When there is none, when two have the same namespace and name (their
    /// keys would be one), when one is not fully enforced (a shadow
    /// throttle's denial would hold back the others), or when they do not
    /// share one store ([`Backend::same_store`]): one call could not decide
    /// them all.
    pub fn new(
        throttles: impl IntoIterator<Item = Throttle<B, C>>,
    ) -> Result<ThrottleGroup<B, C>, ConfigError> {
        let throttles: Vec<Throttle<B, C>> = throttles.into_iter().collect();
        let Some(first) = throttles.first() else {
            return Err(ConfigError::new(
                "a throttle group needs at least one throttle",
            ));
        };
        for (i, throttle) in throttles.iter().enumerate() {
            if throttles[..i]
                .iter()
                .any(|t| t.scope().same(throttle.scope()))
            {
                return Err(ConfigError::new(format!(
                    "the throttle {:?} is in the group twice",
                    throttle.scope().prefix()
                )));
            }
            if throttle.enforcement() != crate::Enforcement::Enforce {
                return Err(ConfigError::new(format!(
                    "the throttle {:?} runs in shadow: a group is all or nothing, so its \
                     denials would hold back the others; decide it on its own",
                    throttle.name()
                )));
            }
            if !first.backend().same_store(throttle.backend()) {
                return Err(ConfigError::new(format!(
                    "the throttles {:?} and {:?} keep their state in different stores: \
                     one call cannot decide both; group the throttles of each store apart",
                    first.name(),
                    throttle.name()
                )));
            }
        }
        Ok(ThrottleGroup { throttles })
    }

    /// One hit of cost 1 on every throttle, for `identity`.
    pub fn hit<'a>(
        &'a self,
        identity: &'a str,
    ) -> Answer<impl Future<Output = Result<Decisions, Error>> + Send + 'a> {
        self.hit_n(identity, 1)
    }

    /// One hit of `cost` on every throttle, for `identity`.
    pub fn hit_n<'a>(
        &'a self,
        identity: &'a str,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decisions, Error>> + Send + 'a> {
        let first = &self.throttles[0];
        let now = first.clock().now_ms();
        let hits = self
            .throttles
            .iter()
            .map(|throttle| Hit {
                key: Key::new(throttle.scope(), identity),
                limit: throttle.limit(),
                cost,
            })
            .collect();
        first
            .backend()
            .hit_all(hits, now)
            .map(move |outcome| self.settle(outcome))
    }

    /// One hit on every throttle, each with its own identity, tag, limit and
    /// cost (`hits` in the group's order, one per throttle: middleware whose
    /// keys add a route to the client). Missing hits are not decided; extra
    /// ones are ignored.
    pub fn hit_each<'a>(
        &'a self,
        hits: impl IntoIterator<Item = GroupHit<'a>>,
    ) -> Answer<impl Future<Output = Result<Decisions, Error>> + Send + 'a> {
        let first = &self.throttles[0];
        let now = first.clock().now_ms();
        let hits = self
            .throttles
            .iter()
            .zip(hits)
            .map(|(throttle, hit)| Hit {
                key: Key::with_tag(throttle.scope(), hit.identity, hit.tag),
                limit: hit.limit.unwrap_or_else(|| throttle.limit()),
                cost: hit.cost,
            })
            .collect();
        first
            .backend()
            .hit_all(hits, now)
            .map(move |outcome| self.settle(outcome))
    }

    /// The throttles, in the order they are decided.
    pub fn throttles(&self) -> &[Throttle<B, C>] {
        &self.throttles
    }

    /// A backend error becomes what each throttle's failure policy says; an
    /// `Error` policy anywhere makes it the group's error.
    fn settle(&self, outcome: Result<Vec<Decision>, Error>) -> Result<Decisions, Error> {
        let store_failed = outcome
            .as_ref()
            .err()
            .filter(|e| e.kind().is_store_failure());
        if let Some(error) = store_failed {
            for throttle in &self.throttles {
                throttle.failed(error, throttle.clock().now_ms());
            }
        }
        let error = match outcome {
            Ok(decisions) => {
                for (throttle, decision) in self.throttles.iter().zip(&decisions) {
                    throttle.record(decision);
                }
                return Ok(Decisions { decisions });
            }
            Err(error) => error,
        };
        // Each throttle decides what the error means (contention: a denial;
        // a store failure: its policy, counted; an input error: the error).
        let each: Vec<Option<Decision>> = self
            .throttles
            .iter()
            .map(|throttle| {
                let decision = throttle.decision_for_error(&error, throttle.limit().capacity());
                if let Some(decision) = &decision {
                    throttle.record(decision);
                }
                decision
            })
            .collect();
        match each.into_iter().collect::<Option<Vec<Decision>>>() {
            Some(decisions) => Ok(Decisions { decisions }),
            None => Err(error),
        }
    }
}

/// One throttle's part of a [`ThrottleGroup::hit_each`].
#[derive(Clone, Copy, Debug)]
pub struct GroupHit<'a> {
    /// The identity (the key within the throttle).
    pub identity: &'a str,
    /// How many of its first bytes name the client (see [`Key::with_tag`]).
    pub tag: usize,
    /// The limit, when not the throttle's own.
    pub limit: Option<&'a crate::Limit>,
    /// The cost.
    pub cost: u64,
}

/// The decisions of a [`ThrottleGroup`], one per throttle in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decisions {
    decisions: Vec<Decision>,
}

impl Decisions {
    /// Decisions of a group, one per throttle.
    pub fn new(decisions: Vec<Decision>) -> Decisions {
        Decisions { decisions }
    }

    /// Whether every throttle admitted (and so each was charged).
    pub fn is_allowed(&self) -> bool {
        self.decisions.iter().all(Decision::is_allowed)
    }

    /// Every decision, in the group's order. After a denial, those that
    /// would have admitted show their quota as it stands, uncharged.
    pub fn as_slice(&self) -> &[Decision] {
        &self.decisions
    }

    /// The decision of the `index`-th throttle.
    pub fn get(&self, index: usize) -> Option<&Decision> {
        self.decisions.get(index)
    }

    /// The positions of the throttles that denied.
    pub fn violated(&self) -> impl Iterator<Item = usize> + '_ {
        self.decisions
            .iter()
            .enumerate()
            .filter(|(_, decision)| !decision.is_allowed())
            .map(|(i, _)| i)
    }

    /// How long until the request could pass every throttle: the longest
    /// wait among those that denied (zero when admitted; `Duration::MAX`
    /// when one never will).
    pub fn retry_after(&self) -> Duration {
        self.decisions
            .iter()
            .filter(|decision| !decision.is_allowed())
            .map(Decision::retry_after)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}
