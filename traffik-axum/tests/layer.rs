//! The layer's logic through `tower::ServiceExt::oneshot`: status codes,
//! headers, ordering, identity, keying, failures.

mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Request, StatusCode};
use support::{Counting, Down};
use tower::ServiceExt;
use traffik_axum::{
    ClientIp, FnIdentity, HeaderKey, Identity, IpSource, KeyScope, PeerIp, QuotaHeaders, Rejection,
    Rule, ThrottleLayer,
};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{FailurePolicy, FixedWindow, Gcra, Limit, ManualClock, Throttle};

const PEER: &str = "203.0.113.5:4000";

/// On a whole minute, so a one-minute window has 60 s left.
const MINUTE: u64 = 1_700_000_040_000;

fn throttle<B: traffik_core::Backend>(
    name: &str,
    rate: &str,
    backend: B,
) -> Throttle<B, ManualClock> {
    Throttle::builder(name, rate.parse().unwrap())
        .strategy(FixedWindow)
        .clock(ManualClock::new(MINUTE))
        .build(backend)
        .unwrap()
}

fn app(layer: ThrottleLayer<impl traffik_axum::IdentityExtractor>) -> Router {
    Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .route("/other", get(|| async { "other" }))
        .route_layer(layer)
}

async fn send(app: &Router, request: Request<Body>) -> Response {
    app.clone().oneshot(request).await.unwrap()
}

