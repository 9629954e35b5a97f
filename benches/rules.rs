//! Run with `cargo bench -p traffik-benches --bench rules`.
//!
//! One request through an axum router, in process (`oneshot`, no network),
//! on the in-memory backend with limits never reached: the bare route, the
//! same GCRA throttle as a `ThrottleLayer` built in code (the baseline), as
//! rules read from a TOML file (`traffik_axum::config::Rules`), and with
//! what rules can add: a filter, a response-counted rule (reserve then
//! refund: every response here is uncounted), and a lockout (a block peeked
//! on every request).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, StatusCode};
use tower::ServiceExt;
use traffik_axum::config::Rules;
use traffik_axum::{Counting, Filter, KeyScope, PeerIp, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{Gcra, Penalty, Throttle};

fn request() -> Request<Body> {
    let peer: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    Request::builder()
        .uri("/")
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .unwrap()
}

fn route() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

const RATE: &str = "1000000000/min";

fn throttle() -> Throttle<MemoryBackend> {
    Throttle::builder("api", RATE.parse().unwrap())
        .strategy(Gcra::new())
        .build(MemoryBackend::new())
        .unwrap()
}

fn layered(rule: Rule) -> Router {
    route().layer(
        ThrottleLayer::builder(PeerIp::new())
            .rule(rule.scope(KeyScope::Global))
            .build(),
    )
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(1));

    let mut routers = vec![
        ("baseline_bare_route", route()),
        ("code_layer", layered(Rule::new(throttle()))),
    ];
    let text = format!(
        "[throttles.api]\nrate = \"{RATE}\"\n\n[[rules]]\nthrottle = \"api\"\nscope = \"global\"\n"
    );
    let rules = runtime.block_on(Rules::from_toml(&text, "bench")).unwrap();
    routers.push(("rules_file_layer", route().layer(rules.layer())));
    let filtered = Rule::new(throttle()).filter(Filter::new().paths(["/"]).unwrap());
    routers.push(("code_layer_with_path_filter", layered(filtered)));
    let counted =
        Rule::new(throttle()).count(Counting::statuses([StatusCode::INTERNAL_SERVER_ERROR]));
    routers.push(("code_layer_counted_reserve_and_refund", layered(counted)));
    let penalty = Penalty::fixed(Duration::from_secs(60)).unwrap();
    let lockout = Rule::penalized(throttle().penalized(penalty).unwrap());
    routers.push(("code_layer_with_lockout", layered(lockout)));

    for (name, router) in routers {
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { router.clone().oneshot(request()).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
