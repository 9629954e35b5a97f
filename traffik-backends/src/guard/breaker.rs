//! A three-state circuit breaker in front of one store (or one server).

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use traffik_core::{Error, ErrorKind};

use crate::observe::{BreakerMetrics, Transition};

/// When a remote store's circuit breaker opens, and how soon it tries again.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | [`consecutive_failures`](BreakerConfig::consecutive_failures) | 5 | opens after this many store failures in a row |
/// | [`failure_rate`](BreakerConfig::failure_rate) | 50 % over 10 s, at least 20 calls | opens when that share of the window's calls failed |
/// | [`cool_down`](BreakerConfig::cool_down) | 1 s | how long it stays open before one probe goes through |
///
/// A store failure is a timeout, a refused or dropped connection, or a
/// reply that makes no sense ([`ErrorKind::is_store_failure`]); contention,
/// capacity and configuration errors mean the store answered. While the
/// breaker is open every call fails at once with [`ErrorKind::Unavailable`]
/// (so the throttle's failure policy, or its fallback, decides without a
/// network wait). After the cool-down one call is let through as a probe
/// (half-open): its success closes the breaker, its failure opens it for
/// another cool-down. A probe whose caller gives up is not counted, and the
/// next call probes instead.
///
/// From a URL: `?breaker_failures=5&breaker_cool_down_ms=1000`
/// (`breaker_failures=0` turns the breaker off).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    consecutive: u32,
    rate: f64,
    window: Duration,
    min_calls: u32,
    cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            consecutive: 5,
            rate: 0.5,
            window: Duration::from_secs(10),
            min_calls: 20,
            cool_down: Duration::from_secs(1),
        }
    }
}

impl BreakerConfig {
    /// The defaults (see the table above).
    pub fn new() -> BreakerConfig {
        BreakerConfig::default()
    }

    /// A breaker that never opens: every call waits out its own timeout.
    pub fn disabled() -> BreakerConfig {
        BreakerConfig {
            consecutive: 0,
            rate: f64::INFINITY,
            ..BreakerConfig::default()
        }
    }

    /// Opens after `failures` store failures in a row (0: never on this
    /// count).
    #[must_use]
    pub fn consecutive_failures(mut self, failures: u32) -> BreakerConfig {
        self.consecutive = failures;
        self
    }

    /// Opens when at least `rate` (0 to 1) of the calls of a `window` failed,
    /// once the window holds `min_calls` calls. A rate above 1 (or NaN)
    /// never opens on the rate.
    #[must_use]
    pub fn failure_rate(mut self, rate: f64, window: Duration, min_calls: u32) -> BreakerConfig {
        self.rate = if rate.is_nan() { f64::INFINITY } else { rate };
        self.window = window.max(Duration::from_millis(1));
        self.min_calls = min_calls.max(1);
        self
    }

    /// How long the breaker stays open before a probe (at least 1 ms).
    #[must_use]
    pub fn cool_down(mut self, cool_down: Duration) -> BreakerConfig {
        self.cool_down = cool_down.max(Duration::from_millis(1));
        self
    }

    /// How long it stays open before a probe.
    pub fn cool_down_time(&self) -> Duration {
        self.cool_down
    }

    fn opens_on_rate(&self, calls: u32, failed: u32) -> bool {
        calls >= self.min_calls && f64::from(failed) >= self.rate * f64::from(calls)
    }

