//! Where time comes from: [`Clock`], with [`SystemClock`] for production and
//! [`ManualClock`] for tests and simulations.
//!
//! Time is whole milliseconds since the UNIX epoch. Nothing else in traffik
//! reads the system time.

mod manual;
mod system;

pub use manual::ManualClock;
pub use system::SystemClock;

/// A source of the current time, in milliseconds since the UNIX epoch.
///
/// Clocks are cheap to call and safe to share between threads.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the UNIX epoch.
    fn now_ms(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}
