//! Run with `cargo bench -p traffik-benches --bench rules`.
//!
//! One request through an axum router, in process (`oneshot`, no network),
//! on the in-memory backend with limits never reached: the bare route, the
//! same GCRA throttle as a `ThrottleLayer` built in code (the baseline), as
//! rules read from a TOML file (`traffik_axum::config::Rules`), and with
//! what rules can add: a filter, a response-counted rule (reserve then
//! refund: every response here is uncounted), and a lockout (a block peeked
//! on every request).
//!
//! Group `rules_reload`: a reload (`Rules::reload`, the file read, checked
//! and put in place) of the demo's file and of a file of 100 throttles and
//! 200 rules, each against parsing the same text into a plain TOML table
//! (the floor any reader pays).
//!
//! Group `rules_while_reloading`: the rules-file layer's request, first
//! with nothing else running (the baseline), then while another thread
//! reloads the file without pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A file of `throttles` throttles, each with two rules (a path filter
/// and a counted rule).
fn big_file(throttles: usize) -> String {
    let mut text = String::from("[backends]\nlocal = \"memory://\"\n\n");
    for i in 0..throttles {
        text.push_str(&format!(
            "[throttles.t{i}]\nrate = \"{}/min\"\nstrategy = \"fixed_window\"\n\n",
            100 + i
        ));
    }
    for i in 0..throttles {
        text.push_str(&format!(
            "[[rules]]\nthrottle = \"t{i}\"\npaths = [\"/p{i}/*\"]\n\n\
             [[rules]]\nthrottle = \"t{i}\"\nmethods = [\"POST\"]\npaths = [\"/p{i}/login\"]\n\
             count = {{ statuses = [401] }}\n\n"
        ));
    }
    text
}

fn reload(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("rules_reload");
    group.throughput(Throughput::Elements(1));
    let demo = std::fs::read_to_string(traffik_examples_rules()).unwrap();
    for (name, text) in [("demo_file", demo), ("200_rules", big_file(100))] {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &text).unwrap();
        let rules = runtime.block_on(Rules::load(&path)).unwrap();
        group.bench_function(format!("baseline_toml_parse/{name}"), |b| {
            b.iter(|| toml::from_str::<toml::Table>(&text).unwrap())
        });
        group.bench_function(format!("reload/{name}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { rules.reload().await.unwrap() })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("rules_while_reloading");
    group.throughput(Throughput::Elements(1));
    let text = format!(
        "[throttles.api]\nrate = \"{RATE}\"\n\n[[rules]]\nthrottle = \"api\"\nscope = \"global\"\n"
    );
    let path = dir.path().join("api.toml");
    std::fs::write(&path, &text).unwrap();
    let rules = runtime.block_on(Rules::load(&path)).unwrap();
    let router = ok_route().layer(rules.layer());
    group.bench_function("baseline_rules_file_layer", |b| {
        b.to_async(&runtime)
            .iter(|| async { router.clone().oneshot(peer_request()).await.unwrap() })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let reloader = std::thread::spawn({
        let (rules, stop) = (rules.clone(), Arc::clone(&stop));
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut reloads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                runtime.block_on(rules.reload()).unwrap();
                reloads += 1;
            }
            reloads
        }
    });
    let started = std::time::Instant::now();
    group.bench_function("rules_file_layer_while_reloading", |b| {
        b.to_async(&runtime)
            .iter(|| async { router.clone().oneshot(peer_request()).await.unwrap() })
    });
    stop.store(true, Ordering::Relaxed);
    let reloads = reloader.join().unwrap();
    println!(
        "rules_while_reloading: {reloads} reloads in {:.1} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        reloads as f64 / started.elapsed().as_secs_f64()
    );
    group.finish();
}

/// The demo's rules file.
fn traffik_examples_rules() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules.toml")
}

criterion_group!(benches, bench, reload);
criterion_main!(benches);
