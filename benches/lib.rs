//! traffik's benches: `cargo bench -p traffik-benches`. Each bench measures
//! traffik side by side with a peer in the same run; `docs/performance.md`
//! records the ratios.

use std::future::Future;
use std::pin::pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Polls a future that is expected to be ready at once (the in-memory
/// backend's are), the way a caller in a sync context would.
///
/// # Panics
///
/// If the future is not ready on the first poll.
#[inline]
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory backend never waits"),
    }
}

/// A key of about 15 bytes, like the ones the peer is measured with.
pub fn key(i: u64) -> String {
    format!("user:{i:010}")
}

/// The median of some measurements.
///
/// # Panics
///
/// If there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A redis-server on a loopback port, stopped when dropped.
pub struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl RedisServer {
    /// Sends it `signal` (`STOP`, `CONT`) with `kill`.
    ///
    /// # Panics
    ///
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) {
        send_signal(self.0.id(), signal);
    }

    /// Starts one on `port`, without persistence, and waits until it listens.
    ///
    /// # Panics
    ///
    /// When `redis-server` is missing (`scripts/setup.sh` installs it) or does
    /// not start within 10 s.
    pub fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed: run scripts/setup.sh");
        let server = RedisServer(child);
        wait_for(port, "redis-server");
        server
    }
}

/// A GET of `/` from 203.0.113.7 (its `ConnectInfo` set), for the benches
/// that send requests through an axum router in process.
pub fn peer_request() -> http::Request<axum::body::Body> {
    let peer: std::net::SocketAddr = ([203, 0, 113, 7], 40_000).into();
    http::Request::builder()
        .uri("/")
        .extension(axum::extract::ConnectInfo(peer))
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

/// The trivial route those requests reach.
pub fn ok_route() -> axum::Router {
    axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))
}

/// Waits up to 10 s until something listens on `port`.
fn wait_for(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A memcached on a loopback port (2 threads, 64 MB), stopped when dropped.
pub struct MemcachedServer(Child);

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl MemcachedServer {
    /// Starts one on `port` and waits until it listens.
    ///
    /// # Panics
    ///
    /// When `memcached` is missing (`scripts/setup.sh` installs it) or does
    /// not start within 10 s.
    pub fn start(port: u16) -> MemcachedServer {
        let child = Command::new("memcached")
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-l",
                "127.0.0.1",
                "-m",
                "64",
                "-t",
                "2",
            ])
            .args(["-u", "root"])
            .stdout(Stdio::null())
            .spawn()
            .expect("memcached is needed: run scripts/setup.sh");
        let server = MemcachedServer(child);
        wait_for(port, "memcached");
        server
    }

    /// Sends it `signal` (`STOP`, `CONT`) with `kill`.
    ///
    /// # Panics
    ///
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) {
        send_signal(self.0.id(), signal);
    }
}

/// The p50 and p99 of some latencies, in milliseconds.
///
/// # Panics
///
/// If there are none.
pub fn percentiles(mut latencies: Vec<Duration>) -> (f64, f64) {
    latencies.sort();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i].as_secs_f64() * 1e3
    };
    (at(0.50), at(0.99))
}

/// A port nothing listens on now.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// The rate-limited upstream of traffik-client's tests and examples.
#[path = "../traffik-client/tests/support/upstream.rs"]
pub mod upstream;

/// The client stacks the overhead benches compare with bare reqwest: the
/// limit alone, or every layer, the limit never reached (in memory).
pub mod client_stacks {
    use std::time::Duration;

    use traffik_client::StackBuilder;
    use traffik_client::breaker::Breaker;
    use traffik_client::coalesce::Coalesce;
    use traffik_client::limit::Limiter;
    use traffik_client::reqwest::Client;
    use traffik_client::retry::{RetryBudget, RetryPolicy};

    fn limiter() -> Limiter {
        Limiter::builder("overhead", "1000000000/min".parse().expect("a rate"))
            .build()
            .expect("a limiter")
    }

    /// `http` behind the limit alone.
    pub fn limited(http: reqwest::Client) -> Client {
        Client::new(http, StackBuilder::new().limiter(limiter()))
    }

    /// `http` behind every layer: coalescing, breaker, limit, retries with a
    /// budget, attempt and total timeouts.
    pub fn full(http: reqwest::Client) -> Client {
        Client::new(
            http,
            StackBuilder::new()
                .coalesce(Coalesce::new("overhead"))
                .breaker(Breaker::builder("overhead").build().expect("a breaker"))
                .limiter(limiter())
                .retry(RetryPolicy::new())
                .retry_budget(RetryBudget::builder("overhead").build().expect("a budget"))
                .attempt_timeout(Duration::from_secs(5))
                .total_timeout(Duration::from_secs(10)),
        )
    }
}
