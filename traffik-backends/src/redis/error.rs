//! Redis client errors as traffik errors.

use traffik_core::{Error, ErrorKind};

/// Classifies a client error: refused credentials (a configuration error,
/// not an outage), timeouts, unreachable servers and the rest. The message
/// carries what the client and the server said (at most 200 bytes), and the
/// client's error is the source.
pub(super) fn from_redis(error: redis::RedisError) -> Error {
    let said = error.to_string();
    let refused = error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
        || said.contains("NOAUTH")
        || said.contains("WRONGPASS")
        // What redis-server answers a large command from a client that has
        // not authenticated.
        || said.contains("unauthenticated");
    let unreachable = error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_io_error()
        || error.is_unrecoverable_error();
    let (kind, what) = if refused {
        (ErrorKind::Config, "redis refused the credentials")
    } else if error.is_timeout() {
        (ErrorKind::Timeout, "redis")
    } else if unreachable {
        (ErrorKind::Unavailable, "redis")
    } else {
        (ErrorKind::Other, "redis")
    };
    let mut end = said.len().min(200);
    while !said.is_char_boundary(end) {
        end -= 1;
    }
    let said = said.get(..end).unwrap_or_default();
    Error::new(kind, format!("{what}: {said}")).with_source(error)
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
