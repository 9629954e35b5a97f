use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use traffik_core::strategy::{FixedWindowState, SlidingWindowCounterState};
use traffik_core::{
    AnyStrategy, Backend, Clock, Decision, Error, ErrorKind, FixedWindow, Key, Limit,
    SlidingWindowCounter, Strategy, StrategyKind, SystemClock,
};

use super::client::{Address, Connection, Reply, command};
use super::codec::Codec;

/// Memcached treats a TTL above 30 days as an absolute UNIX time.
const MAX_RELATIVE_TTL_S: u64 = 30 * 24 * 3_600;
/// The longest key memcached accepts.
const MAX_KEY_LEN: usize = 250;

struct Server {
    address: Address,
    /// Idle connections; a connection is taken out while in use and put back
    /// only after a complete exchange, so a cancelled call never leaves a
    /// half-read reply on a pooled connection.
    pool: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
}

struct Inner {
    servers: Vec<Server>,
    connect_timeout: Duration,
    deadline: Duration,
    ttl_margin_s: u64,
    cas_retries: u32,
    round_trips: AtomicU64,
    target: String,
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
}

fn config(message: String) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// Parses `memcached://host:port[,host:port…]` or `memcached+unix:///path`.
fn addresses(url: &str) -> Result<Vec<Address>, Error> {
    if let Some(path) = url.strip_prefix("memcached+unix://") {
        if path.is_empty() {
            return Err(config(format!("{url:?} names no socket path")));
        }
        return Ok(vec![Address::Unix(path.to_owned())]);
    }
    let hosts = url.strip_prefix("memcached://").ok_or_else(|| {
        config(format!(
            "{url:?} is not a memcached:// or memcached+unix:// url"
        ))
    })?;
    let addresses: Vec<Address> = hosts
        .trim_end_matches('/')
        .split(',')
        .map(|host| {
            let host = host.trim();
            let valid = host
                .rsplit_once(':')
                .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
            if valid {
                Ok(Address::Tcp(host.to_owned()))
            } else {
                Err(config(format!("{host:?} in {url:?} is not host:port")))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(addresses)
}

/// FNV-1a then a final mix: the same in every process, so every instance
/// sends a key to the same server.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// `{namespace:name:identity}:strategy`, with bytes memcached does not allow
/// in keys (space, control characters) and `%` written as `%XX`.
fn base_key(key: &Key<'_>, kind: StrategyKind) -> Result<String, Error> {
    let raw = format!("{{{key}}}:{kind}");
    let mut out = Vec::with_capacity(raw.len());
    for &byte in raw.as_bytes() {
        if byte <= b' ' || byte == 0x7f || byte == b'%' {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        } else {
            out.push(byte);
        }
    }
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    let out =
        String::from_utf8(out).map_err(|_| config(format!("the key for {key} is not UTF-8")))?;
    // Room for ":" and a window's end.
    if out.len() + 21 > MAX_KEY_LEN {
        return Err(config(format!(
            "the key for {key} is too long for memcached (250 bytes at most)"
        )));
    }
    Ok(out)
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
        }
    }

    /// How many exchanges with memcached this backend has made (each one
    /// round trip, however many commands it pipelined).
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// A bare `ma` (increment by one) through the same pool, the baseline
    /// the throughput bench compares decisions with. Not part of the API.
    #[doc(hidden)]
    pub async fn bench_bare_incr(&self, key: &str) -> Result<u64, Error> {
        let server = self.server(key);
        let mut commands = Vec::with_capacity(48);
        command::incr(&mut commands, key, 1, 60);
        let replies = self.exchange(server, &commands, 1).await?;
        counter(&replies[0])
    }

    /// The server a decision's keys live on (all keys of one decision share
    /// the part between braces, so they live on one server).
    fn server(&self, base: &str) -> usize {
        let tag = base.split_once('}').map_or(base, |(tag, _)| tag);
        let servers = &self.inner.servers;
        (0..servers.len())
            .max_by_key(|&i| {
                stable_hash(&[servers[i].address.to_string().as_bytes(), tag.as_bytes()])
            })
            .unwrap_or(0)
    }

    /// One round trip to a server, bounded by the deadline.
    async fn exchange(
        &self,
        server: usize,
        commands: &[u8],
        replies: usize,
    ) -> Result<Vec<Reply>, Error> {
        let inner = &self.inner;
        let server = &inner.servers[server];
        let work = async {
            let slot =
                &server.pool[server.next.fetch_add(1, Ordering::Relaxed) % server.pool.len()];
            let mut slot = slot.lock().await;
            let mut connection = match slot.take() {
                Some(connection) => connection,
                None => match tokio::time::timeout(
                    inner.connect_timeout,
                    Connection::open(&server.address),
                )
                .await
                {
                    Ok(Ok(connection)) => connection,
                    Ok(Err(error)) => {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            format!("connecting to memcached at {}", server.address),
                        )
                        .with_source(error));
                    }
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!("connecting to memcached at {}", server.address),
                        ));
                    }
                },
            };
            inner.round_trips.fetch_add(1, Ordering::Relaxed);
            match connection.round_trip(commands, replies).await {
                Ok(replies) => {
                    *slot = Some(connection);
                    Ok(replies)
                }
                Err(error) => {
                    let kind = if error.kind() == std::io::ErrorKind::InvalidData {
                        ErrorKind::Protocol
                    } else {
                        ErrorKind::Unavailable
                    };
                    Err(Error::new(kind, format!("memcached at {}", server.address))
                        .with_source(error))
                }
            }
        };
        match tokio::time::timeout(inner.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("memcached at {} did not answer in time", server.address),
            )),
        }
    }

    /// Seconds to keep an item whose state is as good as new after `ms`.
    fn ttl(&self, ms: u64) -> u64 {
        let seconds = ms
            .div_ceil(1_000)
            .saturating_add(self.inner.ttl_margin_s)
            .max(1);
        if seconds > MAX_RELATIVE_TTL_S {
            SystemClock.now_ms() / 1_000 + seconds
        } else {
            seconds
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
        let base = base_key(&key, limit.strategy().kind())?;
        let server = self.server(&base);
        match limit.strategy() {
            AnyStrategy::FixedWindow(_) => {
                self.fixed_window(server, &base, limit, now, cost, peek)
                    .await
            }
            AnyStrategy::SlidingWindowCounter(_) => {
                self.sliding_window_counter(server, &base, limit, now, cost, peek)
                    .await
            }
            AnyStrategy::SlidingWindowLog(s) => {
                self.stateful(s, server, &base, limit, now, cost, peek)
                    .await
            }
            AnyStrategy::TokenBucket(s) => {
                self.stateful(s, server, &base, limit, now, cost, peek)
                    .await
            }
            AnyStrategy::LeakyBucket(s) => {
                self.stateful(s, server, &base, limit, now, cost, peek)
                    .await
            }
            AnyStrategy::Gcra(s) => {
                self.stateful(s, server, &base, limit, now, cost, peek)
                    .await
            }
            other => Err(config(format!(
                "the memcached backend does not know the strategy {other}"
            ))),
        }
    }

    /// A counter: one `ma` that adds the cost (creating the window's counter
    /// with its TTL), then the pure strategy on what was there before; a
    /// denied hit takes its cost back.
    async fn fixed_window(
        &self,
        server: usize,
        base: &str,
        limit: &Limit,
        now: u64,
        cost: u64,
        peek: bool,
    ) -> Result<Decision, Error> {
        let period = limit.rate().period_ms();
        let end = window_end(now, period);
        let key = format!("{base}:{end}");
        let mut commands = Vec::with_capacity(64);
        if peek || cost == 0 {
            command::get(&mut commands, &key, false);
            let replies = self.exchange(server, &commands, 1).await?;
            let count = counter(&replies[0])?;
            let state = FixedWindowState {
                window_end_ms: end,
                count,
            };
            return Ok(FixedWindow.peek(limit.rate(), &state, now, cost));
        }
        command::incr(&mut commands, &key, cost, self.ttl(end - now));
        let replies = self.exchange(server, &commands, 1).await?;
        let after = counter(&replies[0])?;
        let mut state = FixedWindowState {
            window_end_ms: end,
            count: after.saturating_sub(cost),
        };
        let decision = FixedWindow.hit(limit.rate(), &mut state, now, cost);
        if !decision.is_allowed() {
            self.take_back(server, &key, cost).await?;
        }
        Ok(decision)
    }

    /// Two counters read in one round trip: `mg` of the previous window's
    /// and `ma` of the current one's, pipelined.
    async fn sliding_window_counter(
        &self,
        server: usize,
        base: &str,
        limit: &Limit,
        now: u64,
        cost: u64,
        peek: bool,
    ) -> Result<Decision, Error> {
        let period = limit.rate().period_ms();
        let end = window_end(now, period);
        let previous_key = format!("{base}:{}", end - period);
        let current_key = format!("{base}:{end}");
        let mut commands = Vec::with_capacity(128);
        command::get(&mut commands, &previous_key, false);
        let counting = !peek && cost > 0;
        if counting {
            // The current window's counter is the previous one until end + period.
            command::incr(
                &mut commands,
                &current_key,
                cost,
                self.ttl(end + period - now),
            );
        } else {
            command::get(&mut commands, &current_key, false);
        }
        let replies = self.exchange(server, &commands, 2).await?;
        let previous = counter(&replies[0])?;
        let current = counter(&replies[1])?;
        let mut state = SlidingWindowCounterState {
            window_end_ms: end,
            previous,
            current: if counting {
                current.saturating_sub(cost)
            } else {
                current
            },
        };
        if !counting {
            return Ok(SlidingWindowCounter.peek(limit.rate(), &state, now, cost));
        }
        let decision = SlidingWindowCounter.hit(limit.rate(), &mut state, now, cost);
        if !decision.is_allowed() {
            self.take_back(server, &current_key, cost).await?;
        }
        Ok(decision)
    }

    async fn take_back(&self, server: usize, key: &str, cost: u64) -> Result<(), Error> {
        let mut commands = Vec::with_capacity(48);
        command::decr(&mut commands, key, cost);
        self.exchange(server, &commands, 1).await.map(|_| ())
    }

    /// A state: `mg` with its CAS token, the pure strategy, and `ms` with the
    /// token (or in add mode when there was none). Another writer in
    /// between makes the store fail, and the loop starts over from the new
    /// state: no update is ever lost. Denials write nothing.
    #[allow(clippy::too_many_arguments)]
    async fn stateful<S>(
        &self,
        strategy: &S,
        server: usize,
        base: &str,
        limit: &Limit,
        now: u64,
        cost: u64,
        peek: bool,
    ) -> Result<Decision, Error>
    where
        S: Strategy,
        S::State: Codec,
    {
        let mut commands = Vec::with_capacity(256);
        for _ in 0..=self.inner.cas_retries {
            commands.clear();
            command::get(&mut commands, base, true);
            let replies = self.exchange(server, &commands, 1).await?;
            let (mut state, cas) = match &replies[0] {
                Reply::Value { data, cas } => {
                    let state = S::State::decode(data).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Protocol,
                            format!(
                                "memcached holds something that is not a {} state at {base}",
                                S::KIND
                            ),
                        )
                    })?;
                    (state, *cas)
                }
                Reply::Missing => (S::State::default(), None),
                other => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!("unexpected reply {other:?} to mg"),
                    ));
                }
            };
            if peek {
                return Ok(strategy.peek(limit.rate(), &state, now, cost));
            }
            let decision = strategy.hit(limit.rate(), &mut state, now, cost);
            if !decision.is_allowed() || cost == 0 {
                return Ok(decision);
            }
            commands.clear();
            command::set(
                &mut commands,
                base,
                &state.encode(),
                self.ttl(decision.reset_after_ms()),
                cas,
            );
            let replies = self.exchange(server, &commands, 1).await?;
            match replies[0] {
                Reply::Done => return Ok(decision),
                Reply::Conflict | Reply::Missing => continue,
                ref other => {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!("unexpected reply {other:?} to ms"),
                    ));
                }
            }
        }
        Err(Error::new(
            ErrorKind::Contention,
            format!(
                "{} writers kept racing on {base}; gave up after {} tries",
                S::KIND,
                self.inner.cas_retries + 1
            ),
        ))
    }

    async fn forget(&self, key: Key<'_>, limit: &Limit, now: u64) -> Result<(), Error> {
        let base = base_key(&key, limit.strategy().kind())?;
        let server = self.server(&base);
        let period = limit.rate().period_ms();
        let end = window_end(now, period);
        let mut commands = Vec::with_capacity(128);
        let keys = match limit.strategy().kind() {
            StrategyKind::FixedWindow => vec![format!("{base}:{end}")],
            StrategyKind::SlidingWindowCounter => {
                vec![format!("{base}:{}", end - period), format!("{base}:{end}")]
            }
            _ => vec![base],
        };
        for key in &keys {
            command::delete(&mut commands, key, None);
        }
        self.exchange(server, &commands, keys.len())
            .await
            .map(|_| ())
    }
}

