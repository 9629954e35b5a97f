//! Instructions per request through an axum router, for callgrind:
//! `valgrind --tool=callgrind target/release/axum-instructions CONFIG N`.
//! Run it with two values of N; the difference of the totals over the
//! difference of N is the cost of one request, setup excluded. The configs
//! are those of `benches/axum_layer.rs`, `path_filter`: the
//! `traffik_with_headers` throttle with a path filter, and `rules_file`: that
//! throttle from a rules file (`benches/rules.rs`).

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use traffik_axum::{KeyScope, PeerIp, QuotaHeaders, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{ok_route, peer_request};
use traffik_core::{Gcra, Throttle};

fn traffik(headers: QuotaHeaders) -> Router {
    let throttle = Throttle::builder("api", "1000000000/min".parse().unwrap())
        .strategy(Gcra::new())
        .build(MemoryBackend::new())
        .unwrap();
    let rule = Rule::new(throttle).scope(KeyScope::Global);
    let layer = ThrottleLayer::builder(PeerIp::new());
    ok_route().layer(layer.rule(rule).quota_headers(headers).build())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let config = args.next().unwrap_or_else(|| "bare".into());
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let app = match config.as_str() {
        "bare" => ok_route(),
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(u32::MAX)
                .finish()
                .unwrap();
            ok_route().layer(GovernorLayer::new(Arc::new(config)))
        }
        "tower_governor_with_headers" => {
            let mut builder = GovernorConfigBuilder::default();
            builder.per_nanosecond(1).burst_size(u32::MAX);
            let config = builder.use_headers().finish().unwrap();
            ok_route().layer(GovernorLayer::new(Arc::new(config)))
        }
        "traffik" => traffik(QuotaHeaders::DenialsOnly),
        "traffik_with_headers" => traffik(QuotaHeaders::Ietf),
        // The same throttle and headers, with a path filter the request
        // passes.
        "path_filter" => {
            let throttle = Throttle::builder("api", "1000000000/min".parse().unwrap())
                .strategy(Gcra::new())
                .build(MemoryBackend::new())
                .unwrap();
            let filter = traffik_axum::Filter::new().paths(["/"]).unwrap();
            let rule = Rule::new(throttle).scope(KeyScope::Global).filter(filter);
            let layer = ThrottleLayer::builder(PeerIp::new()).rule(rule);
            ok_route().layer(layer.quota_headers(QuotaHeaders::Ietf).build())
        }
        // The same throttle and headers, from a rules file.
        "rules_file" => {
            let text = "[throttles.api]\nrate = \"1000000000/min\"\n\n\
                        [[rules]]\nthrottle = \"api\"\nscope = \"global\"\n";
            let rules = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(traffik_axum::config::Rules::from_toml(text, "bench"))
                .unwrap();
            ok_route().layer(rules.layer())
        }
        other => panic!("unknown config {other}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // The clock calibrates on its first read, for a time that depends on
    // the machine: do it outside the measured loop.
    black_box(traffik_core::Clock::now_ms(&traffik_core::SystemClock));
    measured(&runtime, &app, 1);
    measured(&runtime, &app, n);
}

/// The requests (`--toggle-collect=*measured*` counts only them).
#[inline(never)]
fn measured(runtime: &tokio::runtime::Runtime, app: &Router, n: u64) {
    runtime.block_on(async {
        for _ in 0..n {
            black_box(app.clone().oneshot(peer_request()).await.unwrap());
        }
    });
}
