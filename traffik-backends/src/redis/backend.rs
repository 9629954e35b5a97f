use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd};
use tokio::sync::OnceCell;
use traffik_core::{Answer, Backend, Decision, Error, ErrorKind, Hit, Key, Limit, check_distinct};

use super::error::{from_redis, timeout};
use super::scripts::{Scripts, decision};
use crate::guard::{self, Breaker, BreakerConfig, BreakerState, Guard, GuardConfig, Remote};

/// The largest time the scripts compute with exactly (Lua doubles).
const LUA_EXACT_MS: u64 = (1 << 53) - 1;

/// Where the scripts take the current time from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeSource {
    /// The Redis server's clock (`TIME` inside the script): every
    /// application host shares one clock, however skewed their own are.
    #[default]
    Server,
    /// The throttle's clock, passed with each call (tests, simulations, or a
    /// Redis that must not be asked the time).
    Client,
}

enum Connection {
    Standalone {
        client: Client,
        config: ConnectionManagerConfig,
        pool: Box<[OnceCell<ConnectionManager>]>,
        next: AtomicUsize,
    },
    Cluster {
        client: ClusterClient,
        connection: OnceCell<ClusterConnection>,
    },
    /// A master found through Sentinel, found again after a failure (a
    /// failover moves it).
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        config: ConnectionManagerConfig,
        master: std::sync::RwLock<Option<ConnectionManager>>,
    },
}

/// A live connection of either kind, usable by any redis command.
#[derive(Clone)]
enum Live {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Live {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Live::Standalone(connection) => connection.req_packed_command(cmd),
            Live::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Live::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Live::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Live::Standalone(connection) => connection.get_db(),
            Live::Cluster(connection) => connection.get_db(),
        }
    }
}

struct Inner {
    connection: Connection,
    scripts: Scripts,
    time: TimeSource,
    /// Added to every key's TTL.
    ttl_margin_ms: u64,
    /// The most one call may take: connecting plus answering.
    deadline: Duration,
    target: String,
    breaker: Breaker,
    breaker_config: BreakerConfig,
    /// On a cluster: a breaker per master, by the slots it serves.
    nodes: RwLock<Nodes>,
    /// Whether a slot map is being fetched.
    mapping: AtomicBool,
    guard: Guard,
    round_trips: AtomicU64,
}

/// A cluster's masters' breakers, and which serves each slot.
#[derive(Default)]
struct Nodes {
    breakers: Vec<(String, Arc<Breaker>)>,
    /// By slot: the index of its master's breaker (`u16::MAX`: unknown).
    slots: Box<[u16]>,
    fetched: Option<tokio::time::Instant>,
}

