//! traffik's benches: `cargo bench -p traffik-benches`. Each bench measures
//! traffik side by side with a peer in the same run; `docs/performance.md`
//! records the ratios.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls a future that is expected to be ready at once (the in-memory
/// backend's are), the way a caller in a sync context would.
///
/// # Panics
///
/// If the future is not ready on the first poll.
#[inline]
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory backend never waits"),
    }
}

/// A key of about 15 bytes, like the ones the peer is measured with.
pub fn key(i: u64) -> String {
    format!("user:{i:010}")
}