fn window_end(now: u64, period: u64) -> u64 {
    (now - now % period).saturating_add(period)
}

/// A counter's value (0 when missing).
fn counter(reply: &Reply) -> Result<u64, Error> {
    match reply {
        Reply::Value { data, .. } => std::str::from_utf8(data)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    "a traffik counter in memcached is not a number",
                )
            }),
        Reply::Missing => Ok(0),
        other => Err(Error::new(
            ErrorKind::Protocol,
            format!("unexpected reply {other:?} for a counter"),
        )),
    }
}

impl Backend for MemcachedBackend {
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        self.decide(key, limit, now_ms, cost, false)
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        self.decide(key, limit, now_ms, cost, true)
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        // The counters' keys carry the window: forget the ones of now.
        self.forget(key, limit, now_ms)
    }
}

impl MemcachedBackendBuilder {
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
    /// there first (default 32) before failing with
    /// [`ErrorKind::Contention`].
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
        let servers: Vec<Server> = addresses(&self.url)?
            .into_iter()
            .map(|address| Server {
                address,
                pool: (0..self.pool_size).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
            })
            .collect();
        Ok(MemcachedBackend {
            inner: Arc::new(Inner {
                servers,
                connect_timeout: self.connect_timeout,
                deadline: self.connect_timeout + self.response_timeout,
                ttl_margin_s: self.ttl_margin.as_secs()
                    + u64::from(self.ttl_margin.subsec_nanos() > 0),
                cas_retries: self.cas_retries,
                round_trips: AtomicU64::new(0),
                target: self.url,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            addresses("memcached://a:1,b:2").unwrap(),
            vec![Address::Tcp("a:1".into()), Address::Tcp("b:2".into())]
        );
        assert_eq!(
            addresses("memcached+unix:///tmp/mc.sock").unwrap(),
            vec![Address::Unix("/tmp/mc.sock".into())]
        );
        for bad in [
            "memcached://",
            "memcached://host",
            "memcached://h:x",
            "redis://h:1",
            "memcached+unix://",
        ] {
            assert_eq!(
                addresses(bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_escape_what_memcached_forbids() {
        let scope = traffik_core::Scope::new("ns", "api").unwrap();
        let key = base_key(&Key::new(&scope, "a b%c\u{e9}"), StrategyKind::Gcra).unwrap();
        assert_eq!(key, "{ns:api:a%20b%25c\u{e9}}:gcra");
        let long = "x".repeat(300);
        assert_eq!(
            base_key(&Key::new(&scope, &long), StrategyKind::Gcra)
                .unwrap_err()
                .kind(),
            ErrorKind::Config
        );
    }
}
