//! Redis client errors as traffik errors.

use traffik_core::{Error, ErrorKind};

/// Classifies a client error: timeouts, unreachable servers and the rest.
pub(super) fn from_redis(error: redis::RedisError) -> Error {
    let unreachable = error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_io_error()
        || error.is_unrecoverable_error();
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if unreachable {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Other
    };
    Error::new(kind, "redis").with_source(error)
}

pub(super) fn timeout(what: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("redis did not answer {what} in time"),
    )
}

pub(super) fn bad_reply(reply: &[i64]) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("unexpected reply from a traffik script: {reply:?}"),
    )
}
