//! What a throttle records of its decisions, and how it enforces them.
//!
//! Decisions are counted through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): the library records, the application
//! installs an exporter. Each throttle registers its counters with the
//! recorder at its first decision and keeps the handles, so recording is one
//! increment (a no-op branch with no recorder). Install the recorder before
//! the first decision: a throttle that decided before it was installed keeps
//! counting into nothing.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `traffik_decisions_total` | `throttle`, `outcome` | decisions, by [`Outcome`] |
//! | `traffik_near_limit_total` | `throttle` | admitted hits that left less than a fifth of the limit |
//!
//! Labels are bounded: the throttle's name and the outcome, never the
//! identity.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::{Decision, Reason};

/// How a decision ended, as the metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Admitted and counted.
    Allowed,
    /// Denied.
    Denied,
    /// Would have been denied; shadow mode let it through.
    ShadowDenied,
    /// The backend failed and the failure policy admitted.
    FailureAllowed,
    /// The backend failed and the failure policy denied.
    FailureDenied,
    /// The backend failed and the failure policy returned the error.
    FailureError,
    /// The store could not answer and the fallback limiter decided
    /// (allowed or denied: see the decision).
    Fallback,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 7] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::ShadowDenied,
        Outcome::FailureAllowed,
        Outcome::FailureDenied,
        Outcome::FailureError,
        Outcome::Fallback,
    ];

    /// The `outcome` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::ShadowDenied => "shadow_denied",
            Outcome::FailureAllowed => "failure_allowed",
            Outcome::FailureDenied => "failure_denied",
            Outcome::FailureError => "failure_error",
            Outcome::Fallback => "fallback",
        }
    }

    /// The outcome of a decision the backend made (or the failure policy,
    /// for a `BackendFailure` reason).
    pub fn of(decision: &Decision) -> Outcome {
        match (decision.reason(), decision.is_allowed()) {
            (Reason::Shadowed, _) => Outcome::ShadowDenied,
            (Reason::BackendFailure, true) => Outcome::FailureAllowed,
            (Reason::BackendFailure, false) => Outcome::FailureDenied,
            (Reason::Fallback, _) => Outcome::Fallback,
            (_, true) => Outcome::Allowed,
            (_, false) => Outcome::Denied,
        }
    }
}

/// Whether a throttle's denials are enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Enforcement {
    /// Denials deny (the default).
    #[default]
    Enforce,
    /// Nothing is denied: a hit that would be is let through, uncounted,
    /// with [`Reason::Shadowed`], and counted as `shadow_denied`. For trying
    /// a limit before enforcing it.
    Shadow,
    /// Denials deny for this many identities per 10,000, chosen by a stable
    /// hash of the identity (a client never flips between modes), and are
    /// shadowed for the rest: a gradual rollout.
    Partial {
        /// Identities per 10,000 whose denials are enforced (at most 10,000).
        per_10k: u16,
    },
}

impl Enforcement {
    /// Enforced for `percent` of identities (clamped to 0–100).
    pub fn percent(percent: f64) -> Enforcement {
        let per_10k = (percent.clamp(0.0, 100.0) * 100.0).round();
        // In 0..=10_000 after the clamp: the cast cannot wrap.
        Enforcement::Partial {
            per_10k: per_10k as u16,
        }
    }

    /// Whether a denial of `identity` is enforced.
    pub fn enforces(self, identity: &str) -> bool {
        match self {
            Enforcement::Enforce => true,
            Enforcement::Shadow => false,
            Enforcement::Partial { per_10k } => {
                // SipHash with fixed keys: the same in every process.
                let mut hasher = DefaultHasher::new();
                identity.hash(&mut hasher);
                hasher.finish() % 10_000 < u64::from(per_10k.min(10_000))
            }
        }
    }
}