/// The Redis backend; see [the module docs](super).
///
/// Cloning is cheap: clones share the connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use traffik_backends::redis::RedisBackend;
/// use traffik_core::{FailurePolicy, Throttle};
///
/// let redis = RedisBackend::builder("redis://127.0.0.1:6379/0")
///     .response_timeout(Duration::from_millis(200))
///     .build()?;
/// let api = Throttle::builder("api", "100/min".parse()?)
///     .failure_policy(FailurePolicy::Allow)
///     .build(redis)?;
/// let decision = api.hit("client-1").await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("target", &redacted(&self.inner.target))
            .field("time", &self.inner.time)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisBackend`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisBackendBuilder {
    nodes: Vec<String>,
    cluster: bool,
    pool_size: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
    time: TimeSource,
    ttl_margin: Option<Duration>,
    guard: GuardConfig,
}

fn config_error(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

impl RedisBackend {
    /// Starts configuring a backend for one Redis server.
    ///
    /// `url`: `redis://[user:password@]host[:port][/db]`, `rediss://…` for
    /// TLS, `redis+unix:///path/to/socket[?db=N]` (also `unix://`), or
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/master[/db]`
    /// for the master the sentinels name (asked again after a store
    /// failure, so decisions follow a failover; the credentials are the
    /// master's).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            nodes: vec![url.into()],
            cluster: false,
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            time: TimeSource::Server,
            ttl_margin: None,
            guard: GuardConfig::default(),
        }
    }

    /// Starts configuring a backend for a Redis Cluster, from one or more of
    /// its nodes (`redis://host:port` each); the others are discovered.
    pub fn cluster_builder<I, S>(nodes: I) -> RedisBackendBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBackendBuilder {
            nodes: nodes.into_iter().map(Into::into).collect(),
            cluster: true,
            ..RedisBackend::builder("")
        }
    }

    /// Connects now and loads the scripts (one per strategy, and the group
    /// script), rather than on first use.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or refuses the scripts. The backend stays
    /// usable: it connects again on the next call.
    pub async fn warm_up(&self) -> Result<(), Error> {
        let scripts = &self.inner.scripts;
        self.bounded(None, "loading the scripts", async {
            for script in scripts.all().iter().chain([scripts.group()]) {
                let mut connection = self.connection().await?;
                script
                    .load_async(&mut connection)
                    .await
                    .map_err(from_redis)?;
            }
            Ok(())
        })
        .await
    }

    /// Where time comes from.
    pub fn time_source(&self) -> TimeSource {
        self.inner.time
    }

    /// A connection: from the pool (round robin, made on first use) or the
    /// cluster connection.
    async fn connection(&self) -> Result<Live, Error> {
        match &self.inner.connection {
            Connection::Standalone {
                client,
                config,
                pool,
                next,
            } => {
                let slot = &pool[next.fetch_add(1, Ordering::Relaxed) % pool.len()];
                let manager = slot
                    .get_or_try_init(|| client.get_connection_manager_with_config(config.clone()))
                    .await
                    .map_err(from_redis)?;
                Ok(Live::Standalone(manager.clone()))
            }
            Connection::Cluster { client, connection } => {
                let connection = connection
                    .get_or_try_init(|| client.get_async_connection())
                    .await
                    .map_err(from_redis)?;
                Ok(Live::Cluster(connection.clone()))
            }
            Connection::Sentinel {
                sentinel,
                config,
                master,
            } => {
                let known = || {
                    master
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                        .map(Live::Standalone)
                };
                if let Some(live) = known() {
                    return Ok(live);
                }
                let mut sentinel = sentinel.lock().await;
                // Another call may have found it while this one waited.
                if let Some(live) = known() {
                    return Ok(live);
                }
                let client = sentinel.async_get_client().await.map_err(from_redis)?;
                let manager = client
                    .get_connection_manager_with_config(config.clone())
                    .await
                    .map_err(from_redis)?;
                *master.write().unwrap_or_else(PoisonError::into_inner) = Some(manager.clone());
                Ok(Live::Standalone(manager))
            }
        }
    }

    /// After a store failure behind Sentinel: ask the sentinels for the
    /// master again on the next call (a failover may have moved it; the old
    /// one, now a replica, refuses writes).
    fn lost(&self) {
        if let Connection::Sentinel { master, .. } = &self.inner.connection {
            *master.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Runs `work` within the backend's deadline, through the breaker of
    /// the node that serves `slot` (on a cluster whose slots are known) or
    /// the backend's: refused at once while it is open.
    async fn bounded<T>(
        &self,
        slot: Option<u16>,
        what: &str,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let node = slot.and_then(|slot| self.node_breaker(slot));
        let breaker = node.as_deref().unwrap_or(&self.inner.breaker);
        let outcome = guard::through(breaker, async {
            self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(self.inner.deadline, work).await {
                Ok(result) => result,
                Err(_) => Err(timeout(what)),
            }
        })
        .await;
        if outcome.as_ref().is_err_and(|e| e.kind().is_store_failure()) {
            self.lost();
        }
        outcome
    }

    /// Where the circuit breaker stands (on a cluster: the breaker of the
    /// calls whose node is not known yet; see
    /// [`node_breakers`](RedisBackend::node_breakers)).
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// On a cluster, each master's breaker (`host:port` and its state), as
    /// far as the slot map is known.
    pub fn node_breakers(&self) -> Vec<(String, BreakerState)> {
        let nodes = self
            .inner
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        nodes
            .breakers
            .iter()
            .map(|(address, breaker)| (address.clone(), breaker.state()))
            .collect()
    }

    /// How many times the circuit breakers have opened, in all.
    pub fn breaker_openings(&self) -> u64 {
        let nodes = self
            .inner
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.breaker.opened()
            + nodes
                .breakers
                .iter()
                .map(|(_, breaker)| breaker.opened())
                .sum::<u64>()
    }

    /// The breaker of the master that serves `slot`, once the slot map is
    /// known; asks for the map again when it is older than 10 s.
    fn node_breaker(&self, slot: u16) -> Option<Arc<Breaker>> {
        let nodes = self
            .inner
            .nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let stale = nodes
            .fetched
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        let found = nodes
            .slots
            .get(usize::from(slot))
            .and_then(|&node| nodes.breakers.get(usize::from(node)))
            .map(|(_, breaker)| Arc::clone(breaker));
        drop(nodes);
        if stale && !self.inner.mapping.swap(true, Ordering::AcqRel) {
            let backend = self.clone();
            tokio::spawn(async move {
                backend.map_slots().await;
                backend.inner.mapping.store(false, Ordering::Release);
            });
        }
        found
    }

    /// Reads `CLUSTER SLOTS`: which master serves which slots. A master
    /// seen before keeps its breaker.
    async fn map_slots(&self) {
        let mut command = Cmd::new();
        command.arg("CLUSTER").arg("SLOTS");
        let reply = tokio::time::timeout(self.inner.deadline, async {
            let mut connection = self.connection().await?;
            command
                .query_async::<redis::Value>(&mut connection)
                .await
                .map_err(from_redis)
        })
        .await;
        let Ok(Ok(reply)) = reply else {
            let mut nodes = self
                .inner
                .nodes
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            // Try again in 10 s; decisions meanwhile use the backend's breaker.
            nodes.fetched = Some(tokio::time::Instant::now());
            return;
        };
        let ranges = slot_ranges(&reply);
        let mut nodes = self
            .inner
            .nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut slots = vec![u16::MAX; 16_384];
        for (from, to, address) in ranges {
            let index = match nodes
                .breakers
                .iter()
                .position(|(known, _)| *known == address)
            {
                Some(index) => index,
                None => {
                    let breaker = Breaker::new(
                        self.inner.breaker_config,
                        "redis",
                        format!("redis at {address}"),
                    );
                    nodes.breakers.push((address, Arc::new(breaker)));
                    nodes.breakers.len() - 1
                }
            };
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            for slot in from..=to.min(16_383) {
                slots[usize::from(slot)] = index;
            }
        }
        nodes.slots = slots.into_boxed_slice();
        nodes.fetched = Some(tokio::time::Instant::now());
    }

    /// How many calls were sent to Redis (a refused one, while the breaker
    /// is open, is not sent).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// How many denials the deny cache holds now.
    pub fn cached_denials(&self) -> usize {
        self.inner.guard.cached_denials()
    }

    /// How many keys the fallback limiter has admitted hits for that the
    /// store has not been charged with yet.
    pub fn owed_keys(&self) -> usize {
        self.inner.guard.owed_keys()
    }

    async fn run(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
        peek: bool,
    ) -> Result<Decision, Error> {
        let script = self.inner.scripts.of(limit.strategy());
        let (invocation, slot) =
            self.invocation(script, &key, limit, now_ms, cost, if peek { 1 } else { 0 });
        let reply = self.invoke("a decision", slot, &invocation).await?;
        decision(&reply)
    }

    /// A refund: the strategy's refund script with the decision's
    /// arguments, the peek flag's place taking how long ago the hit was
    /// charged. An age, not a time: on the server's clock the script works
    /// out when that was on the clock it charged by.
    async fn give_back(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Result<(), Error> {
        let script = self.inner.scripts.refund_of(limit.strategy());
        let age = now_ms.saturating_sub(charged_ms).min(LUA_EXACT_MS);
        let (invocation, slot) =
            self.invocation(script, &key, limit, now_ms, cost.min(LUA_EXACT_MS), age);
        self.bounded(slot, "a refund", async {
            let mut connection = self.connection().await?;
            invocation
                .invoke_async::<i64>(&mut connection)
                .await
                .map(|_| ())
                .map_err(from_redis)
        })
        .await
    }

    /// A script's call with the arguments every script takes (see
    /// `lib/prelude.lua`); `flag` is ARGV[8] (peek for a decision, the
    /// charge's age for a refund).
    fn invocation<'s>(
        &self,
        script: &'s redis::Script,
        key: &Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
        flag: u64,
    ) -> (redis::ScriptInvocation<'s>, Option<u16>) {
        let mut invocation = script.prepare_invoke();
        let keys = keys(key, limit);
        let slot = self.slot(&keys[0]);
        for key in keys {
            invocation.key(key);
        }
        let (reduced_count, reduced_period) = limit.rate().reduced();
        match self.inner.time {
            TimeSource::Server => invocation.arg(""),
            // Lua numbers are exact below 2^53 ms (the year 287,396): later
            // times stand still there, which only ever restricts.
            TimeSource::Client => invocation.arg(now_ms.min(LUA_EXACT_MS)),
        };
        invocation
            .arg(limit.rate().count())
            .arg(limit.rate().period_ms())
            .arg(reduced_count)
            .arg(reduced_period)
            .arg(limit.capacity())
            .arg(cost)
            .arg(flag)
            .arg(self.inner.ttl_margin_ms);
        (invocation, slot)
    }

    /// The cluster slot of a key (`None` off a cluster): the CRC16 of its
    /// hash tag, as Redis Cluster computes it.
    fn slot(&self, key: &str) -> Option<u16> {
        match &self.inner.connection {
            Connection::Cluster { .. } => Some(slot_of(key)),
            _ => None,
        }
    }

    /// Calls a script, bounded by the timeouts: its reply's numbers.
    async fn invoke(
        &self,
        what: &str,
        slot: Option<u16>,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Vec<i64>, Error> {
        self.bounded(slot, what, async {
            let mut connection = self.connection().await?;
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(from_redis)
        })
        .await
    }

    async fn delete(&self, key: Key<'_>, limit: &Limit) -> Result<(), Error> {
        let mut command = Cmd::new();
        command.arg("DEL");
        let keys = keys(&key, limit);
        let slot = self.slot(&keys[0]);
        for key in keys {
            command.arg(key);
        }
        self.bounded(slot, "a reset", async {
            let mut connection = self.connection().await?;
            command
                .query_async::<()>(&mut connection)
                .await
                .map_err(from_redis)
        })
        .await
    }
}

impl RedisBackend {
    /// Every hit of one request in one call of the group script, all or
    /// nothing.
    async fn run_all(&self, hits: Vec<Hit<'_>>, now_ms: u64) -> Result<Vec<Decision>, Error> {
        check_distinct(&hits)?;
        let now = match self.inner.time {
            TimeSource::Server => None,
            TimeSource::Client => Some(now_ms),
        };
        let (keys, args) = group_call(&hits, now, self.inner.ttl_margin_ms);
        let slot = keys.first().and_then(|key| self.slot(key));
        let mut invocation = self.inner.scripts.group().prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let reply = self
            .invoke("a combined decision", slot, &invocation)
            .await?;
        if reply.len() != 6 * hits.len() {
            return Err(super::error::bad_reply(&reply));
        }
        reply.chunks_exact(6).map(decision).collect()
    }
}

/// The keys and arguments of one call of the group script (see
/// `scripts/lib/group.lua`): `now` is `None` to read the server's clock.
/// Public for benchmarks that send the very same call; not part of the API.
#[doc(hidden)]
pub fn group_call(
    hits: &[Hit<'_>],
    now: Option<u64>,
    margin_ms: u64,
) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::with_capacity(hits.len());
    let mut args = Vec::with_capacity(3 + 7 * hits.len());
    // Lua numbers are exact below 2^53 ms (the year 287,396): later times
    // stand still there, which only ever restricts.
    args.push(now.map_or_else(String::new, |now| now.min(LUA_EXACT_MS).to_string()));
    args.push(margin_ms.to_string());
    args.push(hits.len().to_string());
    for hit in hits {
        keys.extend(self::keys(&hit.key, hit.limit));
        let rate = hit.limit.rate();
        let (reduced_count, reduced_period) = rate.reduced();
        for value in [
            Scripts::group_position(hit.limit.strategy()) as u64,
            rate.count(),
            rate.period_ms(),
            reduced_count,
            reduced_period,
            hit.limit.capacity(),
            hit.cost,
        ] {
            args.push(value.to_string());
        }
    }
    (keys, args)
}

/// The Redis keys of one decision: `namespace:name:{tag}rest:strategy`, and
/// as many more as the script takes (`…:strategy:1`, …). The braces are a
/// Redis Cluster hash tag around the identity's tag (the client), so every
/// key of one client, under every throttle, lives in one slot and one
/// script call can decide them all.
fn keys(key: &Key<'_>, limit: &Limit) -> Vec<String> {
    let kind = limit.strategy().kind();
    // Over-long parts are digests: any identity fits, the tag still places.
    let (tag, rest) = key.stored_parts();
    let base = format!("{}:{{{tag}}}{rest}:{kind}", key.scope().prefix());
    let extra = Scripts::keys(limit.strategy()).saturating_sub(1);
    let mut keys = Vec::with_capacity(1 + extra);
    keys.extend((1..=extra).map(|n| format!("{base}:{n}")));
    keys.insert(0, base);
    keys
}

impl Backend for RedisBackend {
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        guard::hit(self, key, limit, now_ms, cost, false)
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        guard::hit(self, key, limit, now_ms, cost, true)
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        self.inner.guard.reset(key, limit, now_ms);
        Answer::pending(self.delete(key, limit))
    }

    fn refund(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        self.inner.guard.refunded(&key, limit);
        Answer::pending(self.give_back(key, limit, now_ms, charged_ms, cost))
    }

    /// One call of the group script: every limit in one round trip, all or
    /// nothing, atomic (Redis runs a script alone). All keys of one client
    /// share a hash tag, so on a cluster they sit in one slot.
    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a> {
        guard::hit_all(self, hits, now_ms)
    }

    /// Clones of one backend share its store.
    fn same_store(&self, other: &RedisBackend) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Remote for RedisBackend {
    fn guard(&self) -> &Guard {
        &self.inner.guard
    }

    fn decide(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
        peek: bool,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        self.run(key, limit, now_ms, cost, peek)
    }

    fn decide_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a {
        self.run_all(hits, now_ms)
    }
}

impl RedisBackendBuilder {
    /// The circuit breaker, the deny cache and the fallback limiter
    /// (default: [`GuardConfig::default`]). A URL's `breaker_failures`,
    /// `breaker_cool_down_ms`, `deny_cache` and `fallback_keys` options
    /// apply on top.
    pub fn guard(mut self, guard: GuardConfig) -> Self {
        self.guard = guard;
        self
    }

    /// How many multiplexed connections to spread calls over (default 2,
    /// at least 1). Each carries many concurrent calls at once.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long connecting may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long Redis may take to answer a call (default 500 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Where the scripts read the time (default: [`TimeSource::Server`]).
    pub fn time_source(mut self, time: TimeSource) -> Self {
        self.time = time;
        self
    }

    /// Extra time added to every key's TTL. Default: none on
    /// [`TimeSource::Server`] (the TTL and the scripts read one clock), one
    /// second on [`TimeSource::Client`], where Redis expires keys on its own
    /// clock while decisions follow the caller's: the margin covers the skew
    /// between them. A caller whose clock can stand still for longer (a
    /// simulation with a manual clock) needs a larger one. A key kept longer
    /// than its TTL is harmless: its state is as good as new by then.
    pub fn ttl_margin(mut self, margin: Duration) -> Self {
        self.ttl_margin = Some(margin);
        self
    }

    /// The backend. Nothing is connected yet: the first call connects (or
    /// call [`RedisBackend::warm_up`]), so a Redis that is down at start
    /// makes decisions fail, not the service.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when a URL is malformed.
    pub fn build(self) -> Result<RedisBackend, Error> {
        // rediss:// needs a TLS crypto provider; install ring's unless the
        // application installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut guard = self.guard;
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let (read, url) = guard.read_url(node)?;
            guard = read;
            nodes.push(url);
        }
        let target = nodes.join(",");
        let margin = self.ttl_margin.unwrap_or(match self.time {
            TimeSource::Server => Duration::ZERO,
            TimeSource::Client => Duration::from_secs(1),
        });
        let invalid = |error: redis::RedisError| {
            config_error(format!("invalid redis url {target:?}: {error}"))
        };
        let connection = if let Some(rest) = target.strip_prefix("redis+sentinel://") {
            sentinel_connection(rest, &target, self.connect_timeout, self.response_timeout)?
        } else if self.cluster {
            if nodes.is_empty() {
                return Err(config_error(
                    "a redis cluster needs at least one node".into(),
                ));
            }
            let client = ClusterClient::builder(nodes.clone())
                .connection_timeout(self.connect_timeout)
                .response_timeout(self.response_timeout)
                .retries(2)
                .build()
                .map_err(invalid)?;
            Connection::Cluster {
                client,
                connection: OnceCell::new(),
            }
        } else {
            let url = nodes.first().cloned().unwrap_or_default();
            let client = Client::open(url.as_str()).map_err(invalid)?;
            let config = manager_config(self.connect_timeout, self.response_timeout);
            Connection::Standalone {
                client,
                config,
                pool: (0..self.pool_size).map(|_| OnceCell::new()).collect(),
                next: AtomicUsize::new(0),
            }
        };
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                connection,
                scripts: Scripts::new(),
                time: self.time,
                ttl_margin_ms: u64::try_from(margin.as_millis()).unwrap_or(u64::MAX),
                deadline: self.connect_timeout + self.response_timeout,
                breaker: Breaker::new(guard.breaker, "redis", redacted(&target)),
                breaker_config: guard.breaker,
                nodes: RwLock::new(Nodes::default()),
                mapping: AtomicBool::new(false),
                guard: Guard::new(&guard, "redis"),
                round_trips: AtomicU64::new(0),
                target,
            }),
        })
    }
}

