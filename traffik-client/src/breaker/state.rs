use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use traffik_backends::AnyBackend;
use traffik_core::{Clock, ConfigError};

use super::window::Outcomes;
use crate::hold::Hold;
use crate::metrics;
use crate::{Error, ErrorKind, Layer, TokioClock};

/// The window the rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// The last this many calls.
    Count(u32),
    /// The calls of the last this long (in ten buckets).
    Time(Duration),
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probes go through to see whether the upstream is back.
    HalfOpen,
}

impl BreakerState {
    fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Mode {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { in_flight: u32, passed: u32 },
}

#[derive(Debug)]
struct State {
    mode: Mode,
    window: Outcomes,
}

/// A circuit breaker (see [the module](crate::breaker)). Clones share it.
#[derive(Clone, Debug)]
pub struct Breaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    failure_rate: f64,
    slow_rate: f64,
    slow_call: Duration,
    min_calls: u64,
    open_ms: u64,
    probes: u32,
    is_failure: fn(http::StatusCode) -> bool,
    clock: TokioClock,
    state: Mutex<State>,
    /// The store and key of a shared open state.
    shared: Option<(AnyBackend, Hold)>,
    sync_ms: u64,
    last_sync_ms: AtomicU64,
}

const IDENTITY: &str = "open";

/// Builds a [`Breaker`].
#[derive(Debug)]
pub struct BreakerBuilder {
    name: String,
    failure_rate: f64,
    slow_rate: f64,
    slow_call: Duration,
    window: Window,
    min_calls: u32,
    open_for: Duration,
    probes: u32,
    is_failure: fn(http::StatusCode) -> bool,
    clock: TokioClock,
    shared: Option<AnyBackend>,
    sync_every: Duration,
}

impl Breaker {
    /// A breaker named `name` (the upstream: the metrics' label, and the
    /// key of a shared state). Defaults: opens at a 50 % failure rate over
    /// the last 20 calls, at least 10 of them; slow calls do not trip it
    /// until [`slow_rate`](BreakerBuilder::slow_rate) is set; open for
    /// 10 s; 3 probes.
    pub fn builder(name: impl Into<String>) -> BreakerBuilder {
        BreakerBuilder {
            name: name.into(),
            failure_rate: 0.5,
            slow_rate: f64::INFINITY,
            slow_call: Duration::from_secs(5),
            window: Window::Count(20),
            min_calls: 10,
            open_for: Duration::from_secs(10),
            probes: 3,
            is_failure: |status| status.is_server_error(),
            clock: TokioClock::new(),
            shared: None,
            sync_every: Duration::from_secs(1),
        }
    }

