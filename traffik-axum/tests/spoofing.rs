//! Spoofing: a real axum server on a loopback port and a real HTTP client
//! (reqwest). The client connects from 127.0.0.1, which the extractors trust
//! as the proxy, so every header below is what a proxy would pass on. Every
//! case spends a client's budget first and asserts that the exhausted client
//! stays exhausted, whatever else it sends.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use traffik_axum::{
    ClientIp, HeaderKey, IdentityExtractor, IpSource, KeyScope, OnBadSource, PeerIp, Rule,
    ThrottleLayer,
};
use traffik_backends::memory::MemoryBackend;
use traffik_core::{SlidingWindowLog, Throttle};

/// Requests each identity may make.
const LIMIT: usize = 2;

/// Every forwarding header a client might try.
const FORWARDING: [&str; 8] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "cf-connecting-ip",
    "true-client-ip",
    "fly-client-ip",
    "cloudfront-viewer-address",
    "x-client-ip",
];

/// Every header source.
const SOURCES: [IpSource; 7] = [
    IpSource::XForwardedFor,
    IpSource::Forwarded,
    IpSource::XRealIp,
    IpSource::CfConnectingIp,
    IpSource::TrueClientIp,
    IpSource::FlyClientIp,
    IpSource::CloudFrontViewerAddress,
];

struct Server {
    url: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_router(app: Router, connect_info: bool) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        if connect_info {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap();
        } else {
            axum::serve(listener, app).await.unwrap();
        }
    });
    Server {
        url: format!("http://{address}/"),
        http: reqwest::Client::new(),
        task,
    }
}

/// A server with one route limited to `LIMIT` per identity.
async fn serve(identity: impl IdentityExtractor) -> Server {
    let throttle = Throttle::builder("api", format!("{LIMIT}/hour").parse().unwrap())
        .strategy(SlidingWindowLog)
        .build(MemoryBackend::new())
        .unwrap();
    let layer = ThrottleLayer::builder(identity)
        .rule(Rule::new(throttle).scope(KeyScope::Global))
        .build();
    serve_router(
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer),
        true,
    )
    .await
}

