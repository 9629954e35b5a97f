//! [`ThrottleLayer`]: the tower layer, and how to build one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::response::Response;
use http::StatusCode;
use tower::Layer;

use crate::headers::QuotaHeaders;
use crate::identity::IdentityExtractor;
use crate::rejection::Rejected;
use crate::rule::Rule;
use crate::service::ThrottleService;

/// How a denial is answered.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Rejection {
    /// [`Rejected::problem_json`]: `application/problem+json` (the default).
    #[default]
    ProblemJson,
    /// [`Rejected::plain_text`]: one line of `text/plain`.
    PlainText,
    /// Your own response.
    Custom(Arc<dyn Fn(Rejected) -> Response + Send + Sync>),
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::ProblemJson => "ProblemJson",
            Rejection::PlainText => "PlainText",
            Rejection::Custom(_) => "Custom",
        })
    }
}

pub(crate) struct Shared<I> {
    pub(crate) identity: Arc<I>,
    pub(crate) rules: Vec<Rule>,
    /// The rules by store, as positions in `rules`, in the order they run:
    /// each group is decided in one call, all or nothing.
    pub(crate) groups: Vec<Vec<usize>>,
    /// Every rule may decide without waiting (in-memory throttles, no
    /// dynamic limit or cost): try the path that boxes nothing first.
    pub(crate) decides_at_once: bool,
    pub(crate) headers: QuotaHeaders,
    pub(crate) headers_on_success: bool,
    pub(crate) rejection: Rejection,
    pub(crate) failure_status: StatusCode,
    /// Whether a configuration mistake was logged already.
    pub(crate) misconfiguration_logged: AtomicBool,
}

/// Throttles requests: identifies the client once, runs the layer's
/// throttles cheap-first and stops at the first denial, answers denials with
/// `429` and the quota headers, and adds the quota headers to allowed
/// responses.
///
/// Works with `Router::layer` (every route), `Router::route_layer` (matched
/// routes only) and `MethodRouter::layer` (one route). The service is
/// `Clone` and shares its state, as axum needs; it decides in `call`, never
/// through `poll_ready`.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::get};
/// use traffik_axum::{KeyScope, PeerIp, Rule, ThrottleLayer};
/// use traffik_backends::memory::MemoryBackend;
/// use traffik_core::Throttle;
///
/// let memory = MemoryBackend::new();
/// let global = ThrottleLayer::builder(PeerIp::new())
///     .rule(Rule::new(Throttle::builder("global", "600/min".parse()?).build(memory.clone())?).scope(KeyScope::Global))
///     .build();
/// let search = ThrottleLayer::builder(PeerIp::new())
///     .rule(Throttle::builder("search", "10/min".parse()?).build(memory)?)
///     .build();
/// let app: Router = Router::new()
///     .route("/search", get(|| async { "results" }).layer(search))
///     .route("/", get(|| async { "home" }))
///     .layer(global);
/// # Ok(()) }
/// ```
pub struct ThrottleLayer<I> {
    shared: Arc<Shared<I>>,
}

impl<I> Clone for ThrottleLayer<I> {
    fn clone(&self) -> Self {
        ThrottleLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<I> fmt::Debug for ThrottleLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayer")
            .field("rules", &self.shared.rules)
            .finish_non_exhaustive()
    }
}

impl<I: IdentityExtractor> ThrottleLayer<I> {
    /// Starts a layer that identifies clients with `identity`. Give several
    /// layers clones of one `Arc` of an extractor and a request passing
    /// through all of them is identified once.
    pub fn builder(identity: I) -> ThrottleLayerBuilder<I> {
        ThrottleLayerBuilder {
            identity: Arc::new(identity),
            rules: Vec::new(),
            keep_order: false,
            headers: QuotaHeaders::Ietf,
            headers_on_success: true,
            rejection: Rejection::default(),
            failure_status: StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl<S, I> Layer<S> for ThrottleLayer<I> {
    type Service = ThrottleService<S, I>;

    fn layer(&self, inner: S) -> ThrottleService<S, I> {
        ThrottleService::new(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`ThrottleLayer`].
#[must_use]
pub struct ThrottleLayerBuilder<I> {
    identity: Arc<I>,
    rules: Vec<Rule>,
    keep_order: bool,
    headers: QuotaHeaders,
    headers_on_success: bool,
    rejection: Rejection,
    failure_status: StatusCode,
}

impl<I> fmt::Debug for ThrottleLayerBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayerBuilder")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<I: IdentityExtractor> ThrottleLayerBuilder<I> {
    /// Adds a throttle (a [`Throttle`](traffik_core::Throttle) or a
    /// [`Rule`]).
    pub fn rule(mut self, rule: impl Into<Rule>) -> Self {
        self.rules.push(rule.into());
        self
    }

    /// Runs the throttles in the order they were added. By default they run
    /// cheap-first: in-memory before remote, then tighter rates before looser
    /// ones, so a request denied by a cheap, tight throttle never costs a
    /// round trip, and a denied request is never charged to a later one.
    pub fn keep_order(mut self) -> Self {
        self.keep_order = true;
        self
    }

    /// Which quota headers to send (default: [`QuotaHeaders::Ietf`]).
    pub fn quota_headers(mut self, headers: QuotaHeaders) -> Self {
        self.headers_on_success = headers != QuotaHeaders::DenialsOnly;
        self.headers = headers;
        self
    }

    /// How denials are answered (default: [`Rejection::ProblemJson`]).
    pub fn rejection(mut self, rejection: Rejection) -> Self {
        self.rejection = rejection;
        self
    }

    /// The status of a denial made by a throttle's
    /// [`FailurePolicy::Deny`](traffik_core::FailurePolicy::Deny) because its
    /// backend failed (default: 429; 503 tells clients it is not their
    /// fault).
    pub fn failure_status(mut self, status: StatusCode) -> Self {
        self.failure_status = status;
        self
    }

    /// The layer.
    pub fn build(mut self) -> ThrottleLayer<I> {
        if !self.keep_order {
            self.rules.sort_by(|a, b| {
                b.throttle
                    .is_local()
                    .cmp(&a.throttle.is_local())
                    .then_with(|| a.tighter_than(b))
            });
        }
        let groups = groups(&self.rules);
        let decides_at_once = self.rules.iter().all(|rule| {
            rule.throttle.is_local()
                && rule.limit_by.is_none()
                && rule.cost_by.is_none()
                && rule.is_plain()
        });
        ThrottleLayer {
            shared: Arc::new(Shared {
                decides_at_once,
                identity: self.identity,
                rules: self.rules,
                groups,
                headers: self.headers,
                headers_on_success: self.headers_on_success,
                rejection: self.rejection,
                failure_status: self.failure_status,
                misconfiguration_logged: AtomicBool::new(false),
            }),
        }
    }
}

/// The rules grouped by store, in order: a rule joins the first group whose
/// throttles share its store and type and none of which is its own throttle
/// (two rules of one throttle decide apart). A group runs where its first
/// rule would have, so local groups stay ahead of remote ones.
fn groups(rules: &[Rule]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let joined = groups.iter_mut().find(|group| {
            let first = &rules[group[0]].throttle;
            !rule.alone()
                && !rules[group[0]].alone()
                && first.joins(&*rule.throttle)
                && group
                    .iter()
                    .all(|&j| !rules[j].throttle.scope().same(rule.throttle.scope()))
        });
        match joined {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}
