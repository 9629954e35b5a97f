//! Run with `cargo bench -p traffik-benches --bench axum_layer`.
//!
//! One request through an axum router, in process (`oneshot`, no network):
//! the trivial route alone, behind traffik's `ThrottleLayer`, and behind
//! tower_governor's `GovernorLayer`, both keyed by the peer IP from
//! `ConnectInfo`, both with limits never reached. The time each layer adds is
//! its median minus the bare route's; the report compares the two.

use std::sync::Arc;

use axum::Router;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use traffik_axum::{KeyScope, PeerIp, QuotaHeaders, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{ok_route, peer_request};
use traffik_core::{Gcra, Throttle};

/// traffik keyed like tower_governor (`KeyScope::Global`: the peer IP
/// alone) unless `scope` says otherwise.
fn traffik(headers: QuotaHeaders, scope: KeyScope) -> Router {
    let throttle = Throttle::builder("api", "1000000000/min".parse().unwrap())
        .strategy(Gcra::new())
        .build(MemoryBackend::new())
        .unwrap();
    let rule = Rule::new(throttle).scope(scope);
    let layer = ThrottleLayer::builder(PeerIp::new());
    ok_route().layer(layer.rule(rule).quota_headers(headers).build())
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("axum_layer");
    group.throughput(Throughput::Elements(1));

    let bare = ok_route();
    group.bench_function("baseline_bare_route", |b| {
        b.to_async(&runtime)
            .iter(|| async { bare.clone().oneshot(peer_request()).await.unwrap() })
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    let governed = ok_route().layer(GovernorLayer::new(Arc::new(config)));
    group.bench_function("tower_governor", |b| {
        b.to_async(&runtime)
            .iter(|| async { governed.clone().oneshot(peer_request()).await.unwrap() })
    });

    let mut builder = GovernorConfigBuilder::default();
    builder.per_nanosecond(1).burst_size(u32::MAX);
    let with_headers = builder.use_headers().finish().unwrap();
    let governed_headers = ok_route().layer(GovernorLayer::new(Arc::new(with_headers)));
    group.bench_function("tower_governor_with_headers", |b| {
        b.to_async(&runtime).iter(|| async {
            governed_headers
                .clone()
                .oneshot(peer_request())
                .await
                .unwrap()
        })
    });

    let quiet = traffik(QuotaHeaders::DenialsOnly, KeyScope::Global);
    group.bench_function("traffik_headers_on_denials_only", |b| {
        b.to_async(&runtime)
            .iter(|| async { quiet.clone().oneshot(peer_request()).await.unwrap() })
    });

    let full = traffik(QuotaHeaders::Ietf, KeyScope::Global);
    group.bench_function("traffik_with_ietf_headers", |b| {
        b.to_async(&runtime)
            .iter(|| async { full.clone().oneshot(peer_request()).await.unwrap() })
    });

    // The default scope also keys on the route template.
    let per_route = traffik(QuotaHeaders::Ietf, KeyScope::Route);
    group.bench_function("traffik_with_ietf_headers_per_route", |b| {
        b.to_async(&runtime)
            .iter(|| async { per_route.clone().oneshot(peer_request()).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
