//! Rules from a TOML file, with hot reload (feature `config`).
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use traffik_axum::config::Rules;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let rules = Rules::load("rules.toml").await?;
//!     // Reload when the file changes, and on SIGHUP.
//!     let _watch = rules.watch()?;
//!     let app = Router::new()
//!         .route("/login", get(|| async { "hello" }))
//!         .route_layer(rules.layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//!     Ok(())
//! }
//! ```
//!
//! The file's reference is `docs/configuration.md`; its JSON Schema is
//! [`Rules::schema`] (shipped as `traffik-axum/rules.schema.json`, for
//! editors).
//!
//! # Reloading
//!
//! A reload reads and checks the whole file, then replaces the rules at
//! once. A request runs start to end under the rules it started with. A
//! file with a mistake is refused with one error log naming the file, the
//! line and the column, and the rules before it stay. Stores are kept by
//! URL, so in-memory counters live on. A throttle whose name, store and
//! namespace stay keeps its counters when its rate changes if its strategy
//! counts hits (fixed window, sliding window counter and log); a bucket
//! strategy's state is in its rate's units, so a new rate starts it from
//! fresh keys, and the reload log says so.

mod admin;
mod compile;
mod identity;
mod spec;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::response::Response;
use http::Request;
use tower::util::BoxCloneService;
use tower::{Layer, Service};
use traffik_backends::AnyBackend;

pub use admin::{AdminKey, Client, Status, ThrottleAdmin};
use compile::{Compiled, Making, Places, RulesClock, Summary, compile, state_is_in_rate_units};
pub use identity::ConfigIdentity;
use traffik_core::{ManualClock, SystemClock};

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
    fn at(origin: &str, line: usize, column: usize, message: String) -> RulesError {
        RulesError {
            origin: origin.to_owned(),
            line,
            column,
            message,
            source: None,
        }
    }

    /// This error, caused by `source`.
    fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> RulesError {
        self.source = Some(Box::new(source));
        self
    }

    fn io(
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

    /// The file (or the name given to [`Rules::from_toml`]).
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

/// Rules loaded from a file: a [`layer`](Rules::layer) for the router, and
/// [`reload`](Rules::reload) / [`watch`](Rules::watch) to change them live.
/// Clones share the rules.
#[derive(Clone)]
pub struct Rules {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    origin: String,
    making: Making,
    current: ArcSwap<Compiled>,
    /// One reload at a time; the stores made so far, by URL; the last
    /// refusal logged.
    state: tokio::sync::Mutex<State>,
    generation: AtomicU64,
}

struct State {
    backends: HashMap<String, AnyBackend>,
    last_refusal: Option<String>,
    /// The file's text as last read, put in place or refused: a watch
    /// that sees the same text again has nothing to do.
    last_text: Option<String>,
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("origin", &self.inner.origin)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// How rules are made beyond what their file says: for tools, such as the
/// `traffik` command line, that act on a file's throttles elsewhere.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct LoadOptions {
    backend: Option<AnyBackend>,
    clock: Option<ManualClock>,
}

impl LoadOptions {
    /// As the file says.
    pub fn new() -> LoadOptions {
        LoadOptions::default()
    }

    /// Every throttle on `backend`, whatever backends the file names (an
    /// operator's store URL, or a fresh in-memory store to replay a log).
    pub fn backend(mut self, backend: AnyBackend) -> LoadOptions {
        self.backend = Some(backend);
        self
    }

    /// Every throttle on `clock` instead of the system's (to replay a log
    /// at its own timestamps).
    pub fn clock(mut self, clock: ManualClock) -> LoadOptions {
        self.clock = Some(clock);
        self
    }

    fn making(self) -> Making {
        Making {
            backend: self.backend,
            clock: match self.clock {
                Some(clock) => RulesClock::Manual(clock),
                None => RulesClock::System(SystemClock),
            },
        }
    }
}

/// What a successful reload changed, one line per throttle that changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Human-readable changes, such as `throttle "api": rate 100/min →
    /// 200/min; counters kept`.
    pub changes: Vec<String>,
}

