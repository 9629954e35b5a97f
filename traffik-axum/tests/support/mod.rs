//! Backends for fault injection and call counting, wrapped around the real
//! in-memory backend, and a real server on a loopback port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use traffik_backends::memory::MemoryBackend;
use traffik_core::{Answer, Backend, Decision, Error, ErrorKind, Key, Limit};

/// The in-memory backend, counting the hits it is asked for, and claiming
/// to be remote when told to (to test cheap-first ordering).
#[derive(Clone, Debug, Default)]
pub(crate) struct Counting {
    inner: MemoryBackend,
    hits: Arc<AtomicU64>,
    remote: bool,
}

impl Counting {
    pub(crate) fn local() -> Counting {
        Counting::default()
    }

    pub(crate) fn remote() -> Counting {
        Counting {
            remote: true,
            ..Counting::default()
        }
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Backend for Counting {
    fn hit(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.inner.hit(key, limit, now_ms, cost)
    }

    fn peek(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        self.inner.peek(key, limit, now_ms, cost)
    }

    fn reset(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        self.inner.reset(key, limit, now_ms)
    }

    fn refund(
        &self,
        key: Key<'_>,
        limit: &Limit,
        now_ms: u64,
        charged_ms: u64,
        cost: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        self.inner.refund(key, limit, now_ms, charged_ms, cost)
    }

    fn is_local(&self) -> bool {
        !self.remote
    }
}

/// A backend that always fails, as a store that is down would.
#[derive(Clone, Debug, Default)]
pub(crate) struct Down;

fn down() -> Error {
    Error::new(ErrorKind::Unavailable, "injected: the store is down")
}

impl Backend for Down {
    fn hit(
        &self,
        _: Key<'_>,
        _: &Limit,
        _: u64,
        _: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        Answer::pending(async { Err(down()) })
    }

    fn peek(
        &self,
        _: Key<'_>,
        _: &Limit,
        _: u64,
        _: u64,
    ) -> Answer<impl Future<Output = Result<Decision, Error>> + Send> {
        Answer::pending(async { Err(down()) })
    }

    fn reset(
        &self,
        _: Key<'_>,
        _: &Limit,
        _: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        Answer::pending(async { Err(down()) })
    }

    fn refund(
        &self,
        _: Key<'_>,
        _: &Limit,
        _: u64,
        _: u64,
        _: u64,
    ) -> Answer<impl Future<Output = Result<(), Error>> + Send> {
        Answer::pending(async { Err(down()) })
    }
}

/// A GET request from `peer`.
pub(crate) fn get(uri: &str, peer: &str) -> Request<Body> {
    let peer: SocketAddr = peer.parse().unwrap();
    Request::builder()
        .uri(uri)
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .unwrap()
}

/// An axum app served on a free loopback port, with `ConnectInfo`; stopped
/// when dropped.
pub(crate) struct Server {
    pub(crate) address: SocketAddr,
    /// `http://address`.
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(app: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Server {
        address,
        url: format!("http://{address}"),
        task,
    }
}
