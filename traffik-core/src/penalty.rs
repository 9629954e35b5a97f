//! [`Penalty`] and [`Lockout`]: a key that breaches its limit is blocked for
//! a time that grows with repeat offences, on any backend.
//!
//! ```
//! use std::time::Duration;
//! use traffik_core::{Backend, FixedWindow, Penalty, Throttle};
//!
//! # async fn demo(backend: impl Backend) -> Result<(), Box<dyn std::error::Error>> {
//! // 5 failed logins per 15 minutes; then locked out for 15 minutes, an hour,
//! // a day. One offence is forgiven per quiet day.
//! let penalty = Penalty::escalating([
//!     Duration::from_secs(15 * 60),
//!     Duration::from_secs(3_600),
//!     Duration::from_secs(86_400),
//! ])?
//! .forgive_after(Duration::from_secs(86_400))?;
//! let login = Throttle::builder("login", "5/15min".parse()?)
//!     .strategy(FixedWindow)
//!     .build(backend)?
//!     .penalized(penalty)?;
//!
//! let decision = login.hit("alice@example.com").await?;
//! if !decision.is_allowed() {
//!     println!("locked out for {:?}", decision.retry_after());
//! }
//! # Ok(()) }
//! ```
//!
//! # How it is stored
//!
//! Two more keys per identity, in the throttle's own backend, so a lockout
//! works wherever the throttle does and is shared as widely:
//!
//! | key | strategy | holds |
//! |---|---|---|
//! | `namespace:name!block:identity` | GCRA, 1 per block, burst 1 | blocked until (one timestamp) |
//! | `namespace:name!offences:identity` | leaky bucket, 1 per quiet period, burst = steps | the offence count, draining |
//!
//! A block is one GCRA hit of "1 per block duration": until that time
//! passes, a peek is denied with exactly the time left. The offence count
//! is a leaky bucket that holds up to one offence per step and drains one
//! per quiet period. Neither needs a backend operation of its own, and each
//! expires with its own time to live.
//!
//! # What counts as an offence
//!
//! A hit the throttle denies for being over its limit. Requests denied by
//! the block itself do not count: a client that keeps knocking while
//! locked out does not lock itself out for longer (nor does it reach the
//! throttle).
//!
//! # How long a block lasts
//!
//! The offence's step, or the throttle's own wait if that is longer: a
//! block never ends while the throttle is still full, so the first request
//! after it, right or wrong, is not at once another offence. With a limit
//! of 5 per 15 minutes and steps of 1 minute, 5 minutes and an hour, five
//! quick failures block until the first of them leaves the window (15
//! minutes); a breach after that blocks for 5 minutes or until the window
//! has room, whichever is longer.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Key, Scope};
use crate::{Clock, ConfigError, Decision, Error, LeakyBucket, Limit, Rate, Reason, Throttle};

/// The longest block: about 34 years. Every block is at most this long, so
/// one peek limit reads every block exactly.
pub const MAX_BLOCK: Duration = Duration::from_millis(MAX_BLOCK_MS);

/// [`MAX_BLOCK`] in milliseconds.
const MAX_BLOCK_MS: u64 = 1 << 40;

/// The most steps a penalty may have.
pub const MAX_STEPS: usize = 64;

/// How long a key that breaches its limit is blocked, by offence: the
/// first offence blocks for the first step, the second for the second, and
/// every offence past the last step for the last. Offences are forgiven
/// one per quiet period ([`forgive_after`](Penalty::forgive_after),
/// default one day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Penalty {
    steps_ms: Box<[u64]>,
    forgive_ms: u64,
}

impl Penalty {
    /// Blocks for `steps[n - 1]` at the `n`th offence (the last step for
    /// any offence past them).
    ///
    /// # Errors
    ///
    /// When there is no step or more than [`MAX_STEPS`], or a step is
    /// shorter than a millisecond or longer than [`MAX_BLOCK`].
    pub fn escalating(steps: impl IntoIterator<Item = Duration>) -> Result<Penalty, ConfigError> {
        let steps_ms = steps
            .into_iter()
            .map(|step| millis("a penalty step", step))
            .collect::<Result<Box<[u64]>, ConfigError>>()?;
        if steps_ms.is_empty() || steps_ms.len() > MAX_STEPS {
            return Err(ConfigError::new(format!(
                "a penalty needs 1 to {MAX_STEPS} steps, not {}",
                steps_ms.len()
            )));
        }
        Ok(Penalty {
            steps_ms,
            forgive_ms: 86_400_000,
        })
    }

