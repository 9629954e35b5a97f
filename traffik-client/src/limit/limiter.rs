//! [`Limiter`]: a shared limit in front of an upstream, with a fair wait
//! queue, refunds and server feedback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use traffik_backends::AnyBackend;
use traffik_core::{
    AnyStrategy, Backend, Clock, ConfigError, Decision, FailurePolicy, Gcra, Hit, Key, Rate,
    Reason, Throttle,
};

use super::adaptive::{Aimd, Pace};
use super::queue::{Place, Queue, Shed, Waiter};
use crate::feedback::Feedback;
use crate::hold::Hold;
use crate::metrics::{self, Instruments};
use crate::{Error, ErrorKind, Layer, TokioClock};

/// The identity of the limit's key: one shared budget per upstream.
const IDENTITY: &str = "calls";

/// A slot the limit gave a call: the time it was charged at and its cost,
/// to give back if the call is not made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    charged_ms: u64,
    cost: u64,
}

/// A shared outbound limit: each call reserves a slot (one hit of the
/// shared throttle) and, when none is free, waits in a fair queue until
/// its slot comes up.
///
/// - Waiters are served by priority, higher first, then in arrival order.
///   One dispatcher task per process serves the queue; a call that finds
///   the queue empty tries the limit at once, on its own task.
/// - The queue holds at most [`max_queue`](LimiterBuilder::max_queue)
///   calls; [`Shed`] says which is turned away.
/// - A call with a deadline that no slot can meet fails at once
///   ([`ErrorKind::Deadline`]), with the earliest time one could. The
///   estimate is a lower bound (the limit's sustained rate after its burst,
///   the waiters ahead, this process's knowledge), so a call it fails
///   could not have made it.
/// - A call cancelled or past its deadline after its slot was reserved
///   gives the slot back to the store (a refund), so abandoned work does
///   not spend the upstream's quota.
/// - Processes that share a store (Redis, Memcached) share the limit: the
///   store admits at most the limit between them.
/// - [`observe`](Limiter::observe) reads the upstream's `Retry-After`,
///   `RateLimit` and `X-RateLimit-*` fields and writes a hold-off into the
///   store, so every process sharing it pauses together.
///
/// Clones share the limiter.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    instruments: Instruments,
    throttle: Throttle<AnyBackend, TokioClock>,
    /// The shared hold-off, checked with every hit (with `share_feedback`).
    hold: Option<Hold>,
    clock: TokioClock,
    queue: Mutex<Queue>,
    wake: Notify,
    max_queue: usize,
    shed: Shed,
    share_feedback: bool,
    max_hold: Duration,
    pace: Option<Mutex<Pace>>,
    /// The limit's count, period and burst, for the wait estimate.
    count: u64,
    period_ms: u64,
    capacity: u64,
    /// What the last admitted hit said was left (`u64::MAX`: unknown).
    last_remaining: AtomicU64,
    /// A hold answered at once asks the waiting way to read how long it
    /// lasts.
    hold_read_due: AtomicBool,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.inner.name)
            .field("limit", self.inner.throttle.limit())
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Limiter`].
#[derive(Debug)]
pub struct LimiterBuilder {
    name: String,
    rate: Rate,
    strategy: AnyStrategy,
    backend: Option<AnyBackend>,
    namespace: String,
    clock: TokioClock,
    policy: FailurePolicy,
    max_queue: usize,
    shed: Shed,
    share_feedback: bool,
    max_hold: Duration,
    aimd: Option<Aimd>,
}

impl Limiter {
    /// A limiter named `name` (the upstream: it names the store's key and
    /// the metrics' `upstream` label) at `rate`.
    pub fn builder(name: impl Into<String>, rate: Rate) -> LimiterBuilder {
        LimiterBuilder {
            name: name.into(),
            rate,
            strategy: Gcra::new().into(),
            backend: None,
            namespace: "traffik-client".into(),
            clock: TokioClock::new(),
            policy: FailurePolicy::fallback(1),
            max_queue: 1024,
            shed: Shed::Newest,
            share_feedback: true,
            max_hold: Duration::from_secs(60),
            aimd: None,
        }
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// How many calls wait for a slot now.
    pub fn waiting(&self) -> usize {
        self.inner.queue.lock().waiters.len()
    }

    /// The share of the limit the adaptive pace allows now (1 without
    /// [`adaptive`](LimiterBuilder::adaptive)).
    pub fn adaptive_share(&self) -> f64 {
        self.inner.pace.as_ref().map_or(1.0, |p| p.lock().share())
    }

    /// Until when this process holds off because the upstream said so
    /// (its own observation or the store's), if it does.
    pub fn held_off_for(&self) -> Option<Duration> {
        let now = self.inner.clock.now_ms();
        let until = self.inner.queue.lock().paused_until_ms;
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Waits for a slot of `cost` at `priority`, until `deadline`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Deadline`] when no slot can come up in time (at once
    /// when that is known), [`ErrorKind::QueueFull`] or
    /// [`ErrorKind::Shed`] when the queue is full, [`ErrorKind::TooCostly`]
    /// for a cost the limit never admits, [`ErrorKind::Store`] when the
    /// store fails under [`FailurePolicy::Error`].
    pub async fn acquire(
        &self,
        cost: u64,
        priority: i32,
        deadline: Option<Instant>,
    ) -> Result<Permit, Error> {
        let inner = &self.inner;
        let cost = cost.max(1);
        if let Some(answered) = self.try_now(cost) {
            return answered;
        }
        let now = inner.clock.now_ms();
        if inner.hold_read_due.swap(false, Ordering::Relaxed) {
            Box::pin(inner.read_hold(now)).await;
        }
        let deadline_ms = deadline.map(|d| inner.clock.ms_at(d));
        let idle = {
            let mut q = inner.queue.lock();
            // One caller at a time tries a remote store on its own; the
            // others queue behind it rather than all asking at once.
            let idle = q.waiters.is_empty() && !q.running && !q.probing && q.open_at() <= now;
            q.probing |= idle;
            idle
        };
        if idle {
            let probe = Probe(inner);
            let tried = inner.try_hit(cost, now).await;
            drop(probe);
            match tried {
                Tried::Granted(grant) => return Ok(self.granted_at_once(grant)),
                Tried::Failed(error) => return Err(error),
                Tried::Wait(ms) => {
                    let mut q = inner.queue.lock();
                    q.try_later(now.saturating_add(ms));
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut q = inner.queue.lock();
            let place = q.place(priority);
            let eta = inner.eta(&q, now, q.ahead_of(&place).saturating_add(cost));
            if deadline_ms.is_some_and(|d| d < eta) {
                return Err(deadline_error(eta.saturating_sub(now)));
            }
            if q.waiters.len() >= inner.max_queue {
                match q.victim(inner.shed, &place) {
                    Some(victim) => {
                        if let Some(shed) = q.waiters.remove(&victim) {
                            let _ = shed.tx.send(Err(Error::new(
                                Layer::Limit,
                                ErrorKind::Shed,
                                "the queue was full and a call of higher priority took this call's place",
                            )));
                        }
                    }
                    None => {
                        return Err(Error::new(
                            Layer::Limit,
                            ErrorKind::QueueFull,
                            "the wait queue is full",
                        ));
                    }
                }
            }
            q.waiters.insert(
                place,
                Waiter {
                    cost,
                    deadline_ms,
                    since: Instant::now(),
                    tx,
                },
            );
            inner.instruments.depth(q.waiters.len());
            if q.running {
                inner.wake.notify_one();
            } else {
                q.running = true;
                tokio::spawn(dispatch(Arc::clone(inner)));
            }
        }
        let mut waiting = Waiting {
            rx,
            limiter: self.clone(),
        };
        let outcome = match deadline {
            Some(deadline) => tokio::select! {
                outcome = &mut waiting.rx => outcome,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(deadline_error(0));
                }
            },
            None => (&mut waiting.rx).await,
        };
        match outcome {
            Ok(Ok(grant)) => Ok(Permit::new(self.clone(), grant)),
            Ok(Err(error)) => Err(error),
            // The dispatcher never drops a waiter unanswered; if it went
            // away (its runtime shut down), the call cannot be admitted.
            Err(_) => Err(Error::new(
                Layer::Limit,
                ErrorKind::Deadline,
                "the limiter's dispatcher stopped",
            )),
        }
    }

    /// A slot at once, without waiting or awaiting: when no call waits, the
    /// limit is open and its store answers at once (in memory). `None`
    /// when the call must take the [`acquire`](Limiter::acquire) way.
    pub(crate) fn try_now(&self, cost: u64) -> Option<Result<Permit, Error>> {
        let inner = &self.inner;
        let cost = cost.max(1);
        if cost > inner.capacity {
            return Some(Err(too_costly()));
        }
        let now = inner.clock.now_ms();
        {
            let q = inner.queue.lock();
            if !(q.waiters.is_empty() && !q.running && q.open_at() <= now) {
                return None;
            }
        }
        match inner.try_hit_now(cost, now)? {
            Tried::Granted(grant) => Some(Ok(self.granted_at_once(grant))),
            Tried::Failed(error) => Some(Err(error)),
            Tried::Wait(ms) => {
                let mut q = inner.queue.lock();
                q.try_later(now.saturating_add(ms));
                None
            }
        }
    }

    /// The permit of a slot granted without waiting in the queue.
    fn granted_at_once(&self, grant: Grant) -> Permit {
        self.inner.instruments.waited(Duration::ZERO);
        Permit::new(self.clone(), grant)
    }

    /// Reads what a response says about the upstream's limit and acts on
    /// it: a hold-off (`Retry-After` on a `429` or `503`, or a quota with
    /// nothing remaining) pauses this process and, shared, every process
    /// of the store; a remaining quota below the shared limit's lowers the
    /// shared limit to match; a `429` slows the adaptive pace, and a
    /// success lets it climb.
    ///
    /// Store writes run on a task of their own: the caller does not wait.
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap) {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let feedback = Feedback::parse(headers, now);
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        if throttled {
            if let Some(pace) = &inner.pace {
                pace.lock().throttled(now);
            }
        }
        let hold = if throttled || status == StatusCode::SERVICE_UNAVAILABLE {
            feedback.hold_off()
        } else {
            // A `Retry-After` on other statuses (a redirect's) is not
            // about the limit.
            match feedback.remaining {
                Some(0) => feedback.reset,
                _ => None,
            }
        };
        if let Some(hold) = hold.filter(|h| !h.is_zero()) {
            let hold = hold.min(inner.max_hold);
            let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
            let until = now.saturating_add(hold_ms);
            let longer = {
                let mut q = inner.queue.lock();
                let longer = until > q.paused_until_ms;
                q.paused_until_ms = q.paused_until_ms.max(until);
                longer
            };
            if longer && inner.hold.is_some() {
                metrics::count(metrics::FEEDBACK, &inner.name, "action", "pause");
                let inner = Arc::clone(inner);
                tokio::spawn(async move { inner.share_pause(now, hold).await });
            }
            return;
        }
        if let Some(theirs) = feedback.remaining {
            let ours = inner.last_remaining.load(Ordering::Relaxed);
            if inner.share_feedback && ours != u64::MAX && ours > theirs {
                let drain = (ours - theirs).min(inner.capacity);
                inner.last_remaining.store(theirs, Ordering::Relaxed);
                metrics::count(metrics::FEEDBACK, &inner.name, "action", "drain");
                let inner = Arc::clone(inner);
                tokio::spawn(async move {
                    let _ = inner.throttle.hit_n(IDENTITY, drain).await;
                });
            }
        }
    }

    /// Gives back a slot (a call that was not made).
    fn refund(&self, grant: Grant) {
        let inner = Arc::clone(&self.inner);
        {
            // The slot is free again: try the limit at once.
            let mut q = inner.queue.lock();
            q.next_try_ms = 0;
            inner.wake.notify_one();
        }
        let answer = inner
            .throttle
            .refund(IDENTITY, grant.charged_ms, grant.cost);
        if answer.is_ready() {
            let _ = answer.into_ready();
            return;
        }
        drop(answer);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = inner
                    .throttle
                    .refund(IDENTITY, grant.charged_ms, grant.cost)
                    .await;
            });
        }
    }
}

