//! The client's metrics, recorded through the `metrics` facade and
//! rendered by a real Prometheus exporter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use traffik_client::breaker::{Breaker, Window};
use traffik_client::coalesce::Coalesce;
use traffik_client::limit::Limiter;
use traffik_client::retry::RetryPolicy;
use traffik_client::{BoxError, Call, StackBuilder};

/// Sends a GET of `uri` through `stack` on a task of its own; the status.
fn spawn_get<S>(
    stack: &S,
    uri: &'static str,
) -> tokio::task::JoinHandle<Result<u16, traffik_client::Error>>
where
    S: Service<
            Call<Request<String>>,
            Response = Response<Full<Bytes>>,
            Error = traffik_client::Error,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut stack = stack.clone();
    tokio::spawn(async move {
        let call = Call::new(Request::get(uri).body(String::new()).unwrap());
        stack
            .ready()
            .await?
            .call(call)
            .await
            .map(|r| r.status().as_u16())
    })
}

fn line<'a>(rendered: &'a str, prefix: &str) -> Option<&'a str> {
    rendered.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test(start_paused = true)]
async fn calls_waits_retries_transitions_and_coalescing_are_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    // The first answer fails (503, retried), then everything is fine.
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let client = tower::service_fn(move |_: Request<String>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
            *response.status_mut() = if n == 0 {
                503.try_into().unwrap()
            } else {
                200.try_into().unwrap()
            };
            response.headers_mut().insert("content-length", 2.into());
            Ok::<_, BoxError>(response)
        }
    });
    let breaker = Breaker::builder("api")
        .min_calls(1)
        .window(Window::Count(1))
        .build()
        .unwrap();
    let stack = StackBuilder::new()
        .coalesce(Coalesce::new("api"))
        .breaker(breaker)
        .limiter(
            Limiter::builder("api", "10/s".parse().unwrap())
                .build()
                .unwrap(),
        )
        .retry(RetryPolicy::new().backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .service(client);
    let send = |uri: &'static str| spawn_get(&stack, uri);
    assert_eq!(
        send("http://api/first").await.unwrap().unwrap(),
        200,
        "after a retry"
    );
    let same: Vec<_> = (0..5).map(|_| send("http://api/same")).collect();
    for call in same {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }
    // A limit of 1/s: the second of two calls waits in the queue.
    let queued = StackBuilder::new()
        .limiter(
            Limiter::builder("q", "1/s".parse().unwrap())
                .strategy(traffik_core::Gcra::with_burst(1.try_into().unwrap()))
                .build()
                .unwrap(),
        )
        .service(tower::service_fn(|_: Request<String>| async {
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::new())))
        }));
    let two: Vec<_> = (0..2).map(|_| spawn_get(&queued, "http://q/")).collect();
    for call in two {
        call.await.unwrap().unwrap();
    }
    let rendered = handle.render();
    assert!(
        line(
            &rendered,
            r#"traffik_client_calls_total{upstream="api",outcome="ok"} 6"#
        )
        .is_some(),
        "{rendered}"
    );
    assert!(
        line(
            &rendered,
            r#"traffik_client_retries_total{upstream="api",reason="status"} 1"#
        )
        .is_some(),
        "{rendered}"
    );
    assert!(
        line(
            &rendered,
            r#"traffik_client_coalesced_total{upstream="api",result="hit"} 4"#
        )
        .is_some(),
        "{rendered}"
    );
    assert!(
        line(
            &rendered,
            r#"traffik_client_coalesced_total{upstream="api",result="miss"} 2"#
        )
        .is_some(),
        "{rendered}"
    );
    assert!(
        line(
            &rendered,
            r#"traffik_client_wait_seconds_count{upstream="api"}"#
        )
        .is_some(),
        "{rendered}"
    );
    assert!(
        line(&rendered, r#"traffik_client_queue_depth{upstream="q"} 0"#).is_some(),
        "{rendered}"
    );
    let waited = line(
        &rendered,
        r#"traffik_client_wait_seconds_sum{upstream="q"}"#,
    )
    .unwrap();
    assert!(waited.ends_with(" 1"), "one call waited a second: {waited}");
    assert!(
        line(&rendered, "traffik_client_breaker_transitions_total").is_none(),
        "no transition yet"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "503, its retry, and one for the five"
    );
}