impl Server {
    async fn status(&self, headers: &[(&str, &[u8])]) -> u16 {
        let mut request = self.http.get(&self.url);
        for (name, value) in headers {
            request = request.header(
                *name,
                reqwest::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// Spends the budget of the client these headers name: `LIMIT` passes,
    /// then a denial.
    async fn exhaust(&self, headers: &[(&str, &[u8])]) {
        for n in 0..LIMIT {
            assert_eq!(
                self.status(headers).await,
                200,
                "request {n} of {headers:?}"
            );
        }
        assert_eq!(self.status(headers).await, 429, "{headers:?}");
    }
}

/// The header `source` reads, with `ip` as its proxy would write it.
fn header_for(source: IpSource, ip: &str) -> (&'static str, Vec<u8>) {
    let v6 = ip.contains(':');
    match source {
        IpSource::XForwardedFor => ("x-forwarded-for", ip.into()),
        IpSource::Forwarded if v6 => ("forwarded", format!("for=\"[{ip}]:4711\"").into()),
        IpSource::Forwarded => ("forwarded", format!("for={ip}").into()),
        IpSource::XRealIp => ("x-real-ip", ip.into()),
        IpSource::CfConnectingIp => ("cf-connecting-ip", ip.into()),
        IpSource::TrueClientIp => ("true-client-ip", ip.into()),
        IpSource::FlyClientIp => ("fly-client-ip", ip.into()),
        IpSource::CloudFrontViewerAddress => {
            ("cloudfront-viewer-address", format!("{ip}:46532").into())
        }
        other => panic!("no header for {other:?}"),
    }
}

fn fresh(n: usize) -> String {
    format!("198.18.{}.{}", n / 250, n % 250 + 1)
}

#[tokio::test]
async fn every_source_ignores_every_other_forwarding_header() {
    for source in SOURCES {
        let server = serve(ClientIp::trusting(source, ["127.0.0.1"]).unwrap()).await;
        let (name, value) = header_for(source, "203.0.113.7");
        server.exhaust(&[(name, &value)]).await;
        for n in 0..20 {
            let other = fresh(n);
            let mut headers: Vec<(&str, Vec<u8>)> = FORWARDING
                .iter()
                .filter(|header| **header != name)
                .map(|header| (*header, header_for_any(header, &other)))
                .collect();
            headers.push((name, value.clone()));
            let headers: Vec<(&str, &[u8])> =
                headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            assert_eq!(
                server.status(&headers).await,
                429,
                "{source:?} with {headers:?}"
            );
        }
        // The other headers alone (the named one missing) never give a fresh
        // budget either: such requests are the proxy's, one budget for all.
        let mut admitted = 0;
        for n in 0..10 {
            let other = fresh(100 + n);
            let headers: Vec<(&str, Vec<u8>)> = FORWARDING
                .iter()
                .filter(|header| **header != name)
                .map(|header| (*header, header_for_any(header, &other)))
                .collect();
            let headers: Vec<(&str, &[u8])> =
                headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            admitted += usize::from(server.status(&headers).await == 200);
        }
        assert!(admitted <= LIMIT, "{source:?}: {admitted} admitted");
    }
}

/// `ip` in the form `header` takes.
fn header_for_any(header: &str, ip: &str) -> Vec<u8> {
    match header {
        "forwarded" => format!("for={ip}").into(),
        "cloudfront-viewer-address" => format!("{ip}:1234").into(),
        _ => ip.into(),
    }
}

#[tokio::test]
async fn list_sources_read_from_the_right() {
    for source in [IpSource::XForwardedFor, IpSource::Forwarded] {
        let server = serve(ClientIp::trusting(source, ["127.0.0.1"]).unwrap()).await;
        let (name, client) = header_for(source, "203.0.113.8");
        server.exhaust(&[(name, &client)]).await;
        for n in 0..10 {
            let (_, spoof) = header_for(source, &fresh(n));
            // The client's own entries come first; the proxy appends the real one.
            let mut joined = spoof.clone();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(&client);
            assert_eq!(server.status(&[(name, &joined)]).await, 429, "{source:?}");
            // The same as two header lines.
            assert_eq!(server.status(&[(name, &spoof), (name, &client)]).await, 429);
        }
    }
}

#[tokio::test]
async fn a_hop_count_reads_that_entry_from_the_right() {
    let server = serve(ClientIp::hops(IpSource::XForwardedFor, 1).unwrap()).await;
    server.exhaust(&[("x-forwarded-for", b"203.0.113.9")]).await;
    for n in 0..10 {
        let spoofed = format!("{}, 203.0.113.9", fresh(n));
        let headers = [
            ("x-forwarded-for", spoofed.as_bytes()),
            ("forwarded", b"for=198.51.100.99".as_slice()),
            ("x-real-ip", b"198.51.100.98".as_slice()),
        ];
        assert_eq!(server.status(&headers).await, 429);
    }
}

#[tokio::test]
async fn an_untrusted_peer_is_its_own_client() {
    let server = serve(ClientIp::trusting(IpSource::XForwardedFor, ["10.0.0.0/8"]).unwrap()).await;
    server
        .exhaust(&[("x-forwarded-for", b"203.0.113.10")])
        .await;
    for n in 0..10 {
        let other = fresh(n);
        let headers: Vec<(&str, Vec<u8>)> = FORWARDING
            .iter()
            .map(|header| (*header, header_for_any(header, &other)))
            .collect();
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        assert_eq!(server.status(&headers).await, 429);
    }
    let server = serve(PeerIp::new()).await;
    server.exhaust(&[]).await;
    assert_eq!(
        server.status(&[("x-forwarded-for", b"198.51.100.1")]).await,
        429
    );
}

#[tokio::test]
async fn ipv6_clients_are_grouped_by_64_and_mapped_ipv4_is_ipv4() {
    for source in SOURCES {
        let server = serve(ClientIp::trusting(source, ["127.0.0.1"]).unwrap()).await;
        let (name, value) = header_for(source, "2001:db8:1:2::1");
        server.exhaust(&[(name, &value)]).await;
        for n in 1..10u32 {
            let (name, value) = header_for(source, &format!("2001:db8:1:2:{n:x}:{n:x}::{n:x}"));
            assert_eq!(server.status(&[(name, &value)]).await, 429, "{source:?}");
        }
        let (name, value) = header_for(source, "2001:db8:1:3::1");
        assert_eq!(
            server.status(&[(name, &value)]).await,
            200,
            "{source:?}: another /64"
        );

        let (name, value) = header_for(source, "198.51.100.9");
        server.exhaust(&[(name, &value)]).await;
        let (name, value) = header_for(source, "::ffff:198.51.100.9");
        assert_eq!(
            server.status(&[(name, &value)]).await,
            429,
            "{source:?}: mapped"
        );
    }
}

/// Values that are not a client address where the walk reads.
fn malformed(source: IpSource) -> Vec<Vec<u8>> {
    let mut forms: Vec<Vec<u8>> = [
        b"".as_slice(),
        b" ",
        b",",
        b"unknown",
        b"_hidden",
        b"garbage",
        b"\xff\xfe",
        b"1.2.3.4.5",
        b"256.1.1.1",
        b"1.2.3.4:99999",
        b"[2001:db8::1",
        b"fe80::1%eth0",
        b"203.0.113.7 198.51.100.1",
        b"for=",
        b"for=unknown",
        b"for=\"_x\"",
        b"203.0.113.7, unknown",
        b"for=203.0.113.7, for=_hidden",
    ]
    .iter()
    .map(|form| form.to_vec())
    .collect();
    forms.push(vec![b'9'; 4_000]);
    if source == IpSource::CloudFrontViewerAddress {
        // An address without its port.
        forms.push(b"203.0.113.7".to_vec());
    }
    forms
}

#[tokio::test]
async fn malformed_sources_share_the_proxys_one_budget() {
    for source in SOURCES {
        let server = serve(ClientIp::trusting(source, ["127.0.0.1"]).unwrap()).await;
        let (name, client) = header_for(source, "203.0.113.7");
        server.exhaust(&[(name, &client)]).await;
        let mut admitted = 0;
        // Missing altogether.
        admitted += usize::from(server.status(&[]).await == 200);
        for form in malformed(source) {
            let status = server.status(&[(name, &form)]).await;
            assert!(
                status == 200 || status == 429,
                "{source:?} {form:?}: {status}"
            );
            admitted += usize::from(status == 200);
        }
        if !matches!(source, IpSource::XForwardedFor | IpSource::Forwarded) {
            // A single-value header twice.
            let status = server.status(&[(name, &client), (name, &client)]).await;
            admitted += usize::from(status == 200);
        }
        assert!(admitted <= LIMIT, "{source:?}: {admitted} admitted");
        // Spent now: every form is denied, and the client is still denied.
        for form in malformed(source) {
            assert_eq!(
                server.status(&[(name, &form)]).await,
                429,
                "{source:?} {form:?}"
            );
        }
        assert_eq!(server.status(&[(name, &client)]).await, 429);
    }
}

#[tokio::test]
async fn malformed_sources_can_be_rejected_with_400() {
    for source in SOURCES {
        let extractor = ClientIp::trusting(source, ["127.0.0.1"])
            .unwrap()
            .on_bad_source(OnBadSource::Reject);
        let server = serve(extractor).await;
        let (name, client) = header_for(source, "203.0.113.7");
        server.exhaust(&[(name, &client)]).await;
        assert_eq!(server.status(&[]).await, 400, "{source:?}: missing");
        for form in malformed(source) {
            assert_eq!(
                server.status(&[(name, &form)]).await,
                400,
                "{source:?} {form:?}"
            );
        }
        let response = server.http.get(&server.url).send().await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = response.text().await.unwrap();
        assert!(body.contains(name), "{body}");
        assert_eq!(server.status(&[(name, &client)]).await, 429);
    }
}

#[tokio::test]
async fn a_header_value_never_spends_an_address_budget() {
    let server = serve(HeaderKey::new("x-api-key").or(PeerIp::new())).await;
    // A key that reads like the keyless client's address, then like its key.
    server.exhaust(&[("x-api-key", b"127.0.0.1")]).await;
    server.exhaust(&[("x-api-key", b"ip:127.0.0.1")]).await;
    // The keyless client from 127.0.0.1 still has its whole budget.
    server.exhaust(&[]).await;
    // And spending it took nothing from the keys.
    assert_eq!(server.status(&[("x-api-key", b"another")]).await, 200);
}

/// Captures what is logged, for the assertions.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_server_without_connect_info_answers_500_that_says_what_to_add() {
    // The server runs on this test's thread (a current-thread runtime), so
    // the subscriber set here sees its events.
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let throttle = Throttle::builder("api", "2/hour".parse().unwrap())
        .build(MemoryBackend::new())
        .unwrap();
    let layer = ThrottleLayer::builder(PeerIp::new()).rule(throttle).build();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let server = serve_router(app, false).await;
    for _ in 0..3 {
        let response = server.http.get(&server.url).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.contains("into_make_service_with_connect_info"),
            "{body}"
        );
    }
    // One clear error in the log, not one per request.
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logged.matches("ERROR").count(), 1, "{logged}");
    assert!(
        logged.contains("into_make_service_with_connect_info"),
        "{logged}"
    );
}
