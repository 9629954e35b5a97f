use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use traffik_core::backend::digest;
use traffik_core::strategy::window_end_ms;
use traffik_core::{
    Answer, Backend, Decision, Error, ErrorKind, Hit, Key, Limit, Storage, check_distinct,
};

use super::apply::{Apply, Charge};
use super::client::command;
use super::pool::{Pool, Server};
use super::servers::{Servers, addresses};
use crate::guard::{self, BreakerState, Guard, GuardConfig, Remote};

/// The longest key memcached accepts.
const MAX_KEY_LEN: usize = 250;

struct Inner {
    pool: Pool,
    servers: Servers,
    ttl_margin_s: u64,
    cas_retries: u32,
    target: String,
    guard: Guard,
}

/// The Memcached backend; see [the module docs](super).
///
/// Cloning is cheap: clones share the connections.
#[derive(Clone)]
pub struct MemcachedBackend {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("servers", &self.inner.target)
            .finish_non_exhaustive()
    }
}

/// Configures a [`MemcachedBackend`].
#[derive(Clone, Debug)]
#[must_use]
pub struct MemcachedBackendBuilder {
    url: String,
    pool_size: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
    ttl_margin: Duration,
    cas_retries: u32,
    guard: GuardConfig,
}

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// `namespace:name:{tag}rest:strategy` (the braces around the identity's
/// tag, which picks the server: every key of one client on one server),
/// with bytes memcached does not allow in keys (space, control characters)
/// and `%` written as `%XX`.
fn base_key(key: &Key<'_>, limit: &Limit) -> Result<String, Error> {
    // Over-long parts are digests: any identity fits, the tag still places.
    let (tag, rest) = key.stored_parts();
    let out = escaped_key(key, &tag, &rest, limit);
    // Room for ":" and a window's end. Escaping can triple a part: then
    // both parts are kept as digests (still placed by the tag's).
    if out.len() + 21 <= MAX_KEY_LEN {
        return Ok(out);
    }
    let (tag, rest) = (digest(&tag), digest(&rest));
    let out = escaped_key(key, &tag, &rest, limit);
    if out.len() + 21 <= MAX_KEY_LEN {
        return Ok(out);
    }
    Err(config(format!(
        "the key for {:?}… is too long for memcached (250 bytes at most)",
        traffik_core::backend::key_prefix(&key.to_string())
    )))
}

