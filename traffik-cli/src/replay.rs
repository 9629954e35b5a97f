//! Access logs replayed through a rules file: in memory, on a manual clock
//! set to each line's timestamp, through the very layer an application
//! runs (`Rules::layer` around an axum router), so that filters, identities,
//! exemptions, response counting, penalties and shadow mode all apply as
//! they would have.
//!
//! Each decision is attributed to its rule through the `metrics` facade:
//! the replay installs its own recorder for the run and reads which
//! throttle decided what for every request.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use serde::Serialize;
use tower::{Service, ServiceExt};
use traffik_axum::config::{LoadOptions, Rules};
use traffik_backends::AnyBackend;
use traffik_backends::memory::MemoryBackend;
use traffik_core::{ManualClock, Outcome};

use crate::logs::{Entry, Parser};
use crate::{Exit, Failure, shown};

/// What to replay.
#[derive(Clone, Debug)]
pub struct Options {
    /// The rules file.
    pub rules: PathBuf,
    /// The logs, read in order (`-`: standard input).
    pub logs: Vec<PathBuf>,
    /// The application's route templates (`/items/{id}`), so that rules
    /// keyed per route key as they did; without them every path is the
    /// template `*`.
    pub routes: Vec<String>,
    /// How many identities to list per rule.
    pub top: usize,
    /// Draw allowed and denied per minute per rule into this SVG file.
    pub plot: Option<PathBuf>,
    /// Show a progress bar on standard error (when it is a terminal).
    pub progress: bool,
}

/// One rule's replayed decisions.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RuleReport {
    /// The throttle's name.
    pub throttle: String,
    /// Requests it decided.
    pub decided: u64,
    /// Admitted.
    pub allowed: u64,
    /// Denied (penalty blocks included).
    pub denied: u64,
    /// Would have been denied; shadow mode let them through.
    pub shadow_denied: u64,
    /// The identities it denied most (shadow denials included), most first.
    pub top_denied: Vec<Denied>,
}

/// An identity and how often a rule denied it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Denied {
    /// The client's address as the log gives it.
    pub identity: String,
    /// Its denials.
    pub denied: u64,
}

/// One minute's decisions of one rule.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Minute {
    /// Admitted.
    pub allowed: u64,
    /// Denied, or would have been (shadow).
    pub denied: u64,
}

/// What a replay found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Lines read.
    pub lines: u64,
    /// Lines that were neither format, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The first skipped line's number and reason.
    pub first_skipped: Option<(u64, String)>,
    /// Requests the application would have answered 429.
    pub rejected: u64,
    /// The first and last timestamps, in milliseconds since the epoch.
    pub span_ms: Option<(u64, u64)>,
    /// How long the replay took, in seconds.
    pub seconds: f64,
    /// Per rule, in the order they first decided.
    pub rules: Vec<RuleReport>,
    /// Per minute (milliseconds since the epoch of its start), per rule in
    /// the order of `rules`.
    pub minutes: BTreeMap<u64, Vec<Minute>>,
}

/// The marker a logged response's status rides on to the handler.
#[derive(Clone, Copy)]
struct Logged(StatusCode);

/// Which throttle decided what, for the request being replayed.
#[derive(Default)]
struct Events {
    names: Vec<String>,
    seen: Vec<(usize, Outcome)>,
}

type Shared = Arc<Mutex<Events>>;

fn lock(events: &Shared) -> std::sync::MutexGuard<'_, Events> {
    events.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A recorder that keeps `traffik_decisions_total` increments as events.
struct Recorder {
    events: Shared,
}

struct Counted {
    throttle: usize,
    outcome: Outcome,
    events: Shared,
}

impl metrics::CounterFn for Counted {
    fn increment(&self, value: u64) {
        let mut events = lock(&self.events);
        for _ in 0..value.min(16) {
            events.seen.push((self.throttle, self.outcome));
        }
    }

    fn absolute(&self, _: u64) {}
}

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() != "traffik_decisions_total" {
            return metrics::Counter::noop();
        }
        let label = |name: &str| {
            key.labels()
                .find(|label| label.key() == name)
                .map(|label| label.value().to_owned())
        };
        let (Some(throttle), Some(outcome)) = (label("throttle"), label("outcome")) else {
            return metrics::Counter::noop();
        };
        let Some(outcome) = Outcome::ALL.into_iter().find(|o| o.as_str() == outcome) else {
            return metrics::Counter::noop();
        };
        let mut events = lock(&self.events);
        let index = match events.names.iter().position(|name| *name == throttle) {
            Some(index) => index,
            None => {
                events.names.push(throttle);
                events.names.len() - 1
            }
        };
        drop(events);
        metrics::Counter::from_arc(Arc::new(Counted {
            throttle: index,
            outcome,
            events: Arc::clone(&self.events),
        }))
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// What the replay keeps per rule while it runs.
#[derive(Default)]
struct Tally {
    report: RuleReport,
    denied_by: HashMap<String, u64>,
}

