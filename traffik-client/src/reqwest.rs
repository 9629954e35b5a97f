//! The stack around a [`reqwest::Client`]: [`Client`].
//!
//! ```no_run
//! use std::time::Duration;
//! use traffik_client::limit::Limiter;
//! use traffik_client::retry::RetryPolicy;
//! use traffik_client::{CallOptions, StackBuilder};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = Limiter::builder("payments", "10/s".parse()?).build()?;
//! let client = traffik_client::reqwest::Client::new(
//!     reqwest::Client::new(),
//!     StackBuilder::new().limiter(limiter).retry(RetryPolicy::new()),
//! );
//! let response = client
//!     .get("https://api.example.com/v1/charges")
//!     .header("authorization", "Bearer sk_test")
//!     .priority(10)
//!     .timeout(Duration::from_secs(5))
//!     .send()
//!     .await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

pub use reqwest;

use crate::call::with_head;
use crate::{
    BoxError, BufferedResponse, Call, CallOptions, Error, HttpRequest, HttpResponse,
    ShareableResponse, Stack, StackBuilder,
};

impl HttpRequest for reqwest::Request {
    fn method(&self) -> &Method {
        self.method()
    }

    fn url(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.url().as_str())
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn try_clone(&self) -> Option<Self> {
        self.try_clone()
    }
}

impl HttpResponse for reqwest::Response {
    fn status(&self) -> StatusCode {
        self.status()
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }
}

impl ShareableResponse for reqwest::Response {
    type Buffered = BufferedResponse;

    async fn buffer(mut self, cap: usize) -> Result<Result<BufferedResponse, Self>, BoxError> {
        if self
            .content_length()
            .is_none_or(|length| length > cap as u64)
        {
            return Ok(Err(self));
        }
        let (status, version, headers) = (self.status(), self.version(), self.headers().clone());
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if body.len() + chunk.len() > cap {
                // Longer than it said: hand it on whole, what was read first.
                let read = futures_util::stream::iter([
                    Ok::<_, reqwest::Error>(Bytes::from(body)),
                    Ok(chunk),
                ]);
                let rest = read.chain(self.bytes_stream());
                let whole = http::Response::new(reqwest::Body::wrap_stream(rest));
                let whole = with_head(whole, status, version, headers);
                return Ok(Err(reqwest::Response::from(whole)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Ok(BufferedResponse::new(
            status,
            version,
            headers,
            Bytes::from(body),
        )))
    }

    fn rebuild(buffered: &BufferedResponse) -> Self {
        reqwest::Response::from(buffered.to_http(buffered.body().clone()))
    }
}

/// A [`reqwest::Client`] behind the stack. Clones share it.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    stack: Stack<reqwest::Client>,
}

impl Client {
    /// `http` behind the layers of `stack`.
    pub fn new(http: reqwest::Client, stack: StackBuilder) -> Client {
        Client {
            stack: stack.service(http.clone()),
            http,
        }
    }

    /// The client underneath (its requests bypass the stack).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request of `method` to `url`.
    pub fn request(&self, method: Method, url: impl reqwest::IntoUrl) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            builder: self.http.request(method, url),
            options: CallOptions::new(),
        }
    }

    /// A GET of `url`.
    pub fn get(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A POST to `url`.
    pub fn post(&self, url: impl reqwest::IntoUrl) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Sends `request` through the stack.
    ///
    /// # Errors
    ///
    /// The layer that gave up ([`Error::layer`]) and why.
    pub async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response, Error> {
        self.execute_with(request, CallOptions::new()).await
    }

    /// Sends `request` through the stack, with `options`.
    ///
    /// # Errors
    ///
    /// As [`execute`](Client::execute).
    pub async fn execute_with(
        &self,
        request: reqwest::Request,
        options: CallOptions,
    ) -> Result<reqwest::Response, Error> {
        let mut stack = self.stack.clone();
        stack
            .ready()
            .await?
            .call(Call::with_options(request, options))
            .await
    }
}

/// A request to send through a [`Client`]: reqwest's builder, and the
/// call's [`CallOptions`].
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct RequestBuilder {
    client: Client,
    builder: reqwest::RequestBuilder,
    options: CallOptions,
}

impl RequestBuilder {
    /// Adds a header (as reqwest's `header`: an invalid name or value
    /// fails the request when it is sent).
    pub fn header<K, V>(mut self, name: K, value: V) -> RequestBuilder
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> RequestBuilder {
        self.builder = self.builder.body(body);
        self
    }

    /// Anything else reqwest's builder does.
    pub fn with(
        mut self,
        edit: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> RequestBuilder {
        self.builder = edit(self.builder);
        self
    }

    /// The call's options, replacing those set so far.
    pub fn options(mut self, options: CallOptions) -> RequestBuilder {
        self.options = options;
        self
    }

    /// See [`CallOptions::priority`].
    pub fn priority(mut self, priority: i32) -> RequestBuilder {
        self.options = self.options.priority(priority);
        self
    }

    /// See [`CallOptions::deadline`].
    pub fn deadline(mut self, deadline: Instant) -> RequestBuilder {
        self.options = self.options.deadline(deadline);
        self
    }

    /// See [`CallOptions::timeout`]: the whole call, waits and retries
    /// included.
    pub fn timeout(mut self, timeout: Duration) -> RequestBuilder {
        self.options = self.options.timeout(timeout);
        self
    }

    /// See [`CallOptions::cost`].
    pub fn cost(mut self, cost: u64) -> RequestBuilder {
        self.options = self.options.cost(cost);
        self
    }

    /// See [`CallOptions::retry_unsafe`].
    pub fn retry_unsafe(mut self) -> RequestBuilder {
        self.options = self.options.retry_unsafe();
        self
    }

    /// Builds the request and sends it through the stack.
    ///
    /// # Errors
    ///
    /// As [`Client::execute`]; a request that does not build is a
    /// [`Transport`](crate::ErrorKind::Transport) error with reqwest's.
    pub async fn send(self) -> Result<reqwest::Response, Error> {
        let request = self.builder.build().map_err(Error::from_inner)?;
        self.client.execute_with(request, self.options).await
    }
}
