use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::ConfigError;

/// The part of a key shared by every identity one throttle sees:
/// `namespace:name`.
///
/// Each distinct `namespace:name` gets a small process-wide number
/// ([`Scope::id`]) so in-memory backends can key on `(id, identity)` instead
/// of storing the whole string for every key.
#[derive(Debug)]
pub struct Scope {
    id: u32,
    namespace: Box<str>,
    name: Box<str>,
    prefix: Box<str>,
}

fn interned_id(prefix: &str) -> u32 {
    static IDS: OnceLock<Mutex<HashMap<Box<str>, u32>>> = OnceLock::new();
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    *ids.entry(prefix.into()).or_insert(next)
}

fn check_part(what: &str, part: &str) -> Result<(), ConfigError> {
    let bad = part.is_empty()
        || part
            .chars()
            .any(|c| matches!(c, ':' | '{' | '}') || c.is_whitespace());
    if bad {
        Err(ConfigError::new(format!(
            "{what} {part:?} must be non-empty, without ':', '{{', '}}' or white space"
        )))
    } else {
        Ok(())
    }
}

impl Scope {
    /// The scope `namespace:name`.
    ///
    /// # Errors
    ///
    /// When either part is empty or holds `:`, `{`, `}` or white space
    /// (they separate the parts of backend keys).
    pub fn new(namespace: &str, name: &str) -> Result<Scope, ConfigError> {
        check_part("namespace", namespace)?;
        check_part("throttle name", name)?;
        let prefix = format!("{namespace}:{name}");
        Ok(Scope {
            id: interned_id(&prefix),
            namespace: namespace.into(),
            name: name.into(),
            prefix: prefix.into(),
        })
    }

    /// A number that is the same for every `Scope` with this namespace and
    /// name in this process, and different for every other.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The throttle's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `namespace:name`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// One key to throttle: a [`Scope`] and an identity (a user id, an IP, …).
///
/// Renders as `namespace:name:identity`.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    scope: &'a Scope,
    identity: &'a str,
}

impl<'a> Key<'a> {
    /// The key for `identity` in `scope`.
    pub fn new(scope: &'a Scope, identity: &'a str) -> Key<'a> {
        Key { scope, identity }
    }

    /// The scope.
    pub fn scope(&self) -> &'a Scope {
        self.scope
    }

    /// The identity.
    pub fn identity(&self) -> &'a str {
        self.identity
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scope.prefix, self.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_scopes_share_an_id_and_different_ones_do_not() {
        let a = Scope::new("app", "login").unwrap();
        let b = Scope::new("app", "login").unwrap();
        let c = Scope::new("app", "api").unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(Key::new(&a, "u:42").to_string(), "app:login:u:42");
    }

    #[test]
    fn separators_are_rejected_in_names() {
        for (ns, name) in [("a:b", "c"), ("a", ""), ("a", "b c"), ("{a}", "b")] {
            assert!(Scope::new(ns, name).is_err(), "{ns:?} {name:?}");
        }
    }
}