    fn is_disabled(&self) -> bool {
        self.consecutive == 0 && self.rate > 1.0
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once until the cool-down ends.
    Open,
    /// One probe is (or may be) on its way; the others fail at once.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

struct State {
    mode: Mode,
    consecutive: u32,
    window_start: Instant,
    calls: u32,
    failed: u32,
    /// What the failure that opened it said (bounded).
    cause: String,
    opened: u64,
}

/// The breaker of one store or server.
pub(crate) struct Breaker {
    config: BreakerConfig,
    target: String,
    state: Mutex<State>,
    metrics: BreakerMetrics,
}

/// A call the breaker let through; [`Permit::record`] its outcome. Dropped
/// unrecorded (the caller gave up), a probe lets the next call probe.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    /// The breaker of `target`, a store of kind `backend` (a metric label).
    pub(crate) fn new(
        config: BreakerConfig,
        backend: &'static str,
        target: impl Into<String>,
    ) -> Breaker {
        let target = target.into();
        Breaker {
            config,
            metrics: BreakerMetrics::new(backend, &target),
            target,
            state: Mutex::new(State {
                mode: Mode::Closed,
                consecutive: 0,
                window_start: Instant::now(),
                calls: 0,
                failed: 0,
                cause: String::new(),
                opened: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a handful of counters, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets a call through, or refuses it at once while open.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] while the breaker is open or its probe is
    /// on its way, naming the store and what opened it.
    pub(crate) fn admit(&self) -> Result<Permit<'_>, Error> {
        let permit = |probe| Permit {
            breaker: self,
            probe,
            recorded: false,
        };
        if self.config.is_disabled() {
            return Ok(permit(false));
        }
        let mut state = self.lock();
        match state.mode {
            Mode::Closed => Ok(permit(false)),
            Mode::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    state.mode = Mode::HalfOpen { probing: true };
                    self.metrics
                        .moved(&self.target, Transition::HalfOpened, &state.cause);
                    Ok(permit(true))
                } else {
                    Err(self.refusal(&state, until - now))
                }
            }
            Mode::HalfOpen { probing: false } => {
                state.mode = Mode::HalfOpen { probing: true };
                Ok(permit(true))
            }
            Mode::HalfOpen { probing: true } => Err(self.refusal(&state, Duration::ZERO)),
        }
    }

    fn refusal(&self, state: &State, left: Duration) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "circuit open for {}: {}; next probe in {} ms",
                self.target,
                state.cause,
                left.as_millis()
            ),
        )
    }

    /// Where it stands now.
    pub(crate) fn state(&self) -> BreakerState {
        match self.lock().mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { until } if Instant::now() < until => BreakerState::Open,
            Mode::Open { .. } | Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times it has opened.
    pub(crate) fn opened(&self) -> u64 {
        self.lock().opened
    }

    fn record(&self, probe: bool, error: Option<&Error>) {
        let failed = error.is_some_and(|error| error.kind().is_store_failure());
        let mut state = self.lock();
        let now = Instant::now();
        if probe {
            if failed {
                self.open(&mut state, now, error);
            } else {
                state.mode = Mode::Closed;
                self.metrics.moved(&self.target, Transition::Closed, "");
                state.consecutive = 0;
                state.calls = 0;
                state.failed = 0;
                state.window_start = now;
            }
            return;
        }
        if !matches!(state.mode, Mode::Closed) {
            // A call let through before the breaker opened, ending late.
            return;
        }
        if now.duration_since(state.window_start) >= self.config.window {
            state.window_start = now;
            state.calls = 0;
            state.failed = 0;
        }
        state.calls = state.calls.saturating_add(1);
        if failed {
            state.failed = state.failed.saturating_add(1);
            state.consecutive = state.consecutive.saturating_add(1);
        } else {
            state.consecutive = 0;
        }
        let in_a_row = self.config.consecutive > 0 && state.consecutive >= self.config.consecutive;
        if failed && (in_a_row || self.config.opens_on_rate(state.calls, state.failed)) {
            self.open(&mut state, now, error);
        }
    }

    fn open(&self, state: &mut State, now: Instant, error: Option<&Error>) {
        state.mode = Mode::Open {
            until: now + self.config.cool_down,
        };
        state.opened = state.opened.saturating_add(1);
        state.consecutive = 0;
        state.cause.clear();
        if let Some(error) = error {
            let said = error.to_string();
            let mut end = said.len().min(200);
            while !said.is_char_boundary(end) {
                end -= 1;
            }
            state.cause.push_str(&said[..end]);
        }
        self.metrics
            .moved(&self.target, Transition::Opened, &state.cause);
    }
}

impl Permit<'_> {
    /// Counts the call's outcome.
    pub(crate) fn record<T>(mut self, outcome: &Result<T, Error>) {
        self.recorded = true;
        self.breaker.record(self.probe, outcome.as_ref().err());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            let mut state = self.breaker.lock();
            if matches!(state.mode, Mode::HalfOpen { probing: true }) {
                state.mode = Mode::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Result<(), Error> {
        Err(Error::new(
            ErrorKind::Timeout,
            "redis did not answer in time",
        ))
    }

    fn breaker(config: BreakerConfig) -> Breaker {
        Breaker::new(config, "redis", "redis://test")
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_probes_once_and_closes() {
        let breaker = breaker(BreakerConfig::new().cool_down(Duration::from_millis(500)));
        for _ in 0..4 {
            breaker.admit().unwrap().record(&failure());
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.admit().unwrap().record(&failure());
        assert_eq!(breaker.state(), BreakerState::Open);
        let refused = breaker.admit().err().unwrap();
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert!(refused.to_string().contains("did not answer"), "{refused}");
        tokio::time::advance(Duration::from_millis(500)).await;
        // One probe; the others are refused while it is out.
        let probe = breaker.admit().unwrap();
        assert!(breaker.admit().is_err());
        probe.record(&Ok::<(), Error>(()));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit().is_ok());
        assert_eq!(breaker.opened(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_and_an_abandoned_one_frees_the_next() {
        let breaker = breaker(BreakerConfig::new().consecutive_failures(1));
        breaker.admit().unwrap().record(&failure());
        tokio::time::advance(Duration::from_secs(1)).await;
        breaker.admit().unwrap().record(&failure());
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(breaker.admit().unwrap());
        let next = breaker.admit().expect("an abandoned probe frees the next");
        next.record(&Ok::<(), Error>(()));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_of_a_window() {
        let config = BreakerConfig::new().failure_rate(0.5, Duration::from_secs(10), 10);
        let breaker = breaker(config);
        // Alternating: never two in a row, but half of the calls.
        for i in 0..9 {
            let outcome = if i % 2 == 0 { failure() } else { Ok(()) };
            breaker.admit().unwrap().record(&outcome);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.admit().unwrap().record(&failure());
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_are_not_store_failures_never_open_it() {
        let breaker = breaker(BreakerConfig::new().consecutive_failures(1));
        for kind in [
            ErrorKind::Contention,
            ErrorKind::Capacity,
            ErrorKind::Config,
        ] {
            let outcome: Result<(), Error> = Err(Error::new(kind, "answered"));
            breaker.admit().unwrap().record(&outcome);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        let off = Breaker::new(BreakerConfig::disabled(), "redis", "x");
        for _ in 0..100 {
            off.admit().unwrap().record(&failure());
        }
        assert_eq!(off.state(), BreakerState::Closed);
    }
}
