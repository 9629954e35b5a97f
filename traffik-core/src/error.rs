//! Errors: [`RateError`] for bad rates, [`ConfigError`] for bad throttle
//! settings, [`Error`] for failures of a backend.
//!
//! A denial is never an error: it is a [`Decision`](crate::Decision).

use std::error::Error as StdError;
use std::fmt;

const ACCEPTED_FORMS: &str = "expected forms like \"100/min\", \"1000/minute\", \"10/500ms\", \
     \"5/2s\", \"5 per 2 seconds\", \"100 per hour\" or \"2/day\" \
     (units: ms, s, m/min, h/hr, d, singular or plural)";

/// Why a string is not a [`Rate`](crate::Rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateErrorKind {
    /// The input was empty or only white space.
    Empty,
    /// Neither `/` nor ` per ` separates the count from the period.
    MissingSeparator,
    /// The count is not a whole number.
    InvalidCount,
    /// The count is zero.
    ZeroCount,
    /// A number has a fractional part.
    Fraction,
    /// The period has no unit.
    MissingUnit,
    /// The period's multiplier is not a whole number.
    InvalidPeriod,
    /// The unit is none of the known ones.
    UnknownUnit,
    /// The period is zero.
    ZeroPeriod,
    /// A number does not fit in 64 bits.
    Overflow,
    /// `count × period_ms` exceeds [`MAX_RATE_PRODUCT`](crate::rate::MAX_RATE_PRODUCT).
    TooLarge,
}

impl RateErrorKind {
    fn describe(self) -> &'static str {
        match self {
            RateErrorKind::Empty => "empty rate",
            RateErrorKind::MissingSeparator => "missing '/' or ' per ' between count and period",
            RateErrorKind::InvalidCount => "count is not a whole number",
            RateErrorKind::ZeroCount => "count must be at least 1",
            RateErrorKind::Fraction => "fractions are not accepted, use a smaller unit",
            RateErrorKind::MissingUnit => "period has no unit",
            RateErrorKind::InvalidPeriod => "period multiplier is not a whole number",
            RateErrorKind::UnknownUnit => "unknown time unit",
            RateErrorKind::ZeroPeriod => "period must be at least 1ms",
            RateErrorKind::Overflow => "number too large",
            RateErrorKind::TooLarge => {
                "rate too large to compute exactly: count × period in ms must not exceed 2^51"
            }
        }
    }
}

/// A string or value that is not a valid [`Rate`](crate::Rate).
///
/// The message says what was wrong and lists the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateError {
    kind: RateErrorKind,
}

impl RateError {
    pub(crate) fn new(kind: RateErrorKind) -> RateError {
        RateError { kind }
    }

    /// What was wrong.
    pub fn kind(&self) -> RateErrorKind {
        self.kind
    }
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {ACCEPTED_FORMS}", self.kind.describe())
    }
}

impl StdError for RateError {}

/// A throttle setting that cannot work, such as a burst so large that the
/// strategy could not compute with it exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// A configuration error with this message (lowercase, no trailing period).
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConfigError {}

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend did not answer within its timeout.
    Timeout,
    /// The backend could not be reached or refused the connection.
    Unavailable,
    /// The backend is full: a key cap was reached and the key is new.
    Capacity,
    /// The backend answered something that makes no sense (a bug or a
    /// version mismatch).
    Protocol,
    /// Optimistic concurrency gave up: too many writers raced on one key.
    Contention,
    /// The limit cannot be applied (for instance a dynamic rate that is out
    /// of range).
    Config,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether the store could not answer (it timed out, is unreachable,
    /// answered garbage, or failed otherwise): the only errors a throttle's
    /// [`FailurePolicy`](crate::FailurePolicy) decides. Input and capacity
    /// errors never admit by default, and contention is a denial.
    pub const fn is_store_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Protocol | ErrorKind::Other
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Timeout => "backend timed out",
            ErrorKind::Unavailable => "backend unavailable",
            ErrorKind::Capacity => "backend at capacity",
            ErrorKind::Protocol => "backend protocol error",
            ErrorKind::Contention => "too much contention on one key",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Other => "backend error",
        })
    }
}

/// A failure to reach a decision: the backend timed out, is down, is full, …
///
/// [`Throttle`](crate::Throttle) turns these into decisions or passes them on,
/// according to its [`FailurePolicy`](crate::FailurePolicy).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// An error of this kind with a message (lowercase, no trailing period).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error (the client crate's), returned by
    /// [`source`](StdError::source).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Error {
        Error::new(ErrorKind::Config, error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_and_source_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error =
            Error::new(ErrorKind::Unavailable, "connecting to 127.0.0.1:6379").with_source(io);
        assert_eq!(
            error.to_string(),
            "backend unavailable: connecting to 127.0.0.1:6379"
        );
        assert_eq!(
            error.source().map(|s| s.to_string()).as_deref(),
            Some("refused")
        );
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }
}
