use std::borrow::Cow;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::ConfigError;

/// The part of a key shared by every identity one throttle sees:
/// `namespace:name`.
///
/// Nothing is registered anywhere: two scopes with the same namespace and
/// name are the same scope, on every backend, whenever they were made.
#[derive(Clone, Debug)]
pub struct Scope {
    namespace: Box<str>,
    name: Box<str>,
    prefix: Arc<str>,
    hash: u64,
}

/// The longest namespace or throttle name, so that every key fits every
/// store (Memcached takes 250 bytes).
pub const MAX_NAME: usize = 64;

fn check_part(what: &str, part: &str) -> Result<(), ConfigError> {
    if part.len() > MAX_NAME {
        return Err(ConfigError::new(format!(
            "{what} {:?}… is longer than {MAX_NAME} bytes",
            quoted_prefix(part)
        )));
    }
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
        if name.contains('!') {
            return Err(ConfigError::new(format!(
                "throttle name {name:?} must not hold '!' (it names a lockout's keys)"
            )));
        }
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

    /// The scope of keys kept beside this one's, named `name` + `suffix`
    /// (a [`Lockout`](crate::Lockout)'s blocks and offences). Throttle
    /// names cannot hold `!`, so a suffix that starts with it names no
    /// throttle's scope.
    pub(crate) fn derived(&self, suffix: &str) -> Scope {
        let name = format!("{}{suffix}", self.name);
        let prefix = format!("{}:{name}", self.namespace);
        let mut hasher = DefaultHasher::new();
        prefix.hash(&mut hasher);
        Scope {
            namespace: self.namespace.clone(),
            name: name.into(),
            hash: hasher.finish(),
            prefix: prefix.into(),
        }
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
    /// follows it, as given.
    pub fn tag_and_rest(&self) -> (&'a str, &'a str) {
        self.identity.split_at(self.tag)
    }

    /// The tag and the rest as stores keep them: each part longer than
    /// [`MAX_PART`] bytes, or starting with `~`, is replaced by `~` and 32
    /// hex digits of its BLAKE3 digest (128 bits). Keys of any length then
    /// fit every store, in bounded memory, and the tag still places all the
    /// keys of one client together. A part that starts with `~` is digested
    /// too, so no short identity can pass for a digest.
    pub fn stored_parts(&self) -> (Cow<'a, str>, Cow<'a, str>) {
        let (tag, rest) = self.tag_and_rest();
        (stored(tag), stored(rest))
    }

    /// Whether stores keep this key's identity as it is (no part is
    /// digested): the common case, checked without building anything.
    #[inline]
    pub fn is_stored_as_is(&self) -> bool {
        let (tag, rest) = self.tag_and_rest();
        let plain = |part: &str| part.len() <= MAX_PART && !part.starts_with('~');
        plain(tag) && plain(rest)
    }

    /// The identity as stores keep it: the [`stored_parts`](Key::stored_parts)
    /// joined (the identity itself when neither is digested).
    pub fn stored_identity(&self) -> Cow<'a, str> {
        match self.stored_parts() {
            (Cow::Borrowed(_), Cow::Borrowed(_)) => Cow::Borrowed(self.identity),
            (tag, rest) => Cow::Owned(format!("{tag}{rest}")),
        }
    }
}

/// The longest part of an identity that stores keep as it is.
pub const MAX_PART: usize = 100;

/// A part of an identity as stores keep it (see [`Key::stored_parts`]).
#[inline]
fn stored(part: &str) -> Cow<'_, str> {
    if part.len() <= MAX_PART && !part.starts_with('~') {
        return Cow::Borrowed(part);
    }
    Cow::Owned(digest(part))
}

/// `~` and 32 hex digits of the BLAKE3 digest of `part` (128 bits): how a
/// store that cannot keep a part as it is keeps it (see
/// [`Key::stored_parts`]).
pub fn digest(part: &str) -> String {
    let digest = blake3::hash(part.as_bytes());
    let mut text = String::with_capacity(33);
    text.push('~');
    for byte in digest.as_bytes().iter().take(16) {
        for nibble in [byte >> 4, byte & 0xf] {
            text.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
        }
    }
    text
}

/// At most the first 64 bytes of a key, cut at a character boundary, for
/// messages that quote it.
pub fn quoted_prefix(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
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
    fn long_or_tilde_parts_are_stored_as_digests_keeping_the_tag() {
        let a = Scope::new("app", "login").unwrap();
        let long = "x".repeat(10_000);
        let key = Key::new(&a, &long);
        let (tag, rest) = key.stored_parts();
        assert_eq!(tag.len(), 33);
        assert!(tag.starts_with('~') && rest.is_empty());
        // The same identity, the same digest; another, another.
        assert_eq!(Key::new(&a, &long).stored_identity(), key.stored_identity());
        let other = "y".repeat(10_000);
        assert_ne!(
            Key::new(&a, &other).stored_identity(),
            key.stored_identity()
        );
        // A short identity that looks like a digest is digested too.
        let forged = key.stored_identity().into_owned();
        assert_ne!(
            Key::new(&a, &forged).stored_identity(),
            key.stored_identity()
        );
        // The tag of a long identity with a route stays the client's.
        let with_route = format!("{long}|r:/x");
        let routed = Key::with_tag(&a, &with_route, long.len());
        assert_eq!(routed.stored_parts().0, tag);
        assert_eq!(routed.stored_parts().1, "|r:/x");
        // Short identities are kept as they are, without copying.
        assert!(matches!(
            Key::new(&a, "u:42").stored_identity(),
            Cow::Borrowed("u:42")
        ));
        assert_eq!(quoted_prefix(&long).len(), 64);
    }

    #[test]
    fn long_names_are_rejected_with_a_short_message() {
        let long = "n".repeat(10_000);
        let error = Scope::new("app", &long).unwrap_err();
        assert!(error.to_string().len() < 200, "{error}");
        assert!(Scope::new(&long, "api").is_err());
        assert!(Scope::new(&"a".repeat(MAX_NAME), &"b".repeat(MAX_NAME)).is_ok());
    }

    #[test]
    fn separators_are_rejected_in_names() {
        for (ns, name) in [("a:b", "c"), ("a", ""), ("a", "b c"), ("{a}", "b")] {
            assert!(Scope::new(ns, name).is_err(), "{ns:?} {name:?}");
        }
    }
}
