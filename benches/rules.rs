//! Run with `cargo bench -p traffik-benches --bench rules`.
//!
//! One request through an axum router, in process (`oneshot`, no network),
//! on the in-memory backend with limits never reached: the bare route, the
//! same GCRA throttle as a `ThrottleLayer` built in code (the baseline), as
//! rules read from a TOML file (`traffik_axum::config::Rules`), and with
//! what rules can add: a filter, a response-counted rule (reserve then
//! refund: every response here is uncounted), and a lockout (a block peeked
//! on every request).

use std::time::Duration;

use axum::Router;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::StatusCode;
use tower::ServiceExt;
use traffik_axum::config::Rules;
use traffik_axum::{Counting, Filter, KeyScope, PeerIp, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{ok_route, peer_request};
use traffik_core::{Gcra, Penalty, Throttle};

const RATE: &str = "1000000000/min";

fn throttle() -> Throttle<MemoryBackend> {
    Throttle::builder("api", RATE.parse().unwrap())
        .strategy(Gcra::new())
        .build(MemoryBackend::new())
        .unwrap()
}

fn layered(rule: Rule) -> Router {
    ok_route().layer(
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
        ("baseline_bare_route", ok_route()),
        ("code_layer", layered(Rule::new(throttle()))),
    ];
    let text = format!(
        "[throttles.api]\nrate = \"{RATE}\"\n\n[[rules]]\nthrottle = \"api\"\nscope = \"global\"\n"
    );
    let rules = runtime.block_on(Rules::from_toml(&text, "bench")).unwrap();
    routers.push(("rules_file_layer", ok_route().layer(rules.layer())));
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
                .iter(|| async { router.clone().oneshot(peer_request()).await.unwrap() })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