fn too_costly() -> Error {
    Error::new(
        Layer::Limit,
        ErrorKind::TooCostly,
        "the call costs more than the limit ever admits at once",
    )
}

fn deadline_error(wait_ms: u64) -> Error {
    let error = Error::new(
        Layer::Limit,
        ErrorKind::Deadline,
        "no slot can come up before the call's deadline",
    );
    if wait_ms > 0 {
        error.with_retry_after(Duration::from_millis(wait_ms))
    } else {
        error
    }
}

/// What one try of the limit gave.
enum Tried {
    Granted(Grant),
    Wait(u64),
    Failed(Error),
}

/// A hit's answer: the limit's decision, and whether the hold let it pass.
type Hit2 = Result<(Decision, bool), traffik_core::Error>;

impl Inner {
    /// The earliest time `units` of cost (the waiters ahead and the call)
    /// can all have passed: after the limit opens, its burst at once, then
    /// its sustained rate.
    fn eta(&self, q: &Queue, now: u64, units: u64) -> u64 {
        let start = q.open_at().max(now);
        let beyond = units.saturating_sub(self.capacity);
        let wait = u128::from(beyond) * u128::from(self.period_ms) / u128::from(self.count);
        start.saturating_add(u64::try_from(wait).unwrap_or(u64::MAX))
    }