async fn body(response: Response) -> String {
    String::from_utf8(
        to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn denies_with_429_exactly_after_the_limit_with_all_headers() {
    let layer = ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "3/min", MemoryBackend::new()))
        .build();
    let app = app(layer);
    for remaining in [2, 1, 0] {
        let response = send(&app, support::get("/items/1", PEER)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy"), r#""api";q=3;w=60"#);
        assert_eq!(
            header(&response, "ratelimit"),
            format!(r#""api";r={remaining};t=60"#)
        );
    }
    let denied = send(&app, support::get("/items/1", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // The manual clock sits 0 ms into a minute window: 60 s to wait.
    assert_eq!(header(&denied, "retry-after"), "60");
    assert_eq!(header(&denied, "ratelimit"), r#""api";r=0;t=60"#);
    assert_eq!(header(&denied, "content-type"), "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&body(denied).await).unwrap();
    assert_eq!(problem["type"], traffik_axum::QUOTA_EXCEEDED);
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["violated-policies"], serde_json::json!(["api"]));
}

#[tokio::test]
async fn retry_after_rounds_up_and_is_never_zero() {
    let clock = ManualClock::new(1_700_000_000_000);
    let api = Throttle::builder("api", "1/1500ms".parse().unwrap())
        .strategy(Gcra::new())
        .clock(clock.clone())
        .build(MemoryBackend::new())
        .unwrap();
    let app = app(ThrottleLayer::builder(PeerIp::new()).rule(api).build());
    assert_eq!(
        send(&app, support::get("/other", PEER)).await.status(),
        StatusCode::OK
    );
    let denied = send(&app, support::get("/other", PEER)).await;
    assert_eq!(header(&denied, "retry-after"), "2");
    clock.advance(std::time::Duration::from_millis(1_499));
    let denied = send(&app, support::get("/other", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "retry-after"), "1");
}

#[tokio::test]
async fn routes_share_a_budget_per_template_unless_scoped_otherwise() {
    let per_route = app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("r", "2/min", MemoryBackend::new()))
        .build());
    assert_eq!(
        send(&per_route, support::get("/items/1", PEER))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&per_route, support::get("/items/2", PEER))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&per_route, support::get("/items/3", PEER))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&per_route, support::get("/other", PEER))
            .await
            .status(),
        StatusCode::OK
    );

    let global = app(ThrottleLayer::builder(PeerIp::new())
        .rule(Rule::new(throttle("g", "2/min", MemoryBackend::new())).scope(KeyScope::Global))
        .build());
    assert_eq!(
        send(&global, support::get("/items/1", PEER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&global, support::get("/other", PEER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&global, support::get("/items/9", PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client has its own budget.
    assert_eq!(
        send(&global, support::get("/other", "198.51.100.1:1"))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn cheap_first_stops_at_the_first_denial_and_spares_the_rest() {
    let loose = Counting::local();
    let tight = Counting::local();
    // Added loose first: the layer still runs the tighter one first.
    let layer = ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "100/min", loose.clone()))
        .rule(throttle("burst", "2/min", tight.clone()))
        .build();
    let app = app(layer);
    let ok = send(&app, support::get("/other", PEER)).await;
    assert_eq!(
        header(&ok, "ratelimit-policy"),
        r#""burst";q=2;w=60, "api";q=100;w=60"#
    );
    assert_eq!(
        header(&ok, "ratelimit"),
        r#""burst";r=1;t=60, "api";r=99;t=60"#
    );
    send(&app, support::get("/other", PEER)).await;
    let denied = send(&app, support::get("/other", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&denied, "ratelimit"), r#""burst";r=0;t=60"#);
    assert_eq!(tight.hits(), 3);
    assert_eq!(
        loose.hits(),
        2,
        "the denied request was charged to the later throttle"
    );
}

#[tokio::test]
async fn in_memory_throttles_run_before_remote_ones() {
    let remote = Counting::remote();
    let local = Counting::local();
    let layer = ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("remote", "1/min", remote.clone()))
        .rule(throttle("local", "5/min", local.clone()))
        .build();
    let app = app(layer);
    send(&app, support::get("/other", PEER)).await;
    let denied = send(&app, support::get("/other", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&denied, "ratelimit-policy"),
        r#""local";q=5;w=60, "remote";q=1;w=60"#
    );
    assert_eq!((local.hits(), remote.hits()), (2, 2));

    // keep_order() runs them as added: the remote denial now comes first.
    let (remote, local) = (Counting::remote(), Counting::local());
    let app2 = app_with_order(remote.clone(), local.clone());
    send(&app2, support::get("/other", PEER)).await;
    send(&app2, support::get("/other", PEER)).await;
    assert_eq!((local.hits(), remote.hits()), (1, 2));
}

fn app_with_order(remote: Counting, local: Counting) -> Router {
    app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("remote", "1/min", remote))
        .rule(throttle("local", "5/min", local))
        .keep_order()
        .build())
}

#[tokio::test]
async fn exempt_requests_make_zero_backend_calls() {
    let backend = Counting::local();
    let identity = FnIdentity::new(|request| {
        if request.uri().path() == "/other" {
            Identity::Exempt
        } else {
            Identity::key("everyone")
        }
    });
    let layer = ThrottleLayer::builder(identity)
        .rule(throttle("api", "1/min", backend.clone()))
        .build();
    let app = app(layer);
    for _ in 0..10 {
        let response = send(&app, support::get("/other", PEER)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
    }
    assert_eq!(backend.hits(), 0);
    send(&app, support::get("/items/1", PEER)).await;
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let client_ip = ClientIp::trusting(IpSource::XForwardedFor, ["10.0.0.0/8"]).unwrap();
    let app = app(ThrottleLayer::builder(client_ip)
        .rule(Rule::new(throttle("api", "3/min", MemoryBackend::new())).scope(KeyScope::Global))
        .build());
    let spoofed = |n: u32| {
        let mut request = support::get("/other", PEER);
        request
            .headers_mut()
            .insert("x-forwarded-for", format!("1.2.3.{n}").parse().unwrap());
        request
    };
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for n in 0..5 {
            out.push(send(&app, spoofed(n)).await.status());
        }
        out
    };
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(
        statuses[3..],
        [StatusCode::TOO_MANY_REQUESTS; 2],
        "fresh budgets from forged headers"
    );

    // Through a trusted proxy, each client has its own budget.
    for n in 0..5 {
        let mut request = support::get("/other", "10.0.0.7:1000");
        request.headers_mut().insert(
            "x-forwarded-for",
            format!("6.6.6.6, 1.2.3.{n}").parse().unwrap(),
        );
        assert_eq!(send(&app, request).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn missing_connect_info_says_how_to_fix_it() {
    let app = app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "3/min", MemoryBackend::new()))
        .build());
    let request = Request::builder()
        .uri("/other")
        .body(Body::empty())
        .unwrap();
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body(response)
            .await
            .contains("into_make_service_with_connect_info")
    );
}

#[tokio::test]
async fn identity_is_computed_once_per_request_across_layers() {
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = calls.clone();
    let identity = Arc::new(FnIdentity::new(move |_parts| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Identity::key("k")
    }));
    let inner = ThrottleLayer::builder(identity.clone())
        .rule(throttle("inner", "5/min", MemoryBackend::new()))
        .build();
    let outer = ThrottleLayer::builder(identity)
        .rule(throttle("outer", "5/min", MemoryBackend::new()))
        .build();
    let app = Router::new()
        .route("/", get(|| async { "ok" }).layer(inner))
        .layer(outer);
    assert_eq!(
        send(&app, support::get("/", PEER)).await.status(),
        StatusCode::OK
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failures_follow_the_throttle_policy() {
    let down = |policy| {
        Throttle::builder("store", "5/min".parse().unwrap())
            .failure_policy(policy)
            .build(Down)
            .unwrap()
    };
    let open = app(ThrottleLayer::builder(PeerIp::new())
        .rule(down(FailurePolicy::Allow))
        .build());
    let response = send(&open, support::get("/other", PEER)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("ratelimit").is_none(),
        "no quota is known"
    );

    let closed = app(ThrottleLayer::builder(PeerIp::new())
        .rule(down(FailurePolicy::Deny))
        .build());
    assert_eq!(
        send(&closed, support::get("/other", PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let closed_503 = app(ThrottleLayer::builder(PeerIp::new())
        .rule(down(FailurePolicy::Deny))
        .failure_status(StatusCode::SERVICE_UNAVAILABLE)
        .build());
    let response = send(&closed_503, support::get("/other", PEER)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "1");

    let error = app(ThrottleLayer::builder(PeerIp::new())
        .rule(down(FailurePolicy::Error))
        .build());
    let response = send(&error, support::get("/other", PEER)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body(response).await.contains("injected: the store is down"));
}

#[tokio::test]
async fn limits_per_identity_and_costs_per_request() {
    let premium = Limit::new("5/min".parse().unwrap(), FixedWindow).unwrap();
    let rule = Rule::new(throttle("api", "2/min", MemoryBackend::new()))
        .scope(KeyScope::Global)
        .limit_by(move |identity| {
            let premium = premium.clone();
            let vip = identity.text().is_some_and(|key| key.starts_with("vip"));
            async move { vip.then_some(premium) }
        })
        .cost_by(|request| {
            let cost = request
                .headers()
                .get("x-cost")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1);
            async move { cost }
        });
    let app = app(
        ThrottleLayer::builder(HeaderKey::new("x-api-key").or(PeerIp::new()))
            .rule(rule)
            .build(),
    );
    let with_key = |key: &str, cost: u64| {
        let mut request = support::get("/other", PEER);
        request
            .headers_mut()
            .insert("x-api-key", key.parse().unwrap());
        request
            .headers_mut()
            .insert("x-cost", cost.to_string().parse().unwrap());
        request
    };
    let vip = send(&app, with_key("vip-1", 3)).await;
    assert_eq!(header(&vip, "ratelimit"), r#""api";r=2;t=60"#);
    assert_eq!(header(&vip, "ratelimit-policy"), r#""api";q=5;w=60"#);
    assert_eq!(
        send(&app, with_key("vip-1", 2)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, with_key("vip-1", 1)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&app, with_key("basic", 2)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, with_key("basic", 1)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Without the header, the peer's address is the identity.
    assert_eq!(
        send(&app, support::get("/other", PEER)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn rejections_can_be_plain_text_or_your_own() {
    let plain = app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "1/min", MemoryBackend::new()))
        .rejection(Rejection::PlainText)
        .build());
    send(&plain, support::get("/other", PEER)).await;
    let response = send(&plain, support::get("/other", PEER)).await;
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(header(&response, "retry-after"), "60");
    assert!(
        body(response)
            .await
            .starts_with("quota of policy \"api\" exceeded; retry in 60 s")
    );

    let custom = app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "1/min", MemoryBackend::new()))
        .rejection(Rejection::Custom(Arc::new(|rejected| {
            (
                StatusCode::IM_A_TEAPOT,
                format!("later, {}", rejected.violated_policy()),
            )
                .into_response()
        })))
        .build());
    send(&custom, support::get("/other", PEER)).await;
    let response = send(&custom, support::get("/other", PEER)).await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(body(response).await, "later, api");
}

#[tokio::test]
async fn legacy_headers_are_opt_in_and_quota_headers_can_be_off() {
    let legacy = app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "4/min", MemoryBackend::new()))
        .quota_headers(QuotaHeaders::IetfAndLegacy)
        .build());
    let response = send(&legacy, support::get("/other", PEER)).await;
    assert_eq!(header(&response, "x-ratelimit-limit"), "4");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "3");
    assert_eq!(header(&response, "x-ratelimit-reset"), "60");

    let quiet = app(ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("api", "1/min", MemoryBackend::new()))
        .quota_headers(QuotaHeaders::DenialsOnly)
        .build());
    let response = send(&quiet, support::get("/other", PEER)).await;
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("x-ratelimit-limit").is_none());
    let denied = send(&quiet, support::get("/other", PEER)).await;
    assert_eq!(header(&denied, "ratelimit"), r#""api";r=0;t=60"#);
}

#[tokio::test]
async fn a_cost_that_can_never_pass_has_no_retry_after() {
    let rule = Rule::new(throttle("api", "2/min", MemoryBackend::new())).cost_by(|_| async { 5 });
    let app = app(ThrottleLayer::builder(PeerIp::new()).rule(rule).build());
    let response = send(&app, support::get("/other", PEER)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_none());
    assert!(body(response).await.contains("can ever admit"));
}

#[tokio::test]
async fn works_on_one_method_router_and_on_the_whole_router() {
    let per_route = throttle("one", "1/min", MemoryBackend::new());
    let app = Router::new()
        .route(
            "/limited",
            get(|| async { "x" }).layer(
                ThrottleLayer::builder(PeerIp::new())
                    .rule(per_route)
                    .build(),
            ),
        )
        .route("/free", get(|| async { "y" }));
    send(&app, support::get("/limited", PEER)).await;
    assert_eq!(
        send(&app, support::get("/limited", PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(
            send(&app, support::get("/free", PEER)).await.status(),
            StatusCode::OK
        );
    }
    let whole = Router::new().route("/a", get(|| async { "a" })).layer(
        ThrottleLayer::builder(PeerIp::new())
            .rule(throttle("all", "1/min", MemoryBackend::new()))
            .build(),
    );
    send(&whole, support::get("/a", PEER)).await;
    assert_eq!(
        send(&whole, support::get("/a", PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Unmatched paths share the template "*": random paths make no new keys.
    let first_404 = send(&whole, support::get("/nope-1", PEER)).await;
    assert_eq!(first_404.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        send(&whole, support::get("/nope-2", PEER)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn nested_layers_add_their_quota_members() {
    let route = ThrottleLayer::builder(PeerIp::new())
        .rule(throttle("route", "1/min", MemoryBackend::new()))
        .build();
    let global = ThrottleLayer::builder(PeerIp::new())
        .rule(Rule::new(throttle("global", "10/min", MemoryBackend::new())).scope(KeyScope::Global))
        .build();
    let app = Router::new()
        .route("/", get(|| async { "ok" }).layer(route))
        .layer(global);
    let ok = send(&app, support::get("/", PEER)).await;
    assert_eq!(
        header(&ok, "ratelimit-policy"),
        r#""route";q=1;w=60, "global";q=10;w=60"#
    );
    let denied = send(&app, support::get("/", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&denied, "ratelimit"),
        r#""route";r=0;t=60, "global";r=8;t=60"#
    );
}

#[tokio::test]
async fn stacked_limits_on_one_store_are_all_or_nothing() {
    let store = MemoryBackend::new();
    let layer = ThrottleLayer::builder(PeerIp::new())
        .rule(Rule::new(throttle("burst", "2/min", store.clone())).scope(KeyScope::Global))
        .rule(Rule::new(throttle("daily", "5/day", store.clone())).scope(KeyScope::Global))
        .build();
    let app = app(layer);
    for _ in 0..2 {
        assert_eq!(
            send(&app, support::get("/other", PEER)).await.status(),
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        let denied = send(&app, support::get("/other", PEER)).await;
        assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
        // Both quotas are shown; the daily one was charged by the two
        // admitted requests only.
        let state = header(&denied, "ratelimit");
        // The daily quota is the tighter rate, so it comes first.
        assert!(state.starts_with(r#""daily";r=3;t="#), "{state}");
        assert!(state.ends_with(r#", "burst";r=0;t=60"#), "{state}");
        let body = body_json(denied).await;
        assert_eq!(body["violated-policies"], serde_json::json!(["burst"]));
    }
    let daily = throttle("daily", "5/day", store);
    let left = daily
        .peek("ip:203.0.113.5")
        .into_ready()
        .ok()
        .unwrap()
        .unwrap();
    assert_eq!(
        left.remaining(),
        2,
        "a denied request was charged to the daily quota"
    );
}

#[tokio::test]
async fn every_limit_that_denies_is_named() {
    let store = MemoryBackend::new();
    let layer = ThrottleLayer::builder(PeerIp::new())
        .rule(Rule::new(throttle("a", "1/min", store.clone())).scope(KeyScope::Global))
        .rule(Rule::new(throttle("b", "1/hour", store)).scope(KeyScope::Global))
        .build();
    let app = app(layer);
    send(&app, support::get("/other", PEER)).await;
    let denied = send(&app, support::get("/other", PEER)).await;
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    // Retry-After is the longer wait: until the hour's window ends.
    let hour_left = 3_600 - MINUTE / 1_000 % 3_600;
    assert_eq!(header(&denied, "retry-after"), hour_left.to_string());
    let body = body_json(denied).await;
    assert_eq!(body["violated-policies"], serde_json::json!(["b", "a"]));
}

async fn body_json(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
