use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use super::{
    FixedWindow, Gcra, LeakyBucket, SlidingWindowCounter, SlidingWindowLog, Strategy, TokenBucket,
};
use crate::{ConfigError, Rate};

/// The name of a strategy, without its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StrategyKind {
    /// [`FixedWindow`].
    FixedWindow,
    /// [`SlidingWindowCounter`].
    SlidingWindowCounter,
    /// [`SlidingWindowLog`].
    SlidingWindowLog,
    /// [`TokenBucket`].
    TokenBucket,
    /// [`LeakyBucket`].
    LeakyBucket,
    /// [`Gcra`].
    Gcra,
}

impl StrategyKind {
    /// All six, in the order of the docs.
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::FixedWindow,
        StrategyKind::SlidingWindowCounter,
        StrategyKind::SlidingWindowLog,
        StrategyKind::TokenBucket,
        StrategyKind::LeakyBucket,
        StrategyKind::Gcra,
    ];

    /// The snake_case name, as used in configuration and in backend keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            StrategyKind::FixedWindow => "fixed_window",
            StrategyKind::SlidingWindowCounter => "sliding_window_counter",
            StrategyKind::SlidingWindowLog => "sliding_window_log",
            StrategyKind::TokenBucket => "token_bucket",
            StrategyKind::LeakyBucket => "leaky_bucket",
            StrategyKind::Gcra => "gcra",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any one of the six strategies with its settings: what a
/// [`Throttle`](crate::Throttle) is configured with, chosen at run time.
///
/// Every strategy type converts into it with `From`. It also parses from a
/// name: `"fixed_window"`, `"sliding_window_counter"`, `"sliding_window_log"`,
/// `"token_bucket"`, `"leaky_bucket"`, `"gcra"` (bucket strategies with the
/// default burst).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AnyStrategy {
    /// [`FixedWindow`].
    FixedWindow(FixedWindow),
    /// [`SlidingWindowCounter`].
    SlidingWindowCounter(SlidingWindowCounter),
    /// [`SlidingWindowLog`].
    SlidingWindowLog(SlidingWindowLog),
    /// [`TokenBucket`].
    TokenBucket(TokenBucket),
    /// [`LeakyBucket`].
    LeakyBucket(LeakyBucket),
    /// [`Gcra`].
    Gcra(Gcra),
}

impl AnyStrategy {
    /// Which strategy this is.
    pub fn kind(&self) -> StrategyKind {
        match self {
            AnyStrategy::FixedWindow(_) => StrategyKind::FixedWindow,
            AnyStrategy::SlidingWindowCounter(_) => StrategyKind::SlidingWindowCounter,
            AnyStrategy::SlidingWindowLog(_) => StrategyKind::SlidingWindowLog,
            AnyStrategy::TokenBucket(_) => StrategyKind::TokenBucket,
            AnyStrategy::LeakyBucket(_) => StrategyKind::LeakyBucket,
            AnyStrategy::Gcra(_) => StrategyKind::Gcra,
        }
    }

    /// The burst of a bucket strategy, if one was set.
    pub fn burst(&self) -> Option<NonZeroU64> {
        match self {
            AnyStrategy::TokenBucket(s) => s.burst(),
            AnyStrategy::LeakyBucket(s) => s.burst(),
            AnyStrategy::Gcra(s) => s.burst(),
            _ => None,
        }
    }

    /// The largest cost one hit can have and still be admitted under `rate`:
    /// the limit it reports in decisions.
    pub fn capacity(&self, rate: &Rate) -> u64 {
        match self {
            AnyStrategy::FixedWindow(s) => s.capacity(rate),
            AnyStrategy::SlidingWindowCounter(s) => s.capacity(rate),
            AnyStrategy::SlidingWindowLog(s) => s.capacity(rate),
            AnyStrategy::TokenBucket(s) => s.capacity(rate),
            AnyStrategy::LeakyBucket(s) => s.capacity(rate),
            AnyStrategy::Gcra(s) => s.capacity(rate),
        }
    }

    /// Checks that the strategy can compute exactly with `rate`.
    ///
    /// # Errors
    ///
    /// See [`Strategy::check`].
    pub fn check(&self, rate: &Rate) -> Result<(), ConfigError> {
        match self {
            AnyStrategy::FixedWindow(s) => s.check(rate),
            AnyStrategy::SlidingWindowCounter(s) => s.check(rate),
            AnyStrategy::SlidingWindowLog(s) => s.check(rate),
            AnyStrategy::TokenBucket(s) => s.check(rate),
            AnyStrategy::LeakyBucket(s) => s.check(rate),
            AnyStrategy::Gcra(s) => s.check(rate),
        }
    }
}

impl Default for AnyStrategy {
    /// [`Gcra`] with the default burst: smooth, exact, one timestamp per key.
    fn default() -> AnyStrategy {
        AnyStrategy::Gcra(Gcra::default())
    }
}

impl fmt::Display for AnyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.burst() {
            Some(burst) => write!(f, "{}(burst={burst})", self.kind()),
            None => write!(f, "{}", self.kind()),
        }
    }
}

impl From<StrategyKind> for AnyStrategy {
    fn from(kind: StrategyKind) -> AnyStrategy {
        match kind {
            StrategyKind::FixedWindow => FixedWindow.into(),
            StrategyKind::SlidingWindowCounter => SlidingWindowCounter.into(),
            StrategyKind::SlidingWindowLog => SlidingWindowLog.into(),
            StrategyKind::TokenBucket => TokenBucket::default().into(),
            StrategyKind::LeakyBucket => LeakyBucket::default().into(),
            StrategyKind::Gcra => Gcra::default().into(),
        }
    }
}

impl FromStr for AnyStrategy {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<AnyStrategy, ConfigError> {
        let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
        StrategyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == wanted)
            .map(AnyStrategy::from)
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "unknown strategy {name:?}: expected one of fixed_window, \
                     sliding_window_counter, sliding_window_log, token_bucket, leaky_bucket, gcra"
                ))
            })
    }
}

macro_rules! impl_from_strategy {
    ($($name:ident),*) => {$(
        impl From<$name> for AnyStrategy {
            fn from(strategy: $name) -> AnyStrategy {
                AnyStrategy::$name(strategy)
            }
        }
    )*};
}

impl_from_strategy!(
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    LeakyBucket,
    Gcra
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in StrategyKind::ALL {
            let parsed: AnyStrategy = kind.as_str().parse().unwrap();
            assert_eq!(parsed.kind(), kind);
        }
        assert_eq!(
            "Token-Bucket".parse::<AnyStrategy>().unwrap().kind(),
            StrategyKind::TokenBucket
        );
        let err = "sliding".parse::<AnyStrategy>().unwrap_err().to_string();
        assert!(err.starts_with("unknown strategy \"sliding\""), "{err}");
    }

    #[test]
    fn capacity_is_the_burst_for_buckets_and_the_count_otherwise() {
        let rate: Rate = "10/s".parse().unwrap();
        let burst = NonZeroU64::new(25).unwrap();
        assert_eq!(AnyStrategy::from(FixedWindow).capacity(&rate), 10);
        assert_eq!(AnyStrategy::from(Gcra::default()).capacity(&rate), 10);
        assert_eq!(
            AnyStrategy::from(Gcra::with_burst(burst)).capacity(&rate),
            25
        );
        assert_eq!(
            AnyStrategy::from(TokenBucket::with_burst(burst)).to_string(),
            "token_bucket(burst=25)"
        );
    }
}