    /// Tries the limit; an in-memory answer is ready at once, a remote
    /// one is boxed, so that every call's future stays small (a remote
    /// store's future is kilobytes, and a future is moved whole).
    async fn try_hit(&self, cost: u64, now: u64) -> Tried {
        if let Some(wait) = self.pace_wait(cost, now) {
            return Tried::Wait(wait);
        }
        let outcome = match self.hit_now(cost, now) {
            Ok(outcome) => outcome,
            Err(pending) => pending.await,
        };
        match self.decided(cost, now, outcome) {
            Some(tried) => tried,
            None => Box::pin(self.read_hold(now)).await,
        }
    }

    /// [`try_hit`](Inner::try_hit) when the store answers at once, `None`
    /// when it does not (nothing was charged then: a pending answer does
    /// nothing until polled).
    fn try_hit_now(&self, cost: u64, now: u64) -> Option<Tried> {
        if let Some(wait) = self.pace_wait(cost, now) {
            return Some(Tried::Wait(wait));
        }
        let Ok(outcome) = self.hit_now(cost, now) else {
            self.untake(cost);
            return None;
        };
        match self.decided(cost, now, outcome) {
            Some(tried) => Some(tried),
            None => {
                // How long is for the waiting way, which may await.
                self.hold_read_due.store(true, Ordering::Relaxed);
                Some(Tried::Wait(1))
            }
        }
    }

