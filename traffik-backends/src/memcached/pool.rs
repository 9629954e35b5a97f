//! Connections to the servers: a small pool per server, a bounded exchange.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use traffik_core::{Error, ErrorKind};

use crate::guard::{self, Breaker, BreakerConfig, BreakerState};

use super::client::{Address, Connection, Reply};

/// One server and its idle connections. A connection is taken out while in
/// use and put back only after a complete exchange, so a cancelled call
/// never leaves a half-read reply on a pooled connection; one that failed is
/// dropped, so a restarted server is picked up by the next call.
///
/// Each server has its own circuit breaker: one server hung or down fails
/// its keys fast while the others' keep deciding.
pub(super) struct Server {
    pub(super) address: Address,
    pool: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
    breaker: Breaker,
}

impl Server {
    pub(super) fn new(address: Address, pool_size: usize, breaker: BreakerConfig) -> Server {
        let target = format!("memcached at {address}");
        Server {
            address,
            pool: (0..pool_size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            breaker: Breaker::new(breaker, "memcached", target),
        }
    }

    /// Where its breaker stands.
    pub(super) fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// How many times its breaker has opened.
    pub(super) fn breaker_openings(&self) -> u64 {
        self.breaker.opened()
    }
}

/// The servers and how long an exchange may take.
pub(super) struct Pool {
    pub(super) servers: Vec<Server>,
    pub(super) connect_timeout: Duration,
    pub(super) deadline: Duration,
    pub(super) round_trips: AtomicU64,
}

impl Pool {
    /// One round trip to a server: `commands` in one write, `replies`
    /// replies read, all within the deadline.
    pub(super) async fn exchange(
        &self,
        server: usize,
        commands: &[u8],
        replies: usize,
    ) -> Result<Vec<Reply>, Error> {
        self.exchange_until(server, commands, replies, self.until())
            .await
    }

    /// When a decision that starts now must be done.
    pub(super) fn until(&self) -> Instant {
        Instant::now() + self.deadline
    }

    /// One round trip that ends by `until` (a decision's deadline, shared
    /// by all its round trips), through the server's breaker: refused at
    /// once while it is open.
    pub(super) async fn exchange_until(
        &self,
        server: usize,
        commands: &[u8],
        replies: usize,
        until: Instant,
    ) -> Result<Vec<Reply>, Error> {
        let server = &self.servers[server];
        guard::through(
            &server.breaker,
            self.bounded(server, commands, replies, until),
        )
        .await
    }

    async fn bounded(
        &self,
        server: &Server,
        commands: &[u8],
        replies: usize,
        until: Instant,
    ) -> Result<Vec<Reply>, Error> {
        let work = async {
            let at = server.next.fetch_add(1, Ordering::Relaxed) % server.pool.len();
            let mut slot = server.pool[at].lock().await;
            let mut connection = match slot.take() {
                Some(connection) => connection,
                None => self.connect(&server.address).await?,
            };
            self.round_trips.fetch_add(1, Ordering::Relaxed);
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
        match tokio::time::timeout_at(until, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("memcached at {} did not answer in time", server.address),
            )),
        }
    }

    async fn connect(&self, address: &Address) -> Result<Connection, Error> {
        match tokio::time::timeout(self.connect_timeout, Connection::open(address)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("connecting to memcached at {address}"),
            )
            .with_source(error)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("connecting to memcached at {address}"),
            )),
        }
    }
}
