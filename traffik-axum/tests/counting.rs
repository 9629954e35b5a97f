//! Over real HTTP (axum on a loopback port, reqwest): response-counted
//! rules in both modes under concurrent requests, request filters, and a
//! login route with failed-attempt counting and an escalating lockout.
//!
//! Handlers wait on a barrier or a short sleep so that requests really are
//! in flight together; the throttles run on a manual clock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use support::serve;
use traffik_axum::{Counting, Filter, HeaderKey, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{FixedWindow, ManualClock, Penalty, Throttle};

const START_MS: u64 = 1_700_000_000_123;

/// `POST /login` answers 401 unless the `x-password` header is `right`,
/// after holding the request `hold` long (so concurrent requests overlap).
fn login_app(rule: Rule, hold: Duration) -> Router {
    let layer = ThrottleLayer::builder(HeaderKey::new("x-user"))
        .rule(rule)
        .build();
    Router::new()
        .route(
            "/login",
            post(move |headers: HeaderMap| async move {
                tokio::time::sleep(hold).await;
                if headers.get("x-password").is_some_and(|p| p == "right") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .layer(layer)
}

fn throttle(
    memory: &MemoryBackend,
    clock: &ManualClock,
    rate: &str,
) -> Throttle<MemoryBackend, ManualClock> {
    Throttle::builder("login", rate.parse().unwrap())
        .strategy(FixedWindow)
        .clock(clock.clone())
        .build(memory.clone())
        .unwrap()
}

async fn login(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{url}/login"))
        .header("x-user", user)
        .header("x-password", password)
        .send()
        .await
        .unwrap()
}

/// Fires `n` logins at once; the statuses, sorted.
async fn burst(url: &str, user: &str, password: &str, n: usize) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut calls = Vec::new();
    for _ in 0..n {
        let (client, url, user, password) = (
            client.clone(),
            url.to_owned(),
            user.to_owned(),
            password.to_owned(),
        );
        calls.push(tokio::spawn(async move {
            login(&client, &url, &user, &password)
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    statuses.sort_unstable();
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reserve_then_settle_is_exact_under_concurrency() {
    let (memory, clock) = (MemoryBackend::new(), ManualClock::new(START_MS));
    let rule = Rule::new(throttle(&memory, &clock, "5/min"))
        .count(Counting::statuses([StatusCode::UNAUTHORIZED]));
    let server = serve(login_app(rule, Duration::from_millis(150))).await;
    // 30 concurrent failed logins: each reserves while in flight, so no
    // more than 5 reach the handler.
    let statuses = burst(&server.url, "mallory", "wrong", 30).await;
    assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 25, "{statuses:?}");
    // Successful logins are refunded: any number of them, and the
    // failures still have their full budget of 5.
    one_at_a_time(&server.url, "alice").await;
}

/// One request at a time: 12 successes (never charged), then 5 failures
/// (charged), then nothing passes.
async fn one_at_a_time(url: &str, user: &str) {
    let client = reqwest::Client::new();
    for _ in 0..12 {
        assert_eq!(login(&client, url, user, "right").await.status(), 200);
    }
    for _ in 0..5 {
        assert_eq!(login(&client, url, user, "wrong").await.status(), 401);
    }
    assert_eq!(login(&client, url, user, "right").await.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_then_charge_lets_a_concurrent_burst_past_the_limit() {
    let (memory, clock) = (MemoryBackend::new(), ManualClock::new(START_MS));
    let rule = Rule::new(throttle(&memory, &clock, "5/min"))
        .count(Counting::statuses([StatusCode::UNAUTHORIZED]).check_then_charge());
    let server = serve(login_app(rule, Duration::from_millis(150))).await;
    // The documented race: every request passes the check before any is
    // charged.
    let statuses = burst(&server.url, "mallory", "wrong", 30).await;
    assert!(count(&statuses, 401) > 5, "{statuses:?}");
    // Once charged, the limit holds.
    let client = reqwest::Client::new();
    assert_eq!(
        login(&client, &server.url, "mallory", "wrong")
            .await
            .status(),
        429
    );
    // One at a time it is exact, and uncounted responses are never charged.
    one_at_a_time(&server.url, "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_locks_out_for_longer_at_each_breach() {
    let (memory, clock) = (MemoryBackend::new(), ManualClock::new(START_MS));
    let penalty = Penalty::escalating([Duration::from_secs(60), Duration::from_secs(600)])
        .unwrap()
        .forgive_after(Duration::from_secs(86_400))
        .unwrap();
    let lockout = throttle(&memory, &clock, "5/min")
        .penalized(penalty)
        .unwrap();
    let rule = Rule::penalized(lockout).count(Counting::statuses([StatusCode::UNAUTHORIZED]));
    let server = serve(login_app(rule, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let retry_after = |response: &reqwest::Response| -> u64 {
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    for _ in 0..5 {
        assert_eq!(
            login(&client, &server.url, "alice", "wrong").await.status(),
            401
        );
    }
    // The sixth attempt breaches: locked out for the first step.
    let locked = login(&client, &server.url, "alice", "wrong").await;
    assert_eq!(locked.status(), 429);
    assert_eq!(retry_after(&locked), 60);
    // Locked out even with the right password, with the time left.
    clock.advance(Duration::from_secs(20));
    let locked = login(&client, &server.url, "alice", "right").await;
    assert_eq!((locked.status().as_u16(), retry_after(&locked)), (429, 40));
    let body = locked.text().await.unwrap();
    assert!(body.contains("blocked"), "{body}");
    // Others are not.
    assert_eq!(
        login(&client, &server.url, "bob", "right").await.status(),
        200
    );
    // After the block (and the window), in again.
    clock.advance(Duration::from_secs(40));
    assert_eq!(
        login(&client, &server.url, "alice", "right").await.status(),
        200
    );
    // The second breach locks out for the second step.
    for _ in 0..5 {
        assert_eq!(
            login(&client, &server.url, "alice", "wrong").await.status(),
            401
        );
    }
    let locked = login(&client, &server.url, "alice", "wrong").await;
    assert_eq!((locked.status().as_u16(), retry_after(&locked)), (429, 600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_choose_the_requests_a_rule_counts() {
    let (memory, clock) = (MemoryBackend::new(), ManualClock::new(START_MS));
    let writes = Throttle::builder("writes", "2/min".parse().unwrap())
        .clock(clock.clone())
        .build(memory.clone())
        .unwrap();
    let predicate_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&predicate_calls);
    let filter = Filter::new()
        .methods([http::Method::POST])
        .paths(["/api/**"])
        .unwrap()
        .header_absent("x-internal")
        .unwrap()
        .bypass_if(move |request| {
            calls.fetch_add(1, Ordering::Relaxed);
            request.uri().query() == Some("dry-run")
        });
    let layer = ThrottleLayer::builder(HeaderKey::new("x-user"))
        .rule(Rule::new(writes).filter(filter))
        .build();
    let app = Router::new()
        .route(
            "/api/{*rest}",
            get(|| async { "read" }).post(|| async { "written" }),
        )
        .route("/other", post(|| async { "other" }))
        .layer(layer);
    let server = serve(app).await;
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, internal: bool| {
        let mut request = client
            .request(method, format!("{}{path}", server.url))
            .header("x-user", "u");
        if internal {
            request = request.header("x-internal", "1");
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Not counted: reads, other paths, internal calls, dry runs.
    for _ in 0..5 {
        assert_eq!(send(reqwest::Method::GET, "/api/a/b", false).await, 200);
        assert_eq!(send(reqwest::Method::POST, "/other", false).await, 200);
        assert_eq!(send(reqwest::Method::POST, "/api/a", true).await, 200);
        assert_eq!(
            send(reqwest::Method::POST, "/api/a?dry-run", false).await,
            200
        );
    }
    assert!(
        predicate_calls.load(Ordering::Relaxed) >= 5,
        "the closure ran"
    );
    // Counted: writes under /api.
    assert_eq!(send(reqwest::Method::POST, "/api/a", false).await, 200);
    assert_eq!(send(reqwest::Method::POST, "/api/b/c", false).await, 200);
    assert_eq!(send(reqwest::Method::POST, "/api/a", false).await, 429);
    // The others still pass.
    assert_eq!(send(reqwest::Method::GET, "/api/a", false).await, 200);
}

/// A request that another rule denies never reaches the handler, so a
/// response-counted rule that reserved for it gives the reservation back:
/// its budget is for the responses it counts, and a 429 of another rule
/// is not one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_another_rule_denies_is_not_counted() {
    let clock = ManualClock::new(START_MS);
    // Two stores, so the rules decide apart, in the order written.
    let failures = Rule::new(throttle(&MemoryBackend::new(), &clock, "2/hour"))
        .count(Counting::statuses([StatusCode::UNAUTHORIZED]));
    let tight = Throttle::builder("tight", "1/min".parse().unwrap())
        .strategy(FixedWindow)
        .clock(clock.clone())
        .build(MemoryBackend::new())
        .unwrap();
    let layer = ThrottleLayer::builder(HeaderKey::new("x-user"))
        .rule(failures)
        .rule(tight)
        .keep_order()
        .build();
    let app = Router::new()
        .route("/login", post(|| async { StatusCode::UNAUTHORIZED }))
        .layer(layer);
    let server = serve(app).await;
    let client = reqwest::Client::new();
    let status = |client: reqwest::Client| {
        let url = server.url.clone();
        async move {
            login(&client, &url, "mallory", "wrong")
                .await
                .status()
                .as_u16()
        }
    };
    // A failure: counted (1 of 2).
    assert_eq!(status(client.clone()).await, 401);
    // Denied by `tight` before the handler: not a failed login.
    assert_eq!(status(client.clone()).await, 429);
    assert_eq!(status(client.clone()).await, 429);
    // Once `tight` has room again, the second failure still has its place.
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(client.clone()).await, 401);
    clock.advance(Duration::from_secs(61));
    assert_eq!(status(client.clone()).await, 429, "2 failures in the hour");
}

/// A path filter sees through the spellings of a path that reach the same
/// handler: percent-escapes (a wildcard's value is decoded for the
/// handler), doubled slashes and dot segments cannot step around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_filter_is_not_bypassed_by_another_spelling() {
    let clock = ManualClock::new(START_MS);
    let logins = Throttle::builder("logins", "1/min".parse().unwrap())
        .clock(clock.clone())
        .build(MemoryBackend::new())
        .unwrap();
    let layer = ThrottleLayer::builder(HeaderKey::new("x-user"))
        .rule(Rule::new(logins).filter(Filter::new().paths(["/api/*/login"]).unwrap()))
        .build();
    let app = Router::new()
        .route(
            "/api/{*rest}",
            post(|axum::extract::Path(rest): axum::extract::Path<String>| async move { rest }),
        )
        .layer(layer);
    let server = serve(app).await;
    // Sent as written (an HTTP client would clean some spellings up).
    let send = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.address)
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nx-user: mallory\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse::<u16>().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, body.to_owned())
    };
    assert_eq!(send("/api/v1/login").await, (200, "v1/login".to_owned()));
    for path in [
        "/api/v1/log%69n",
        "/api/v1%2Flogin",
        "/api//v1/login",
        "/api/v1/./login",
        "/api/x/../v1/login",
    ] {
        assert_eq!(send(path).await.0, 429, "{path} stepped around the filter");
    }
    // Other paths are not this rule's.
    assert_eq!(send("/api/v1/logout").await.0, 200);
}
