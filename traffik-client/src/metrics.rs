//! The metric names of the client side, recorded through the `metrics`
//! facade (feature `metrics`), beside the server side's `traffik_*`.
//!
//! | name | type | labels | counts |
//! |---|---|---|---|
//! | `traffik_client_calls_total` | counter | `upstream`, `outcome` | calls that left the stack: `ok` (a response, any status) or the [`ErrorKind`](crate::ErrorKind) that ended them, snake case |
//! | `traffik_client_wait_seconds` | histogram | `upstream` | how long a call waited in the queue for its slot |
//! | `traffik_client_queue_depth` | gauge | `upstream` | calls waiting for a slot |
//! | `traffik_client_retries_total` | counter | `upstream`, `reason` | retries made: `status` or `error`; `budget` counts the ones the budget refused |
//! | `traffik_client_breaker_transitions_total` | counter | `upstream`, `to` | `open`, `half_open`, `closed` |
//! | `traffik_client_coalesced_total` | counter | `upstream`, `result` | `hit` (joined a call in flight), `miss` (made it), `bypass` (not coalescable) |
//! | `traffik_client_feedback_total` | counter | `upstream`, `action` | `pause` (a hold-off written to the store), `drain` (the shared limit lowered to the upstream's remaining) |
//!
//! `upstream` is the name given to the builder, so the label values are
//! as many as the upstreams configured in code.

/// Calls that left the stack.
pub const CALLS: &str = "traffik_client_calls_total";
/// Time in the wait queue.
pub const WAIT: &str = "traffik_client_wait_seconds";
/// Calls waiting for a slot.
pub const QUEUE_DEPTH: &str = "traffik_client_queue_depth";
/// Retries made, or refused by the budget.
pub const RETRIES: &str = "traffik_client_retries_total";
/// Breaker transitions.
pub const BREAKER_TRANSITIONS: &str = "traffik_client_breaker_transitions_total";
/// Coalescing outcomes.
pub const COALESCED: &str = "traffik_client_coalesced_total";
/// What server feedback made the limiter do.
pub const FEEDBACK: &str = "traffik_client_feedback_total";
/// The label naming the upstream.
pub const UPSTREAM: &str = "upstream";

#[cfg(feature = "metrics")]
static DESCRIBED: std::sync::Once = std::sync::Once::new();

#[cfg(feature = "metrics")]
fn describe() {
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(
            CALLS,
            "Calls that left the traffik-client stack, by outcome"
        );
        metrics::describe_histogram!(
            WAIT,
            metrics::Unit::Seconds,
            "Time a call waited for its slot"
        );
        metrics::describe_gauge!(QUEUE_DEPTH, "Calls waiting for a slot");
        metrics::describe_counter!(RETRIES, "Retries made, or refused by the retry budget");
        metrics::describe_counter!(BREAKER_TRANSITIONS, "Circuit breaker transitions");
        metrics::describe_counter!(COALESCED, "Coalescing outcomes of calls");
        metrics::describe_counter!(FEEDBACK, "Actions the limiter took on upstream feedback");
    });
}

/// Counts `name{upstream, key=value}`: for the rare events (retries,
/// transitions, feedback, failed calls); the per-call ones go through
/// [`Instruments`]' registered handles.
#[inline]
pub(crate) fn count(
    name: &'static str,
    upstream: &std::sync::Arc<str>,
    key: &'static str,
    value: &'static str,
) {
    #[cfg(feature = "metrics")]
    {
        describe();
        metrics::counter!(name, UPSTREAM => upstream.to_string(), key => value).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, upstream, key, value);
}

/// The per-call instruments of one upstream, registered on first use.
#[derive(Debug)]
pub(crate) struct Instruments {
    pub(crate) name: std::sync::Arc<str>,
    calls_ok: LazyCounter,
    wait: LazyHistogram,
    depth: LazyGauge,
    coalesced: [LazyCounter; 3],
}

/// How a call coalesced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Coalesced {
    Hit = 0,
    Miss = 1,
    Bypass = 2,
}

impl Instruments {
    pub(crate) fn new(name: std::sync::Arc<str>) -> Instruments {
        #[cfg(feature = "metrics")]
        describe();
        let labels = |key, value| [(UPSTREAM, &*name), (key, value)];
        Instruments {
            calls_ok: LazyCounter::new(CALLS, &labels("outcome", "ok")),
            wait: LazyHistogram::new(WAIT, &[(UPSTREAM, &*name)]),
            depth: LazyGauge::new(QUEUE_DEPTH, &[(UPSTREAM, &*name)]),
            coalesced: ["hit", "miss", "bypass"]
                .map(|r| LazyCounter::new(COALESCED, &labels("result", r))),
            name,
        }
    }

    /// A call left the stack: `Ok` or the kind that ended it.
    #[inline]
    pub(crate) fn called(&self, outcome: Result<(), crate::ErrorKind>) {
        match outcome {
            Ok(()) => self.calls_ok.increment(1),
            Err(kind) => count(CALLS, &self.name, "outcome", kind.as_label()),
        }
    }

    #[inline]
    pub(crate) fn waited(&self, wait: std::time::Duration) {
        self.wait.record(wait.as_secs_f64());
    }

    #[inline]
    pub(crate) fn depth(&self, depth: usize) {
        #[allow(clippy::cast_precision_loss)]
        self.depth.set(depth as f64);
    }

    #[inline]
    pub(crate) fn coalesced(&self, result: Coalesced) {
        self.coalesced[result as usize].increment(1);
    }
}

use traffik_core::observe::{LazyCounter, LazyGauge, LazyHistogram};