    /// A block of `duration` at every offence.
    ///
    /// # Errors
    ///
    /// As [`escalating`](Penalty::escalating).
    pub fn fixed(duration: Duration) -> Result<Penalty, ConfigError> {
        Penalty::escalating([duration])
    }

    /// How long without an offence forgives one (default: one day). After
    /// `n` quiet periods, `n` offences are forgotten; a key with none left
    /// starts again at the first step.
    ///
    /// # Errors
    ///
    /// When `quiet` is shorter than a millisecond or longer than
    /// [`MAX_BLOCK`].
    pub fn forgive_after(mut self, quiet: Duration) -> Result<Penalty, ConfigError> {
        self.forgive_ms = millis("a penalty's quiet period", quiet)?;
        Ok(self)
    }

    /// The blocks, by offence.
    pub fn steps(&self) -> impl Iterator<Item = Duration> + '_ {
        self.steps_ms.iter().map(|&ms| Duration::from_millis(ms))
    }

    /// How long without an offence forgives one.
    pub fn forgiven_after(&self) -> Duration {
        Duration::from_millis(self.forgive_ms)
    }

    /// The block of the `n`th offence (from 1), in ms.
    fn block_ms(&self, offences: u64) -> u64 {
        let last = self.steps_ms.len() - 1;
        let at = usize::try_from(offences.saturating_sub(1)).map_or(last, |n| n.min(last));
        self.steps_ms[at]
    }
}

fn millis(what: &str, duration: Duration) -> Result<u64, ConfigError> {
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 || duration > MAX_BLOCK {
        return Err(ConfigError::new(format!(
            "{what} must be from 1 ms to {} days, not {duration:?}",
            MAX_BLOCK.as_secs() / 86_400
        )));
    }
    Ok(ms)
}

/// "1 per `ms`", burst 1: one hit blocks for `ms`.
fn block_limit(ms: u64) -> Result<Limit, ConfigError> {
    Limit::block(Duration::from_millis(ms))
}

/// A [`Throttle`] with a [`Penalty`]: built with [`Throttle::penalized`].
///
/// [`hit`](Lockout::hit) answers a blocked key with a denial of reason
/// [`Reason::Blocked`] and the block's time left, without touching the
/// throttle; otherwise it hits the throttle, and a denial over the limit
/// is an offence that blocks the key.
#[derive(Debug)]
pub struct Lockout<B, C = crate::SystemClock> {
    throttle: Arc<Throttle<B, C>>,
    penalty: Penalty,
    blocks: Arc<Scope>,
    offences: Arc<Scope>,
    /// One limit per step: a hit of it blocks for that step.
    step_limits: Box<[Limit]>,
    /// Reads every block exactly: the longest there can be.
    peek_limit: Limit,
    offence_limit: Limit,
}

impl<B, C> Clone for Lockout<B, C> {
    fn clone(&self) -> Self {
        Lockout {
            throttle: Arc::clone(&self.throttle),
            penalty: self.penalty.clone(),
            blocks: Arc::clone(&self.blocks),
            offences: Arc::clone(&self.offences),
            step_limits: self.step_limits.clone(),
            peek_limit: self.peek_limit.clone(),
            offence_limit: self.offence_limit.clone(),
        }
    }
}

impl<B: Backend, C: Clock> Throttle<B, C> {
    /// This throttle with `penalty`: a key that breaches it is blocked for
    /// longer at each repeat offence. See [`Lockout`].
    ///
    /// # Errors
    ///
    /// When the penalty's keys cannot be named (never for a throttle that
    /// was built), or its quiet period is too long for its steps.
    pub fn penalized(self, penalty: Penalty) -> Result<Lockout<B, C>, ConfigError> {
        let steps = NonZeroU64::new(penalty.steps_ms.len() as u64).unwrap_or(NonZeroU64::MIN);
        let forgive = Rate::new(1, Duration::from_millis(penalty.forgive_ms))
            .map_err(|error| ConfigError::new(format!("a penalty's quiet period: {error}")))?;
        let offence_limit = Limit::new(forgive, LeakyBucket::with_burst(steps))?;
        let step_limits = penalty
            .steps_ms
            .iter()
            .map(|&ms| block_limit(ms))
            .collect::<Result<Box<[Limit]>, ConfigError>>()?;
        let peek_limit = block_limit(MAX_BLOCK_MS)?;
        Ok(Lockout {
            blocks: Arc::new(self.scope().derived("!block")),
            offences: Arc::new(self.scope().derived("!offences")),
            throttle: Arc::new(self),
            penalty,
            step_limits,
            peek_limit,
            offence_limit,
        })
    }
}

impl<B: Backend, C: Clock> Lockout<B, C> {
    /// The throttle.
    pub fn throttle(&self) -> &Throttle<B, C> {
        &self.throttle
    }

