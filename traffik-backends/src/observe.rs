//! What the backends record (features `metrics` and `tracing`): store
//! latency, circuit-breaker transitions, deny-cache hits, the in-memory
//! store's keys and evictions.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `traffik_backend_latency_seconds` | histogram | `backend`, `operation` |
//! | `traffik_breaker_transitions_total` | counter | `backend`, `to` |
//! | `traffik_breaker_open` | gauge (0 or 1) | `backend`, `target` |
//! | `traffik_deny_cache_hits_total` | counter | `backend` |
//! | `traffik_memory_keys` | gauge | — |
//! | `traffik_memory_evictions_total` | counter | — |
//!
//! Labels are bounded: the backend's kind, the operation, the server (a
//! store has as many as it was given or its cluster has masters), never a
//! key. Handles are registered with the recorder on first use and kept, so
//! recording is an increment.

#![cfg_attr(
    not(all(feature = "metrics", any(feature = "redis", feature = "memcached"))),
    allow(
        dead_code,
        reason = "the store's instruments serve the remote backends, and record nothing without the feature"
    )
)]

pub(crate) use traffik_core::observe::{LazyCounter, LazyGauge, LazyHistogram};

/// The store operations whose latency is recorded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operation {
    Hit,
    Peek,
    HitAll,
}

impl Operation {
    const ALL: [Operation; 3] = [Operation::Hit, Operation::Peek, Operation::HitAll];

    const fn as_str(self) -> &'static str {
        match self {
            Operation::Hit => "hit",
            Operation::Peek => "peek",
            Operation::HitAll => "hit_all",
        }
    }
}

/// One remote backend's latency per operation (its deny cache counts its
/// own hits).
#[derive(Debug)]
pub(crate) struct StoreMetrics {
    latency: [LazyHistogram; 3],
}

impl StoreMetrics {
    pub(crate) fn new(backend: &'static str) -> StoreMetrics {
        StoreMetrics {
            latency: Operation::ALL.map(|operation| {
                LazyHistogram::new(
                    "traffik_backend_latency_seconds",
                    &[("backend", backend), ("operation", operation.as_str())],
                )
            }),
        }
    }

    /// When an operation starts: `None` without the feature.
    #[inline]
    pub(crate) fn start(&self) -> Option<std::time::Instant> {
        #[cfg(feature = "metrics")]
        return Some(std::time::Instant::now());
        #[cfg(not(feature = "metrics"))]
        None
    }

    /// Records how long `operation` took since `started`.
    #[inline]
    pub(crate) fn finish(&self, operation: Operation, started: Option<std::time::Instant>) {
        if let Some(started) = started {
            self.latency[operation as usize].record(started.elapsed().as_secs_f64());
        }
    }
}

/// A circuit breaker's instruments and its rate-limited log.
#[derive(Debug)]
pub(crate) struct BreakerMetrics {
    opened: LazyCounter,
    closed: LazyCounter,
    half_open: LazyCounter,
    open: LazyGauge,
    #[cfg(feature = "tracing")]
    last_warned: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// Where a breaker went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

impl BreakerMetrics {
    pub(crate) fn new(backend: &'static str, target: &str) -> BreakerMetrics {
        let to = |state| {
            LazyCounter::new(
                "traffik_breaker_transitions_total",
                &[("backend", backend), ("to", state)],
            )
        };
        BreakerMetrics {
            opened: to("open"),
            closed: to("closed"),
            half_open: to("half_open"),
            open: LazyGauge::new(
                "traffik_breaker_open",
                &[("backend", backend), ("target", target)],
            ),
            #[cfg(feature = "tracing")]
            last_warned: std::sync::Mutex::new(None),
        }
    }

    /// Counts a transition and logs it: a warning when the breaker opens, at
    /// most once a second per breaker (saying how many it held back), an
    /// info line when it closes again.
    pub(crate) fn moved(&self, target: &str, transition: Transition, cause: &str) {
        match transition {
            Transition::Opened => {
                self.opened.increment(1);
                self.open.set(1.0);
            }
            Transition::HalfOpened => self.half_open.increment(1),
            Transition::Closed => {
                self.closed.increment(1);
                self.open.set(0.0);
            }
        }
        #[cfg(feature = "tracing")]
        self.log(target, transition, cause);
        #[cfg(not(feature = "tracing"))]
        let _ = (target, cause);
    }

    #[cfg(feature = "tracing")]
    fn log(&self, target: &str, transition: Transition, cause: &str) {
        match transition {
            Transition::Opened => {
                let now = std::time::Instant::now();
                let mut last = self
                    .last_warned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let held_back = match *last {
                    Some((at, held))
                        if now.duration_since(at) < std::time::Duration::from_secs(1) =>
                    {
                        *last = Some((at, held + 1));
                        return;
                    }
                    Some((_, held)) => held,
                    None => 0,
                };
                *last = Some((now, 0));
                drop(last);
                tracing::warn!(
                    target: "traffik",
                    store = target,
                    held_back,
                    "circuit opened for {target}: {cause}"
                );
            }
            Transition::Closed => {
                tracing::info!(target: "traffik", store = target, "circuit closed for {target}");
            }
            Transition::HalfOpened => {}
        }
    }
}