async fn read(path: &Path, origin: &str) -> Result<String, RulesError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|error| RulesError::io(origin, "cannot read the rules file", error))
}

impl Rules {
    /// Reads and checks the rules file at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or holds a mistake (with its line and
    /// column).
    pub async fn load(path: impl AsRef<Path>) -> Result<Rules, RulesError> {
        Rules::load_with(path, LoadOptions::new()).await
    }

    /// [`load`](Rules::load), made as `options` say.
    ///
    /// # Errors
    ///
    /// As [`load`](Rules::load).
    pub async fn load_with(
        path: impl AsRef<Path>,
        options: LoadOptions,
    ) -> Result<Rules, RulesError> {
        let path = path.as_ref().to_path_buf();
        let origin = path.display().to_string();
        let text = read(&path, &origin).await?;
        Rules::build(Some(path), origin, &text, options.making()).await
    }

    /// Rules from TOML text; `origin` names it in errors. Such rules have
    /// no file to reload from.
    ///
    /// # Errors
    ///
    /// When the text holds a mistake.
    pub async fn from_toml(text: &str, origin: &str) -> Result<Rules, RulesError> {
        Rules::from_toml_with(text, origin, LoadOptions::new()).await
    }

    /// [`from_toml`](Rules::from_toml), made as `options` say.
    ///
    /// # Errors
    ///
    /// As [`from_toml`](Rules::from_toml).
    pub async fn from_toml_with(
        text: &str,
        origin: &str,
        options: LoadOptions,
    ) -> Result<Rules, RulesError> {
        Rules::build(None, origin.to_owned(), text, options.making()).await
    }

    async fn build(
        path: Option<PathBuf>,
        origin: String,
        text: &str,
        making: Making,
    ) -> Result<Rules, RulesError> {
        let mut backends = HashMap::new();
        let places = Places {
            origin: &origin,
            text,
        };
        let compiled = compile(&places, &mut backends, &making).await?;
        Ok(Rules {
            inner: Arc::new(Inner {
                path,
                making,
                current: ArcSwap::from_pointee(compiled),
                state: tokio::sync::Mutex::new(State {
                    backends,
                    last_refusal: None,
                    last_text: Some(text.to_owned()),
                }),
                generation: AtomicU64::new(1),
                origin,
            }),
        })
    }

    /// The file the rules come from (`None` for [`from_toml`](Rules::from_toml)).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// How many times rules were put in place: 1 after loading, one more
    /// per successful reload.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// The names of the throttles in force.
    pub fn throttles(&self) -> Vec<String> {
        self.inner
            .current
            .load()
            .throttles
            .keys()
            .cloned()
            .collect()
    }

    /// The stores the rules have made, by URL (every one since loading:
    /// a reload reuses a store by its URL). For an application that wants
    /// a store's own figures, such as the in-memory store's
    /// [`hottest`](traffik_backends::memory::MemoryBackend::hottest) keys.
    pub async fn stores(&self) -> Vec<(String, AnyBackend)> {
        let state = self.inner.state.lock().await;
        let mut stores: Vec<(String, AnyBackend)> = state
            .backends
            .iter()
            .map(|(url, backend)| (url.clone(), backend.clone()))
            .collect();
        stores.sort_by(|a, b| a.0.cmp(&b.0));
        stores
    }

