//! The strategy table, [`AnyStrategy`] and its [`Visitor`].

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use super::{
    FixedWindow, Gcra, LeakyBucket, SlidingWindowCounter, SlidingWindowLog, State, Storage,
    Strategy, TokenBucket,
};
use crate::{ConfigError, Decision, Rate};

/// Code that works with any strategy, given its concrete type: what
/// [`AnyStrategy::visit`] calls. Backends implement it once, generic over
/// [`Strategy`], and so run every strategy in the table.
pub trait Visitor {
    /// What the visit returns.
    type Output;

    /// Runs with the strategy's concrete type.
    fn visit<S: Strategy>(self, strategy: &S) -> Self::Output;
}

/// Generates [`StrategyKind`], [`AnyStrategy`], [`AnyStrategy::visit`] and the
/// conversions from one list of `Type => "name"` rows.
macro_rules! strategy_table {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// The name of a strategy, without its settings: one per row of the
        /// strategy table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum StrategyKind {
            $(
                #[doc = concat!("[`", stringify!($variant), "`].")]
                $variant,
            )*
        }

        impl StrategyKind {
            /// How many strategies the table lists.
            pub const COUNT: usize = [$($name),*].len();

            /// Every strategy, in the table's order.
            pub const ALL: [StrategyKind; StrategyKind::COUNT] = [$(StrategyKind::$variant),*];

            /// The snake_case name, as used in configuration, backend keys and
            /// the file names of the Redis scripts.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(StrategyKind::$variant => $name,)*
                }
            }

            /// The position in [`ALL`](StrategyKind::ALL), for tables indexed
            /// by strategy.
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        /// Any one of the strategies with its settings: what a
        /// [`Throttle`](crate::Throttle) is configured with, chosen at run time.
        ///
        /// Every strategy type converts into it with `From`. It also parses
        /// from a name such as `"gcra"` or `"sliding_window_log"` (bucket
        /// strategies with the default burst).
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AnyStrategy {
            $(
                #[doc = concat!("[`", stringify!($variant), "`].")]
                $variant($variant),
            )*
        }

        impl AnyStrategy {
            /// Calls `visitor` with the strategy's concrete type: the one
            /// dispatch every backend uses.
            #[inline]
            pub fn visit<V: Visitor>(&self, visitor: V) -> V::Output {
                match self {
                    $(AnyStrategy::$variant(strategy) => visitor.visit(strategy),)*
                }
            }

            /// Which strategy this is.
            pub const fn kind(&self) -> StrategyKind {
                match self {
                    $(AnyStrategy::$variant(_) => StrategyKind::$variant,)*
                }
            }
        }

        impl From<StrategyKind> for AnyStrategy {
            fn from(kind: StrategyKind) -> AnyStrategy {
                match kind {
                    $(StrategyKind::$variant => AnyStrategy::$variant(<$variant>::default()),)*
                }
            }
        }

        $(
            impl From<$variant> for AnyStrategy {
                fn from(strategy: $variant) -> AnyStrategy {
                    AnyStrategy::$variant(strategy)
                }
            }
        )*
    };
}

// The strategy table: the one place that lists the strategies.
strategy_table! {
    FixedWindow => "fixed_window",
    SlidingWindowCounter => "sliding_window_counter",
    SlidingWindowLog => "sliding_window_log",
    TokenBucket => "token_bucket",
    LeakyBucket => "leaky_bucket",
    Gcra => "gcra",
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored state that does not decode as the strategy's state: the store
/// holds something traffik did not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UndecodableState(pub StrategyKind);

impl fmt::Display for UndecodableState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the stored value is not a {} state", self.0)
    }
}

impl std::error::Error for UndecodableState {}

