//! [`AnyBackend`]: the backend a deployment picks, from a URL.

use std::future::Future;

use traffik_core::{Answer, Backend, Decision, Error, ErrorKind, Hit, Key, Limit};

#[cfg(feature = "memcached")]
use crate::memcached::MemcachedBackend;
#[cfg(feature = "memory")]
use crate::memory::MemoryBackend;
#[cfg(feature = "redis")]
use crate::redis::RedisBackend;

/// One of the compiled-in backends, chosen at run time, typically from a URL
/// in the deployment's configuration, so handler code never changes.
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory://` (options: `?shards=N&max_keys=N&sweep_interval_ms=N&hot_keys=N`) | in-memory | `memory` |
/// | `redis://[user:pass@]host:port/db`, `rediss://…`, `redis+unix:///path` | Redis | `redis` |
/// | `redis+cluster://host:port,host:port` | Redis Cluster (seed nodes) | `redis` |
/// | `memcached://host:port[,host:port]`, `memcached+unix:///path` | Memcached | `memcached` |
///
/// Remote backends connect lazily: a store that is down at start makes
/// decisions fail (and the failure policy apply), not `from_url`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyBackend {
    /// The in-memory backend.
    #[cfg(feature = "memory")]
    Memory(MemoryBackend),
    /// The Redis backend, standalone or cluster.
    #[cfg(feature = "redis")]
    Redis(RedisBackend),
    /// The Memcached backend.
    #[cfg(feature = "memcached")]
    Memcached(MemcachedBackend),
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
        // Only some backends read what follows the scheme.
        let _ = &rest;
        match scheme {
            #[cfg(feature = "memory")]
            "memory" => memory_from_url(rest).map(AnyBackend::Memory),
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" | "unix" | "redis+sentinel" => {
                RedisBackend::builder(url).build().map(AnyBackend::Redis)
            }
            #[cfg(feature = "redis")]
            "redis+cluster" => {
                let nodes = rest.split(',').map(|node| format!("redis://{node}"));
                RedisBackend::cluster_builder(nodes)
                    .build()
                    .map(AnyBackend::Redis)
            }
            #[cfg(not(feature = "redis"))]
            "redis" | "rediss" | "redis+unix" | "unix" | "redis+cluster" | "redis+sentinel" => {
                Err(config(format!(
                    "backend url {url:?} needs the `redis` feature of traffik-backends"
                )))
            }
            #[cfg(not(feature = "memory"))]
            "memory" => Err(config(format!(
                "backend url {url:?} needs the `memory` feature of traffik-backends"
            ))),
            #[cfg(feature = "memcached")]
            "memcached" | "memcached+unix" => MemcachedBackend::builder(url)
                .build()
                .map(AnyBackend::Memcached),
            #[cfg(not(feature = "memcached"))]
            "memcached" | "memcached+unix" => Err(config(format!(
                "backend url {url:?} needs the `memcached` feature of traffik-backends"
            ))),
            _ => Err(config(format!(
                "unknown backend url scheme {scheme:?} in {url:?}, expected memory://, redis://, \
                 rediss://, redis+unix://, redis+cluster://, redis+sentinel://, memcached://"
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
                "memory://{} takes no host or path, only ?options",
                traffik_core::backend::key_prefix(rest)
            )));
        }
    };
    let mut builder = MemoryBackend::builder();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number: u64 = value.parse().map_err(|_| {
            config(format!(
                "memory:// option {:?} needs a whole number, got {:?}",
                traffik_core::backend::key_prefix(name),
                traffik_core::backend::key_prefix(value)
            ))
        })?;
        let size = usize::try_from(number).unwrap_or(usize::MAX);
        builder = match name {
            "shards" => builder.shards(size),
            "max_keys" => builder.max_keys(size),
            "sweep_interval_ms" => {
                builder.sweep_interval(Some(std::time::Duration::from_millis(number)))
            }
            "hot_keys" => builder.hot_keys(size),
            _ => {
                return Err(config(format!(
                    "unknown memory:// option {:?}, expected shards, max_keys, sweep_interval_ms \
                     or hot_keys",
                    traffik_core::backend::key_prefix(name)
                )));
            }
        };
    }
    Ok(builder.build())
}

/// A variant's answer under one type: the in-memory backend's at once, the
/// remote ones' as one future that awaits whichever it is.
macro_rules! each {
    ($self:ident, $backend:ident => $call:expr) => {{
        // Irrefutable when memory is the only backend compiled in.
        #[cfg(feature = "memory")]
        #[allow(irrefutable_let_patterns)]
        if let AnyBackend::Memory($backend) = $self {
            if let Ok(output) = $call.into_ready() {
                return Answer::ready(output);
            }
        }
        Answer::pending(async move {
            match $self {
                #[cfg(feature = "memory")]
                AnyBackend::Memory($backend) => $call.await,
                #[cfg(feature = "redis")]
                AnyBackend::Redis($backend) => $call.await,
                #[cfg(feature = "memcached")]
                AnyBackend::Memcached($backend) => $call.await,
            }
        })
    }};
}

