//! [`RequestHead`]: what extractors, scopes and costs read of a request.

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

/// A borrowed view of a request's head: its method, URI, version, headers
/// and extensions.
///
/// The middleware reads a request through this view without splitting it
/// into head and body and putting it back, which would copy the head twice
/// per request. It is made from a whole request or from its [`Parts`]
/// (inside an axum extractor), and costs five pointers to pass.
///
/// ```
/// use http::Request;
/// use traffik_axum::RequestHead;
///
/// let request = Request::get("/items/7").header("x-tenant", "acme").body(())?;
/// let head = RequestHead::from(&request);
/// assert_eq!(head.uri().path(), "/items/7");
/// assert_eq!(head.headers()["x-tenant"], "acme");
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    version: Version,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The request method.
    #[inline]
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request URI.
    #[inline]
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The HTTP version.
    #[inline]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The request headers.
    #[inline]
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (axum's `ConnectInfo` and `MatchedPath` live
    /// here).
    #[inline]
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

impl<'a> From<&'a Parts> for RequestHead<'a> {
    #[inline]
    fn from(parts: &'a Parts) -> RequestHead<'a> {
        RequestHead {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

impl<'a, B> From<&'a Request<B>> for RequestHead<'a> {
    #[inline]
    fn from(request: &'a Request<B>) -> RequestHead<'a> {
        RequestHead {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}