/// Replays `options.logs` through `options.rules`.
///
/// # Errors
///
/// [`Exit::Config`] for a rules file that is refused, [`Exit::Failed`]
/// for a log that cannot be read or a plot that cannot be written.
pub fn replay(options: &Options) -> Result<Report, Failure> {
    let events: Shared = Arc::default();
    let recorder = Recorder {
        events: Arc::clone(&events),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|error| Failure::new(Exit::Failed, format!("a runtime: {error}")))?;
    // The throttles register their counters at their first decision: with
    // this recorder, in force on this thread for the whole run.
    let report =
        metrics::with_local_recorder(&recorder, || runtime.block_on(run(options, &events)))?;
    if let Some(path) = &options.plot {
        crate::plot::draw(path, &report).map_err(|error| {
            Failure::new(
                Exit::Failed,
                format!("the plot {}: {error}", path.display()),
            )
        })?;
    }
    Ok(report)
}

async fn run(options: &Options, events: &Shared) -> Result<Report, Failure> {
    let clock = ManualClock::new(0);
    let store = AnyBackend::Memory(MemoryBackend::builder().sweep_interval(None).build());
    let rules = Rules::load_with(
        &options.rules,
        LoadOptions::new().backend(store).clock(clock.clone()),
    )
    .await
    .map_err(|error| Failure::new(Exit::Config, format!("the rules file was refused: {error}")))?;
    let mut router = Router::new();
    for route in &options.routes {
        if !route.starts_with('/') {
            return Err(Failure::new(
                Exit::Usage,
                format!("--route {}: a route template starts with /", shown(route)),
            ));
        }
        router = router.route(route, axum::routing::any(answer));
    }
    let mut app = router.fallback(answer).layer(rules.layer());

    let started = Instant::now();
    let mut report = Report {
        lines: 0,
        skipped: BTreeMap::new(),
        first_skipped: None,
        rejected: 0,
        span_ms: None,
        seconds: 0.0,
        rules: Vec::new(),
        minutes: BTreeMap::new(),
    };
    let mut tallies: Vec<Tally> = Vec::new();
    let total: u64 = options
        .logs
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok().map(|m| m.len()))
        .sum();
    let bar = progress(options.progress, total);
    let mut parser = Parser::new();
    let mut now = 0u64;
    let mut line = Vec::new();
    let mut read_bytes = 0u64;
    for path in &options.logs {
        let mut input = open(path)?;
        loop {
            let read = next_line(&mut input, &mut line).map_err(|error| {
                Failure::new(Exit::Failed, format!("reading {}: {error}", path.display()))
            })?;
            let Some((n, whole)) = read else {
                break;
            };
            read_bytes += n;
            if report.lines % 4096 == 0 {
                bar.set_position(read_bytes);
            }
            report.lines += 1;
            if !whole {
                skipped(&mut report, "line too long");
                continue;
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                skipped(&mut report, "not UTF-8");
                continue;
            };
            let entry = match parser.parse(text) {
                Ok(entry) => entry,
                Err(why) => {
                    skipped(&mut report, why.0);
                    continue;
                }
            };
            // Out-of-order lines (logged as they finished) decide at the
            // latest time seen: time never runs backwards.
            now = now.max(entry.time_ms);
            clock.set(now);
            report.span_ms = Some(report.span_ms.map_or((now, now), |(first, _)| (first, now)));
            let Some(request) = request(&entry) else {
                skipped(&mut report, "bad request target or header");
                continue;
            };
            let response = match ServiceExt::<Request<Body>>::ready(&mut app).await {
                Ok(ready) => ready.call(request).await,
                Err(never) => match never {},
            };
            let response = match response {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                report.rejected += 1;
            }
            attribute(events, &mut tallies, &mut report.minutes, &entry, now);
        }
    }
    bar.finish_and_clear();
    report.seconds = started.elapsed().as_secs_f64();
    let names = lock(events).names.clone();
    let top = options.top;
    for (index, tally) in tallies.into_iter().enumerate() {
        let mut rule = tally.report;
        rule.throttle = names.get(index).cloned().unwrap_or_default();
        let mut denied: Vec<Denied> = tally
            .denied_by
            .into_iter()
            .map(|(identity, denied)| Denied { identity, denied })
            .collect();
        denied.sort_by(|a, b| {
            b.denied
                .cmp(&a.denied)
                .then_with(|| a.identity.cmp(&b.identity))
        });
        denied.truncate(top);
        rule.top_denied = denied;
        report.rules.push(rule);
    }
    // Every minute lists every rule.
    let rules = report.rules.len();
    for minute in report.minutes.values_mut() {
        minute.resize(rules, Minute::default());
    }
    Ok(report)
}

