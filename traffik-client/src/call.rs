//! [`Call`]: a request and how it wants to be treated; the [`HttpRequest`]
//! and [`HttpResponse`] traits the layers need of an HTTP client's types.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::BoxError;

/// How one call wants to be treated: its priority in the wait queue, its
/// deadline and its cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOptions {
    pub(crate) priority: i32,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) cost: u64,
    pub(crate) retry_unsafe: bool,
}

impl Default for CallOptions {
    fn default() -> CallOptions {
        CallOptions::new()
    }
}

impl CallOptions {
    /// Priority 0, no deadline of its own, cost 1.
    pub const fn new() -> CallOptions {
        CallOptions {
            priority: 0,
            deadline: None,
            timeout: None,
            cost: 1,
            retry_unsafe: false,
        }
    }

    /// Waiters of higher priority are served first; equal priorities in
    /// arrival order.
    pub const fn priority(mut self, priority: i32) -> CallOptions {
        self.priority = priority;
        self
    }

    /// The call must be done by `deadline`: waits that cannot end before
    /// it fail at once, and the call fails when it passes.
    pub const fn deadline(mut self, deadline: Instant) -> CallOptions {
        self.deadline = Some(deadline);
        self
    }

    /// The call must be done within `timeout` of its start (its deadline,
    /// counted from when the stack first sees it).
    pub const fn timeout(mut self, timeout: Duration) -> CallOptions {
        self.timeout = Some(timeout);
        self
    }

    /// The call counts as `cost` against the limit (at least 1).
    pub const fn cost(mut self, cost: u64) -> CallOptions {
        self.cost = if cost == 0 { 1 } else { cost };
        self
    }

    /// Allows retries of this call even though its method is not
    /// idempotent (POST, PATCH) and it has no `Idempotency-Key`: the
    /// caller knows the server tolerates a repeat.
    pub const fn retry_unsafe(mut self) -> CallOptions {
        self.retry_unsafe = true;
        self
    }

    /// The effective deadline: the earlier of the deadline and the timeout
    /// counted from `start`.
    pub(crate) fn deadline_from(&self, start: Instant) -> Option<Instant> {
        let by_timeout = self.timeout.and_then(|t| start.checked_add(t));
        match (self.deadline, by_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A request on its way through the stack, with its [`CallOptions`].
#[derive(Debug)]
pub struct Call<R> {
    /// The request the HTTP client will send.
    pub request: R,
    /// How the stack treats it.
    pub options: CallOptions,
    /// When its last attempt was sent, for a breaker that asked to know.
    pub(crate) sent: Option<Arc<Mutex<Option<Instant>>>>,
}

impl<R> Call<R> {
    /// A call with default options.
    pub fn new(request: R) -> Call<R> {
        Call::with_options(request, CallOptions::new())
    }

    /// A call with `options`.
    pub fn with_options(request: R, options: CallOptions) -> Call<R> {
        Call {
            request,
            options,
            sent: None,
        }
    }

    /// The same call with another request (a retry's copy).
    pub(crate) fn again(&self, request: R) -> Call<R> {
        Call {
            request,
            options: self.options,
            sent: self.sent.clone(),
        }
    }

    /// Notes that the request goes out now.
    pub(crate) fn mark_sent(&self) {
        if let Some(sent) = &self.sent {
            *sent.lock() = Some(Instant::now());
        }
    }

    /// Resolves the options' timeout into their deadline, from now (the
    /// first layer that sees the call does it).
    pub(crate) fn start(&mut self) {
        if self.options.timeout.is_some() {
            self.options.deadline = self.options.deadline_from(Instant::now());
            self.options.timeout = None;
        }
    }
}

impl<R> From<R> for Call<R> {
    fn from(request: R) -> Call<R> {
        Call::new(request)
    }
}

/// What the layers read of a request: method, URL and headers, and a copy
/// for a retry.
pub trait HttpRequest: Send + 'static + Sized {
    /// The method.
    fn method(&self) -> &Method;
    /// The URL, as sent.
    fn url(&self) -> Cow<'_, str>;
    /// The headers.
    fn headers(&self) -> &HeaderMap;
    /// A copy to send again, or `None` when the body cannot be copied (a
    /// stream): such a request is sent once.
    fn try_clone(&self) -> Option<Self>;
}

/// What the layers read of a response.
pub trait HttpResponse: Send + 'static + Sized {
    /// The status.
    fn status(&self) -> StatusCode;
    /// The headers.
    fn headers(&self) -> &HeaderMap;
}

/// A response that coalescing can hand to several callers: read whole (up
/// to a size), then rebuilt once per caller.
pub trait ShareableResponse: HttpResponse {
    /// The response read whole: cheap to clone.
    type Buffered: Clone + Send + Sync + 'static;

