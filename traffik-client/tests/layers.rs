//! Each layer alone and in the stack, around a fake HTTP client (a tower
//! `service_fn`) in tokio's paused time: coalescing, retries, the budget,
//! the breaker, timeouts, and the limit under retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer as _, Service, ServiceExt};
use traffik_backends::AnyBackend;
use traffik_backends::memory::MemoryBackend;
use traffik_client::breaker::{Breaker, BreakerLayer, BreakerState, Window};
use traffik_client::coalesce::{Coalesce, CoalesceLayer};
use traffik_client::limit::{LimitLayer, Limiter};
use traffik_client::retry::{RetryBudget, RetryLayer, RetryPolicy};
use traffik_client::timeout::{AttemptTimeoutService, TotalTimeoutLayer};
use traffik_client::{BoxError, Call, CallOptions, ErrorKind, Layer, StackBuilder, TokioClock};
use traffik_core::Gcra;

type Reply = Response<Full<Bytes>>;

/// A plain HTTP client of `Request<String>`.
trait FakeClient:
    Service<Request<String>, Response = Reply, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> FakeClient for S where
    S: Service<Request<String>, Response = Reply, Error = BoxError, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// A fake upstream: counts calls; answers with what `answer(n)` says for
/// the n-th call (from 0) after `delay`.
#[derive(Clone)]
struct Fake {
    calls: Arc<AtomicU32>,
    delay: Duration,
    answer: Arc<dyn Fn(u32) -> Result<Reply, std::io::ErrorKind> + Send + Sync>,
}

impl Fake {
    fn new(
        answer: impl Fn(u32) -> Result<Reply, std::io::ErrorKind> + Send + Sync + 'static,
    ) -> Fake {
        Fake {
            calls: Arc::new(AtomicU32::new(0)),
            delay: Duration::ZERO,
            answer: Arc::new(answer),
        }
    }

    fn delayed(mut self, delay: Duration) -> Fake {
        self.delay = delay;
        self
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The fake behind the adapter the layers wrap.
    fn client(&self) -> AttemptTimeoutService<impl FakeClient> {
        AttemptTimeoutService::new(self.client_inner(), None)
    }
}

fn status(code: u16) -> Reply {
    reply(code, "ok", &[])
}

fn reply(code: u16, body: &'static str, headers: &[(&'static str, &str)]) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
        .headers_mut()
        .insert("content-length", body.len().into());
    for (name, value) in headers {
        response.headers_mut().insert(*name, value.parse().unwrap());
    }
    response
}

fn get(uri: &str) -> Call<Request<String>> {
    Call::new(Request::get(uri).body(String::new()).unwrap())
}

async fn send<S>(service: &S, call: Call<Request<String>>) -> Result<Reply, traffik_client::Error>
where
    S: Service<Call<Request<String>>, Response = Reply, Error = traffik_client::Error> + Clone,
{
    service.clone().ready().await?.call(call).await
}

async fn body(reply: Reply) -> Bytes {
    reply.into_body().collect().await.unwrap().to_bytes()
}