    /// An operator's handle on the throttle `name` as the rules in force
    /// define it: peek, reset, block and unblock a client's key.
    ///
    /// # Errors
    ///
    /// A [`Config`](traffik_core::ErrorKind::Config) error when the rules
    /// define no throttle of that name (it lists those they do).
    pub fn admin(&self, name: &str) -> Result<ThrottleAdmin, traffik_core::Error> {
        let current = self.inner.current.load();
        current.admin.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = current.admin.keys().take(20).map(String::as_str).collect();
            traffik_core::Error::new(
                traffik_core::ErrorKind::Config,
                format!(
                    "no throttle named {:?}; the rules define {}",
                    traffik_core::backend::key_prefix(name),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    /// Reads the file again and, when it is valid, replaces the rules at
    /// once (requests already running finish under the old ones). Logs
    /// what changed at info level. A file with a mistake changes nothing:
    /// the error is returned, and logged once (a file that stays broken
    /// is not logged again on every change).
    ///
    /// # Errors
    ///
    /// When there is no file, it cannot be read, or it holds a mistake.
    pub async fn reload(&self) -> Result<Reloaded, RulesError> {
        self.reload_when(true).await.map(Option::unwrap_or_default)
    }

    /// Reads the file and puts it in place, unless its text is the one
    /// last read and the reload is not `forced`.
    async fn reload_when(&self, forced: bool) -> Result<Option<Reloaded>, RulesError> {
        let inner = &self.inner;
        let Some(path) = &inner.path else {
            return Err(RulesError::at(
                &inner.origin,
                0,
                0,
                "these rules were not read from a file, so there is nothing to reload".into(),
            ));
        };
        let mut state = inner.state.lock().await;
        let outcome = match read(path, &inner.origin).await {
            Ok(text) => {
                if !forced && state.last_text.as_deref() == Some(text.as_str()) {
                    return Ok(None);
                }
                let places = Places {
                    origin: &inner.origin,
                    text: &text,
                };
                let compiled = compile(&places, &mut state.backends, &inner.making).await;
                state.last_text = Some(text);
                compiled
            }
            Err(error) => {
                state.last_text = None;
                Err(error)
            }
        };
        match outcome {
            Ok(compiled) => {
                let changes = changes(&inner.current.load().throttles, &compiled.throttles);
                inner.current.store(Arc::new(compiled));
                let generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
                state.last_refusal = None;
                tracing::info!(
                    target: "traffik",
                    generation,
                    "traffik: rules reloaded from {}{}{}",
                    inner.origin,
                    if changes.is_empty() { "; no throttle changed" } else { ": " },
                    changes.join("; ")
                );
                Ok(Some(Reloaded { changes }))
            }
            Err(error) => {
                let text = error.to_string();
                if state.last_refusal.as_deref() != Some(text.as_str()) {
                    tracing::error!(
                        target: "traffik",
                        "traffik: the rules file was not reloaded, the previous rules stay: {text}"
                    );
                    state.last_refusal = Some(text);
                }
                Err(error)
            }
        }
    }

    /// Reloads when the file changes (watched with `notify`; editors that
    /// save by renaming are seen too, and so is a file that is a link whose
    /// target is swapped, as a Kubernetes ConfigMap's is) and when the
    /// process receives SIGHUP. Changes within 100 ms are one reload; a
    /// change that leaves the text as it was does nothing. Stops when the
    /// [`Watch`] is dropped. Needs a Tokio runtime.
    ///
    /// # Errors
    ///
    /// When there is no file, or the watch or the signal cannot be set up.
    pub fn watch(&self) -> Result<Watch, RulesError> {
        let origin = &self.inner.origin;
        let Some(path) = self.inner.path.clone() else {
            return Err(RulesError::at(
                origin,
                0,
                0,
                "these rules were not read from a file, so there is nothing to watch".into(),
            ));
        };
        // `true` when the reload is asked for (SIGHUP), `false` when the
        // file may have changed (then the same text again does nothing).
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let name = path.file_name().map(ToOwned::to_owned);
        let mut dirs = vec![match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }];
        // A link (a Kubernetes ConfigMap's file links through `..data`,
        // which an update swaps): what it points to can change with no
        // event naming it, so any change in its directory, or in its
        // target's, is looked at.
        let linked = std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_symlink());
        if linked {
            if let Some(target) = std::fs::canonicalize(&path)
                .ok()
                .and_then(|target| target.parent().map(Path::to_path_buf))
            {
                if !dirs.contains(&target) {
                    dirs.push(target);
                }
            }
        }
        let on_change = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let ours = linked
                    || event
                        .paths
                        .iter()
                        .any(|changed| changed.file_name() == name.as_deref());
                if ours && !event.kind.is_access() {
                    let _ = on_change.send(false);
                }
            })
            .map_err(|error| RulesError::io(origin, "cannot watch the rules file", error))?;
        for dir in &dirs {
            notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::NonRecursive)
                .map_err(|error| RulesError::io(origin, "cannot watch the rules file", error))?;
        }
        let mut tasks = Vec::new();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = signal(SignalKind::hangup())
                .map_err(|error| RulesError::io(origin, "cannot listen for SIGHUP", error))?;
            tasks.push(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if tx.send(true).is_err() {
                        break;
                    }
                }
            }));
        }
        let rules = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(mut forced) = rx.recv().await {
                // A save is often several events: one reload for them all.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while let Ok(asked) = rx.try_recv() {
                    forced |= asked;
                }
                // Refusals are logged by the reload.
                let _ = rules.reload_when(forced).await;
            }
        }));
        Ok(Watch {
            _watcher: watcher,
            tasks,
        })
    }

    /// The layer that runs the rules in force on every request.
    pub fn layer(&self) -> RulesLayer {
        RulesLayer {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The JSON Schema of the rules file, pretty-printed.
    pub fn schema() -> String {
        let schema = schemars::schema_for!(spec::RulesFile);
        serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
    }
}

/// What changed between two sets of throttles, and what became of their
/// counters.
fn changes(
    old: &std::collections::BTreeMap<String, Summary>,
    new: &std::collections::BTreeMap<String, Summary>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, before) in old {
        if !new.contains_key(name) {
            lines.push(format!(
                "throttle {name:?} removed (its keys expire on their own)"
            ));
        }
        let Some(after) = new.get(name) else { continue };
        if before == after {
            continue;
        }
        let mut what = Vec::new();
        if before.rate != after.rate {
            what.push(format!("rate {} → {}", before.rate, after.rate));
        }
        if before.strategy != after.strategy {
            what.push(format!("strategy {} → {}", before.strategy, after.strategy));
        }
        if before.backend != after.backend {
            what.push(format!("backend {} → {}", before.backend, after.backend));
        }
        if before.namespace != after.namespace {
            what.push(format!(
                "namespace {} → {}",
                before.namespace, after.namespace
            ));
        }
        if before.shadow != after.shadow {
            what.push(format!("enforcement {} → {}", before.shadow, after.shadow));
        }
        let fresh = if before.backend != after.backend || before.namespace != after.namespace {
            Some("its keys are elsewhere now")
        } else if before.kind != after.kind {
            Some("another strategy keeps other keys")
        } else if before.rate != after.rate && state_is_in_rate_units(after.kind) {
            Some("a bucket's state is in its rate's units, so the new rate has fresh keys")
        } else {
            None
        };
        let counters = match fresh {
            Some(why) => format!("counters start afresh ({why})"),
            None => "counters kept".to_owned(),
        };
        lines.push(format!(
            "throttle {name:?}: {}; {counters}",
            what.join(", ")
        ));
    }
    for (name, summary) in new {
        if !old.contains_key(name) {
            lines.push(format!(
                "throttle {name:?} added ({} {} on {})",
                summary.rate, summary.strategy, summary.backend
            ));
        }
    }
    lines
}

