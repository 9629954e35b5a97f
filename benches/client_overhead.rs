//! Run with `cargo bench -p traffik-benches --bench client_overhead`.
//!
//! One GET to a local server (axum on a loopback port, its own runtime and
//! thread), one after another over a kept-alive connection: bare reqwest,
//! and the same `reqwest::Client` behind traffik-client with a limit never
//! reached (in-memory), then behind the whole stack (coalescing, breaker,
//! limit, retries with a budget, attempt and total timeouts). What the
//! stack adds is its median over bare reqwest's.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use traffik_benches::{client_stacks, upstream};

fn bench(c: &mut Criterion) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let upstream = upstream::start("1000000000/min").await;
            tx.send(upstream.url("/free")).unwrap();
            std::future::pending::<()>().await;
            drop(upstream);
        });
    });
    let url = rx.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let limited = client_stacks::limited(http.clone());
    let full = client_stacks::full(http.clone());

    let mut group = c.benchmark_group("client_overhead");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_bare_reqwest", |b| {
        b.to_async(&runtime)
            .iter(|| async { http.get(&url).send().await.unwrap().bytes().await.unwrap() })
    });
    group.bench_function("traffik_client_limit", |b| {
        b.to_async(&runtime).iter(|| async {
            limited
                .get(&url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        })
    });
    group.bench_function("traffik_client_full_stack", |b| {
        b.to_async(&runtime)
            .iter(|| async { full.get(&url).send().await.unwrap().bytes().await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
