//! The store's synchronisation primitives: std's atomics and parking_lot's
//! mutex, or loom's models of them when built with `--cfg loom`, so the
//! concurrency protocol can be checked exhaustively (`scripts/test.sh`).

#[cfg(not(loom))]
pub(super) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(super) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(super) use parking_lot::{Mutex, MutexGuard};

/// The hasher of the store's keys: seeded at random per backend, or with a
/// fixed seed under loom, whose models must run the same way every time.
#[cfg(not(loom))]
pub(super) type KeyHasher = foldhash::fast::RandomState;
#[cfg(loom)]
pub(super) type KeyHasher = foldhash::fast::FixedState;

/// loom's mutex, with parking_lot's signature (no poisoning).
#[cfg(loom)]
pub(super) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
pub(super) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(super) fn new(value: T) -> Mutex<T> {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Waits a little for an entry another thread holds, before the caller
/// looks at its lock word again: 1, 2, 4 … 64 spin hints, then yields the
/// core (the holder may have been preempted). Waiting before looking again
/// keeps a waiter from pulling the entry's line away from the holder in the
/// middle of its few instructions.
#[inline]
pub(super) fn backoff(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        if *spins < 7 {
            for _ in 0..1u32 << *spins {
                std::hint::spin_loop();
            }
            *spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}
