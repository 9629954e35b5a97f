use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::ConfigError;

/// The part of a key shared by every identity one throttle sees:
/// `namespace:name`.
///
/// Nothing is registered anywhere: two scopes with the same namespace and
/// name are the same scope, on every backend, whenever they were made.
#[derive(Debug)]
pub struct Scope {
    namespace: Box<str>,
    name: Box<str>,
    prefix: Arc<str>,
    hash: u64,
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
        // SipHash with fixed keys: the same for equal prefixes, in every process.
        let mut hasher = DefaultHasher::new();
        prefix.hash(&mut hasher);
        Ok(Scope {
            namespace: namespace.into(),
            name: name.into(),
            hash: hasher.finish(),
            prefix: prefix.into(),
        })
    }

    /// A hash of [`prefix`](Scope::prefix), the same for equal scopes (in
    /// every process), for in-memory stores to hash keys with.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The prefix, shared: clones of one scope's `Arc` point at the same
    /// string, which lets in-memory stores compare scopes by pointer first.
    pub fn shared_prefix(&self) -> &Arc<str> {
        &self.prefix
    }

    /// Whether two scopes are the same (same namespace and name).
    #[inline]
    pub fn same(&self, other: &Scope) -> bool {
        Arc::ptr_eq(&self.prefix, &other.prefix) || self.prefix == other.prefix
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
///
/// The identity's **tag** is the part that names the client (by default the
/// whole identity). Stores that spread keys over nodes place a key by its
/// tag, so every key of one client, under every throttle, sits together and
/// one call can decide them all ([`Backend::hit_all`](crate::Backend::hit_all)).
/// Middleware that appends a route to the identity tags the client part
/// only.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    scope: &'a Scope,
    identity: &'a str,
    tag: usize,
}

impl<'a> Key<'a> {
    /// The key for `identity` in `scope`, tagged by the whole identity.
    pub fn new(scope: &'a Scope, identity: &'a str) -> Key<'a> {
        Key {
            scope,
            identity,
            tag: identity.len(),
        }
    }

    /// The key for `identity` in `scope`, tagged by its first `tag` bytes
    /// (the whole identity when `tag` is past its end or not on a character
    /// boundary).
    pub fn with_tag(scope: &'a Scope, identity: &'a str, tag: usize) -> Key<'a> {
        let tag = if identity.is_char_boundary(tag) {
            tag
        } else {
            identity.len()
        };
        Key {
            scope,
            identity,
            tag,
        }
    }

    /// The scope.
    pub fn scope(&self) -> &'a Scope {
        self.scope
    }

    /// The identity.
    pub fn identity(&self) -> &'a str {
        self.identity
    }

    /// The part of the identity that places the key: the tag, and what
    /// follows it.
    pub fn tag_and_rest(&self) -> (&'a str, &'a str) {
        self.identity.split_at(self.tag)
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
    fn equal_scopes_are_the_same_and_different_ones_are_not() {
        let a = Scope::new("app", "login").unwrap();
        let b = Scope::new("app", "login").unwrap();
        let c = Scope::new("app", "api").unwrap();
        assert!(a.same(&b) && a.hash() == b.hash());
        assert!(!a.same(&c));
        assert_ne!(a.hash(), c.hash());
        assert_eq!(Key::new(&a, "u:42").to_string(), "app:login:u:42");
        assert_eq!(Key::new(&a, "u:42").tag_and_rest(), ("u:42", ""));
        assert_eq!(
            Key::with_tag(&a, "ip:1|r:/x", 4).tag_and_rest(),
            ("ip:1", "|r:/x")
        );
        assert_eq!(Key::with_tag(&a, "é", 1).tag_and_rest(), ("é", ""));
        assert_eq!(Key::with_tag(&a, "ab", 99).tag_and_rest(), ("ab", ""));
    }

    #[test]
    fn separators_are_rejected_in_names() {
        for (ns, name) in [("a:b", "c"), ("a", ""), ("a", "b c"), ("{a}", "b")] {
            assert!(Scope::new(ns, name).is_err(), "{ns:?} {name:?}");
        }
    }
}
