use http::HeaderName;
use std::future::Future;

use traffik_core::Answer;

use super::{Identity, IdentityExtractor};
use crate::RequestHead;
use crate::error::IdentityError;

/// A request header (an API key, a tenant id) as the identity, and another
/// extractor when it is missing or empty.
///
/// ```
/// use traffik_axum::{HeaderKey, PeerIp};
///
/// let by_api_key = HeaderKey::new("x-api-key").or(PeerIp::new());
/// ```
///
/// The value is used as it is: if clients choose it freely, pair it with a
/// limit per IP too, or validate it (an async [`IdentityExtractor`] of your
/// own can look it up).
#[derive(Clone, Debug)]
pub struct HeaderKey<F = NoFallback> {
    name: HeaderName,
    fallback: F,
}

/// No fallback: a request without the header fails with an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

impl IdentityExtractor for NoFallback {
    fn identify(
        &self,
        _request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        Answer::now(Err(missing()))
    }
}

fn missing() -> IdentityError {
    IdentityError::bad_request("the header that identifies the client is missing or empty")
}

impl HeaderKey {
    /// The header `name`.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name (a programming error).
    pub fn new(name: &'static str) -> HeaderKey {
        HeaderKey {
            name: HeaderName::from_static(name),
            fallback: NoFallback,
        }
    }

    /// The header `name`, checked: for names that come from configuration.
    ///
    /// # Errors
    ///
    /// When `name` is not a valid header name; the message quotes at most
    /// its first 64 bytes.
    pub fn parse(name: &str) -> Result<HeaderKey, IdentityError> {
        let name = HeaderName::try_from(name).map_err(|_| {
            IdentityError::new(format!(
                "{:?} is not a header name",
                crate::key::prefix(name, 64)
            ))
        })?;
        Ok(HeaderKey::named(name))
    }

    /// The header `name`.
    pub fn named(name: HeaderName) -> HeaderKey {
        HeaderKey {
            name,
            fallback: NoFallback,
        }
    }

    /// Uses `fallback` when the header is missing or empty.
    pub fn or<F: IdentityExtractor>(self, fallback: F) -> HeaderKey<F> {
        HeaderKey {
            name: self.name,
            fallback,
        }
    }
}

impl<F> HeaderKey<F> {
    /// The header read.
    #[cfg(feature = "config")]
    pub(crate) fn header_name(&self) -> &HeaderName {
        &self.name
    }

    /// What a request without the header gets.
    #[cfg(feature = "config")]
    pub(crate) fn fallback(&self) -> &F {
        &self.fallback
    }

    fn value<'a>(&self, request: RequestHead<'a>) -> Option<&'a str> {
        request
            .headers()
            .get(&self.name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    }
}

impl<F: IdentityExtractor> IdentityExtractor for HeaderKey<F> {
    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        match self.value(request) {
            Some(value) => Answer::ready(Ok(Identity::Header(self.name.clone(), value.into()))),
            None => self.fallback.identify(request),
        }
    }
}