    /// One hit of the limit, with the shared hold checked beside it in the
    /// same atomic call: the answer at once, or a boxed future.
    #[allow(clippy::type_complexity)]
    fn hit_now(
        &self,
        cost: u64,
        now: u64,
    ) -> Result<Hit2, futures_util::future::BoxFuture<'_, Hit2>> {
        let throttle = &self.throttle;
        let key = Key::with_tag(throttle.scope(), IDENTITY, IDENTITY.len());
        let main = Hit {
            key,
            limit: throttle.limit(),
            cost,
        };
        let Some(hold) = &self.hold else {
            return throttle
                .backend()
                .hit(key, throttle.limit(), now, cost)
                .into_ready()
                .map(|outcome| outcome.map(|d| (d, true)))
                .map_err(|pending| {
                    Box::pin(async move { pending.await.map(|d| (d, true)) })
                        as futures_util::future::BoxFuture<'_, Hit2>
                });
        };
        let both = |decisions: Vec<Decision>| match decisions.as_slice() {
            [limit, hold] => (*limit, hold.is_allowed()),
            _ => (Decision::contended(throttle.limit().capacity(), 1), true),
        };
        throttle
            .backend()
            .hit_all(vec![main, hold.check(IDENTITY)], now)
            .into_ready()
            .map(|outcome| outcome.map(both))
            .map_err(|pending| {
                Box::pin(async move { pending.await.map(both) })
                    as futures_util::future::BoxFuture<'_, Hit2>
            })
    }

    /// How long the shared hold lasts: this process holds off as long.
    async fn read_hold(&self, now: u64) -> Tried {
        let left = match &self.hold {
            Some(hold) => hold.left(self.throttle.backend(), IDENTITY, now).await,
            None => Ok(None),
        };
        let wait = match left {
            Ok(Some(left)) => u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
            // Ended meanwhile, or the store cannot say: try again soon.
            Ok(None) | Err(_) => 1,
        };
        let mut q = self.queue.lock();
        q.paused_until_ms = q.paused_until_ms.max(now.saturating_add(wait));
        Tried::Wait(wait)
    }

    /// The adaptive pace's wait, if it has one (else its slot is taken).
    fn pace_wait(&self, cost: u64, now: u64) -> Option<u64> {
        let pace = self.pace.as_ref()?;
        let wait = pace.lock().take(now, cost);
        (wait > 0).then_some(wait)
    }

    /// What the store's answer means for the call; `None` when the shared
    /// hold-off refused it (how long it lasts is another read).
    fn decided(&self, cost: u64, now: u64, outcome: Hit2) -> Option<Tried> {
        let throttle = &self.throttle;
        let decision = match outcome {
            Ok((_, false)) => {
                self.untake(cost);
                return None;
            }
            Ok((decision, true)) => decision,
            Err(error) => {
                // The store could not answer: the throttle's failure policy.
                if error.kind().is_store_failure() {
                    throttle.failed(&error, now);
                }
                match throttle.decision_for_error(&error, throttle.limit().capacity()) {
                    Some(decision) => decision,
                    None => {
                        self.untake(cost);
                        return Some(Tried::Failed(
                            Error::new(Layer::Limit, ErrorKind::Store, "the limit's store failed")
                                .with_source(Arc::new(error)),
                        ));
                    }
                }
            }
        };
        throttle.record(&decision);
        if decision.is_allowed() {
            self.last_remaining
                .store(decision.remaining(), Ordering::Relaxed);
            if decision.remaining() == 0 {
                // The next hit would be denied: wait the time one unit
                // takes to free up (exact for GCRA and the buckets; for
                // the windows an early try is denied with the exact wait).
                let hint = (decision.reset_after_ms() / self.capacity).max(1);
                let mut q = self.queue.lock();
                q.try_later(now.saturating_add(hint));
            }
            return Some(Tried::Granted(Grant {
                charged_ms: now,
                cost,
            }));
        }
        self.untake(cost);
        if decision.reason() == Reason::CostExceedsCapacity {
            return Some(Tried::Failed(too_costly()));
        }
        Some(Tried::Wait(decision.retry_after_ms().max(1)))
    }

    fn untake(&self, cost: u64) {
        if let Some(pace) = &self.pace {
            pace.lock().untake(cost);
        }
    }

    /// Writes a hold-off into the store: every process's next hit finds
    /// it.
    async fn share_pause(&self, now: u64, hold: Duration) {
        if let Some(shared) = &self.hold {
            let _ = shared
                .set(self.throttle.backend(), IDENTITY, now, hold)
                .await;
        }
    }

    /// Fails the waiters that cannot get a slot before their deadline, and
    /// those whose caller went away. Returns the head's place and cost.
    fn prune(&self, q: &mut Queue, now: u64) -> Option<(Place, u64)> {
        let mut ahead = 0u64;
        let mut gone = Vec::new();
        for (place, waiter) in &q.waiters {
            if waiter.tx.is_closed() {
                gone.push((*place, None));
                continue;
            }
            ahead = ahead.saturating_add(waiter.cost);
            let eta = self.eta(q, now, ahead);
            if waiter.deadline_ms.is_some_and(|d| d < eta || d <= now) {
                gone.push((*place, Some(eta.saturating_sub(now))));
                ahead = ahead.saturating_sub(waiter.cost);
            }
        }
        for (place, eta) in gone {
            if let (Some(waiter), Some(eta)) = (q.waiters.remove(&place), eta) {
                let _ = waiter.tx.send(Err(deadline_error(eta)));
            }
        }
        self.instruments.depth(q.waiters.len());
        q.waiters
            .first_key_value()
            .map(|(place, w)| (*place, w.cost))
    }
}

