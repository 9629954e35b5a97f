//! [`RulesError`]: what is wrong with a rules file, and where.

use std::fmt;

/// A mistake in a rules file, or a file that cannot be read: where it is
/// and what is wrong.
#[derive(Debug)]
pub struct RulesError {
    origin: String,
    line: usize,
    column: usize,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RulesError {
    pub(super) fn at(origin: &str, line: usize, column: usize, message: String) -> RulesError {
        RulesError {
            origin: origin.to_owned(),
            line,
            column,
            message,
            source: None,
        }
    }

    /// This error, caused by `source`.
    pub(super) fn caused_by(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> RulesError {
        self.source = Some(Box::new(source));
        self
    }

    pub(super) fn io(
        origin: &str,
        what: &str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> RulesError {
        RulesError {
            origin: origin.to_owned(),
            line: 0,
            column: 0,
            message: format!("{what}: {error}"),
            source: Some(Box::new(error)),
        }
    }

    /// The file (or the name given to [`Rules::from_toml`](super::Rules::from_toml)).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The line of the mistake, from 1 (0 when it is not in the text).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The column of the mistake, from 1 (0 when it is not in the text).
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.origin, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for RulesError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}
