//! Run with `cargo bench -p traffik-benches --bench memory_per_key`.
//!
//! Heap bytes per key after 1,000,000 distinct ~15-byte String keys, for
//! governor's keyed limiter and for traffik's in-memory backend with each
//! strategy, counted by a global allocator (bytes requested, the same way for
//! both). Not a timing: it prints a table.

// A counting global allocator needs `unsafe`; nothing else here does.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};

use governor::{Quota, RateLimiter};
use traffik_backends::memory::MemoryBackend;
use traffik_benches::{key, ready};
use traffik_core::{AnyStrategy, ManualClock, StrategyKind, Throttle};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEYS: u64 = 1_000_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn per_key(before: isize) -> f64 {
    (live() - before) as f64 / KEYS as f64
}

fn main() {
    // Criterion passes --bench; `cargo bench --no-run` only compiles this.
    println!("heap bytes per key after {KEYS} distinct 15-byte keys");
    let before = live();
    let governor = RateLimiter::keyed(Quota::per_hour(NonZeroU32::new(1_000).unwrap()));
    for i in 0..KEYS {
        let _ = governor.check_key(&key(i));
    }
    let baseline = per_key(before);
    println!(
        "{:<28}{baseline:>8.1} B   1.00x",
        "governor (keyed, dashmap)"
    );
    drop(governor);

    for kind in StrategyKind::ALL {
        let before = live();
        let backend = MemoryBackend::builder().sweep_interval(None).build();
        let throttle = Throttle::builder("bench", "1000/h".parse().unwrap())
            .strategy(AnyStrategy::from(kind))
            .clock(ManualClock::new(1_700_000_000_000))
            .build(backend.clone())
            .unwrap();
        for i in 0..KEYS {
            ready(throttle.hit(&key(i))).unwrap();
        }
        assert_eq!(backend.len(), KEYS as usize);
        let bytes = per_key(before);
        println!(
            "{:<28}{bytes:>8.1} B   {:.2}x",
            format!("traffik {kind}"),
            bytes / baseline
        );
    }
}
