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
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
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
