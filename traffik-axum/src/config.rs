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
mod error;
mod future;
mod identity;
mod layer;
mod rules;
mod service;
mod spec;
mod watch;

pub use admin::{AdminKey, Client, Status, ThrottleAdmin};
pub use error::RulesError;
pub use future::RulesFuture;
pub use identity::ConfigIdentity;
pub use layer::RulesLayer;
pub use rules::{LoadOptions, Reloaded, Rules};
pub use service::RulesService;
pub use watch::Watch;