/// How a standalone (or Sentinel-found) connection is managed: the
/// timeouts, one retry, reconnects at most 100 ms apart.
fn manager_config(connect: Duration, response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100))
}

/// `[user:password@]host:port[,host:port…]/master[/db]`: the sentinels, the
/// master's name, and what to connect to it with.
fn sentinel_connection(
    rest: &str,
    target: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Connection, Error> {
    let invalid = |why: &str| {
        config_error(format!(
            "invalid redis+sentinel url {:?}: {why}; expected \
             redis+sentinel://[user:password@]host:port[,host:port…]/master[/db]",
            redacted(target)
        ))
    };
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("no master name"))?;
    let (master, db) = match path.split_once('/') {
        Some((master, db)) => (
            master,
            db.parse::<i64>()
                .map_err(|_| invalid("the database is not a number"))?,
        ),
        None => (path, 0),
    };
    if master.is_empty() || hosts.is_empty() {
        return Err(invalid("no sentinels or no master name"));
    }
    let mut info = redis::RedisConnectionInfo::default().set_db(db);
    if let Some(credentials) = credentials {
        let (user, password) = credentials.split_once(':').unwrap_or(("", credentials));
        if !user.is_empty() {
            info = info.set_username(user);
        }
        info = info.set_password(password);
    }
    let sentinels: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
    let sentinel = SentinelClient::build(sentinels, master, Some(node), SentinelServerType::Master)
        .map_err(|error| invalid(&error.to_string()))?;
    Ok(Connection::Sentinel {
        sentinel: tokio::sync::Mutex::new(sentinel),
        config: manager_config(connect_timeout, response_timeout),
        master: RwLock::new(None),
    })
}

