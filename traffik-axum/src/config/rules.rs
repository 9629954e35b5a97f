//! [`Rules`]: a rules file read, checked and put in place, and reloaded.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use traffik_backends::AnyBackend;
use traffik_core::{ManualClock, SystemClock};

use super::admin::ThrottleAdmin;
use super::compile::{
    Compiled, Making, Places, RulesClock, Summary, compile, state_is_in_rate_units,
};
use super::error::RulesError;
use super::layer::RulesLayer;
use super::spec;

/// Rules loaded from a file: a [`layer`](Rules::layer) for the router, and
/// [`reload`](Rules::reload) / [`watch`](Rules::watch) to change them live.
/// Clones share the rules.
#[derive(Clone)]
pub struct Rules {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) path: Option<PathBuf>,
    pub(super) origin: String,
    making: Making,
    pub(super) current: ArcSwap<Compiled>,
    /// One reload at a time; the stores made so far, by URL; the last
    /// refusal logged.
    state: tokio::sync::Mutex<State>,
    pub(super) generation: AtomicU64,
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
    pub(super) async fn reload_when(&self, forced: bool) -> Result<Option<Reloaded>, RulesError> {
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
