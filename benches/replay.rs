//! Run with `cargo bench -p traffik-benches --bench replay`.
//!
//! `traffik replay` over 100,000 lines of a synthetic day (the demo's
//! rules, its three route templates), against reading the same lines
//! without deciding (the parser alone: the floor). Criterion reports lines
//! per second; the goal is at least 1,000,000 lines per minute (16,667 a
//! second).

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use traffik_cli::logs::Parser;
use traffik_cli::replay::{Options, replay};

const LINES: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let text = traffik_cli::sample::day(LINES, 7);
    let log = dir.path().join("day.log");
    std::fs::write(&log, &text).unwrap();
    let options = Options {
        rules: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/rules.toml"
        )),
        logs: vec![log],
        routes: vec!["/items/{id}".into(), "/login".into(), "/".into()],
        top: 10,
        plot: None,
        progress: false,
    };
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(LINES));
    group.sample_size(10);
    group.bench_function("parse_only", |b| {
        b.iter(|| {
            let mut parser = Parser::new();
            text.lines()
                .filter(|line| parser.parse(line).is_ok())
                .count()
        });
    });
    group.bench_function("replay", |b| {
        b.iter(|| {
            let report = replay(&options).unwrap();
            assert_eq!(report.lines, LINES);
            report.rejected
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
