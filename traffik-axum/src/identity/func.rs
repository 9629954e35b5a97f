use std::future::Future;

use traffik_core::Answer;

use super::{Identity, IdentityExtractor};
use crate::RequestHead;
use crate::error::IdentityError;

/// Any closure of the request head as the identity.
///
/// ```
/// use traffik_axum::{FnIdentity, Identity};
///
/// // Health checks are never throttled; everyone else by their tenant header.
/// let identity = FnIdentity::new(|request| {
///     if request.uri().path() == "/health" {
///         return Identity::Exempt;
///     }
///     let tenant = request.headers().get("x-tenant").and_then(|v| v.to_str().ok());
///     Identity::key(tenant.unwrap_or("anonymous"))
/// });
/// ```
///
/// For an async lookup, implement [`IdentityExtractor`] for a type of your own.
#[derive(Clone, Copy, Debug)]
pub struct FnIdentity<F> {
    function: F,
}

impl<F> FnIdentity<F>
where
    F: Fn(RequestHead<'_>) -> Identity + Send + Sync + 'static,
{
    /// The identity is `function(request)`.
    pub fn new(function: F) -> FnIdentity<F> {
        FnIdentity { function }
    }
}

impl<F> IdentityExtractor for FnIdentity<F>
where
    F: Fn(RequestHead<'_>) -> Identity + Send + Sync + 'static,
{
    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        Answer::now(Ok((self.function)(request)))
    }
}