/// `namespace:name:{tag}rest:strategy` with the bytes memcached does not
/// allow in keys (space, control characters) and `%` written as `%XX`.
fn escaped_key(key: &Key<'_>, tag: &str, rest: &str, limit: &Limit) -> String {
    let raw = format!(
        "{}:{{{tag}}}{rest}:{}",
        key.scope().prefix(),
        limit.strategy().kind()
    );
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c <= ' ' || c == '\u{7f}' || c == '%' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

impl MemcachedBackend {
    /// Starts configuring a backend for `url`:
    /// `memcached://host:port[,host:port…]` (several servers: keys are spread
    /// over them by rendezvous hashing) or `memcached+unix:///path`.
    pub fn builder(url: impl Into<String>) -> MemcachedBackendBuilder {
        MemcachedBackendBuilder {
            url: url.into(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            ttl_margin: Duration::from_secs(1),
            cas_retries: 32,
            guard: GuardConfig::default(),
        }
    }

    /// Which server (its place in the URL) keeps `key` under `limit`: for
    /// diagnostics and tests. Not part of the API.
    #[doc(hidden)]
    pub fn server_of(&self, key: Key<'_>, limit: &Limit) -> Result<usize, Error> {
        Ok(self.inner.servers.of(&base_key(&key, limit)?))
    }

    /// Where each server's circuit breaker stands, in the URL's order.
    pub fn breaker_states(&self) -> Vec<BreakerState> {
        self.inner
            .pool
            .servers
            .iter()
            .map(Server::breaker_state)
            .collect()
    }

    /// How many times the servers' breakers have opened, in all.
    pub fn breaker_openings(&self) -> u64 {
        self.inner
            .pool
            .servers
            .iter()
            .map(Server::breaker_openings)
            .sum()
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

    /// How many exchanges with memcached this backend has made (each one
    /// round trip, however many commands it pipelined).
    pub fn round_trips(&self) -> u64 {
        self.inner.pool.round_trips.load(Ordering::Relaxed)
    }

    /// A bare `ma` (increment by one) through the same pool, the baseline
    /// the throughput bench compares decisions with. Not part of the API.
    #[doc(hidden)]
    pub async fn bench_bare_incr(&self, key: &str) -> Result<u64, Error> {
        let server = self.inner.servers.of(key);
        let mut commands = Vec::with_capacity(48);
        command::incr(&mut commands, key, 1, 60);
        let replies = self.inner.pool.exchange(server, &commands, 1).await?;
        match &replies[0] {
            super::client::Reply::Value { data, .. } => std::str::from_utf8(data)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| Error::new(ErrorKind::Protocol, "not a number")),
            _ => Err(Error::new(ErrorKind::Protocol, "no value")),
        }
    }

    async fn decide(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now: u64,
        cost: u64,
        peek: bool,
    ) -> Result<Decision, Error> {
        let base = base_key(&key, limit)?;
        self.apply(&base, limit, now, cost, peek).run().await
    }

    /// One decision's settings on the key `base`.
    fn apply<'a>(
        &'a self,
        base: &'a str,
        limit: &'a Limit,
        now: u64,
        cost: u64,
        peek: bool,
    ) -> Apply<'a> {
        let inner = &self.inner;
        Apply {
            pool: &inner.pool,
            server: inner.servers.of(base),
            base,
            limit,
            now,
            cost,
            peek,
            ttl_margin_s: inner.ttl_margin_s,
            cas_retries: inner.cas_retries,
            until: inner.pool.until(),
        }
    }

    /// A group's hits: peeked, then charged one by one (the one with the
    /// least left first), each atomic on its own; at a denial the charges
    /// already made are taken back ([`Apply::refund`]).
    async fn decide_all(&self, hits: Vec<Hit<'_>>, now: u64) -> Result<Vec<Decision>, Error> {
        check_distinct(&hits)?;
        let inner = &self.inner;
        let bases = hits
            .iter()
            .map(|hit| base_key(&hit.key, hit.limit))
            .collect::<Result<Vec<String>, Error>>()?;
        // One deadline for the whole group.
        let until = inner.pool.until();
        let apply = |i: usize, cost: u64, peek: bool| Apply {
            pool: &inner.pool,
            server: inner.servers.of(&bases[i]),
            base: &bases[i],
            limit: hits[i].limit,
            now,
            cost,
            peek,
            ttl_margin_s: inner.ttl_margin_s,
            cas_retries: inner.cas_retries,
            until,
        };
        // A peek first: a request some limit denies charges nothing.
        let mut peeks = Vec::with_capacity(hits.len());
        for (i, hit) in hits.iter().enumerate() {
            peeks.push(apply(i, hit.cost, true).run().await?);
        }
        if !peeks.iter().all(Decision::is_allowed) {
            for (i, decision) in peeks.iter_mut().enumerate() {
                if decision.is_allowed() {
                    *decision = apply(i, 0, true).run().await?;
                }
            }
            return Ok(peeks);
        }
        // Every limit would admit: charge them, the one with the least left
        // first. Under a race it is the one that denies, and a denial before
        // any charge leaves nothing to take back. A concurrent request can
        // still take the last of a later quota in between; then the charges
        // already made are taken back.
        let mut order: Vec<usize> = (0..hits.len()).collect();
        order.sort_by_key(|&i| peeks[i].remaining());
        let mut decisions = peeks;
        let mut charges = Vec::with_capacity(hits.len());
        for (n, &i) in order.iter().enumerate() {
            let (decision, charge) = match apply(i, hits[i].cost, false).run_charged().await {
                Ok(outcome) => outcome,
                Err(error) => {
                    self.refund_all(&apply, charges).await;
                    return Err(error);
                }
            };
            decisions[i] = decision;
            if !decision.is_allowed() {
                self.refund_all(&apply, charges).await;
                // The others show their quota as it stands.
                for &j in order.iter().take(n).chain(order.iter().skip(n + 1)) {
                    decisions[j] = apply(j, 0, true).run().await?;
                }
                return Ok(decisions);
            }
            charges.push((i, charge));
        }
        Ok(decisions)
    }

    /// Takes back the charges of a group's admitted hits, newest first. A
    /// refund that fails leaves its charge: over-charged, never over-admitted.
    async fn refund_all<'b>(
        &self,
        apply: &impl Fn(usize, u64, bool) -> Apply<'b>,
        charges: Vec<(usize, Charge)>,
    ) {
        for (i, charge) in charges.into_iter().rev() {
            let _ = apply(i, 0, false).refund(charge).await;
        }
    }

    async fn give_back(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now: u64,
        charged: u64,
        cost: u64,
    ) -> Result<(), Error> {
        let base = base_key(&key, limit)?;
        self.apply(&base, limit, now, cost, false)
            .give_back(charged)
            .await
    }

    async fn forget(&self, key: Key<'_>, limit: &Limit, now: u64) -> Result<(), Error> {
        let base = base_key(&key, limit)?;
        let server = self.inner.servers.of(&base);
        let keys = match limit.strategy().storage() {
            // The counters' keys carry their window: forget the ones of now.
            Storage::Counters { windows } => {
                let period = limit.rate().period_ms();
                let end = window_end_ms(now, period);
                (0..u64::from(windows))
                    .map(|back| format!("{base}:{}", end.saturating_sub(back * period)))
                    .collect()
            }
            Storage::Blob => vec![base],
        };
        let mut commands = Vec::with_capacity(64 * keys.len());
        for key in &keys {
            command::delete(&mut commands, key, None);
        }
        self.inner
            .pool
            .exchange(server, &commands, keys.len())
            .await
            .map(|_| ())
    }
}

