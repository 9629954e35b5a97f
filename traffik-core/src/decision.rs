//! [`Decision`]: the answer to one hit.

use std::time::Duration;

/// Why a [`Decision`] came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The hit fit in the quota and was counted.
    WithinLimit,
    /// The quota is used up for now; see [`Decision::retry_after`].
    OverLimit,
    /// The hit costs more than the strategy can ever admit at once (more than
    /// the limit, or more than the burst). Waiting will not help:
    /// [`Decision::retry_after`] is [`Duration::MAX`].
    CostExceedsCapacity,
    /// The backend failed and the throttle's
    /// [`FailurePolicy`](crate::FailurePolicy) decided instead.
    BackendFailure,
    /// The key was too hot to decide: concurrent writers kept winning the
    /// race for it until the decision gave up. Denied (nothing counted): a
    /// key that busy is being hit hard, and an admission would be a guess.
    Contended,
    /// The throttle would have denied the hit (it was not counted), but it
    /// runs in shadow for this identity ([`Enforcement`](crate::Enforcement)):
    /// the hit is let through. The decision's quota figures are those of the
    /// denial.
    Shadowed,
    /// The store could not answer, and the throttle's fallback limiter
    /// ([`FailurePolicy::Fallback`](crate::FailurePolicy::Fallback)) decided
    /// on this process's share of the limit: allowed or denied as that
    /// share says, with its quota figures.
    Fallback,
    /// The key is blocked by a [`Lockout`](crate::Lockout) after breaching
    /// its limit: denied without being counted, until
    /// [`Decision::retry_after`].
    Blocked,
}

/// The answer to one hit: allowed or not, and the quota around it.
///
/// All durations are exact to the millisecond. A denied hit consumed nothing.
///
/// - [`remaining`](Decision::remaining): how much more cost would be admitted
///   right now.
/// - [`retry_after`](Decision::retry_after): zero when allowed; when denied,
///   how long until a hit of the same cost would pass (if nothing else hits
///   the key meanwhile).
/// - [`reset_after`](Decision::reset_after): how long until the quota is full
///   again (zero when it is full).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    allowed: bool,
    reason: Reason,
    limit: u64,
    remaining: u64,
    retry_after_ms: u64,
    reset_after_ms: u64,
}

impl Decision {
    /// A denial because the key was too contended to decide
    /// ([`Reason::Contended`]); retry after `retry_after_ms`.
    pub const fn contended(limit: u64, retry_after_ms: u64) -> Decision {
        Decision {
            allowed: false,
            reason: Reason::Contended,
            limit,
            remaining: 0,
            retry_after_ms,
            reset_after_ms: 0,
        }
    }

    /// A denial because the key is blocked ([`Reason::Blocked`]) for
    /// `retry_after_ms` more (at least 1); `limit` is the throttle's.
    pub const fn blocked(limit: u64, retry_after_ms: u64) -> Decision {
        let wait = if retry_after_ms == 0 {
            1
        } else {
            retry_after_ms
        };
        Decision {
            allowed: false,
            reason: Reason::Blocked,
            limit,
            remaining: 0,
            retry_after_ms: wait,
            reset_after_ms: wait,
        }
    }

    /// A denial that shadow mode lets through: allowed, with reason
    /// [`Reason::Shadowed`] and the denial's quota figures.
    pub const fn shadowed(denial: Decision) -> Decision {
        Decision {
            allowed: true,
            reason: Reason::Shadowed,
            ..denial
        }
    }

    /// A decision the fallback limiter made while the store could not
    /// answer: `decision`'s verdict and figures, with reason
    /// [`Reason::Fallback`].
    pub const fn via_fallback(decision: Decision) -> Decision {
        Decision {
            reason: Reason::Fallback,
            ..decision
        }
    }

    /// An admitted hit.
    pub const fn allowed(limit: u64, remaining: u64, reset_after_ms: u64) -> Decision {
        Decision {
            allowed: true,
            reason: Reason::WithinLimit,
            limit,
            remaining,
            retry_after_ms: 0,
            reset_after_ms,
        }
    }

    /// A hit denied because the quota is used up; `retry_after_ms` is at least 1.
    pub const fn denied(
        limit: u64,
        remaining: u64,
        retry_after_ms: u64,
        reset_after_ms: u64,
    ) -> Decision {
        Decision {
            allowed: false,
            reason: Reason::OverLimit,
            limit,
            remaining,
            retry_after_ms: if retry_after_ms == 0 {
                1
            } else {
                retry_after_ms
            },
            reset_after_ms,
        }
    }

    /// A hit denied because its cost exceeds what the strategy can ever admit.
    pub const fn cost_exceeds_capacity(
        limit: u64,
        remaining: u64,
        reset_after_ms: u64,
    ) -> Decision {
        Decision {
            allowed: false,
            reason: Reason::CostExceedsCapacity,
            limit,
            remaining,
            retry_after_ms: u64::MAX,
            reset_after_ms,
        }
    }

    /// A decision made by a [`FailurePolicy`](crate::FailurePolicy) because the
    /// backend failed: nothing is known about the quota, so `remaining` is
    /// reported as the full limit when allowed and zero when denied.
    pub const fn backend_failure(allowed: bool, limit: u64, retry_after_ms: u64) -> Decision {
        Decision {
            allowed,
            reason: Reason::BackendFailure,
            limit,
            remaining: if allowed { limit } else { 0 },
            retry_after_ms: if allowed { 0 } else { retry_after_ms },
            reset_after_ms: 0,
        }
    }

    /// Whether the hit was admitted.
    #[inline]
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Why the decision came out this way.
    pub const fn reason(&self) -> Reason {
        self.reason
    }

    /// The most cost the quota can hold: the rate's count, or the burst for
    /// the bucket strategies.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// How much more cost would be admitted right now.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Zero when allowed; otherwise how long until a hit of the same cost would
    /// pass, at least one millisecond. [`Duration::MAX`] when it never will
    /// ([`Reason::CostExceedsCapacity`]).
    pub const fn retry_after(&self) -> Duration {
        if self.retry_after_ms == u64::MAX {
            Duration::MAX
        } else {
            Duration::from_millis(self.retry_after_ms)
        }
    }

    /// [`retry_after`](Decision::retry_after) in milliseconds (`u64::MAX`
    /// for never).
    pub const fn retry_after_ms(&self) -> u64 {
        self.retry_after_ms
    }

    /// How long until the quota is full again.
    pub const fn reset_after(&self) -> Duration {
        Duration::from_millis(self.reset_after_ms)
    }

    /// [`reset_after`](Decision::reset_after) in milliseconds.
    pub const fn reset_after_ms(&self) -> u64 {
        self.reset_after_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_never_says_retry_now() {
        let decision = Decision::denied(10, 0, 0, 5);
        assert!(!decision.is_allowed());
        assert_eq!(decision.retry_after(), Duration::from_millis(1));
    }

    #[test]
    fn an_oversized_cost_never_passes() {
        let decision = Decision::cost_exceeds_capacity(10, 10, 0);
        assert_eq!(decision.retry_after(), Duration::MAX);
        assert_eq!(decision.reason(), Reason::CostExceedsCapacity);
    }

    #[test]
    fn backend_failure_decisions_follow_the_verdict() {
        let open = Decision::backend_failure(true, 10, 1_000);
        assert!(open.is_allowed());
        assert_eq!((open.remaining(), open.retry_after_ms()), (10, 0));
        let closed = Decision::backend_failure(false, 10, 1_000);
        assert_eq!((closed.remaining(), closed.retry_after_ms()), (0, 1_000));
    }
}