/// Watches a rules file for [`Rules::watch`]; stops when dropped.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The tower layer of [`Rules::layer`].
#[derive(Clone)]
pub struct RulesLayer {
    inner: Arc<Inner>,
}

impl fmt::Debug for RulesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesLayer")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RulesLayer {
    type Service = RulesService<S>;

    fn layer(&self, inner: S) -> RulesService<S> {
        RulesService {
            rules: Arc::clone(&self.inner),
            built: Some(Built::Bare {
                generation: 0,
                inner,
            }),
        }
    }
}

/// The service of a [`RulesLayer`]: each request runs under the rules in
/// force when the service was made ready for it.
#[derive(Clone)]
pub struct RulesService<S> {
    rules: Arc<Inner>,
    /// Always `Some` between calls.
    built: Option<Built<S>>,
}

/// The rules of one generation around the service.
#[derive(Clone)]
enum Built<S> {
    /// One layer (one identity, the common case), built once per
    /// generation: a request pays nothing for the rules being reloadable.
    One {
        generation: u64,
        service: crate::ThrottleService<S, ConfigIdentity>,
    },
    /// No layer, or several: stacked per request. Generation 0: not built.
    Bare { generation: u64, inner: S },
}

impl<S> Built<S> {
    fn generation(&self) -> u64 {
        match self {
            Built::One { generation, .. } | Built::Bare { generation, .. } => *generation,
        }
    }

