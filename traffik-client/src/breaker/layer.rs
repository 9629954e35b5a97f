use tower::Layer;

use super::{Breaker, BreakerService};

/// Puts a [`Breaker`] in front of a service.
#[derive(Clone, Debug)]
pub struct BreakerLayer {
    breaker: Breaker,
}

impl BreakerLayer {
    /// The layer of `breaker`.
    pub fn new(breaker: Breaker) -> BreakerLayer {
        BreakerLayer { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;

    fn layer(&self, inner: S) -> BreakerService<S> {
        BreakerService {
            inner,
            breaker: Some(self.breaker.clone()),
        }
    }
}