// --- coalescing ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn waiters_share_the_leaders_response_and_its_error() {
    let fake = Fake::new(|n| {
        if n == 0 {
            Ok(reply(200, "quote", &[]))
        } else {
            Err(std::io::ErrorKind::ConnectionReset)
        }
    })
    .delayed(Duration::from_millis(100));
    let coalesce = Coalesce::new("up");
    let service = CoalesceLayer::new(coalesce.clone()).layer(fake.client());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(
                async move { body(send(&service, get("http://up/q")).await.unwrap()).await },
            )
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), "quote");
    }
    assert_eq!(fake.calls(), 1);
    // The next flight fails: every waiter gets the error.
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { send(&service, get("http://up/q")).await.map(|_| ()) })
        })
        .collect();
    for call in calls {
        let error = call.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Transport);
    }
    assert_eq!(fake.calls(), 2);
    let totals = coalesce.totals();
    assert_eq!((totals.misses, totals.hits, totals.shared), (2, 23, 2));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_the_call_to_a_waiter_without_a_second_request() {
    let fake = Fake::new(|_| Ok(reply(200, "quote", &[]))).delayed(Duration::from_millis(100));
    let service = CoalesceLayer::new(Coalesce::new("up")).layer(fake.client());
    let leader = {
        let service = service.clone();
        tokio::spawn(async move { send(&service, get("http://up/q")).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiter = {
        let service = service.clone();
        tokio::spawn(async move { body(send(&service, get("http://up/q")).await.unwrap()).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert_eq!(waiter.await.unwrap(), "quote");
    assert_eq!(fake.calls(), 1, "no duplicate call");
}

#[tokio::test(start_paused = true)]
async fn different_credentials_bodies_past_the_cap_and_posts_do_not_coalesce() {
    let fake = Fake::new(|_| Ok(reply(200, "a body of 24 bytes here.", &[])))
        .delayed(Duration::from_millis(50));
    let service = CoalesceLayer::new(Coalesce::new("up").max_body(16)).layer(fake.client());
    let with_auth = |token: &str| {
        Call::new(
            Request::get("http://up/me")
                .header("authorization", token)
                .body(String::new())
                .unwrap(),
        )
    };
    let (a, b) = tokio::join!(
        send(&service, with_auth("alice")),
        send(&service, with_auth("bob"))
    );
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(fake.calls(), 2, "one call per credential");
    // Past the cap: one caller gets the leader's response, the other its own.
    let (a, b) = tokio::join!(
        send(&service, get("http://up/big")),
        send(&service, get("http://up/big"))
    );
    assert_eq!(body(a.unwrap()).await, body(b.unwrap()).await);
    assert_eq!(fake.calls(), 4);
    let post = || {
        Call::new(
            Request::post("http://up/big")
                .body(String::from("{}"))
                .unwrap(),
        )
    };
    let (a, b) = tokio::join!(send(&service, post()), send(&service, post()));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(fake.calls(), 6);
}

// --- retries --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn retries_the_retryable_and_nothing_else() {
    let fake = Fake::new(|n| Ok(status(if n < 2 { 503 } else { 200 })));
    let service = RetryLayer::new(RetryPolicy::new()).layer(fake.client());
    assert_eq!(
        send(&service, get("http://up/")).await.unwrap().status(),
        200
    );
    assert_eq!(fake.calls(), 3);

    let fake = Fake::new(|_| Ok(status(404)));
    let service = RetryLayer::new(RetryPolicy::new()).layer(fake.client());
    assert_eq!(
        send(&service, get("http://up/")).await.unwrap().status(),
        404
    );
    assert_eq!(fake.calls(), 1, "a 404 is not retried");

    let fake = Fake::new(|_| Err(std::io::ErrorKind::ConnectionRefused));
    let service = RetryLayer::new(RetryPolicy::new()).layer(fake.client());
    let error = send(&service, get("http://up/")).await.unwrap_err();
    assert_eq!(
        (error.layer(), error.kind(), error.attempts()),
        (Layer::Retry, ErrorKind::RetriesExhausted, 3)
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "keeps the last attempt's error"
    );
    assert_eq!(fake.calls(), 3, "connect errors are retried");

    let fake = Fake::new(|_| Err(std::io::ErrorKind::ConnectionReset));
    let service = RetryLayer::new(RetryPolicy::new()).layer(fake.client());
    assert_eq!(
        send(&service, get("http://up/")).await.unwrap_err().kind(),
        ErrorKind::Transport
    );
    assert_eq!(
        fake.calls(),
        1,
        "a reset may have been processed: not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried_and_the_total_timeout_bounds_all() {
    let fake = Fake::new(|_| Ok(status(200))).delayed(Duration::from_secs(10));
    let stack = StackBuilder::new()
        .retry(RetryPolicy::new().backoff(Duration::from_millis(10), Duration::from_millis(10)))
        .attempt_timeout(Duration::from_secs(1))
        .service(fake.client_inner());
    let start = Instant::now();
    let error = send(&stack, get("http://up/")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RetriesExhausted);
    assert_eq!(fake.calls(), 3);
    assert!(start.elapsed() < Duration::from_millis(3_100));

    let stack = StackBuilder::new()
        .retry(RetryPolicy::new())
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_millis(1_500))
        .service(fake.client_inner());
    let start = Instant::now();
    let error = send(&stack, get("http://up/")).await.unwrap_err();
    assert_eq!(
        (error.layer(), error.kind()),
        (Layer::Timeout, ErrorKind::TotalTimeout)
    );
    assert_eq!(start.elapsed(), Duration::from_millis(1_500));
}

impl Fake {
    /// The fake as the plain client the stack wraps.
    fn client_inner(&self) -> impl FakeClient {
        let fake = self.clone();
        tower::service_fn(move |_request: Request<String>| {
            let fake = fake.clone();
            async move {
                let n = fake.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(fake.delay).await;
                (fake.answer)(n).map_err(|kind| Box::new(std::io::Error::from(kind)) as BoxError)
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_retries_and_is_shared_through_the_store() {
    let store = AnyBackend::Memory(MemoryBackend::new());
    let clock = TokioClock::new();
    let budget = || {
        RetryBudget::builder("up")
            .ratio(0.1)
            .min_per_second(1)
            .max_banked(2)
            .backend(store.clone())
            .clock(clock)
            .build()
            .unwrap()
    };
    let fake = Fake::new(|_| Ok(status(503)));
    let policy = RetryPolicy::new()
        .max_retries(5)
        .backoff(Duration::from_millis(1), Duration::from_millis(1));
    let one = RetryLayer::new(policy.clone())
        .with_budget(budget())
        .layer(fake.client());
    let two = RetryLayer::new(policy)
        .with_budget(budget())
        .layer(fake.client());
    // The bank of 2 retries is spent by the first process's call...
    assert_eq!(send(&one, get("http://up/")).await.unwrap().status(), 503);
    assert_eq!(fake.calls(), 3);
    // ...so the second process's call is not retried at all.
    assert_eq!(send(&two, get("http://up/")).await.unwrap().status(), 503);
    assert_eq!(fake.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_stops_retries_without_spending_the_budget() {
    let breaker = Breaker::builder("up")
        .min_calls(1)
        .window(Window::Count(1))
        .open_for(Duration::from_secs(60))
        .build()
        .unwrap();
    let budget = RetryBudget::builder("up").max_banked(1).build().unwrap();
    let fake = Fake::new(|_| Ok(status(503)));
    let stack = StackBuilder::new()
        .breaker(breaker.clone())
        .retry(RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .retry_budget(budget.clone())
        .service(fake.client_inner());
    assert_eq!(send(&stack, get("http://up/")).await.unwrap().status(), 503);
    assert_eq!(fake.calls(), 2, "one retry: the bank held one");
    assert_eq!(breaker.state(), BreakerState::Open);
    let error = send(&stack, get("http://up/")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    assert_eq!(fake.calls(), 2, "open: nothing sent");
}

#[tokio::test(start_paused = true)]
async fn retries_take_a_slot_of_the_limit_like_any_call() {
    let limiter = Limiter::builder("up", "1/s".parse().unwrap())
        .strategy(Gcra::with_burst(1.try_into().unwrap()))
        .build()
        .unwrap();
    let fake = Fake::new(|n| Ok(status(if n < 2 { 502 } else { 200 })));
    let stack = StackBuilder::new()
        .limiter(limiter)
        .retry(RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .service(fake.client_inner());
    let start = Instant::now();
    assert_eq!(send(&stack, get("http://up/")).await.unwrap().status(), 200);
    // Three attempts, one slot each, at 1/s.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_millis(2_100));
}

#[tokio::test(start_paused = true)]
async fn a_shared_breaker_opens_every_process() {
    let store = AnyBackend::Memory(MemoryBackend::new());
    let clock = TokioClock::new();
    let build = || {
        Breaker::builder("up")
            .min_calls(2)
            .open_for(Duration::from_secs(30))
            .shared(store.clone())
            .sync_every(Duration::from_millis(100))
            .clock(clock)
            .build()
            .unwrap()
    };
    let (seer, other) = (build(), build());
    for _ in 0..2 {
        seer.acquire()
            .await
            .unwrap()
            .record(true, Duration::from_millis(1));
    }
    assert_eq!(seer.state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let error = other.acquire().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::CircuitOpen);
    assert!(error.retry_after().unwrap() > Duration::from_secs(29));
}

#[tokio::test(start_paused = true)]
async fn the_stack_with_everything_answers_a_call() {
    let fake = Fake::new(|_| Ok(reply(200, "fine", &[("ratelimit", r#""api";r=5;t=1"#)])));
    let stack = StackBuilder::new()
        .coalesce(Coalesce::new("up"))
        .breaker(Breaker::builder("up").build().unwrap())
        .limiter(
            Limiter::builder("up", "10/s".parse().unwrap())
                .build()
                .unwrap(),
        )
        .retry(RetryPolicy::new())
        .retry_budget(RetryBudget::builder("up").build().unwrap())
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_secs(5))
        .service(fake.client_inner());
    let call = Call::with_options(
        Request::get("http://up/x").body(String::new()).unwrap(),
        CallOptions::new()
            .priority(3)
            .cost(2)
            .timeout(Duration::from_secs(2)),
    );
    assert_eq!(body(send(&stack, call).await.unwrap()).await, "fine");
}

#[tokio::test(start_paused = true)]
async fn the_layers_compose_alone_with_tower() {
    let fake = Fake::new(|n| Ok(status(if n == 0 { 500 } else { 200 })))
        .delayed(Duration::from_millis(10));
    let breaker = Breaker::builder("up")
        .min_calls(1)
        .window(Window::Count(1))
        .build()
        .unwrap();
    let limiter = Limiter::builder("up", "1/s".parse().unwrap())
        .strategy(Gcra::with_burst(1.try_into().unwrap()))
        .build()
        .unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(TotalTimeoutLayer::new(Duration::from_millis(500)))
        .layer(BreakerLayer::new(breaker.clone()))
        .layer(LimitLayer::new(limiter))
        .service(fake.client());
    assert_eq!(
        send(&service, get("http://up/")).await.unwrap().status(),
        500
    );
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(
        send(&service, get("http://up/")).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    let fresh = tower::ServiceBuilder::new()
        .layer(TotalTimeoutLayer::new(Duration::from_millis(500)))
        .layer(LimitLayer::new(
            Limiter::builder("other", "1/min".parse().unwrap())
                .strategy(Gcra::with_burst(1.try_into().unwrap()))
                .build()
                .unwrap(),
        ))
        .service(fake.client());
    assert_eq!(send(&fresh, get("http://up/")).await.unwrap().status(), 200);
    let error = send(&fresh, get("http://up/")).await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Deadline,
        "the total timeout is the limit's deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_requests_from_many_threads_never_both_lead() {
    for _ in 0..20 {
        let fake = Fake::new(|_| Ok(reply(200, "quote", &[]))).delayed(Duration::from_millis(50));
        let service = CoalesceLayer::new(Coalesce::new("up")).layer(fake.client());
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let (service, barrier) = (service.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    body(send(&service, get("http://up/q")).await.unwrap()).await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), "quote");
        }
        assert_eq!(fake.calls(), 1);
    }
}