/// Serves the queue until it is empty.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        let now = inner.clock.now_ms();
        let (head, open_at) = {
            let mut q = inner.queue.lock();
            let Some(head) = inner.prune(&mut q, now) else {
                q.running = false;
                return;
            };
            (head, q.open_at())
        };
        if open_at > now {
            let at = inner.clock.instant_at(open_at);
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = inner.wake.notified() => {}
            }
            continue;
        }
        let (place, cost) = head;
        match inner.try_hit(cost, now).await {
            Tried::Granted(grant) => {
                let waiter = inner.queue.lock().waiters.remove(&place);
                let delivered = match waiter {
                    Some(waiter) => {
                        inner.instruments.waited(waiter.since.elapsed());
                        waiter.tx.send(Ok(grant)).is_ok()
                    }
                    None => false,
                };
                if !delivered {
                    Limiter {
                        inner: Arc::clone(&inner),
                    }
                    .refund(grant);
                }
            }
            Tried::Wait(ms) => {
                let mut q = inner.queue.lock();
                q.try_later(now.saturating_add(ms));
            }
            Tried::Failed(error) => {
                if let Some(waiter) = inner.queue.lock().waiters.remove(&place) {
                    let _ = waiter.tx.send(Err(error));
                }
            }
        }
    }
}

