use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use parking_lot::Mutex;
use tower::{Service, ServiceExt};

use super::Coalesce;
use crate::metrics;
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
    /// Too long to share: the first caller takes it, the others call again.
    Whole(Mutex<Option<Res>>),
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
    type Future = BoxFuture<'static, Result<Res, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_inner)
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let coalesce = match &self.coalesce {
            Some(c) if c.inner.coalesces(call.request.method()) => c.clone(),
            other => {
                if let Some(c) = other {
                    metrics::count(metrics::COALESCED, &c.inner.name, "result", "bypass");
                }
                let future = inner.call(call);
                return Box::pin(async move { future.await.map_err(Error::from_inner) });
            }
        };
        Box::pin(coalesced(inner, coalesce, call))
    }
}

type Weak<Res> = WeakShared<BoxFuture<'static, Result<Arc<Landed<Res>>, Error>>>;

/// A call in flight, as the map holds it.
struct Entry<Res: ShareableResponse> {
    weak: Weak<Res>,
    /// Whether a second caller joined it.
    joined: Arc<AtomicBool>,
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
    let method = call.request.method().clone();
    let url = call.request.url().into_owned();
    let key = state.key(&method, &url, call.request.headers());
    // Each caller keeps a copy of its request, to call on its own when the
    // response is too long to share.
    let Some(own) = call.request.try_clone() else {
        metrics::count(metrics::COALESCED, &state.name, "result", "bypass");
        return plain(inner, call).await;
    };
    let own = call.again(own);
    let (flight, joined, leader) = {
        let mut flights = state.flights.lock();
        let found = flights
            .get(&key)
            .and_then(|entry| entry.downcast_ref::<Entry<Res>>())
            .and_then(|entry| Some((entry.weak.upgrade()?, Arc::clone(&entry.joined))));
        match found {
            Some((flight, joined)) => {
                joined.store(true, Ordering::Relaxed);
                (flight, joined, false)
            }
            None => {
                let max_body = state.max_body;
                let leader = inner.clone();
                let flight: Flight<Res> = async move {
                    let response = plain(leader, call).await?;
                    match response.buffer(max_body).await {
                        Ok(Ok(buffered)) => Ok(Arc::new(Landed::Buffered(buffered))),
                        Ok(Err(whole)) => Ok(Arc::new(Landed::Whole(Mutex::new(Some(whole))))),
                        Err(error) => Err(Error::new(
                            Layer::Coalesce,
                            ErrorKind::Body,
                            "the response's body could not be read to share it",
                        )
                        .with_source(Arc::from(error))),
                    }
                }
                .boxed()
                .shared();
                let joined = Arc::new(AtomicBool::new(false));
                if flights.len() >= 1024 && flights.len().is_power_of_two() {
                    // Calls whose every caller went away leave dead entries.
                    flights.retain(|_, entry| {
                        entry
                            .downcast_ref::<Entry<Res>>()
                            .is_none_or(|entry| entry.weak.upgrade().is_some())
                    });
                }
                if let Some(weak) = flight.downgrade() {
                    let entry = Entry::<Res> {
                        weak,
                        joined: Arc::clone(&joined),
                    };
                    flights.insert(key.clone(), Box::new(entry));
                }
                (flight, joined, true)
            }
        }
    };
    let name = &state.name;
    if leader {
        state.note(&method, &url, |s| s.misses += 1);
        metrics::count(metrics::COALESCED, name, "result", "miss");
    } else {
        state.note(&method, &url, |s| s.hits += 1);
        metrics::count(metrics::COALESCED, name, "result", "hit");
    }
    let outcome = flight.clone().await;
    {
        let mut flights = state.flights.lock();
        let ours = flights
            .get(&key)
            .and_then(|entry| entry.downcast_ref::<Entry<Res>>())
            .and_then(|entry| entry.weak.upgrade())
            .is_some_and(|f| f.ptr_eq(&flight));
        if ours {
            // The first caller to see the outcome closes the flight: later
            // requests make a new call.
            flights.remove(&key);
            if joined.load(Ordering::Relaxed) {
                state.note(&method, &url, |s| s.shared += 1);
            }
        }
    }
    drop(flight);
    let landed = outcome?;
    match landed.as_ref() {
        Landed::Buffered(buffered) => Ok(Res::rebuild(buffered)),
        Landed::Whole(whole) => {
            let taken = whole.lock().take();
            match taken {
                Some(response) => Ok(response),
                None => plain(inner, own).await,
            }
        }
    }
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
