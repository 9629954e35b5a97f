//! [`Filter`]: which requests a rule applies to.

use std::fmt;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use http::{HeaderName, HeaderValue, Method};
use traffik_core::ConfigError;

use crate::RequestHead;

type Predicate = Arc<dyn Fn(RequestHead<'_>) -> bool + Send + Sync>;

/// Which requests a [`Rule`](crate::Rule) applies to. Every condition set
/// must hold; an empty filter matches every request. A request a rule's
/// filter does not match is not counted by that rule, and gets none of its
/// headers.
///
/// ```
/// use http::Method;
/// use traffik_axum::Filter;
///
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let writes = Filter::new()
///     .methods([Method::POST, Method::PUT, Method::DELETE])
///     .paths(["/api/**", "/upload"])?
///     .header_absent("x-internal-token")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Filter {
    methods: Option<Vec<Method>>,
    paths: Option<(GlobSet, Arc<[String]>)>,
    headers: Vec<(HeaderName, HeaderMatch)>,
    predicates: Vec<(bool, Predicate)>,
}

/// How a header must look for a [`Filter`] to match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HeaderMatch {
    /// Present with exactly this value.
    Is(HeaderValue),
    /// Present, any value.
    Present,
    /// Absent.
    Absent,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("methods", &self.methods)
            .field("paths", &self.paths.as_ref().map(|(_, p)| p))
            .field("headers", &self.headers)
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::try_from(name).map_err(|_| {
        ConfigError::new(format!(
            "{:?} is not a valid header name",
            traffik_core::backend::key_prefix(name)
        ))
    })
}

