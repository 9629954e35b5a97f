use tower::Layer;

use super::{LimitService, Limiter};

/// Puts a [`Limiter`] in front of a service: every call waits for its slot.
#[derive(Clone, Debug)]
pub struct LimitLayer {
    limiter: Limiter,
}

impl LimitLayer {
    /// The layer of `limiter`.
    pub fn new(limiter: Limiter) -> LimitLayer {
        LimitLayer { limiter }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = LimitService<S>;

    fn layer(&self, inner: S) -> LimitService<S> {
        LimitService::new(inner, self.limiter.clone())
    }
}
