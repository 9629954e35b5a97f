//! One client's key on a store: peek, reset, block, unblock.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use traffik_axum::config::{AdminKey, Client, LoadOptions, Rules, ThrottleAdmin};
use traffik_backends::AnyBackend;
use traffik_core::{AnyStrategy, Throttle};

use crate::{Exit, Failure, shown};

/// Where the throttle comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A rules file; `backend` replaces the stores it names.
    Rules {
        /// The file.
        path: PathBuf,
        /// A store URL for every throttle (`None`: the file's own).
        backend: Option<String>,
    },
    /// A throttle defined by flags, as code defines one.
    Flags {
        /// The store URL.
        backend: String,
        /// Its rate, such as `5/15min`.
        rate: String,
        /// Its strategy (`None`: GCRA).
        strategy: Option<String>,
        /// Its namespace (`None`: the default).
        namespace: Option<String>,
    },
}

/// Which key of which throttle.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where the throttle is defined.
    pub source: Source,
    /// Its name.
    pub throttle: String,
    /// The client: as the rules identify clients (an IP address, a
    /// header's value), or the identity as given for a flags throttle.
    pub client: String,
    /// The client is an IP address even where the rules read a header.
    pub ip: bool,
    /// The route template, for a throttle keyed per route.
    pub route: Option<String>,
    /// The method, for a throttle keyed per method and route.
    pub method: Option<String>,
}

/// What to do to the key.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Read its state without charging it.
    Peek,
    /// Give it its whole budget back.
    Reset,
    /// Deny it for this long.
    Block(Duration),
    /// Lift its block and forget its offences.
    Unblock,
}

/// A key's state, as printed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// The throttle.
    pub throttle: String,
    /// The key's identity part, as the store names it.
    pub key: String,
    /// The limit's capacity.
    pub limit: u64,
    /// What a hit would still admit.
    pub remaining: u64,
    /// Milliseconds until a hit of 1 passes (0: one would now).
    pub retry_after_ms: u64,
    /// Milliseconds until the key is as good as new.
    pub reset_after_ms: u64,
    /// Milliseconds the key stays blocked (`None`: not blocked).
    pub blocked_for_ms: Option<u64>,
    /// Offences not yet forgiven (`None`: the throttle has no penalty).
    pub offences: Option<u64>,
    /// What was done: `peek`, `reset`, `block` or `unblock`.
    pub action: &'static str,
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn backend(url: &str) -> Result<AnyBackend, Failure> {
    AnyBackend::from_url(url).await.map_err(|error| {
        let exit = if error.kind().is_store_failure() {
            Exit::Store
        } else {
            Exit::Config
        };
        Failure::new(exit, format!("backend {}: {}", shown(url), error.message()))
    })
}