impl Filter {
    /// A filter that matches every request.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Only these methods.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Filter {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Only paths that match one of these glob patterns: `*` matches within
    /// one segment, `**` across segments, `?` one character, `{a,b}` either.
    /// The request's path is matched, without its query, as it was sent and
    /// as it reads with its percent-escapes decoded, its slashes single and
    /// its `.` and `..` segments resolved: a rule applies when either form
    /// matches, so another spelling of a path (`/log%69n`, `//login`,
    /// `/x/../login`) cannot step around it.
    ///
    /// # Errors
    ///
    /// When a pattern is not a valid glob or does not start with `/`.
    pub fn paths<S: AsRef<str>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Filter, ConfigError> {
        let mut set = GlobSetBuilder::new();
        let mut shown = Vec::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let quoted = traffik_core::backend::key_prefix(pattern);
            if !pattern.starts_with('/') {
                return Err(ConfigError::new(format!(
                    "the path pattern {quoted:?} must start with '/'"
                )));
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|error| {
                    ConfigError::new(format!(
                        "the path pattern {quoted:?} is not a valid glob: {}",
                        error.kind()
                    ))
                })?;
            set.add(glob);
            shown.push(pattern.to_owned());
        }
        let set = set
            .build()
            .map_err(|error| ConfigError::new(format!("path patterns: {error}")))?;
        self.paths = Some((set, shown.into()));
        Ok(self)
    }

    /// Only requests whose header `name` is exactly `value`.
    ///
    /// # Errors
    ///
    /// When `name` or `value` is not valid in a header.
    pub fn header_is(mut self, name: &str, value: &str) -> Result<Filter, ConfigError> {
        let value = HeaderValue::try_from(value).map_err(|_| {
            ConfigError::new(format!(
                "{:?} is not a valid value for the header {name}",
                traffik_core::backend::key_prefix(value)
            ))
        })?;
        self.headers
            .push((header_name(name)?, HeaderMatch::Is(value)));
        Ok(self)
    }

    /// Only requests that carry the header `name`.
    ///
    /// # Errors
    ///
    /// When `name` is not a valid header name.
    pub fn header_present(mut self, name: &str) -> Result<Filter, ConfigError> {
        self.headers
            .push((header_name(name)?, HeaderMatch::Present));
        Ok(self)
    }

    /// Only requests without the header `name`.
    ///
    /// # Errors
    ///
    /// When `name` is not a valid header name.
    pub fn header_absent(mut self, name: &str) -> Result<Filter, ConfigError> {
        self.headers.push((header_name(name)?, HeaderMatch::Absent));
        Ok(self)
    }

    /// Only requests for which `predicate` is true.
    pub fn throttle_if(
        mut self,
        predicate: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Filter {
        self.predicates.push((true, Arc::new(predicate)));
        self
    }

    /// Not the requests for which `predicate` is true.
    pub fn bypass_if(
        mut self,
        predicate: impl Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Filter {
        self.predicates.push((false, Arc::new(predicate)));
        self
    }

    /// Whether the filter holds no condition.
    pub fn is_empty(&self) -> bool {
        self.methods.is_none()
            && self.paths.is_none()
            && self.headers.is_empty()
            && self.predicates.is_empty()
    }

    /// Whether `request` passes every condition.
    pub fn matches(&self, request: RequestHead<'_>) -> bool {
        if let Some(methods) = &self.methods {
            if !methods.contains(request.method()) {
                return false;
            }
        }
        if let Some((paths, _)) = &self.paths {
            let path = request.uri().path();
            let matched = paths.is_match(path)
                || normalized(path).is_some_and(|clean| paths.is_match(clean.as_str()));
            if !matched {
                return false;
            }
        }
        let headers = request.headers();
        let headers_match = self.headers.iter().all(|(name, want)| match want {
            HeaderMatch::Is(value) => headers.get_all(name).iter().any(|v| v == value),
            HeaderMatch::Present => headers.contains_key(name),
            HeaderMatch::Absent => !headers.contains_key(name),
        });
        headers_match
            && self
                .predicates
                .iter()
                .all(|(throttle_if, predicate)| predicate(request) == *throttle_if)
    }
}

/// `path` with its percent-escapes decoded, runs of slashes made one and
/// its dot segments resolved (RFC 3986, 5.2.4), when that differs from it;
/// `None` for a path already in that form (the common case: nothing is
/// allocated).
fn normalized(path: &str) -> Option<String> {
    let plain = !path.contains('%') && !path.contains("//") && !path.contains("/.");
    if plain {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let mut clean = String::with_capacity(decoded.len());
    for segment in &segments {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        clean.push('/');
    }
    (clean != path).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn request(method: Method, uri: &str, header: Option<(&str, &str)>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn every_condition_must_hold() {
        let filter = Filter::new()
            .methods([Method::POST])
            .paths(["/api/*/items", "/login"])
            .unwrap()
            .header_is("x-tier", "free")
            .unwrap()
            .bypass_if(|request| request.uri().query() == Some("health"));
        let yes = request(Method::POST, "/api/v1/items?x=1", Some(("x-tier", "free")));
        assert!(filter.matches(RequestHead::from(&yes)));
        for no in [
            request(Method::GET, "/api/v1/items", Some(("x-tier", "free"))),
            request(Method::POST, "/api/v1/v2/items", Some(("x-tier", "free"))),
            request(Method::POST, "/login", Some(("x-tier", "paid"))),
            request(Method::POST, "/login", None),
            request(Method::POST, "/login?health", Some(("x-tier", "free"))),
        ] {
            assert!(!filter.matches(RequestHead::from(&no)), "{no:?}");
        }
        let deep = Filter::new().paths(["/static/**"]).unwrap();
        let file = request(Method::GET, "/static/a/b/c.css", None);
        assert!(deep.matches(RequestHead::from(&file)));
        assert!(Filter::new().matches(RequestHead::from(&file)));
    }

    #[test]
    fn other_spellings_of_a_path_are_the_path() {
        for (path, clean) in [
            ("/login", None),
            ("/a/b/", None),
            ("/log%69n", Some("/login")),
            ("/api/v1%2Flogin", Some("/api/v1/login")),
            ("//login", Some("/login")),
            ("/a//b///c/", Some("/a/b/c/")),
            ("/./login", Some("/login")),
            ("/x/../login", Some("/login")),
            ("/../../login", Some("/login")),
            ("/a/b/..", Some("/a")),
            ("/%2e%2e/login", Some("/login")),
            ("/%ff", Some("/\u{fffd}")),
            ("/.", Some("/")),
        ] {
            assert_eq!(normalized(path).as_deref(), clean, "{path}");
        }
    }

    #[test]
    fn bad_patterns_and_headers_say_what_is_wrong() {
        let error = Filter::new().paths(["/a/[b"]).unwrap_err().to_string();
        assert!(error.contains("/a/[b") && error.contains("glob"), "{error}");
        let error = Filter::new().paths(["api"]).unwrap_err().to_string();
        assert!(error.contains("start with '/'"), "{error}");
        let error = Filter::new()
            .header_is("bad name", "x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("header name"), "{error}");
        let long = "x y".repeat(5_000);
        let error = Filter::new().header_present(&long).unwrap_err().to_string();
        assert!(
            error.len() < 300,
            "the error echoes unbounded input: {}",
            error.len()
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use http::Request;
    use proptest::prelude::*;

    proptest! {
        /// Any pattern is a filter or a reason; any request path, method
        /// and header a filter is asked about gets an answer, never a panic.
        #[test]
        fn any_pattern_and_request_is_total(
            patterns in proptest::collection::vec("\\PC{0,24}", 0..4),
            header in "\\PC{0,16}",
            value in "\\PC{0,16}",
            path in "/[\\PC&&[^ ]]{0,40}",
        ) {
            let filter = Filter::new().paths(&patterns).and_then(|f| f.header_is(&header, &value));
            if let Ok(filter) = filter {
                if let Ok(request) = Request::builder().uri(path.as_str()).body(()) {
                    let _ = filter.matches(RequestHead::from(&request));
                }
            }
        }
    }
}
