use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use parking_lot::Mutex;
use tower::{Service, ServiceExt};

use super::Coalesce;
use super::config::Slot;
use crate::future::{LayerFuture, take_ready};
use crate::metrics::Coalesced;
use crate::{BoxError, Call, Error, ErrorKind, HttpRequest, Layer, ShareableResponse};

/// The service of a [`CoalesceLayer`](super::CoalesceLayer).
#[derive(Clone, Debug)]
pub struct CoalesceService<S> {
    pub(crate) inner: S,
    /// `None`: calls pass through (the stack without coalescing).
    pub(crate) coalesce: Option<Coalesce>,
}

/// What an upstream call left for its callers.
enum Landed<Res: ShareableResponse> {
    /// Read whole: a copy for each.
    Buffered(Res::Buffered),
    /// Not shared (no one joined, or too long): the leader takes it; the
    /// others call again, unless the leader is gone (the flag says whether
    /// it is alive): then the first of them takes it.
    Whole(Mutex<Option<Res>>, Arc<AtomicBool>),
}

impl<Res: ShareableResponse> Landed<Res> {
    /// The response for one caller: a copy when it was read whole; else the
    /// response itself for the leader, or for a follower once the leader is
    /// gone. `None`: the caller makes its own call.
    fn response_for(&self, leader: bool) -> Option<Res> {
        match self {
            Landed::Buffered(buffered) => Some(Res::rebuild(buffered)),
            Landed::Whole(whole, alive) => {
                if leader || !alive.load(Ordering::Acquire) {
                    whole.lock().take()
                } else {
                    None
                }
            }
        }
    }
}

type Flight<Res> = Shared<BoxFuture<'static, Result<Arc<Landed<Res>>, Error>>>;

impl<S, R, Res> Service<Call<R>> for CoalesceService<S>
where
    S: Service<Call<R>, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: HttpRequest,
    Res: ShareableResponse,
{
    type Response = Res;
    type Error = Error;
    type Future = LayerFuture<S::Future, Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_inner)
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let coalesce = match &self.coalesce {
            Some(c) if c.inner.coalesces(call.request.method()) => c.clone(),
            other => {
                if let Some(c) = other {
                    c.inner.instruments.coalesced(Coalesced::Bypass);
                }
                let future = inner.call(call);
                return LayerFuture::Passed { inner: future };
            }
        };
        LayerFuture::layered(coalesced(inner, coalesce, call))
    }
}

type Weak<Res> = WeakShared<BoxFuture<'static, Result<Arc<Landed<Res>>, Error>>>;

/// Marks the leader gone when its call ends or is dropped.
struct LeaderAlive(Arc<AtomicBool>);

impl Drop for LeaderAlive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

async fn coalesced<S, R, Res>(inner: S, coalesce: Coalesce, call: Call<R>) -> Result<Res, Error>
where
    S: Service<Call<R>, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: HttpRequest,
    Res: ShareableResponse,
{
    let state = &coalesce.inner;
    let key = state.key(
        call.request.method(),
        &call.request.url(),
        call.request.headers(),
    );
    match join_or_lead(&coalesce, key, inner, call) {
        Role::Follow(flight, inner, call) => match flight.await?.response_for(false) {
            Some(response) => Ok(response),
            None => plain(inner, call).await,
        },
        Role::Lead(flight, alive) => {
            let response = flight.await?.response_for(true).ok_or_else(|| {
                Error::new(
                    Layer::Coalesce,
                    ErrorKind::Body,
                    "the shared response was taken",
                )
            });
            drop(alive);
            response
        }
    }
}

/// A caller's part in a flight.
enum Role<Res: ShareableResponse, S, R> {
    /// It joined one: its own service and request stay with it, for a
    /// response too long to share.
    Follow(Flight<Res>, S, Call<R>),
    /// It made one.
    Lead(Flight<Res>, LeaderAlive),
}

/// Joins the flight of `key`, or makes it: under one lock, so two
/// identical requests never both lead.
fn join_or_lead<S, R, Res>(
    coalesce: &Coalesce,
    key: Box<[u8]>,
    inner: S,
    call: Call<R>,
) -> Role<Res, S, R>
where
    S: Service<Call<R>, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    R: HttpRequest,
    Res: ShareableResponse,
{
    let state = &coalesce.inner;
    let mut flights = state.flights.lock();
    let found = flights.get(&key).and_then(|slot| {
        let weak = slot.weak.downcast_ref::<Weak<Res>>()?;
        Some((weak.upgrade()?, Arc::clone(&slot.joined)))
    });
    if let Some((flight, joined)) = found {
        joined.store(true, Ordering::Release);
        state.note(call.request.method(), &call.request.url(), |s| s.hits += 1);
        state.instruments.coalesced(Coalesced::Hit);
        return Role::Follow(flight, inner, call);
    }
    state.note(call.request.method(), &call.request.url(), |s| {
        s.misses += 1
    });
    state.instruments.coalesced(Coalesced::Miss);
    let joined = Arc::new(AtomicBool::new(false));
    let alive = LeaderAlive(Arc::new(AtomicBool::new(true)));
    let flight: Flight<Res> = {
        let (coalesce, key, joined, leader) = (
            coalesce.clone(),
            key.clone(),
            Arc::clone(&joined),
            Arc::clone(&alive.0),
        );
        let (method, url) = (
            call.request.method().clone(),
            call.request.url().into_owned(),
        );
        async move {
            let outcome = plain(inner, call).await;
            // Landed: later requests make a call of their own.
            coalesce.inner.land(&key, &joined, &method, &url);
            let response = outcome?;
            if !joined.load(Ordering::Acquire) {
                return Ok(Arc::new(Landed::Whole(Mutex::new(Some(response)), leader)));
            }
            match response.buffer(coalesce.inner.max_body).await {
                Ok(Ok(buffered)) => Ok(Arc::new(Landed::Buffered(buffered))),
                Ok(Err(whole)) => Ok(Arc::new(Landed::Whole(Mutex::new(Some(whole)), leader))),
                Err(error) => Err(Error::new(
                    Layer::Coalesce,
                    ErrorKind::Body,
                    "the response's body could not be read to share it",
                )
                .with_source(Arc::from(error))),
            }
        }
        .boxed()
        .shared()
    };
    if flights.len() >= 1024 && flights.len().is_power_of_two() {
        // Calls whose every caller went away leave dead entries.
        flights.retain(|_, slot| {
            slot.weak
                .downcast_ref::<Weak<Res>>()
                .is_none_or(|weak| weak.upgrade().is_some())
        });
    }
    if let Some(weak) = flight.downgrade() {
        flights.insert(
            key,
            Slot {
                joined,
                weak: Box::new(weak),
            },
        );
    }
    Role::Lead(flight, alive)
}

async fn plain<S, R, Res>(mut inner: S, call: Call<R>) -> Result<Res, Error>
where
    S: Service<Call<R>, Response = Res>,
    S::Error: Into<BoxError>,
{
    inner
        .ready()
        .await
        .map_err(Error::from_inner)?
        .call(call)
        .await
        .map_err(Error::from_inner)
}