/// The application's stand-in: answers with the logged status.
async fn answer(request: Request<Body>) -> StatusCode {
    request
        .extensions()
        .get::<Logged>()
        .map_or(StatusCode::OK, |logged| logged.0)
}

fn request(entry: &Entry) -> Option<Request<Body>> {
    let method = Method::from_bytes(entry.method.as_bytes()).ok()?;
    let mut request = Request::builder()
        .method(method)
        .uri(entry.path.as_str())
        .body(Body::empty())
        .ok()?;
    let headers = request.headers_mut();
    for (name, value) in &entry.headers {
        let name = HeaderName::try_from(name.as_str()).ok()?;
        let value = HeaderValue::try_from(value.as_str()).ok()?;
        headers.append(name, value);
    }
    let extensions = request.extensions_mut();
    extensions.insert(ConnectInfo(SocketAddr::new(entry.ip, 0)));
    extensions.insert(Logged(StatusCode::from_u16(entry.status).ok()?));
    Some(request)
}

fn skipped(report: &mut Report, why: &str) {
    *report.skipped.entry(why.to_owned()).or_default() += 1;
    if report.first_skipped.is_none() {
        report.first_skipped = Some((report.lines, why.to_owned()));
    }
}

/// Counts what the rules decided for `entry`.
fn attribute(
    events: &Shared,
    tallies: &mut Vec<Tally>,
    minutes: &mut BTreeMap<u64, Vec<Minute>>,
    entry: &Entry,
    now: u64,
) {
    let seen = std::mem::take(&mut lock(events).seen);
    if seen.is_empty() {
        return;
    }
    let minute = minutes.entry(now - now % 60_000).or_default();
    for (throttle, outcome) in seen {
        if tallies.len() <= throttle {
            tallies.resize_with(throttle + 1, Tally::default);
        }
        let tally = &mut tallies[throttle];
        tally.report.decided += 1;
        let denied = match outcome {
            Outcome::Denied | Outcome::FailureDenied => {
                tally.report.denied += 1;
                true
            }
            Outcome::ShadowDenied => {
                tally.report.shadow_denied += 1;
                true
            }
            _ => {
                tally.report.allowed += 1;
                false
            }
        };
        if denied {
            *tally.denied_by.entry(entry.ip.to_string()).or_default() += 1;
        }
        if minute.len() <= throttle {
            minute.resize(throttle + 1, Minute::default());
        }
        if denied {
            minute[throttle].denied += 1;
        } else {
            minute[throttle].allowed += 1;
        }
    }
}

/// The longest line read: a log line is a few hundred bytes, and a log
/// without newlines must not be read into memory whole.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads the next line into `line` (at most [`MAX_LINE`] bytes of it kept):
/// the bytes it took and whether the line was whole, or `None` at the end.
fn next_line(input: &mut dyn BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<(u64, bool)>> {
    line.clear();
    let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
    let n = std::io::Read::take(&mut *input, limit).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    let mut taken = n as u64;
    if line.len() <= MAX_LINE || line.ends_with(b"\n") {
        return Ok(Some((taken, true)));
    }
    // Too long: skip to its end, a buffer at a time.
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        let (used, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (buffer.len(), false),
        };
        input.consume(used);
        taken += used as u64;
        if done {
            break;
        }
    }
    line.clear();
    Ok(Some((taken, false)))
}

fn open(path: &PathBuf) -> Result<Box<dyn BufRead>, Failure> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = std::fs::File::open(path)
        .map_err(|error| Failure::new(Exit::Failed, format!("{}: {error}", path.display())))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, file)))
}

fn progress(wanted: bool, total: u64) -> indicatif::ProgressBar {
    if !wanted || total == 0 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

impl Report {
    /// Lines per minute the replay read.
    pub fn lines_per_minute(&self) -> f64 {
        if self.seconds > 0.0 {
            self.lines as f64 / self.seconds * 60.0
        } else {
            0.0
        }
    }
}