/// A caller trying the store on its own: when it is done (or cancelled),
/// others may again.
struct Probe<'a>(&'a Inner);

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        self.0.queue.lock().probing = false;
    }
}

/// The receiving end of a waiter: if the call goes away after its slot
/// was sent, the slot is given back.
struct Waiting {
    rx: oneshot::Receiver<Result<Grant, Error>>,
    limiter: Limiter,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(grant)) = self.rx.try_recv() {
            self.limiter.refund(grant);
        }
    }
}

/// A reserved slot. [`consume`](Permit::consume) it when the request is
/// sent; dropped unconsumed (the call was cancelled, or gave up), it is
/// given back to the store.
#[derive(Debug)]
#[must_use = "a permit dropped unconsumed is refunded"]
pub struct Permit {
    limiter: Option<Limiter>,
    grant: Grant,
}

impl Permit {
    fn new(limiter: Limiter, grant: Grant) -> Permit {
        Permit {
            limiter: Some(limiter),
            grant,
        }
    }

    /// The request goes out: the slot is spent.
    pub fn consume(mut self) {
        self.limiter = None;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            limiter.refund(self.grant);
        }
    }
}

impl LimiterBuilder {
    /// The strategy (default: GCRA, burst of the rate's count). GCRA or a
    /// bucket paces calls evenly; a window lets each window's calls go at
    /// once.
    pub fn strategy(mut self, strategy: impl Into<AnyStrategy>) -> LimiterBuilder {
        self.strategy = strategy.into();
        self
    }