impl Backend for AnyBackend {
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        each!(self, backend => backend.hit(key, limit, now_ms, cost))
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        each!(self, backend => backend.peek(key, limit, now_ms, cost))
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        each!(self, backend => backend.reset(key, limit, now_ms))
    }

    fn refund(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        each!(self, backend => backend.refund(key, limit, now_ms, charged_ms, cost))
    }

    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a> {
        // `hits` moves into one call: the in-memory answer is taken here,
        // ready, and the remote ones are awaited.
        #[cfg(feature = "memory")]
        #[allow(irrefutable_let_patterns)]
        if let AnyBackend::Memory(backend) = self {
            let outcome = backend
                .hit_all(hits, now_ms)
                .into_ready()
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Other,
                        "the in-memory backend did not decide at once",
                    ))
                });
            return Answer::ready(outcome);
        }
        Answer::pending(async move {
            match self {
                #[cfg(feature = "memory")]
                AnyBackend::Memory(_) => Err(Error::new(ErrorKind::Other, "unreachable")),
                #[cfg(feature = "redis")]
                AnyBackend::Redis(backend) => backend.hit_all(hits, now_ms).await,
                #[cfg(feature = "memcached")]
                AnyBackend::Memcached(backend) => backend.hit_all(hits, now_ms).await,
            }
        })
    }

    fn same_store(&self, other: &AnyBackend) -> bool {
        match (self, other) {
            #[cfg(feature = "memory")]
            (AnyBackend::Memory(a), AnyBackend::Memory(b)) => a.same_store(b),
            #[cfg(feature = "redis")]
            (AnyBackend::Redis(a), AnyBackend::Redis(b)) => a.same_store(b),
            #[cfg(feature = "memcached")]
            (AnyBackend::Memcached(a), AnyBackend::Memcached(b)) => a.same_store(b),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    fn is_local(&self) -> bool {
        match self {
            #[cfg(feature = "memory")]
            AnyBackend::Memory(backend) => backend.is_local(),
            #[cfg(feature = "redis")]
            AnyBackend::Redis(backend) => backend.is_local(),
            #[cfg(feature = "memcached")]
            AnyBackend::Memcached(backend) => backend.is_local(),
        }
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn redis_urls_build_without_connecting() {
        // Nothing listens on these: building must still work (connections are lazy).
        for url in [
            "redis://127.0.0.1:1/0",
            "rediss://user:secret@127.0.0.1:1",
            "redis+unix:///tmp/no-such.sock",
            "redis+cluster://127.0.0.1:1,127.0.0.1:2",
        ] {
            let backend = AnyBackend::from_url(url).await;
            assert!(
                matches!(backend, Ok(AnyBackend::Redis(_))),
                "{url}: {backend:?}"
            );
        }
        let err = AnyBackend::from_url("redis://[::1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    #[tokio::test]
    async fn memory_urls_and_their_errors() {
        let Ok(AnyBackend::Memory(backend)) =
            AnyBackend::from_url("memory://?shards=3&max_keys=10").await
        else {
            panic!("memory:// did not give a memory backend");
        };
        assert_eq!(backend.shard_count(), 4);
        for (url, needle) in [
            ("memory", "has no scheme"),
            ("memory://host", "takes no host"),
            ("memory://?shards=x", "needs a whole number"),
            ("memory://?colour=1", "unknown memory:// option"),
            ("mongodb://x", "unknown backend url scheme"),
        ] {
            let err = AnyBackend::from_url(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
        // Options of any size never panic nor allocate without bound, and
        // errors quote a bounded part of what they were given.
        let huge = u64::MAX;
        for url in [
            format!("memory://?shards={huge}"),
            format!("memory://?max_keys={huge}&hot_keys={huge}"),
            format!("memory://?sweep_interval_ms={huge}"),
        ] {
            let _ = AnyBackend::from_url(&url).await;
        }
        let long = "x".repeat(10_000);
        for (url, needle) in [
            (format!("memory://{long}"), "takes no host"),
            (format!("memory://?{long}=1"), "unknown memory:// option"),
            (format!("memory://?shards={long}"), "needs a whole number"),
        ] {
            let err = AnyBackend::from_url(&url).await.unwrap_err();
            assert!(err.to_string().len() < 400, "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        for (url, needle) in [("memory://?hot_keys=x", "needs a whole number")] {
            let err = AnyBackend::from_url(url).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{url}");
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
        #[cfg(feature = "memcached")]
        {
            let err = AnyBackend::from_url("memcached://no-port")
                .await
                .unwrap_err();
            assert!(err.to_string().contains("is not host:port"), "{err}");
        }
        #[cfg(not(feature = "memcached"))]
        {
            let err = AnyBackend::from_url("memcached://h:1").await.unwrap_err();
            assert!(
                err.to_string().contains("needs the `memcached` feature"),
                "{err}"
            );
        }
        #[cfg(feature = "memcached")]
        for url in [
            "memcached://127.0.0.1:1,127.0.0.1:2",
            "memcached+unix:///tmp/no-such.sock",
        ] {
            let backend = AnyBackend::from_url(url).await;
            assert!(
                matches!(backend, Ok(AnyBackend::Memcached(_))),
                "{url}: {backend:?}"
            );
        }
    }
}
