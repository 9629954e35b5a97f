//! The limiter and its queue, on the in-memory backend, in tokio's paused
//! time: pacing, priority, deadlines, shedding, refunds and feedback.

use std::time::Duration;

#[path = "../../traffik-backends/tests/support/mod.rs"]
mod servers;

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use traffik_backends::AnyBackend;
use traffik_client::limit::{Limiter, Shed};
use traffik_client::{ErrorKind, Layer, TokioClock};
use traffik_core::Gcra;

fn limiter(rate: &str, burst: u64) -> Limiter {
    Limiter::builder("up", rate.parse().unwrap())
        .strategy(Gcra::with_burst(burst.try_into().unwrap()))
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_calls_are_paced_at_the_limit() {
    let limiter = limiter("10/s", 10);
    let start = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                limiter.acquire(1, 0, None).await.unwrap().consume();
                start.elapsed()
            })
        })
        .collect();
    let mut at = Vec::new();
    for call in calls {
        at.push(call.await.unwrap());
    }
    at.sort();
    // The burst at once, then one per 100 ms: never faster, never idle.
    assert!(at[..10].iter().all(|t| *t == Duration::ZERO), "{at:?}");
    for (i, t) in at.iter().enumerate().skip(10) {
        let due = Duration::from_millis(100 * (i as u64 - 9));
        assert!(
            *t >= due && *t < due + Duration::from_millis(5),
            "call {i} at {t:?}, due {due:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn higher_priority_first_then_arrival_order() {
    let limiter = limiter("10/s", 1);
    limiter.acquire(1, 0, None).await.unwrap().consume();
    let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, priority) in [
        ("low-1", 0),
        ("low-2", 0),
        ("high", 5),
        ("low-3", 0),
        ("top", 9),
    ] {
        let limiter = limiter.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            limiter.acquire(1, priority, None).await.unwrap().consume();
            order.lock().push(name);
        }));
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock(), ["top", "high", "low-1", "low-2", "low-3"]);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_no_slot_can_meet_fails_at_once() {
    let limiter = limiter("10/s", 1);
    limiter.acquire(1, 0, None).await.unwrap().consume();
    // Four waiting: the fifth call's slot is 500 ms away.
    for _ in 0..4 {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(1, 0, None).await.map(|p| p.consume()) });
    }
    tokio::task::yield_now().await;
    let start = Instant::now();
    let error = limiter
        .acquire(1, 0, Some(start + Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(
        (error.layer(), error.kind()),
        (Layer::Limit, ErrorKind::Deadline)
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "it did not wait to find out"
    );
    assert!(
        error.retry_after().unwrap() >= Duration::from_millis(400),
        "{error}"
    );
    // One that can make it waits and gets its slot.
    limiter
        .acquire(1, 0, Some(start + Duration::from_millis(600)))
        .await
        .unwrap()
        .consume();
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_unsent_calls_give_their_slot_back() {
    let limiter = limiter("1/s", 1);
    // A permit dropped unconsumed is refunded: the next call passes at once.
    drop(limiter.acquire(1, 0, None).await.unwrap());
    let start = Instant::now();
    limiter.acquire(1, 0, None).await.unwrap().consume();
    assert_eq!(start.elapsed(), Duration::ZERO);
    // A waiter cancelled before its slot leaves nothing spent: the next
    // waiter gets the slot it would have had.
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(1, 0, None).await.map(|p| p.consume()) })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    waiter.abort();
    let _ = waiter.await;
    limiter.acquire(1, 0, None).await.unwrap().consume();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_by_its_policy() {
    for shed in [Shed::Newest, Shed::LowestPriority] {
        let limiter = Limiter::builder("up", "1/s".parse().unwrap())
            .max_queue(2)
            .shed(shed)
            .build()
            .unwrap();
        limiter.acquire(1, 0, None).await.unwrap().consume();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire(1, 0, None).await.map(|p| p.consume()) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(limiter.waiting(), 2);
        let same = limiter.acquire(1, 0, None).await.unwrap_err();
        assert_eq!(
            same.kind(),
            ErrorKind::QueueFull,
            "{shed:?}: no higher priority"
        );
        let urgent = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(1, 9, None).await.map(|p| p.consume()) })
        };
        let mut results = Vec::new();
        for task in waiting {
            results.push(task.await.unwrap().map_err(|e| e.kind()));
        }
        let urgent = urgent.await.unwrap().map_err(|e| e.kind());
        match shed {
            Shed::Newest => {
                assert_eq!(urgent, Err(ErrorKind::QueueFull));
                assert_eq!(results, [Ok(()), Ok(())]);
            }
            _ => {
                assert_eq!(urgent, Ok(()));
                assert_eq!(
                    results,
                    [Ok(()), Err(ErrorKind::Shed)],
                    "the newest lowest went"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_cost_beyond_the_burst_is_refused_at_once() {
    let limiter = limiter("10/s", 5);
    let error = limiter.acquire(6, 0, None).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TooCostly);
}

fn retry_after(seconds: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", seconds.to_string().parse().unwrap());
    headers
}

#[tokio::test]
async fn a_429s_retry_after_holds_every_limiter_of_the_store() {
    // Two limiters on one Redis: two processes, in one test (real time).
    let redis = servers::RedisServer::start();
    let store = AnyBackend::from_url(&redis.url()).await.unwrap();
    let clock = TokioClock::new();
    let build = || {
        Limiter::builder("up", "100/s".parse().unwrap())
            .backend(store.clone())
            .clock(clock)
            .build()
            .unwrap()
    };
    let (seer, other) = (build(), build());
    seer.acquire(1, 0, None).await.unwrap().consume();
    seer.observe(StatusCode::TOO_MANY_REQUESTS, &retry_after(2));
    assert!(
        seer.held_off_for()
            .is_some_and(|h| h > Duration::from_millis(1_990))
    );
    tokio::time::sleep(Duration::from_millis(50)).await; // the shared write
    let start = Instant::now();
    other.acquire(1, 0, None).await.unwrap().consume();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1_900) && waited <= Duration::from_millis(2_100),
        "the other process held off too: {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_held_to_the_maximum() {
    let limiter = Limiter::builder("up", "10/s".parse().unwrap())
        .max_hold_off(Duration::from_secs(5))
        .build()
        .unwrap();
    limiter.observe(StatusCode::SERVICE_UNAVAILABLE, &retry_after(86_400));
    assert_eq!(limiter.held_off_for(), Some(Duration::from_secs(5)));
    // On a 200, a Retry-After is not about the limit.
    let limiter = limiter_named("ok");
    limiter.observe(StatusCode::OK, &retry_after(10));
    assert_eq!(limiter.held_off_for(), None);
}

fn limiter_named(name: &str) -> Limiter {
    Limiter::builder(name, "10/s".parse().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn adaptive_mode_slows_after_a_429_and_climbs_back() {
    let limiter = Limiter::builder("up", "10/s".parse().unwrap())
        .adaptive(traffik_client::limit::Aimd::default())
        .build()
        .unwrap();
    limiter.observe(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new());
    assert!((limiter.adaptive_share() - 0.5).abs() < 1e-9);
    // At half the rate: spaced by 200 ms, though the burst has room.
    let start = Instant::now();
    for _ in 0..3 {
        limiter.acquire(1, 0, None).await.unwrap().consume();
    }
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    tokio::time::sleep(Duration::from_secs(10)).await;
    limiter.acquire(1, 0, None).await.unwrap().consume();
    assert!((limiter.adaptive_share() - 1.0).abs() < 1e-9);
}

proptest::proptest! {
    // Any cost, priority and deadline a caller passes: no panic, no
    // overflow, and never more admitted than the limit allows in the time
    // that passed (burst + rate × time).
    #[test]
    fn any_options_never_panic_nor_over_admit(
        calls in proptest::collection::vec(
            (proptest::prelude::any::<u64>(), proptest::prelude::any::<i32>(), proptest::option::of(0u64..3_000)),
            1..40,
        ),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let admitted = runtime.block_on(async move {
            let limiter = Limiter::builder("up", "10/s".parse().unwrap()).max_queue(16).build().unwrap();
            let start = Instant::now();
            let tasks: Vec<_> = calls
                .into_iter()
                .map(|(cost, priority, deadline)| {
                    let limiter = limiter.clone();
                    let cost = cost % 13;
                    tokio::spawn(async move {
                        let deadline = deadline.map(|ms| start + Duration::from_millis(ms));
                        match limiter.acquire(cost, priority, deadline).await {
                            Ok(permit) => {
                                permit.consume();
                                cost.max(1)
                            }
                            Err(error) => {
                                assert!(matches!(
                                    error.kind(),
                                    ErrorKind::Deadline | ErrorKind::QueueFull | ErrorKind::TooCostly
                                ), "{error}");
                                0
                            }
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut admitted = 0;
            for task in tasks {
                if task.is_finished() {
                    admitted += task.await.unwrap();
                } else {
                    task.abort();
                }
            }
            admitted
        });
        // Burst 10, plus 10/s for the 3 s that passed.
        proptest::prop_assert!(admitted <= 10 + 30, "{admitted}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_upstream_with_less_remaining_lowers_the_shared_limit_to_match() {
    let limiter = Limiter::builder("up", "10/s".parse().unwrap())
        .build()
        .unwrap();
    limiter.acquire(1, 0, None).await.unwrap().consume();
    // We think 9 are left; the upstream says 2 (someone else spends the key).
    let mut headers = HeaderMap::new();
    headers.insert("ratelimit", r#""default";r=2;t=1"#.parse().unwrap());
    limiter.observe(StatusCode::OK, &headers);
    tokio::task::yield_now().await; // the drain, on its own task
    let start = Instant::now();
    for _ in 0..2 {
        limiter.acquire(1, 0, None).await.unwrap().consume();
    }
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the two the upstream has left"
    );
    limiter.acquire(1, 0, None).await.unwrap().consume();
    assert!(
        start.elapsed() >= Duration::from_millis(90),
        "then the pace: {:?}",
        start.elapsed()
    );
}
