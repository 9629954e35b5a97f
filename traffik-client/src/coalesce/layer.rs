use tower::Layer;

use super::{Coalesce, CoalesceService};

/// Coalesces identical in-flight requests (see [the module](super)).
#[derive(Clone, Debug)]
pub struct CoalesceLayer {
    coalesce: Coalesce,
}

impl CoalesceLayer {
    /// The layer of `coalesce`.
    pub fn new(coalesce: Coalesce) -> CoalesceLayer {
        CoalesceLayer { coalesce }
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = CoalesceService<S>;

    fn layer(&self, inner: S) -> CoalesceService<S> {
        CoalesceService {
            inner,
            coalesce: Some(self.coalesce.clone()),
        }
    }
}