    /// The state now.
    pub fn state(&self) -> BreakerState {
        let now = self.inner.clock.now_ms();
        match self.inner.state.lock().mode {
            Mode::Closed => BreakerState::Closed,
            Mode::Open { until_ms } if until_ms > now => BreakerState::Open,
            Mode::Open { .. } | Mode::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether calls fail fast now (open, and not yet due to probe).
    pub fn is_open(&self) -> bool {
        self.state() == BreakerState::Open
    }

    /// Whether slow calls count (a slow-call rate is set).
    pub(crate) fn times_calls(&self) -> bool {
        self.inner.slow_rate.is_finite()
    }

    /// Whether `status` counts as a failure.
    pub(crate) fn fails(&self, status: http::StatusCode) -> bool {
        (self.inner.is_failure)(status)
    }

    /// Asks to make a call: a permit, or the open circuit's error at once.
    /// A shared breaker first reads the store's state, at most once per
    /// [`sync_every`](BreakerBuilder::sync_every).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::CircuitOpen`] while open, and while half-open with
    /// every probe out.
    pub async fn acquire(&self) -> Result<BreakerPermit, Error> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        if let Some((backend, hold)) = &inner.shared {
            let last = inner.last_sync_ms.load(Ordering::Relaxed);
            if now >= last.saturating_add(inner.sync_ms) {
                inner.last_sync_ms.store(now, Ordering::Relaxed);
                // Boxed: a remote store's future is large, and rare here.
                let left = Box::pin(hold.left(backend, IDENTITY, now)).await;
                if let Ok(Some(left)) = left {
                    let until_ms =
                        now.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
                    let mut state = inner.state.lock();
                    if matches!(state.mode, Mode::Closed) {
                        state.mode = Mode::Open { until_ms };
                        drop(state);
                        self.transition(BreakerState::Open);
                    }
                }
            }
        }
        let mut state = inner.state.lock();
        if let Mode::Open { until_ms } = state.mode {
            if until_ms > now {
                return Err(open_error(until_ms - now));
            }
            state.mode = Mode::HalfOpen {
                in_flight: 0,
                passed: 0,
            };
            drop(state);
            self.transition(BreakerState::HalfOpen);
            state = inner.state.lock();
        }
        match &mut state.mode {
            Mode::Closed => Ok(BreakerPermit {
                breaker: self.clone(),
                probe: false,
                done: false,
            }),
            Mode::HalfOpen { in_flight, passed } => {
                if *in_flight + *passed >= inner.probes {
                    return Err(Error::new(
                        Layer::Breaker,
                        ErrorKind::CircuitOpen,
                        "the circuit is half-open and every probe is out",
                    ));
                }
                *in_flight += 1;
                Ok(BreakerPermit {
                    breaker: self.clone(),
                    probe: true,
                    done: false,
                })
            }
            Mode::Open { until_ms } => Err(open_error(until_ms.saturating_sub(now))),
        }
    }

    fn record(&self, probe: bool, failed: bool, sent_for: Duration) {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let slow = sent_for >= inner.slow_call;
        let mut state = inner.state.lock();
        let mut to = None;
        match &mut state.mode {
            Mode::Closed if !probe => {
                state.window.record(now, failed, slow);
                let tally = state.window.tally(now);
                #[allow(clippy::cast_precision_loss)]
                let (calls, failures, slows) =
                    (tally.calls as f64, tally.failures as f64, tally.slow as f64);
                if tally.calls >= inner.min_calls
                    && (failures / calls >= inner.failure_rate || slows / calls >= inner.slow_rate)
                {
                    to = Some(BreakerState::Open);
                }
            }
            Mode::HalfOpen { in_flight, passed } if probe => {
                *in_flight = in_flight.saturating_sub(1);
                if failed || (slow && inner.slow_rate.is_finite()) {
                    to = Some(BreakerState::Open);
                } else {
                    *passed += 1;
                    if *passed >= inner.probes {
                        to = Some(BreakerState::Closed);
                    }
                }
            }
            // A call admitted before the state changed says nothing of now.
            _ => {}
        }
        match to {
            Some(BreakerState::Open) => {
                state.mode = Mode::Open {
                    until_ms: now.saturating_add(inner.open_ms),
                };
                state.window.clear();
                drop(state);
                self.transition(BreakerState::Open);
                if inner.shared.is_some() {
                    let breaker = self.clone();
                    let open_for = Duration::from_millis(inner.open_ms);
                    tokio::spawn(async move {
                        if let Some((backend, hold)) = &breaker.inner.shared {
                            let now = breaker.inner.clock.now_ms();
                            let _ = hold.set(backend, IDENTITY, now, open_for).await;
                        }
                    });
                }
            }
            Some(BreakerState::Closed) => {
                state.mode = Mode::Closed;
                state.window.clear();
                drop(state);
                self.transition(BreakerState::Closed);
            }
            _ => {}
        }
    }

    fn release(&self) {
        if let Mode::HalfOpen { in_flight, .. } = &mut self.inner.state.lock().mode {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    fn transition(&self, to: BreakerState) {
        metrics::count(
            metrics::BREAKER_TRANSITIONS,
            &self.inner.name,
            "to",
            to.as_str(),
        );
    }
}

fn open_error(wait_ms: u64) -> Error {
    let error = Error::new(
        Layer::Breaker,
        ErrorKind::CircuitOpen,
        "the circuit is open",
    );
    if wait_ms > 0 {
        error.with_retry_after(Duration::from_millis(wait_ms))
    } else {
        error
    }
}

/// Leave to make one call. [`record`](BreakerPermit::record) its outcome;
/// a permit dropped unrecorded (the call was cancelled) counts as nothing.
#[derive(Debug)]
pub struct BreakerPermit {
    breaker: Breaker,
    probe: bool,
    done: bool,
}

impl BreakerPermit {
    /// Records the call's outcome: whether it failed, and how long it took
    /// from being sent.
    pub fn record(mut self, failed: bool, sent_for: Duration) {
        self.done = true;
        self.breaker.record(self.probe, failed, sent_for);
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release();
        }
    }
}

impl BreakerBuilder {
    /// Opens when at least this share of the window's calls failed
    /// (clamped to 0..=1; default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> BreakerBuilder {
        self.failure_rate = if rate.is_nan() {
            1.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self
    }

    /// Opens when at least this share of the window's calls were slow
    /// (clamped to 0..=1; default: never).
    pub fn slow_rate(mut self, rate: f64) -> BreakerBuilder {
        self.slow_rate = if rate.is_nan() {
            f64::INFINITY
        } else {
            rate.clamp(0.0, 1.0)
        };
        self
    }

    /// A call is slow when it took at least this long (default 5 s).
    pub fn slow_call(mut self, threshold: Duration) -> BreakerBuilder {
        self.slow_call = threshold;
        self
    }

    /// The window the rates are computed over (default the last 20 calls).
    pub fn window(mut self, window: Window) -> BreakerBuilder {
        self.window = window;
        self
    }

    /// The fewest calls in the window before it may open (default 10, at
    /// least 1).
    pub fn min_calls(mut self, calls: u32) -> BreakerBuilder {
        self.min_calls = calls.max(1);
        self
    }

    /// How long it stays open before probing (default 10 s).
    pub fn open_for(mut self, open_for: Duration) -> BreakerBuilder {
        self.open_for = open_for;
        self
    }

    /// How many probes half-open admits, and must all pass to close
    /// (default 3, at least 1).
    pub fn probes(mut self, probes: u32) -> BreakerBuilder {
        self.probes = probes.max(1);
        self
    }

    /// Which statuses are failures (default: 5xx).
    pub fn failure_status(mut self, is_failure: fn(http::StatusCode) -> bool) -> BreakerBuilder {
        self.is_failure = is_failure;
        self
    }

    /// The clock (default: a new [`TokioClock`]).
    pub fn clock(mut self, clock: TokioClock) -> BreakerBuilder {
        self.clock = clock;
        self
    }

    /// Shares the open state through `backend`: a breaker that opens
    /// writes it to the store, and every breaker of the same name reads
    /// it there at most once per [`sync_every`](BreakerBuilder::sync_every),
    /// opening too. Half-open probes stay per process.
    pub fn shared(mut self, backend: AnyBackend) -> BreakerBuilder {
        self.shared = Some(backend);
        self
    }

    /// How often a shared breaker reads the store (default 1 s).
    pub fn sync_every(mut self, every: Duration) -> BreakerBuilder {
        self.sync_every = every;
        self
    }

    /// The breaker.
    ///
    /// # Errors
    ///
    /// When a shared breaker's name is not valid for a throttle's.
    pub fn build(self) -> Result<Breaker, ConfigError> {
        let shared = match self.shared {
            Some(backend) => Some((
                backend,
                Hold::new("traffik-client", &format!("{}.breaker", self.name), false)?,
            )),
            None => None,
        };
        let window = match self.window {
            Window::Count(n) => Outcomes::count(n),
            Window::Time(span) => {
                Outcomes::time(u64::try_from(span.as_millis()).unwrap_or(u64::MAX))
            }
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(Breaker {
            inner: Arc::new(Inner {
                name: Arc::from(self.name),
                failure_rate: self.failure_rate,
                slow_rate: self.slow_rate,
                slow_call: self.slow_call,
                min_calls: u64::from(self.min_calls),
                open_ms: ms(self.open_for),
                probes: self.probes,
                is_failure: self.is_failure,
                clock: self.clock,
                state: Mutex::new(State {
                    mode: Mode::Closed,
                    window,
                }),
                shared,
                sync_ms: ms(self.sync_every),
                last_sync_ms: AtomicU64::new(0),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::builder("up")
            .window(Window::Count(10))
            .min_calls(4)
            .open_for(Duration::from_secs(5))
            .probes(2)
            .build()
            .unwrap()
    }

    async fn call(breaker: &Breaker, failed: bool) -> Result<(), Error> {
        breaker
            .acquire()
            .await?
            .record(failed, Duration::from_millis(1));
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_probes_and_closes() {
        let breaker = breaker();
        call(&breaker, true).await.unwrap();
        call(&breaker, true).await.unwrap();
        call(&breaker, true).await.unwrap();
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "3 calls: under min_calls"
        );
        call(&breaker, false).await.unwrap();
        assert_eq!(breaker.state(), BreakerState::Open, "3 of 4 failed");
        let error = breaker.acquire().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::CircuitOpen);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));

        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let first = breaker.acquire().await.unwrap();
        let second = breaker.acquire().await.unwrap();
        assert_eq!(
            breaker.acquire().await.unwrap_err().kind(),
            ErrorKind::CircuitOpen,
            "only two probes"
        );
        first.record(false, Duration::from_millis(1));
        second.record(false, Duration::from_millis(1));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_again_and_a_dropped_one_frees_its_place() {
        let breaker = breaker();
        for _ in 0..4 {
            call(&breaker, true).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(breaker.acquire().await.unwrap());
        let probe = breaker.acquire().await.unwrap();
        let _other = breaker.acquire().await.unwrap();
        probe.record(true, Duration::from_millis(1));
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_trip_it_when_asked() {
        let breaker = Breaker::builder("up")
            .min_calls(2)
            .slow_rate(0.5)
            .slow_call(Duration::from_secs(1))
            .build()
            .unwrap();
        breaker
            .acquire()
            .await
            .unwrap()
            .record(false, Duration::from_secs(2));
        breaker
            .acquire()
            .await
            .unwrap()
            .record(false, Duration::from_millis(10));
        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