    fn into_inner(self) -> S {
        match self {
            Built::One { service, .. } => service.into_inner(),
            Built::Bare { inner, .. } => inner,
        }
    }
}

impl<S> fmt::Debug for RulesService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesService").finish_non_exhaustive()
    }
}

type Handler = BoxCloneService<Request<Body>, Response, Infallible>;

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of a [`RulesService`]: the layer's own when the
    /// rules are one layer (nothing boxed), boxed otherwise.
    pub struct RulesFuture<F> {
        #[pin]
        state: RulesState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = RulesStateProjection]
    enum RulesState<F> {
        One {
            #[pin]
            future: crate::ResponseFuture<F>,
        },
        Boxed {
            future: Boxed,
        },
    }
}

impl<F> RulesFuture<F> {
    fn one(future: crate::ResponseFuture<F>) -> RulesFuture<F> {
        RulesFuture {
            state: RulesState::One { future },
        }
    }

    fn boxed(future: Boxed) -> RulesFuture<F> {
        RulesFuture {
            state: RulesState::Boxed { future },
        }
    }
}

impl<F> Future for RulesFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RulesStateProjection::One { future } => future.poll(cx),
            RulesStateProjection::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F> fmt::Debug for RulesFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RulesFuture")
    }
}

/// What a service left unbuilt answers (it cannot be: it is rebuilt in
/// one step; only a panic in between could leave it so).
fn unbuilt() -> Response {
    crate::rejection::problem(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "the rules service lost its rules",
    )
}

impl<S> Service<Request<Body>> for RulesService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RulesFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        let generation = self.rules.generation.load(Ordering::Acquire);
        let stale = self
            .built
            .as_ref()
            .is_none_or(|built| built.generation() != generation);
        if stale {
            if let Some(old) = self.built.take() {
                let inner = old.into_inner();
                let compiled = self.rules.current.load();
                self.built = Some(match compiled.layers.as_slice() {
                    [layer] => Built::One {
                        generation,
                        service: layer.layer(inner),
                    },
                    _ => Built::Bare { generation, inner },
                });
            }
        }
        match &mut self.built {
            Some(Built::One { service, .. }) => service.poll_ready(cx),
            Some(Built::Bare { inner, .. }) => inner.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match &mut self.built {
            // Made ready under the rules of its generation: the request runs
            // under them whatever is reloaded meanwhile.
            Some(Built::One { service, .. }) => RulesFuture::one(service.call(request)),
            Some(Built::Bare { inner, .. }) => {
                let compiled = self.rules.current.load();
                let clone = inner.clone();
                let mut ready = std::mem::replace(inner, clone);
                let future: Boxed = match compiled.layers.as_slice() {
                    [] => Box::pin(ready.call(request)),
                    layers => {
                        let mut service: Handler = BoxCloneService::new(ready);
                        for layer in layers.iter().rev() {
                            service = BoxCloneService::new(layer.layer(service));
                        }
                        Box::pin(service.call(request))
                    }
                };
                RulesFuture::boxed(future)
            }
            None => RulesFuture::boxed(Box::pin(std::future::ready(Ok(unbuilt())))),
        }
    }
}
