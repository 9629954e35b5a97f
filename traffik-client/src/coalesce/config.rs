use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderName, Method};
use parking_lot::Mutex;

use crate::metrics::Instruments;

/// The most keys whose stats are kept; the others count under `(other)`.
const MAX_STATS: usize = 1024;
/// The stats key of the keys past [`MAX_STATS`].
const OTHER: &str = "(other)";

/// How one key coalesced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Calls that joined a call in flight.
    pub hits: u64,
    /// Calls that made the upstream call.
    pub misses: u64,
    /// Upstream calls whose outcome went to more than one caller.
    pub shared: u64,
}

/// Calls in flight by key.
pub(crate) type Flights = hashbrown::HashMap<Box<[u8]>, Slot, foldhash::fast::RandomState>;

/// A call in flight, as the map holds it.
pub(crate) struct Slot {
    /// Whether a second caller joined it (then its response is read whole
    /// to share; alone, the leader gets it as it came).
    pub(crate) joined: Arc<AtomicBool>,
    /// A weak handle on its shared future, type-erased: one map serves any
    /// response type.
    pub(crate) weak: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("joined", &self.joined)
            .finish_non_exhaustive()
    }
}

/// A stats key: the method and the URL (at most 256 bytes of it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct StatsKey {
    method: Method,
    url: Box<str>,
}

/// A borrowed stats key, to look one up without allocating.
#[derive(Hash)]
struct StatsRef<'a> {
    method: &'a Method,
    url: &'a str,
}

impl hashbrown::Equivalent<StatsKey> for StatsRef<'_> {
    fn equivalent(&self, key: &StatsKey) -> bool {
        *self.method == key.method && self.url == &*key.url
    }
}

type StatsMap = hashbrown::HashMap<StatsKey, KeyStats, foldhash::fast::RandomState>;

/// What coalesces and how; clones share the calls in flight and the stats.
#[derive(Clone, Debug)]
pub struct Coalesce {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    pub(crate) methods: Vec<Method>,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) max_body: usize,
    /// Calls in flight by key.
    pub(crate) flights: Mutex<Flights>,
    stats: Mutex<StatsMap>,
    pub(crate) instruments: Instruments,
}

impl Coalesce {
    /// Coalescing for the upstream `name` (the metrics' label), with the
    /// defaults: GET and HEAD, the vary headers of [the module](crate::coalesce),
    /// bodies up to 1 MiB.
    pub fn new(name: impl Into<Arc<str>>) -> Coalesce {
        let name: Arc<str> = name.into();
        Coalesce {
            inner: Arc::new(Inner {
                methods: vec![Method::GET, Method::HEAD],
                vary: [
                    "accept",
                    "accept-encoding",
                    "accept-language",
                    "authorization",
                    "cookie",
                ]
                .into_iter()
                .map(HeaderName::from_static)
                .collect(),
                max_body: 1 << 20,
                flights: Mutex::new(Flights::default()),
                stats: Mutex::new(StatsMap::default()),
                instruments: Instruments::new(Arc::clone(&name)),
                name,
            }),
        }
    }

    fn edit(mut self, edit: impl FnOnce(&mut Inner)) -> Coalesce {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => edit(inner),
            None => {
                let old = &self.inner;
                let mut inner = Inner {
                    name: old.name.clone(),
                    methods: old.methods.clone(),
                    vary: old.vary.clone(),
                    max_body: old.max_body,
                    flights: Mutex::new(Flights::default()),
                    stats: Mutex::new(StatsMap::default()),
                    instruments: Instruments::new(Arc::clone(&old.name)),
                };
                edit(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// The methods that coalesce (default GET and HEAD). Add others only
    /// for requests without side effects.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Coalesce {
        let methods = methods.into_iter().collect();
        self.edit(|inner| inner.methods = methods)
    }

    /// The headers whose values make requests different (replacing the
    /// default set; keep `Authorization` and `Cookie` in it when callers
    /// differ in them).
    pub fn vary(self, headers: impl IntoIterator<Item = HeaderName>) -> Coalesce {
        let vary = headers.into_iter().collect();
        self.edit(|inner| inner.vary = vary)
    }

    /// The largest body shared (default 1 MiB).
    pub fn max_body(self, bytes: usize) -> Coalesce {
        self.edit(|inner| inner.max_body = bytes)
    }

    /// The stats of the calls to `method` `url` (all their vary variants
    /// together).
    pub fn stats_for(&self, method: &Method, url: &str) -> KeyStats {
        let key = StatsRef {
            method,
            url: bounded(url),
        };
        self.inner
            .stats
            .lock()
            .get(&key)
            .copied()
            .unwrap_or_default()
    }

    /// The stats of every key, by `METHOD url` (at most 1024 keys; the rest
    /// under `(other)`).
    pub fn stats(&self) -> Vec<(String, KeyStats)> {
        self.inner
            .stats
            .lock()
            .iter()
            .map(|(k, v)| (format!("{} {}", k.method, k.url), *v))
            .collect()
    }

    /// The stats of all keys together.
    pub fn totals(&self) -> KeyStats {
        self.inner
            .stats
            .lock()
            .values()
            .fold(KeyStats::default(), |sum, s| KeyStats {
                hits: sum.hits + s.hits,
                misses: sum.misses + s.misses,
                shared: sum.shared + s.shared,
            })
    }
}

impl Inner {
    pub(crate) fn coalesces(&self, method: &Method) -> bool {
        self.methods.contains(method)
    }

    /// The flight key: method, URL and each vary header's values, each
    /// part length-prefixed so no two requests share a key by accident.
    pub(crate) fn key(&self, method: &Method, url: &str, headers: &http::HeaderMap) -> Box<[u8]> {
        let mut key = Vec::with_capacity(url.len() + 16);
        let mut part = |bytes: &[u8]| {
            key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            key.extend_from_slice(bytes);
        };
        part(method.as_str().as_bytes());
        part(url.as_bytes());
        for name in &self.vary {
            for value in headers.get_all(name) {
                part(name.as_str().as_bytes());
                part(value.as_bytes());
            }
        }
        key.into_boxed_slice()
    }

    pub(crate) fn note(&self, method: &Method, url: &str, change: impl FnOnce(&mut KeyStats)) {
        let url = bounded(url);
        let mut stats = self.stats.lock();
        if let Some(entry) = stats.get_mut(&StatsRef { method, url }) {
            change(entry);
            return;
        }
        let key = if stats.len() < MAX_STATS {
            StatsKey {
                method: method.clone(),
                url: url.into(),
            }
        } else {
            StatsKey {
                method: Method::GET,
                url: OTHER.into(),
            }
        };
        change(stats.entry(key).or_default());
    }

    /// A flight landed: it leaves the map (if it is still the one under its
    /// key), and counts as shared when someone joined it.
    pub(crate) fn land(&self, key: &[u8], joined: &Arc<AtomicBool>, method: &Method, url: &str) {
        {
            let mut flights = self.flights.lock();
            if flights
                .get(key)
                .is_some_and(|slot| Arc::ptr_eq(&slot.joined, joined))
            {
                flights.remove(key);
            }
        }
        if joined.load(Ordering::Acquire) {
            self.note(method, url, |s| s.shared += 1);
        }
    }
}

/// At most 256 bytes of a URL: the URL is the caller's, but stats are for
/// people to read.
fn bounded(url: &str) -> &str {
    let mut end = url.len().min(256);
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    &url[..end]
}