/// Runs `action` on `target`'s key and reports its state after.
///
/// # Errors
///
/// See the [exit codes](crate).
pub async fn run(target: &Target, action: Action) -> Result<Report, Failure> {
    match &target.source {
        Source::Rules { path, backend: url } => {
            let mut options = LoadOptions::new();
            if let Some(url) = url {
                options = options.backend(backend(url).await?);
            }
            let rules = Box::pin(Rules::load_with(path, options))
                .await
                .map_err(|error| {
                    Failure::new(Exit::Config, format!("the rules file was refused: {error}"))
                })?;
            if !rules.throttles().contains(&target.throttle) {
                let known = rules.throttles();
                return Err(Failure::new(
                    Exit::UnknownThrottle,
                    format!(
                        "no throttle named {} in {}; it defines {}",
                        shown(&target.throttle),
                        path.display(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            let admin = rules
                .admin(&target.throttle)
                .map_err(|error| Failure::from_error("the throttle", &error))?;
            let key = rules_key(&admin, target)?;
            // Boxed: the stores' futures nest too deep to lay out inline.
            Box::pin(act(&admin, &key, action)).await
        }
        Source::Flags {
            backend: url,
            rate,
            strategy,
            namespace,
        } => {
            let store = backend(url).await?;
            let rate = rate.parse().map_err(|error| {
                Failure::new(Exit::Usage, format!("--rate {}: {error}", shown(rate)))
            })?;
            let mut builder = Throttle::builder(target.throttle.clone(), rate);
            if let Some(strategy) = strategy {
                let parsed: AnyStrategy = strategy.parse().map_err(|error| {
                    Failure::new(
                        Exit::Usage,
                        format!("--strategy {}: {error}", shown(strategy)),
                    )
                })?;
                builder = builder.strategy(parsed);
            }
            if let Some(namespace) = namespace {
                builder = builder.namespace(namespace.clone());
            }
            let throttle = builder
                .build(store)
                .map_err(|error| Failure::new(Exit::Usage, format!("the throttle: {error}")))?;
            let admin = ThrottleAdmin::for_code(&throttle)
                .map_err(|error| Failure::new(Exit::Failed, format!("the throttle: {error}")))?;
            let key = code_key(&admin, target)?;
            Box::pin(act(&admin, &key, action)).await
        }
    }
}

/// The key `target` names in a rules file's throttle.
fn rules_key(admin: &ThrottleAdmin, target: &Target) -> Result<AdminKey, Failure> {
    let mut client = if target.ip {
        let ip = target.client.trim().parse().map_err(|_| {
            Failure::new(
                Exit::Usage,
                format!("--ip: {} is not an IP address", shown(&target.client)),
            )
        })?;
        Client::ip(ip)
    } else {
        Client::named(&target.client)
    };
    if let Some(route) = &target.route {
        client = client.route(route);
    }
    if let Some(method) = &target.method {
        client = client.method(method);
    }
    admin
        .key(&client)
        .map_err(|error| Failure::from_error("the client", &error))
}

/// The key `target` names in a throttle defined by flags: its identity as
/// given.
fn code_key(admin: &ThrottleAdmin, target: &Target) -> Result<AdminKey, Failure> {
    if target.route.is_some() || target.method.is_some() || target.ip {
        return Err(Failure::new(
            Exit::Usage,
            "--route, --method and --ip name a rules file's keys: give --rules, or the \
             identity as your code passes it",
        ));
    }
    Ok(admin.key_as_given(&target.client))
}

/// Does `action` to `key`, then reads it back.
async fn act(admin: &ThrottleAdmin, key: &AdminKey, action: Action) -> Result<Report, Failure> {
    let store = |error: traffik_core::Error| Failure::from_error("the store", &error);
    match action {
        Action::Peek => {}
        Action::Reset => admin.reset(key).await.map_err(store)?,
        Action::Block(duration) => admin.block(key, duration).await.map_err(store)?,
        Action::Unblock => admin.unblock(key).await.map_err(store)?,
    }
    let status = admin.peek(key).await.map_err(store)?;
    Ok(Report {
        throttle: admin.name().to_owned(),
        key: key.as_str().to_owned(),
        limit: status.limit,
        remaining: status.remaining,
        retry_after_ms: ms(status.retry_after),
        reset_after_ms: ms(status.reset_after),
        blocked_for_ms: status.blocked_for.map(ms),
        offences: status.offences,
        action: action.name(),
    })
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Peek => "peek",
            Action::Reset => "reset",
            Action::Block(_) => "block",
            Action::Unblock => "unblock",
        }
    }
}

impl Report {
    /// The report as a two-column table for a person.
    pub fn table(&self) -> String {
        // Whole seconds, rounded up as Retry-After is: `10m`, not `9m 59s 999ms`.
        let wait = |ms: u64| {
            humantime::format_duration(Duration::from_secs(ms.div_ceil(1_000))).to_string()
        };
        let mut rows = vec![
            ("throttle", self.throttle.clone()),
            ("key", self.key.clone()),
            ("limit", self.limit.to_string()),
            ("remaining", self.remaining.to_string()),
            ("retry after", wait(self.retry_after_ms)),
            ("reset after", wait(self.reset_after_ms)),
        ];
        rows.push((
            "blocked for",
            self.blocked_for_ms
                .map_or_else(|| "not blocked".to_owned(), wait),
        ));
        if let Some(offences) = self.offences {
            rows.push(("offences", offences.to_string()));
        }
        let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in rows {
            out.push_str(&format!("{name:<width$}  {value}\n"));
        }
        out
    }
}