    /// Reads the body whole when it is at most `cap` bytes; a longer body
    /// gives the response back as it is (still whole for one caller).
    fn buffer(
        self,
        cap: usize,
    ) -> impl Future<Output = Result<Result<Self::Buffered, Self>, BoxError>> + Send;

    /// A response for one caller, from the buffered one.
    fn rebuild(buffered: &Self::Buffered) -> Self;
}

/// The declared body length, when the headers give one.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

// The body of an `http::Request` must be `Clone` for a retry to copy it
// (`Full<Bytes>`, `Bytes`, `String`, `()`), as tower's own retry requires.
impl<B: Clone + Send + Sync + 'static> HttpRequest for http::Request<B> {
    fn method(&self) -> &Method {
        self.method()
    }

    fn url(&self) -> Cow<'_, str> {
        Cow::Owned(self.uri().to_string())
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn try_clone(&self) -> Option<Self> {
        let mut copy = http::Request::new(self.body().clone());
        *copy.method_mut() = self.method().clone();
        *copy.uri_mut() = self.uri().clone();
        *copy.version_mut() = self.version();
        *copy.headers_mut() = self.headers().clone();
        *copy.extensions_mut() = self.extensions().clone();
        Some(copy)
    }
}

impl<B> HttpResponse for http::Response<B>
where
    B: Send + 'static,
{
    fn status(&self) -> StatusCode {
        self.status()
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }
}

/// A response read whole, to hand a copy to each coalesced caller.
#[derive(Clone, Debug)]
pub struct BufferedResponse {
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
    body: Bytes,
}

impl BufferedResponse {
    pub(crate) fn new(
        status: StatusCode,
        version: http::Version,
        headers: HeaderMap,
        body: Bytes,
    ) -> BufferedResponse {
        BufferedResponse {
            status,
            version,
            headers,
            body,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// A copy as an `http::Response` with `body` (this one's, or what a
    /// client rebuilds from it).
    pub(crate) fn to_http<B>(&self, body: B) -> http::Response<B> {
        with_head(
            http::Response::new(body),
            self.status,
            self.version,
            self.headers.clone(),
        )
    }
}

/// `response` with this status, version and headers.
pub(crate) fn with_head<B>(
    mut response: http::Response<B>,
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
) -> http::Response<B> {
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    response
}

impl<B> ShareableResponse for http::Response<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Buffered = BufferedResponse;

    async fn buffer(self, cap: usize) -> Result<Result<BufferedResponse, Self>, BoxError> {
        use http_body_util::BodyExt;
        // Without a declared length the body is not read ahead: the leader
        // keeps it and each waiter makes its own call.
        match content_length(self.headers()) {
            Some(length) if length <= cap as u64 => {}
            _ => return Ok(Err(self)),
        }
        let (parts, body) = self.into_parts();
        let body = http_body_util::Limited::new(body, cap)
            .collect()
            .await?
            .to_bytes();
        Ok(Ok(BufferedResponse::new(
            parts.status,
            parts.version,
            parts.headers,
            body,
        )))
    }

    fn rebuild(buffered: &BufferedResponse) -> Self {
        buffered.to_http(B::from(buffered.body.clone()))
    }
}
