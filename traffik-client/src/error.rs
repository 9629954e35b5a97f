//! [`Error`]: which layer of the stack gave up, and why.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error, as tower services return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The layer of the stack that gave up on a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layer {
    /// [`coalesce`](crate::coalesce): identical in-flight requests.
    Coalesce,
    /// [`breaker`](crate::breaker): the circuit breaker.
    Breaker,
    /// [`limit`](crate::limit): the shared limit and its wait queue.
    Limit,
    /// [`retry`](crate::retry): retries and their budget.
    Retry,
    /// [`timeout`](crate::timeout): the attempt and total timeouts.
    Timeout,
    /// The HTTP client underneath the stack.
    Upstream,
}

impl Layer {
    /// The layer's name, lowercase: `coalesce`, `breaker`, `limit`,
    /// `retry`, `timeout` or `upstream`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::Coalesce => "coalesce",
            Layer::Breaker => "breaker",
            Layer::Limit => "limit",
            Layer::Retry => "retry",
            Layer::Timeout => "timeout",
            Layer::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The wait queue was full, and this call was the one turned away
    /// ([`Shed`](crate::limit::Shed) says which one that is).
    QueueFull,
    /// The call was waiting when the full queue admitted a call of higher
    /// priority in its place ([`Shed::LowestPriority`](crate::limit::Shed)).
    Shed,
    /// No slot could come up before the call's deadline: known on arrival,
    /// or reached while waiting. [`Error::retry_after`] is the earliest the
    /// limiter could have admitted it, when known.
    Deadline,
    /// The call costs more than the limit can ever admit at once.
    TooCostly,
    /// The limit's store failed and its failure policy is
    /// [`FailurePolicy::Error`](traffik_core::FailurePolicy::Error).
    Store,
    /// The circuit is open (or half-open with every probe taken): the call
    /// was not made. [`Error::retry_after`] says when it may close.
    CircuitOpen,
    /// One attempt took longer than the attempt timeout.
    AttemptTimeout,
    /// The call, with its waits and retries, took longer than the total
    /// timeout.
    TotalTimeout,
    /// Retries stopped with the last attempt failed: the attempts ran out,
    /// or the retry budget did. The source is the last attempt's error.
    RetriesExhausted,
    /// The HTTP client failed (connect, I/O, protocol). The source is its
    /// error.
    Transport,
    /// A response could not be read for the callers it was shared with.
    Body,
}

impl ErrorKind {
    /// The kind in snake case, as the metrics label it.
    pub const fn as_label(self) -> &'static str {
        match self {
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::Shed => "shed",
            ErrorKind::Deadline => "deadline",
            ErrorKind::TooCostly => "too_costly",
            ErrorKind::Store => "store",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::AttemptTimeout => "attempt_timeout",
            ErrorKind::TotalTimeout => "total_timeout",
            ErrorKind::RetriesExhausted => "retries_exhausted",
            ErrorKind::Transport => "transport",
            ErrorKind::Body => "body",
        }
    }
}

/// The error of a call through the stack: the layer that gave up, why, and
/// the cause.
///
/// It is `Clone` (its cause is shared), so a coalesced call hands the same
/// error to every waiter. Its message never repeats a URL, a header or a
/// body.
#[derive(Clone)]
pub struct Error {
    layer: Layer,
    kind: ErrorKind,
    message: &'static str,
    retry_after: Option<Duration>,
    attempts: u32,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(layer: Layer, kind: ErrorKind, message: &'static str) -> Error {
        Error {
            layer,
            kind,
            message,
            retry_after: None,
            attempts: 0,
            source: None,
        }
    }

    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Error {
        self.retry_after = Some(wait);
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Error {
        self.attempts = attempts;
        self
    }

    pub(crate) fn with_source(mut self, source: Arc<dyn std::error::Error + Send + Sync>) -> Error {
        self.source = Some(source);
        self
    }

    /// The error of the HTTP client underneath, as a [`Transport`](ErrorKind::Transport)
    /// error, unless it is already this crate's error (from a layer further in).
    pub fn from_inner(error: impl Into<BoxError>) -> Error {
        let error = error.into();
        match error.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::new(
                Layer::Upstream,
                ErrorKind::Transport,
                "the HTTP client failed",
            )
            .with_source(Arc::from(other)),
        }
    }

    /// The layer that gave up.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// Why.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// When trying again may help, for a limit or breaker that said so.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// How many attempts were made ([`RetriesExhausted`](ErrorKind::RetriesExhausted)).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the HTTP client failed to connect (its error says so:
    /// reqwest's `is_connect`, or an I/O error of refused, reset or
    /// unreachable connections), so the request never reached the server.
    pub fn is_connect(&self) -> bool {
        self.kind == ErrorKind::Transport && self.source.as_deref().is_some_and(is_connect)
    }

    /// Whether the call or an attempt timed out, here or in the HTTP client.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::AttemptTimeout | ErrorKind::TotalTimeout
        ) || (self.kind == ErrorKind::Transport && self.source.as_deref().is_some_and(is_timeout))
    }
}

fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

fn is_connect(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    chain(error).any(|e| {
        #[cfg(feature = "reqwest")]
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            if e.is_connect() {
                return true;
            }
        }
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            use std::io::ErrorKind::*;
            matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            )
        })
    })
}

fn is_timeout(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    chain(error).any(|e| {
        #[cfg(feature = "reqwest")]
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            if e.is_timeout() {
                return true;
            }
        }
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("layer", &self.layer)
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.layer, self.message)?;
        if self.attempts > 0 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        if let Some(wait) = self.retry_after {
            write!(f, " (retry in {} ms)", wait.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inner_error_of_ours_keeps_its_layer() {
        let ours = Error::new(
            Layer::Breaker,
            ErrorKind::CircuitOpen,
            "the circuit is open",
        );
        let back = Error::from_inner(Box::new(ours) as BoxError);
        assert_eq!(
            (back.layer(), back.kind()),
            (Layer::Breaker, ErrorKind::CircuitOpen)
        );
    }

    #[test]
    fn a_refused_connection_is_a_connect_error_with_its_cause() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = Error::from_inner(io);
        assert_eq!(error.layer(), Layer::Upstream);
        assert!(error.is_connect());
        assert!(!error.is_timeout());
        let cause = std::error::Error::source(&error).unwrap();
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(error.to_string(), "upstream: the HTTP client failed");
    }
}
