//! The decision's span nests under tower-http's `TraceLayer` request span:
//! a real server, a real request, and a subscriber that records each span's
//! parent.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use support::serve;
use tower_http::trace::TraceLayer;
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use traffik_axum::{PeerIp, Rule, ThrottleLayer};
use traffik_backends::memory::MemoryBackend;
use traffik_core::Throttle;

/// A span's name, and its parent's.
type Made = (String, Option<String>);

/// Every span made.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Made>>>);

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.name().to_owned());
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), parent));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_span_is_a_child_of_the_request_span() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry()
        .with(spans.clone())
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let throttle = Throttle::builder("api", "10/min".parse().unwrap())
        .build(MemoryBackend::new())
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(
            ThrottleLayer::builder(PeerIp::new())
                .rule(Rule::new(throttle))
                .build(),
        )
        .layer(TraceLayer::new_for_http());
    let server = serve(app).await;
    let status = reqwest::get(&server.url).await.unwrap().status();
    assert_eq!(status, 200);
    let seen = spans.0.lock().unwrap().clone();
    let decision = seen
        .iter()
        .find(|(name, _)| name == "traffik.decide")
        .unwrap_or_else(|| panic!("no decision span in {seen:?}"));
    assert_eq!(decision.1.as_deref(), Some("request"), "{seen:?}");
}