    /// The throttle, shared.
    pub fn shared_throttle(&self) -> &Arc<Throttle<B, C>> {
        &self.throttle
    }

    /// The penalty.
    pub fn penalty(&self) -> &Penalty {
        &self.penalty
    }

    /// Hits `identity` once: see [`hit_n`](Lockout::hit_n).
    pub async fn hit(&self, identity: &str) -> Result<Decision, Error> {
        self.hit_n(identity, 1).await
    }

    /// A blocked key is denied ([`Reason::Blocked`]) without a hit;
    /// otherwise the throttle decides, and a denial over the limit blocks
    /// the key (its `retry_after` is then the block's).
    ///
    /// A store that fails is the throttle's failure policy, as for
    /// [`Throttle::hit`]. A denial whose offence cannot be recorded (the
    /// store failed just then) stands, without a block.
    pub async fn hit_n(&self, identity: &str, cost: u64) -> Result<Decision, Error> {
        let tag = identity.len();
        if let Some(blocked) = self.blocked_tagged(identity, tag).await? {
            self.throttle.record(&blocked);
            return Ok(blocked);
        }
        let decision = self.throttle.hit_n(identity, cost).await?;
        if decision.is_allowed() || decision.reason() != Reason::OverLimit {
            return Ok(decision);
        }
        Ok(self.offend_tagged(identity, tag, decision).await)
    }

    /// The denial a blocked `identity` gets, or `None` when it is not
    /// blocked. A store failure is the throttle's failure policy: `None`
    /// when it admits, the policy's denial when it denies, the error under
    /// [`FailurePolicy::Error`](crate::FailurePolicy::Error).
    pub async fn blocked(&self, identity: &str) -> Result<Option<Decision>, Error> {
        self.blocked_tagged(identity, identity.len()).await
    }

    /// [`blocked`](Lockout::blocked) for an identity whose first `tag`
    /// bytes name the client (see [`Key::with_tag`]).
    pub async fn blocked_tagged(
        &self,
        identity: &str,
        tag: usize,
    ) -> Result<Option<Decision>, Error> {
        let key = Key::with_tag(&self.blocks, identity, tag);
        let now = self.throttle.clock().now_ms();
        let capacity = self.throttle.limit().capacity();
        match self
            .throttle
            .backend()
            .peek(key, &self.peek_limit, now, 1)
            .await
        {
            Ok(block) if block.is_allowed() => Ok(None),
            Ok(block) => Ok(Some(Decision::blocked(capacity, block.retry_after_ms()))),
            Err(error) => {
                if error.kind().is_store_failure() {
                    self.throttle.failed(&error, now);
                }
                match self.throttle.decision_for_error(&error, capacity) {
                    Some(decision) if decision.is_allowed() => Ok(None),
                    Some(decision) => Ok(Some(decision)),
                    None => Err(error),
                }
            }
        }
    }

