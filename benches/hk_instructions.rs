//! Instructions per hot-key decision, for callgrind:
//! `valgrind --tool=callgrind --toggle-collect='*measured*'
//! target/release/hk-instructions gcra N` with two values of N; the
//! difference of the totals over the difference of N is one decision
//! (`Throttle::hit` on the in-memory backend, as in `benches/hot_key.rs`).

use std::hint::black_box;
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{key, ready};
use traffik_core::{AnyStrategy, Throttle};

#[inline(never)]
fn measured(throttle: &Throttle<MemoryBackend>, hot: &str, n: u64) {
    for _ in 0..n {
        black_box(ready(throttle.hit(black_box(hot))).unwrap().is_allowed());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind: AnyStrategy = args.next().unwrap().parse().unwrap();
    let n: u64 = args.next().unwrap().parse().unwrap();
    let throttle = Throttle::builder("bench", "1000000000/min".parse().unwrap())
        .strategy(kind)
        .build(MemoryBackend::new())
        .unwrap();
    let hot = key(42);
    black_box(traffik_core::Clock::now_ms(&traffik_core::SystemClock));
    measured(&throttle, &hot, 1);
    measured(&throttle, &hot, n);
}