/// A throttle's metric keys, and the handles the recorder gave for them.
#[derive(Debug)]
pub(crate) struct Instruments {
    #[cfg(feature = "metrics")]
    decisions: Vec<metrics::Key>,
    #[cfg(feature = "metrics")]
    near_limit: metrics::Key,
    /// The counters, registered with the recorder at the first decision
    /// (one per outcome, then near-limit): recording is then one increment,
    /// a no-op branch when no recorder was installed.
    #[cfg(feature = "metrics")]
    handles: std::sync::OnceLock<Box<[metrics::Counter]>>,
}

#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new("traffik", metrics::Level::INFO, Some("traffik_core"));

impl Instruments {
    pub(crate) fn new(throttle: &str) -> Instruments {
        let _ = throttle;
        Instruments {
            #[cfg(feature = "metrics")]
            decisions: Outcome::ALL
                .iter()
                .map(|outcome| {
                    metrics::Key::from_parts(
                        "traffik_decisions_total",
                        vec![
                            metrics::Label::new("throttle", throttle.to_owned()),
                            metrics::Label::from_static_parts("outcome", outcome.as_str()),
                        ],
                    )
                })
                .collect(),
            #[cfg(feature = "metrics")]
            near_limit: metrics::Key::from_parts(
                "traffik_near_limit_total",
                vec![metrics::Label::new("throttle", throttle.to_owned())],
            ),
            #[cfg(feature = "metrics")]
            handles: std::sync::OnceLock::new(),
        }
    }

    /// The counters, registered on first use with the recorder in force.
    #[cfg(feature = "metrics")]
    #[inline]
    fn handles(&self) -> &[metrics::Counter] {
        self.handles.get_or_init(|| {
            metrics::with_recorder(|recorder| {
                self.decisions
                    .iter()
                    .chain([&self.near_limit])
                    .map(|key| recorder.register_counter(key, &METADATA))
                    .collect()
            })
        })
    }

