//! The `traffik` command line, as a library: the binary parses arguments
//! and calls these.
//!
//! - [`admin`]: peek, reset, block and unblock one client's key on a store,
//!   with the throttle from a rules file (keys built as the axum layer
//!   builds them) or from flags (the key is the identity as given, as
//!   [`Throttle::hit`](traffik_core::Throttle::hit) takes it).
//! - [`replay`]: access logs driven through a rules file on a manual clock
//!   at the logs' own timestamps, in memory, with what each rule would have
//!   denied.
//!
//! Every failure is a [`Failure`] with an [`Exit`] code:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | anything else (a log or a plot that cannot be read or written) |
//! | 2 | a bad command line, or a client that cannot be the throttle's |
//! | 3 | a bad backend URL or rules file |
//! | 4 | the store cannot be reached or failed |
//! | 5 | no throttle of that name |

pub mod admin;
pub mod logs;
mod plot;
pub mod replay;
pub mod sample;

use std::fmt;

use traffik_core::{Error, ErrorKind};

/// The process's exit status for each kind of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// Anything else: a file that cannot be read or written.
    Failed = 1,
    /// A bad command line, or a client that cannot be the throttle's.
    Usage = 2,
    /// A bad backend URL or rules file.
    Config = 3,
    /// The store cannot be reached, or failed.
    Store = 4,
    /// No throttle of that name.
    UnknownThrottle = 5,
}

/// Why a command failed, and the exit status it gives.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub exit: Exit,
    /// What went wrong, for a person.
    pub message: String,
}

impl Failure {
    /// A failure of kind `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    /// A traffik error: a store failure is [`Exit::Store`], a configuration
    /// error [`Exit::Usage`] (the command asked for what cannot be), the
    /// rest [`Exit::Failed`].
    pub fn from_error(what: &str, error: &Error) -> Failure {
        let exit = if error.kind().is_store_failure() {
            Exit::Store
        } else if error.kind() == ErrorKind::Config {
            Exit::Usage
        } else {
            Exit::Failed
        };
        Failure::new(exit, format!("{what}: {error}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Text from the command line or a file cut short for a message.
pub(crate) fn shown(text: &str) -> String {
    format!("{:?}", traffik_core::backend::key_prefix(text))
}
