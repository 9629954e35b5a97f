//! [`IdentityError`]: a request whose identity cannot be found.

use std::fmt;

/// Why an [`IdentityExtractor`](crate::IdentityExtractor) found no identity.
///
/// These are configuration mistakes, not the client's: the middleware
/// answers `500` with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityError {
    message: String,
}

impl IdentityError {
    /// An error with this message (lowercase, no trailing period).
    pub fn new(message: impl Into<String>) -> IdentityError {
        IdentityError {
            message: message.into(),
        }
    }

    /// `ConnectInfo` is missing: the server was not started with it.
    pub fn missing_connect_info() -> IdentityError {
        IdentityError::new(
            "the peer address is unknown: serve the router with \
             `into_make_service_with_connect_info::<SocketAddr>()` so axum records it",
        )
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IdentityError {}
