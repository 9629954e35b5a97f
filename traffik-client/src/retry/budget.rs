use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use traffik_backends::AnyBackend;
use traffik_core::{ConfigError, Gcra, Rate, Throttle};

use crate::TokioClock;

/// How many retries the recent calls have earned: a fraction of them, plus
/// a small allowance per second, banked up to a maximum.
///
/// It is one bucket in a traffik store. Each call deposits one unit; a
/// retry takes `1 / ratio` units. The bucket also refills at
/// `min_per_second` retries a second, and holds at most `max_banked`
/// retries. So, over any time `t`, retries ≤ `max_banked + min_per_second
/// × t + ratio × calls`, exactly: the credit is one bounded number, not a
/// sum of per-window allowances that can add up to more (tower's
/// `TpsBudget`, tower-rs/tower#857).
///
/// On a shared store (Redis, Memcached), the whole fleet draws on one
/// budget: when the upstream fails for everyone, everyone stops retrying
/// together. Deposits are written lazily, with the next withdrawal, so a
/// call that is not retried costs no round trip.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    throttle: Throttle<AnyBackend, TokioClock>,
    /// Units one retry takes.
    unit: u64,
    /// Deposits not written yet.
    pending: AtomicU64,
}

const IDENTITY: &str = "retries";

/// Builds a [`RetryBudget`].
#[derive(Debug)]
pub struct RetryBudgetBuilder {
    name: String,
    ratio: f64,
    min_per_second: u32,
    max_banked: u32,
    backend: Option<AnyBackend>,
    clock: TokioClock,
}

impl RetryBudget {
    /// A budget named `name` (its key in the store): by default 20 % of
    /// calls, plus 1 retry a second, banking at most 10.
    pub fn builder(name: impl Into<String>) -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            name: name.into(),
            ratio: 0.2,
            min_per_second: 1,
            max_banked: 10,
            backend: None,
            clock: TokioClock::new(),
        }
    }

    /// A call was made: it earns `ratio` of a retry.
    pub fn deposit(&self) {
        self.inner.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry's worth, if the budget has it. A store that fails
    /// refuses the retry (a sick store is no time to retry more).
    pub async fn withdraw(&self) -> bool {
        let inner = &self.inner;
        let pending = inner.pending.swap(0, Ordering::Relaxed);
        if pending > 0 {
            let now = traffik_core::Clock::now_ms(inner.throttle.clock());
            if inner.throttle.refund(IDENTITY, now, pending).await.is_err() {
                inner.pending.fetch_add(pending, Ordering::Relaxed);
            }
        }
        matches!(inner.throttle.hit_n(IDENTITY, inner.unit).await, Ok(d) if d.is_allowed())
    }
}

impl RetryBudgetBuilder {
    /// The share of calls that may be retried (clamped to 0.001..=1).
    pub fn ratio(mut self, ratio: f64) -> RetryBudgetBuilder {
        self.ratio = if ratio.is_nan() {
            0.001
        } else {
            ratio.clamp(0.001, 1.0)
        };
        self
    }

    /// Retries allowed each second whatever the calls (at least 1).
    pub fn min_per_second(mut self, retries: u32) -> RetryBudgetBuilder {
        self.min_per_second = retries.max(1);
        self
    }

    /// The most retries banked (at least 1).
    pub fn max_banked(mut self, retries: u32) -> RetryBudgetBuilder {
        self.max_banked = retries.max(1);
        self
    }

    /// The store (default: in-memory, this process alone).
    pub fn backend(mut self, backend: AnyBackend) -> RetryBudgetBuilder {
        self.backend = Some(backend);
        self
    }

    /// The clock (default: a new [`TokioClock`]).
    pub fn clock(mut self, clock: TokioClock) -> RetryBudgetBuilder {
        self.clock = clock;
        self
    }

    /// The budget.
    ///
    /// # Errors
    ///
    /// When the name is not valid for a throttle.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let unit = (1.0 / self.ratio).round().max(1.0) as u64;
        let backend = match self.backend {
            Some(backend) => backend,
            None => AnyBackend::Memory(traffik_backends::memory::MemoryBackend::new()),
        };
        let refill = Rate::new(
            u64::from(self.min_per_second).saturating_mul(unit),
            Duration::from_secs(1),
        )
        .map_err(|e| ConfigError::new(e.to_string()))?;
        let burst = std::num::NonZeroU64::new(u64::from(self.max_banked).saturating_mul(unit))
            .unwrap_or(std::num::NonZeroU64::MIN);
        let throttle = Throttle::builder(self.name, refill)
            .namespace("traffik-client")
            .strategy(Gcra::with_burst(burst))
            .failure_policy(traffik_core::FailurePolicy::Deny)
            .clock(self.clock)
            .build(backend)?;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                throttle,
                unit,
                pending: AtomicU64::new(0),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_calls_plus_the_allowance() {
        let budget = RetryBudget::builder("b")
            .ratio(0.1)
            .min_per_second(1)
            .max_banked(2)
            .build()
            .unwrap();
        // The bank: two retries.
        assert!(budget.withdraw().await);
        assert!(budget.withdraw().await);
        assert!(!budget.withdraw().await, "the bank is empty");
        // Ten calls earn one retry.
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.withdraw().await);
        assert!(!budget.withdraw().await);
        // A second earns the allowance.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(budget.withdraw().await);
        assert!(!budget.withdraw().await);
        // Deposits never bank past the maximum.
        for _ in 0..1_000 {
            budget.deposit();
        }
        assert!(budget.withdraw().await);
        assert!(budget.withdraw().await);
        assert!(!budget.withdraw().await);
    }
}