impl Backend for MemcachedBackend {
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
        Answer::pending(self.forget(key, limit, now_ms))
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

    /// Each hit is atomic on its own (a counter's arithmetic, a blob's CAS);
    /// at the first denial, the hits already admitted are taken back. See
    /// [`MemcachedBackend`] for what that guarantees.
    fn hit_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a> {
        guard::hit_all(self, hits, now_ms)
    }

    /// Clones of one backend share its store.
    fn same_store(&self, other: &MemcachedBackend) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Remote for MemcachedBackend {
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
        MemcachedBackend::decide(self, key, limit, now_ms, cost, peek)
    }

    fn decide_all<'a>(
        &'a self,
        hits: Vec<Hit<'a>>,
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Decision>, Error>> + Send + 'a {
        MemcachedBackend::decide_all(self, hits, now_ms)
    }
}

impl MemcachedBackendBuilder {
    /// The circuit breakers (one per server), the deny cache and the
    /// fallback limiter (default: [`GuardConfig::default`]). A URL's
    /// `breaker_failures`, `breaker_cool_down_ms`, `deny_cache` and
    /// `fallback_keys` options apply on top.
    pub fn guard(mut self, guard: GuardConfig) -> Self {
        self.guard = guard;
        self
    }

    /// Connections per server (default 4, at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long connecting may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one exchange may take (default 500 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Time added to every item's TTL (default 1 s; whole seconds, rounded
    /// up). Memcached expires items on its own clock while decisions follow
    /// the throttle's; a caller whose clock can stand still (a simulation)
    /// needs more.
    pub fn ttl_margin(mut self, margin: Duration) -> Self {
        self.ttl_margin = margin;
        self
    }

    /// How many times a stateful decision retries when another writer got
    /// there first (default 32), each after a random wait that doubles
    /// (full jitter, 100 µs up to 25 ms), within the decision's deadline
    /// (connect plus response timeout). When they run out the decision
    /// fails with [`ErrorKind::Contention`], which a throttle answers with a
    /// denial: the key is that hot.
    pub fn cas_retries(mut self, retries: u32) -> Self {
        self.cas_retries = retries;
        self
    }

    /// The backend. Nothing is connected yet: connections are made on first
    /// use and again after a failure.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the URL is malformed.
    pub fn build(self) -> Result<MemcachedBackend, Error> {
        let (guard, url) = self.guard.read_url(&self.url)?;
        let addresses = addresses(&url)?;
        let servers = Servers::new(&addresses);
        let pool = Pool {
            servers: addresses
                .into_iter()
                .map(|address| Server::new(address, self.pool_size, guard.breaker))
                .collect(),
            connect_timeout: self.connect_timeout,
            deadline: self.connect_timeout.saturating_add(self.response_timeout),
            round_trips: AtomicU64::new(0),
        };
        Ok(MemcachedBackend {
            inner: Arc::new(Inner {
                pool,
                servers,
                ttl_margin_s: self
                    .ttl_margin
                    .as_secs()
                    .saturating_add(u64::from(self.ttl_margin.subsec_nanos() > 0)),
                cas_retries: self.cas_retries,
                target: url,
                guard: Guard::new(&guard, "memcached"),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffik_core::{Gcra, Scope};

    #[test]
    fn keys_escape_what_memcached_forbids() {
        let scope = Scope::new("ns", "api").unwrap();
        let limit = Limit::new("1/s".parse().unwrap(), Gcra::new()).unwrap();
        let key = base_key(&Key::new(&scope, "a b%c\u{e9}"), &limit).unwrap();
        assert_eq!(key, "ns:api:{a%20b%25c\u{e9}}:gcra");
        // Any identity fits: long ones, and short ones that escaping
        // triples, are kept as digests.
        for identity in ["x".repeat(10_000), " ".repeat(100), "%".repeat(90)] {
            let key = base_key(&Key::new(&scope, &identity), &limit).unwrap();
            assert!(key.len() + 21 <= MAX_KEY_LEN, "{key}");
            assert!(key.starts_with("ns:api:{~"), "{key}");
        }
    }
}
