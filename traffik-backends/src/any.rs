//! [`AnyBackend`]: the backend a deployment picks, from a URL.

use std::future::Future;

use traffik_core::{Backend, Decision, Error, ErrorKind, Key, Limit};

#[cfg(feature = "memory")]
use crate::memory::MemoryBackend;

/// One of the compiled-in backends, chosen at run time, typically from a URL
/// in the deployment's configuration, so handler code never changes.
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory://` (options: `?shards=N&max_keys=N&sweep_interval_ms=N`) | in-memory | `memory` |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyBackend {
    /// The in-memory backend.
    #[cfg(feature = "memory")]
    Memory(MemoryBackend),
}

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

impl AnyBackend {
    /// Builds the backend a URL names (and connects to it, for remote ones).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a malformed URL, an unknown scheme or option,
    /// or a backend whose feature is not compiled in;
    /// [`ErrorKind::Unavailable`] when a remote store cannot be reached.
    pub async fn from_url(url: &str) -> Result<AnyBackend, Error> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            config(format!(
                "backend url {url:?} has no scheme, expected e.g. memory://"
            ))
        })?;
        match scheme {
            #[cfg(feature = "memory")]
            "memory" => memory_from_url(rest).map(AnyBackend::Memory),
            "redis" | "rediss" | "redis+unix" | "unix" => Err(config(format!(
                "backend url {url:?} needs the `redis` feature of traffik-backends"
            ))),
            "memcached" | "memcache" => Err(config(format!(
                "backend url {url:?} needs the `memcached` feature of traffik-backends"
            ))),
            _ => Err(config(format!(
                "unknown backend url scheme {scheme:?} in {url:?}, expected memory://, redis://, \
                 rediss://, redis+unix://, memcached://"
            ))),
        }
    }
}

#[cfg(feature = "memory")]
fn memory_from_url(rest: &str) -> Result<MemoryBackend, Error> {
    let query = match rest.split_once('?') {
        Some(("", query)) => query,
        None if rest.is_empty() => "",
        _ => {
            return Err(config(format!(
                "memory://{rest} takes no host or path, only ?options"
            )));
        }
    };
    let mut builder = MemoryBackend::builder();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number: u64 = value.parse().map_err(|_| {
            config(format!(
                "memory:// option {name} needs a whole number, got {value:?}"
            ))
        })?;
        let size = usize::try_from(number).unwrap_or(usize::MAX);
        builder = match name {
            "shards" => builder.shards(size),
            "max_keys" => builder.max_keys(size),
            "sweep_interval_ms" => {
                builder.sweep_interval(Some(std::time::Duration::from_millis(number)))
            }
            _ => {
                return Err(config(format!(
                    "unknown memory:// option {name:?}, expected shards, max_keys or sweep_interval_ms"
                )));
            }
        };
    }
    Ok(builder.build())
}

impl Backend for AnyBackend {
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        match self {
            #[cfg(feature = "memory")]
            AnyBackend::Memory(backend) => backend.hit(key, limit, now_ms, cost),
        }
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        match self {
            #[cfg(feature = "memory")]
            AnyBackend::Memory(backend) => backend.peek(key, limit, now_ms, cost),
        }
    }

    fn reset(&self, key: Key<'_>, limit: &Limit) -> impl Future<Output = Result<(), Error>> + Send {
        match self {
            #[cfg(feature = "memory")]
            AnyBackend::Memory(backend) => backend.reset(key, limit),
        }
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_and_their_errors() {
        let AnyBackend::Memory(backend) = AnyBackend::from_url("memory://?shards=3&max_keys=10")
            .await
            .unwrap();
        assert_eq!(backend.shard_count(), 4);
        for (url, needle) in [
            ("memory", "has no scheme"),
            ("memory://host", "takes no host"),
            ("memory://?shards=x", "needs a whole number"),
            ("memory://?colour=1", "unknown memory:// option"),
            ("redis://127.0.0.1:6379", "needs the `redis` feature"),
            (
                "memcached://127.0.0.1:11211",
                "needs the `memcached` feature",
            ),
            ("mongodb://x", "unknown backend url scheme"),
        ] {
            let err = AnyBackend::from_url(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
    }
}