impl AnyStrategy {
    /// The burst of a bucket strategy, if one was set.
    pub fn burst(&self) -> Option<NonZeroU64> {
        struct Burst;
        impl Visitor for Burst {
            type Output = Option<NonZeroU64>;
            fn visit<S: Strategy>(self, strategy: &S) -> Option<NonZeroU64> {
                strategy.burst()
            }
        }
        self.visit(Burst)
    }

    /// The largest cost one hit can have and still be admitted under `rate`:
    /// the limit it reports in decisions.
    pub fn capacity(&self, rate: &Rate) -> u64 {
        struct Capacity<'a>(&'a Rate);
        impl Visitor for Capacity<'_> {
            type Output = u64;
            fn visit<S: Strategy>(self, strategy: &S) -> u64 {
                strategy.capacity(self.0)
            }
        }
        self.visit(Capacity(rate))
    }

    /// Checks that the strategy can compute exactly with `rate`.
    ///
    /// # Errors
    ///
    /// See [`Strategy::check`].
    pub fn check(&self, rate: &Rate) -> Result<(), ConfigError> {
        struct Check<'a>(&'a Rate);
        impl Visitor for Check<'_> {
            type Output = Result<(), ConfigError>;
            fn visit<S: Strategy>(self, strategy: &S) -> Result<(), ConfigError> {
                strategy.check(self.0)
            }
        }
        self.visit(Check(rate))
    }

    /// How remote stores keep this strategy's state.
    pub fn storage(&self) -> Storage {
        struct Layout;
        impl Visitor for Layout {
            type Output = Storage;
            fn visit<S: Strategy>(self, _: &S) -> Storage {
                S::STORAGE
            }
        }
        self.visit(Layout)
    }

    /// One hit (or, with `peek`, the decision without counting) on a state
    /// kept as bytes: `stored` is the [`State`] codec's bytes, `None` for a
    /// key with no state. Returns the decision and, when the state changed,
    /// its new bytes (in `out`, cleared first) to write back.
    ///
    /// # Errors
    ///
    /// When `stored` does not decode as this strategy's state.
    pub fn hit_encoded(
        &self,
        rate: &Rate,
        stored: Option<&[u8]>,
        now_ms: u64,
        cost: u64,
        peek: bool,
        out: &mut Vec<u8>,
    ) -> Result<(Decision, bool), UndecodableState> {
        struct Encoded<'a> {
            rate: &'a Rate,
            stored: Option<&'a [u8]>,
            now_ms: u64,
            cost: u64,
            peek: bool,
            out: &'a mut Vec<u8>,
        }
        impl Visitor for Encoded<'_> {
            type Output = Result<(Decision, bool), UndecodableState>;
            fn visit<S: Strategy>(self, strategy: &S) -> Self::Output {
                let mut state = match self.stored {
                    Some(bytes) => S::State::decode(bytes).ok_or(UndecodableState(S::KIND))?,
                    None => S::State::default(),
                };
                if self.peek {
                    let decision = strategy.peek(self.rate, &state, self.now_ms, self.cost);
                    return Ok((decision, false));
                }
                let decision = strategy.hit(self.rate, &mut state, self.now_ms, self.cost);
                let changed = decision.is_allowed() && self.cost > 0;
                self.out.clear();
                if changed {
                    state.encode(self.out);
                }
                Ok((decision, changed))
            }
        }
        self.visit(Encoded {
            rate,
            stored,
            now_ms,
            cost,
            peek,
            out,
        })
    }

    /// [`Strategy::refund`] on a state kept as bytes (`None`: no state, so
    /// nothing to give back). Returns whether the state changed, with its
    /// new bytes in `out` (cleared first).
    ///
    /// # Errors
    ///
    /// When `stored` does not decode as this strategy's state.
    pub fn refund_encoded(
        &self,
        rate: &Rate,
        stored: Option<&[u8]>,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
        out: &mut Vec<u8>,
    ) -> Result<bool, UndecodableState> {
        struct Encoded<'a> {
            rate: &'a Rate,
            stored: Option<&'a [u8]>,
            now_ms: u64,
            charged_ms: u64,
            cost: u64,
            out: &'a mut Vec<u8>,
        }
        impl Visitor for Encoded<'_> {
            type Output = Result<bool, UndecodableState>;
            fn visit<S: Strategy>(self, strategy: &S) -> Self::Output {
                self.out.clear();
                let Some(bytes) = self.stored else {
                    return Ok(false);
                };
                let mut state = S::State::decode(bytes).ok_or(UndecodableState(S::KIND))?;
                let before = state.clone();
                strategy.refund(
                    self.rate,
                    &mut state,
                    self.now_ms,
                    self.charged_ms,
                    self.cost,
                );
                let changed = state != before;
                if changed {
                    state.encode(self.out);
                }
                Ok(changed)
            }
        }
        self.visit(Encoded {
            rate,
            stored,
            now_ms,
            charged_ms,
            cost,
            out,
        })
    }

    /// For [`Storage::Counters`] strategies: the decision for a hit of `cost`
    /// (or a peek) given the counters of its windows as they were before the
    /// hit (see [`Strategy::state_from_counters`]).
    pub fn decide_on_counters(
        &self,
        rate: &Rate,
        now_ms: u64,
        counters: &[u64],
        cost: u64,
        peek: bool,
    ) -> Decision {
        struct Counters<'a> {
            rate: &'a Rate,
            now_ms: u64,
            counters: &'a [u64],
            cost: u64,
            peek: bool,
        }
        impl Visitor for Counters<'_> {
            type Output = Decision;
            fn visit<S: Strategy>(self, strategy: &S) -> Decision {
                let mut state = strategy.state_from_counters(self.rate, self.now_ms, self.counters);
                if self.peek {
                    strategy.peek(self.rate, &state, self.now_ms, self.cost)
                } else {
                    strategy.hit(self.rate, &mut state, self.now_ms, self.cost)
                }
            }
        }
        self.visit(Counters {
            rate,
            now_ms,
            counters,
            cost,
            peek,
        })
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