    /// Counts one decision.
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, decision: Option<&Decision>) {
        #[cfg(feature = "metrics")]
        {
            let handles = self.handles();
            // `ALL` lists the outcomes in declaration order.
            if let Some(counter) = handles.get(outcome as usize) {
                counter.increment(1);
            }
            // Near the limit: an admitted hit that left less than a fifth.
            if let Some(decision) = decision {
                let near = outcome == Outcome::Allowed
                    && decision.remaining().saturating_mul(5) < decision.limit();
                if near {
                    if let Some(counter) = handles.get(Outcome::ALL.len()) {
                        counter.increment(1);
                    }
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (outcome, decision);
    }
}

/// A decision's debug span (feature `tracing`): when a subscriber wants
/// it, the time the decision started; the span itself is made when the
/// decision is known, with the throttle, the outcome and the latency. Plain
/// data, so a decision nobody traces carries nothing that needs dropping.
#[derive(Clone, Copy)]
pub(crate) struct DecisionSpan {
    /// When a subscriber wanted the span at the start of a decision that
    /// waits; `None` when none did, or when the decision is immediate.
    #[cfg(feature = "tracing")]
    started: Option<std::time::Instant>,
    /// The decision was known at once (an in-memory backend): whether a
    /// span is wanted is asked at its end, and its latency is 0 µs.
    #[cfg(feature = "tracing")]
    immediate: bool,
}

/// Whether a subscriber wants decision spans: the global level first (one
/// atomic load when no subscriber wants debug events), then the callsite.
#[cfg(feature = "tracing")]
#[inline]
fn wanted() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
        && tracing::enabled!(target: "traffik", tracing::Level::DEBUG)
}

impl DecisionSpan {
    /// The span of a decision that is known at once (`immediate`) or about
    /// to be waited for.
    #[inline]
    pub(crate) fn start(immediate: bool) -> DecisionSpan {
        let _ = immediate;
        DecisionSpan {
            #[cfg(feature = "tracing")]
            started: if immediate {
                None
            } else {
                wanted().then(std::time::Instant::now)
            },
            #[cfg(feature = "tracing")]
            immediate,
        }
    }

    #[inline]
    pub(crate) fn finish(self, throttle: &str, outcome: Outcome) {
        #[cfg(feature = "tracing")]
        {
            if let Some(started) = self.started {
                emit(throttle, outcome, Some(started));
            } else if self.immediate && wanted() {
                emit(throttle, outcome, None);
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (throttle, outcome);
    }
}

#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn emit(throttle: &str, outcome: Outcome, started: Option<std::time::Instant>) {
    let micros = started.map_or(0, |started| {
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
    });
    let span = tracing::debug_span!(
        target: "traffik",
        "traffik.decide",
        throttle = throttle,
        outcome = outcome.as_str(),
        latency_us = micros,
    );
    drop(span);
}

/// Warns of store failures (feature `tracing`), at most once a second per
/// throttle, so that an outage does not flood the logs.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    #[cfg(feature = "tracing")]
    last_s: std::sync::atomic::AtomicU64,
    #[cfg(feature = "tracing")]
    skipped: std::sync::atomic::AtomicU64,
}

impl FailureLog {
    #[inline]
    pub(crate) fn failed(&self, throttle: &str, error: &crate::Error, now_ms: u64) {
        #[cfg(feature = "tracing")]
        {
            use std::sync::atomic::Ordering;
            let now_s = now_ms / 1_000;
            let last = self.last_s.load(Ordering::Relaxed);
            let due = now_s > last
                && self
                    .last_s
                    .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            if due {
                let skipped = self.skipped.swap(0, Ordering::Relaxed);
                tracing::warn!(
                    target: "traffik",
                    throttle,
                    kind = ?error.kind(),
                    skipped,
                    "the store failed a decision: {error}"
                );
            } else {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = (throttle, error, now_ms);
    }
}

#[cfg(feature = "metrics")]
static LAZY_METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new("traffik", metrics::Level::INFO, Some("traffik"));

#[cfg(feature = "metrics")]
fn lazy_key(name: &'static str, labels: &[(&'static str, &str)]) -> metrics::Key {
    metrics::Key::from_parts(
        name,
        labels
            .iter()
            .map(|&(label, value)| metrics::Label::new(label, value.to_owned()))
            .collect::<Vec<_>>(),
    )
}

macro_rules! lazy_handle {
    ($(#[$doc:meta])* $name:ident, $handle:ident, $register:ident, $method:ident($arg:ident: $ty:ty)) => {
        $(#[$doc])*
        ///
        /// The handle is registered with the recorder in force at its first
        /// use and kept, so recording is one call on it; without the
        /// `metrics` feature it records nothing and costs nothing.
        #[derive(Debug)]
        pub struct $name {
            #[cfg(feature = "metrics")]
            key: metrics::Key,
            #[cfg(feature = "metrics")]
            handle: std::sync::OnceLock<metrics::$handle>,
        }

        impl $name {
            /// The metric `name` with `labels` (keep their values bounded:
            /// never an identity).
            pub fn new(name: &'static str, labels: &[(&'static str, &str)]) -> $name {
                let _ = (name, labels);
                $name {
                    #[cfg(feature = "metrics")]
                    key: lazy_key(name, labels),
                    #[cfg(feature = "metrics")]
                    handle: std::sync::OnceLock::new(),
                }
            }

            #[doc = concat!("Records `", stringify!($arg), "`.")]
            #[inline]
            pub fn $method(&self, $arg: $ty) {
                #[cfg(feature = "metrics")]
                self.handle
                    .get_or_init(|| {
                        metrics::with_recorder(|recorder| recorder.$register(&self.key, &LAZY_METADATA))
                    })
                    .$method($arg);
                #[cfg(not(feature = "metrics"))]
                let _ = $arg;
            }
        }
    };
}

lazy_handle!(
    /// A counter of the `metrics` facade.
    LazyCounter, Counter, register_counter, increment(by: u64)
);
lazy_handle!(
    /// A gauge of the `metrics` facade.
    LazyGauge, Gauge, register_gauge, set(value: f64)
);
lazy_handle!(
    /// A histogram of the `metrics` facade.
    LazyHistogram, Histogram, register_histogram, record(value: f64)
);
