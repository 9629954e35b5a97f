//! [`IdentityError`]: a request whose identity cannot be found.

use std::fmt;

/// Whose mistake an [`IdentityError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityErrorKind {
    /// The deployment's: the server or the layer is set up wrong (no
    /// `ConnectInfo`, a bad network). The middleware answers `500` and logs
    /// the message once.
    Misconfigured,
    /// The client's: the request does not carry a usable identity (the
    /// named client-address header is missing or unreadable and the
    /// extractor rejects such requests). The middleware answers `400`.
    BadRequest,
}

/// Why an [`IdentityExtractor`](crate::IdentityExtractor) found no identity,
/// or why an extractor could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityError {
    kind: IdentityErrorKind,
    message: String,
}

impl IdentityError {
    /// A configuration mistake with this message (lowercase, no trailing
    /// period).
    pub fn new(message: impl Into<String>) -> IdentityError {
        IdentityError {
            kind: IdentityErrorKind::Misconfigured,
            message: message.into(),
        }
    }

    /// A request without a usable identity, with this message: answered
    /// `400`. The message is sent to the client: never put the request's
    /// own values in it.
    pub fn bad_request(message: impl Into<String>) -> IdentityError {
        IdentityError {
            kind: IdentityErrorKind::BadRequest,
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

    /// Whose mistake it is.
    pub fn kind(&self) -> IdentityErrorKind {
        self.kind
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IdentityError {}