    /// The store of the limit (default: in-memory, this process alone).
    /// Processes that share a Redis or Memcached store share the limit.
    pub fn backend(mut self, backend: AnyBackend) -> LimiterBuilder {
        self.backend = Some(backend);
        self
    }

    /// The namespace of the store's keys (default `traffik-client`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> LimiterBuilder {
        self.namespace = namespace.into();
        self
    }

    /// The clock (default: a new [`TokioClock`]).
    pub fn clock(mut self, clock: TokioClock) -> LimiterBuilder {
        self.clock = clock;
        self
    }

    /// What a store that cannot answer means (default
    /// [`FailurePolicy::fallback(1)`](FailurePolicy::fallback): this
    /// process keeps to the whole limit on its own; give the number of
    /// processes that share the store).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> LimiterBuilder {
        self.policy = policy;
        self
    }

    /// The most calls that may wait (default 1024; at least 1).
    pub fn max_queue(mut self, max: usize) -> LimiterBuilder {
        self.max_queue = max.max(1);
        self
    }

    /// Which call a full queue turns away (default [`Shed::Newest`]).
    pub fn shed(mut self, shed: Shed) -> LimiterBuilder {
        self.shed = shed;
        self
    }

    /// Whether the upstream's feedback is written to the store for every
    /// process (default `true`); off, each process acts on what it sees.
    pub fn share_feedback(mut self, share: bool) -> LimiterBuilder {
        self.share_feedback = share;
        self
    }

    /// The longest hold-off the upstream may impose (default 60 s): an
    /// upstream asking for more is held to this.
    pub fn max_hold_off(mut self, max: Duration) -> LimiterBuilder {
        self.max_hold = max;
        self
    }

    /// Paces this process below the limit after throttling, climbing back
    /// with [`Aimd`].
    pub fn adaptive(mut self, aimd: Aimd) -> LimiterBuilder {
        self.aimd = Some(aimd);
        self
    }

    /// The limiter.
    ///
    /// # Errors
    ///
    /// When the name, namespace, rate or strategy is not valid for a
    /// throttle.
    pub fn build(self) -> Result<Limiter, ConfigError> {
        let backend = match self.backend {
            Some(backend) => backend,
            None => AnyBackend::Memory(traffik_backends::memory::MemoryBackend::new()),
        };
        let throttle = traffik_core::Throttle::builder(self.name.clone(), self.rate)
            .namespace(self.namespace)
            .strategy(self.strategy)
            .failure_policy(self.policy)
            .clock(self.clock)
            .build(backend)?;
        let capacity = throttle.limit().capacity().max(1);
        let count = self.rate.count().max(1);
        let period_ms = u64::try_from(self.rate.period().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        #[allow(clippy::cast_precision_loss)]
        let interval = period_ms as f64 / count as f64;
        // In memory the limit is this process's alone, and so is its
        // hold-off (the queue keeps it): only a shared store needs one.
        let shared_store = !matches!(throttle.backend(), AnyBackend::Memory(_));
        let hold = if self.share_feedback && shared_store {
            Some(Hold::new(
                throttle.namespace(),
                throttle.name(),
                throttle.limit().fallback().is_some(),
            )?)
        } else {
            None
        };
        Ok(Limiter {
            inner: Arc::new(Inner {
                instruments: Instruments::new(Arc::from(self.name.as_str())),
                name: Arc::from(self.name),
                throttle,
                hold,
                clock: self.clock,
                queue: Mutex::new(Queue::default()),
                wake: Notify::new(),
                max_queue: self.max_queue,
                shed: self.shed,
                share_feedback: self.share_feedback,
                max_hold: self.max_hold,
                pace: self.aimd.map(|aimd| Mutex::new(Pace::new(aimd, interval))),
                count,
                period_ms,
                capacity,
                last_remaining: AtomicU64::new(u64::MAX),
                hold_read_due: AtomicBool::new(false),
            }),
        })
    }
}
