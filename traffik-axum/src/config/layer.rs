//! [`RulesLayer`]: the tower layer that runs the rules in force.

use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::rules::Inner;
use super::service::{Built, RulesService};

/// The tower layer of [`Rules::layer`](super::Rules::layer).
#[derive(Clone)]
pub struct RulesLayer {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for RulesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesLayer")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RulesLayer {
    type Service = RulesService<S>;

    fn layer(&self, inner: S) -> RulesService<S> {
        RulesService {
            rules: Arc::clone(&self.inner),
            built: Some(Built::Bare {
                generation: 0,
                inner,
            }),
        }
    }
}