    /// How long `identity` (tagged by its first `tag` bytes) stays blocked,
    /// `None` when it is not, straight from the store: for an operator, so
    /// a store that fails is an error whatever the failure policy.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn block_left_tagged(
        &self,
        identity: &str,
        tag: usize,
    ) -> Result<Option<Duration>, Error> {
        let key = Key::with_tag(&self.blocks, identity, tag);
        let now = self.throttle.clock().now_ms();
        let block = self
            .throttle
            .backend()
            .peek(key, &self.peek_limit, now, 1)
            .await?;
        Ok((!block.is_allowed()).then(|| Duration::from_millis(block.retry_after_ms())))
    }

    /// Records an offence of `identity` now and blocks it for its step;
    /// returns `denial` (the throttle's) with the block's wait and reason
    /// [`Reason::Blocked`]. When the store fails, `denial` stands as it is.
    pub async fn offend_tagged(&self, identity: &str, tag: usize, denial: Decision) -> Decision {
        let now = self.throttle.clock().now_ms();
        let backend = self.throttle.backend();
        let key = Key::with_tag(&self.offences, identity, tag);
        let offences = match backend.hit(key, &self.offence_limit, now, 1).await {
            // Full: as many offences as there are steps, or more.
            Ok(count) => count.limit().saturating_sub(if count.is_allowed() {
                count.remaining()
            } else {
                0
            }),
            Err(error) => {
                self.throttle.failed(&error, now);
                return denial;
            }
        };
        let step_ms = self.penalty.block_ms(offences);
        let at = usize::try_from(offences.saturating_sub(1))
            .map_or(self.step_limits.len() - 1, |n| {
                n.min(self.step_limits.len() - 1)
            });
        // Never shorter than the throttle's own wait: a block that ended
        // while the throttle is still full would make the next request,
        // right or wrong, another offence at once.
        let block_ms = step_ms.max(denial.retry_after_ms().min(MAX_BLOCK_MS));
        let longer = (block_ms > step_ms)
            .then(|| block_limit(block_ms).ok())
            .flatten();
        let limit = longer.as_ref().unwrap_or(&self.step_limits[at]);
        let key = Key::with_tag(&self.blocks, identity, tag);
        match backend.hit(key, limit, now, 1).await {
            Ok(_) => Decision::blocked(denial.limit(), block_ms.max(denial.retry_after_ms())),
            Err(error) => {
                self.throttle.failed(&error, now);
                denial
            }
        }
    }

    /// Blocks `identity` for `duration` from now, whatever its offences
    /// (an operator's block). A block already in place is replaced.
    ///
    /// # Errors
    ///
    /// When the store fails, or `duration` is out of range (a
    /// [`Config`](crate::ErrorKind::Config) error).
    pub async fn block(&self, identity: &str, duration: Duration) -> Result<(), Error> {
        self.block_tagged(identity, identity.len(), duration).await
    }

    /// [`block`](Lockout::block) for an identity whose first `tag` bytes
    /// name the client, as [`blocked_tagged`](Lockout::blocked_tagged)
    /// will look for it (stores place a key by its tag).
    ///
    /// # Errors
    ///
    /// As [`block`](Lockout::block).
    pub async fn block_tagged(
        &self,
        identity: &str,
        tag: usize,
        duration: Duration,
    ) -> Result<(), Error> {
        let limit = millis("a block", duration)
            .and_then(block_limit)
            .map_err(|error| Error::new(crate::ErrorKind::Config, error.to_string()))?;
        let now = self.throttle.clock().now_ms();
        let backend = self.throttle.backend();
        let key = || Key::with_tag(&self.blocks, identity, tag);
        backend.reset(key(), &self.peek_limit, now).await?;
        backend.hit(key(), &limit, now, 1).await.map(|_| ())
    }

    /// Lifts the block on `identity` and forgets its offences: its next
    /// offence is a first one again.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn unblock(&self, identity: &str) -> Result<(), Error> {
        self.unblock_tagged(identity, identity.len()).await
    }

    /// [`unblock`](Lockout::unblock) for a tagged identity.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn unblock_tagged(&self, identity: &str, tag: usize) -> Result<(), Error> {
        let now = self.throttle.clock().now_ms();
        let backend = self.throttle.backend();
        backend
            .reset(
                Key::with_tag(&self.blocks, identity, tag),
                &self.peek_limit,
                now,
            )
            .await?;
        backend
            .reset(
                Key::with_tag(&self.offences, identity, tag),
                &self.offence_limit,
                now,
            )
            .await
    }

    /// How many offences of `identity` are not forgiven yet (at most the
    /// number of steps).
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn offences(&self, identity: &str) -> Result<u64, Error> {
        self.offences_tagged(identity, identity.len()).await
    }

    /// [`offences`](Lockout::offences) of a tagged identity.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn offences_tagged(&self, identity: &str, tag: usize) -> Result<u64, Error> {
        let now = self.throttle.clock().now_ms();
        let key = Key::with_tag(&self.offences, identity, tag);
        let count = self
            .throttle
            .backend()
            .peek(key, &self.offence_limit, now, 0)
            .await?;
        Ok(count.limit().saturating_sub(count.remaining()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any steps and quiet period either make a penalty or say why;
        /// any offence count gives one of the steps.
        #[test]
        fn any_durations_and_counts_are_total(
            steps in proptest::collection::vec(any::<u64>(), 0..70),
            quiet in any::<u64>(),
            offences in any::<u64>(),
        ) {
            let steps: Vec<Duration> = steps.into_iter().map(Duration::from_millis).collect();
            let made = Penalty::escalating(steps.clone())
                .and_then(|p| p.forgive_after(Duration::from_millis(quiet)));
            let valid = |ms: u64| (1..=1 << 40).contains(&ms);
            let all_valid = !steps.is_empty()
                && steps.len() <= MAX_STEPS
                && steps.iter().all(|d| valid(d.as_millis() as u64))
                && valid(quiet);
            prop_assert_eq!(made.is_ok(), all_valid);
            if let Ok(penalty) = made {
                let block = penalty.block_ms(offences);
                prop_assert!(penalty.steps_ms.contains(&block));
            }
        }
    }

    #[test]
    fn names_with_a_bang_are_refused() {
        let error = Scope::new("app", "login!block").unwrap_err();
        assert!(error.to_string().contains("'!'"), "{error}");
    }
}