/// A target as errors may show it: without a password.
fn redacted(target: &str) -> String {
    target
        .split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://…@{}", &url[..scheme], &url[at + 1..])
            }
            _ => url.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The Redis Cluster slot of `key`: the CRC16 (XMODEM) of its hash tag, the
/// part between the first `{` and the next `}` when that is not empty, or
/// else of the whole key.
fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % 16_384
}

/// `CLUSTER SLOTS`: each range's first and last slot and its master's
/// `host:port`. Entries of any other shape are skipped.
fn slot_ranges(reply: &redis::Value) -> Vec<(u16, u16, String)> {
    use redis::Value;
    let number = |value: &Value| match value {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let text = |value: &Value| match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    };
    let Value::Array(ranges) = reply else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|range| {
            let Value::Array(fields) = range else {
                return None;
            };
            let (from, to) = (number(fields.first()?)?, number(fields.get(1)?)?);
            let Value::Array(master) = fields.get(2)? else {
                return None;
            };
            let (host, port) = (text(master.first()?)?, number(master.get(1)?)?);
            Some((from, to, format!("{host}:{port}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_cluster_computes() {
        // `CLUSTER KEYSLOT foo` is 12182.
        assert_eq!(slot_of("foo"), 12_182);
        assert_eq!(slot_of("traffik:api:{foo}:gcra"), 12_182);
        // An empty tag hashes the whole key; an open brace alone too.
        assert_eq!(
            slot_of("{}foo"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}foo") % 16_384
        );
        assert_eq!(
            slot_of("{foo"),
            crc16::State::<crc16::XMODEM>::calculate(b"{foo") % 16_384
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redacted("redis://user:secret@host:6379/0,redis://h2"),
            "redis://…@host:6379/0,redis://h2"
        );
    }
}