impl FromStr for AnyStrategy {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<AnyStrategy, ConfigError> {
        let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
        StrategyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == wanted)
            .map(AnyStrategy::from)
            .ok_or_else(|| {
                let names: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.as_str()).collect();
                let shown: String = name.chars().take(40).collect();
                ConfigError::new(format!(
                    "unknown strategy {shown:?}: expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in StrategyKind::ALL {
            let parsed: AnyStrategy = kind.as_str().parse().unwrap();
            assert_eq!(parsed.kind(), kind);
            assert_eq!(StrategyKind::ALL[kind.index()], kind);
        }
        assert_eq!(
            "Token-Bucket".parse::<AnyStrategy>().unwrap().kind(),
            StrategyKind::TokenBucket
        );
        let err = "sliding".parse::<AnyStrategy>().unwrap_err().to_string();
        assert!(err.starts_with("unknown strategy \"sliding\""), "{err}");
        assert!(err.contains("gcra"), "{err}");
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

    #[test]
    fn encoded_hits_match_typed_hits_and_reject_garbage() {
        let rate: Rate = "2/s".parse().unwrap();
        let gcra = AnyStrategy::from(Gcra::new());
        let mut bytes = Vec::new();
        let (first, changed) = gcra
            .hit_encoded(&rate, None, 1_000, 1, false, &mut bytes)
            .unwrap();
        assert!(first.is_allowed() && changed);
        let stored = bytes.clone();
        let (second, _) = gcra
            .hit_encoded(&rate, Some(&stored), 1_000, 1, false, &mut bytes)
            .unwrap();
        assert_eq!(second.remaining(), 0);
        let err = gcra
            .hit_encoded(&rate, Some(b"not a state"), 1_000, 1, false, &mut bytes)
            .unwrap_err();
        assert_eq!(err.to_string(), "the stored value is not a gcra state");
    }
}
