//! Rules from a file: validation errors with their place, real requests
//! under the file's rules, and hot reload (file changes and SIGHUP) of a
//! real file under real requests.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use support::serve;
use traffik_axum::config::{Rules, RulesError};

/// A rules file of its own in the temporary directory, removed at the end.
struct TempRules(PathBuf);

impl TempRules {
    fn new(text: &str) -> TempRules {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "traffik-rules-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = TempRules(dir.join("rules.toml"));
        rules.write(text);
        rules
    }

    /// Replaces the file as editors do: a new file renamed over it.
    fn write(&self, text: &str) {
        let next = self.0.with_extension("toml.new");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &self.0).unwrap();
    }

    /// Writes the file in place, as other editors do: truncated, then
    /// written.
    fn write_in_place(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for TempRules {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn refused(text: &str) -> RulesError {
    match Rules::from_toml(text, "rules.toml").await {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn mistakes_are_refused_with_their_line_and_column() {
    let cases: &[(&str, usize, usize, &str)] = &[
        // Unknown keys, anywhere.
        (
            "[throttles.api]\nrate = \"1/s\"\nrat = \"2/s\"\n",
            3,
            1,
            "unknown field `rat`",
        ),
        (
            "[layer]\nordre = \"as_written\"\n",
            2,
            1,
            "unknown field `ordre`",
        ),
        // Values checked as they are read, at the value.
        (
            "[throttles.api]\nrate = \"100/mni\"\n",
            2,
            8,
            "is not a rate",
        ),
        (
            "[throttles.api]\nrate = \"1/s\"\nstrategy = \"token-bukket\"\n",
            3,
            12,
            "unknown strategy",
        ),
        (
            "[throttles.a]\nrate = \"1/s\"\npenalty = { steps = [\"1 fortnight\"] }\n",
            3,
            21,
            "is not a duration",
        ),
        (
            "[throttles.a]\nrate = \"1/s\"\nshadow = \"150%\"\n",
            3,
            10,
            "share enforced",
        ),
        // A format this traffik does not know.
        (
            "version = 2\n[throttles.api]\nrate = \"1/s\"\n",
            1,
            11,
            "reads version 1 of the rules file, not version 2",
        ),
        // Names that refer to nothing.
        (
            "[throttles.api]\nrate = \"1/s\"\n\n[[rules]]\nthrottle = \"apl\"\n",
            5,
            12,
            "no throttle named \"apl\" in [throttles]; it defines \"api\"",
        ),
        (
            "[backends]\na = \"memory://\"\n\n[throttles.api]\nrate = \"1/s\"\nbackend = \"b\"\n",
            6,
            11,
            "no backend named \"b\"",
        ),
        (
            "[throttles.api]\nrate = \"1/s\"\nstrategy = \"fixed_window\"\nburst = 5\n",
            4,
            9,
            "burst applies to token_bucket, leaky_bucket and gcra",
        ),
        (
            "[throttles.api]\nrate = \"1/s\"\nfallback_instances = 3\n",
            3,
            22,
            "fallback_instances applies to failure_policy = \"fallback\" only",
        ),
        (
            "[throttles.api]\nrate = \"1/s\"\nfailure_policy = \"fallback\"\nfallback_instances = 0\n",
            4,
            22,
            "fallback_instances must be at least 1",
        ),
        (
            "[throttles.api]\nrate = \"1/s\"\n[[rules]]\nthrottle = \"api\"\npaths = [\"/a/[b\"]\n",
            5,
            9,
            "not a valid glob",
        ),
        (
            "[exempt]\ncidrs = [\"10.0.0.0/33\"]\n",
            2,
            9,
            "is not a network",
        ),
        (
            "[throttles.api]\nrate = \"1/s\"\n[[rules]]\nthrottle = \"api\"\ncount = { statuses = [\"6xy\"] }\n",
            5,
            22,
            "not a status",
        ),
        (
            "[identity]\nsource = \"x-forwarded-for\"\n",
            2,
            10,
            "needs trusted_proxies",
        ),
        ("[backends]\nr = \"mongodb://x\"\n", 2, 5, "backend \"r\""),
        ("[throttles.api]\nrate = 5\n", 2, 8, "invalid type"),
    ];
    for (text, line, column, message) in cases {
        let error = refused(text).await;
        assert_eq!(
            (error.line(), error.column()),
            (*line, *column),
            "{text}\n→ {error}"
        );
        assert!(error.message().contains(message), "{text}\n→ {error}");
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("rules.toml:{line}:{column}: ")),
            "{shown}"
        );
    }
}

/// A store that cannot be made is refused at its URL, with the store's
/// error kept as the cause.
#[tokio::test]
async fn a_bad_store_is_refused_with_its_cause() {
    use std::error::Error as _;

    let error = refused("[backends]\nlocal = \"memory://?max_keys=many\"\n").await;
    assert_eq!((error.line(), error.column()), (2, 9), "{error}");
    assert!(
        error.message().starts_with("backend \"local\": "),
        "{error}"
    );
    let cause = error.source().expect("the store's error is the cause");
    assert!(
        cause.downcast_ref::<traffik_core::Error>().is_some(),
        "{cause}"
    );
}

#[tokio::test]
async fn errors_never_echo_unbounded_input() {
    let long = "x".repeat(100_000);
    for text in [
        format!("[throttles.api]\nrate = \"{long}\"\n"),
        format!("[throttles.api]\nrate = \"1/s\"\n[[rules]]\nthrottle = \"{long}\"\n"),
        format!("[throttles.api]\nrate = \"1/s\"\nstrategy = \"{long}\"\n"),
        format!("[exempt]\ncidrs = [\"{long}\"]\n"),
        format!("{long} = 1\n"),
    ] {
        let error = refused(&text).await.to_string();
        assert!(
            error.len() < 400,
            "{} bytes: {}",
            error.len(),
            &error[..200]
        );
    }
}

/// Loads `text` and, when it is accepted, sends it a request (with header
/// `name: value`) on a runtime of its own: accepted rules serve whatever
/// names and values they hold; refused ones say why in a few bytes.
fn serve_once(text: &str, name: &str, value: &str) -> Result<bool, String> {
    use tower::ServiceExt;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rules = match Rules::from_toml(text, "case.toml").await {
            Ok(rules) => rules,
            Err(error) if error.to_string().len() <= 500 => return Ok(false),
            Err(error) => return Err(format!("an error of {} bytes", error.to_string().len())),
        };
        let app = Router::new()
            .route("/{*rest}", get(|| async { "ok" }).post(|| async { "ok" }))
            .layer(rules.layer());
        let header = http::HeaderName::try_from(name)
            .ok()
            .zip(http::HeaderValue::try_from(value).ok());
        for _ in 0..3 {
            let mut request = support::get("/a/b", "203.0.113.7:4000");
            if let Some((name, value)) = header.clone() {
                request.headers_mut().insert(name, value);
            }
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            if ![200, 400, 429, 500, 503].contains(&status) {
                return Err(format!("status {status}"));
            }
        }
        Ok(true)
    })
}

/// `text` as a TOML basic string, whatever it holds.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Mostly (9 in 10) text that matches `common`, else any text of up to
/// 16 characters.
fn mostly(common: &str) -> proptest::strategy::BoxedStrategy<String> {
    use proptest::strategy::Strategy;
    let common = proptest::string::string_regex(common).unwrap();
    let any = proptest::string::string_regex("\\PC{0,16}").unwrap();
    proptest::prop_oneof![9 => common, 1 => any].boxed()
}

/// Checks `text` on a runtime of its own (proptest's cases are sync).
fn check(text: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    match runtime.block_on(Rules::from_toml(text, "case.toml")) {
        Ok(_) => Ok(()),
        Err(error) => {
            let shown = error.to_string();
            if shown.len() > 500 {
                return Err(format!(
                    "an error of {} bytes: {}",
                    shown.len(),
                    &shown[..200]
                ));
            }
            Ok(())
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Any text at all is refused or accepted, never a panic, and the error
    /// stays short whatever the text holds.
    #[test]
    fn any_text_is_refused_or_accepted(text in "\\PC{0,400}") {
        proptest::prop_assert!(check(&text).is_ok(), "{}", check(&text).unwrap_err());
    }

    /// Near misses of a valid file: one byte replaced, anywhere, by a byte
    /// TOML cares about.
    #[test]
    fn near_misses_of_a_valid_file(at in 0usize..2_000, byte in proptest::sample::select(b"=[]\"{}#\n x0,.%*-".to_vec())) {
        let valid = include_str!("../../examples/rules.toml");
        let mut bytes = valid.as_bytes().to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            proptest::prop_assert!(check(&text).is_ok());
        }
    }

    /// Any name and value where the file takes a name or a value: throttle
    /// and store names, namespaces, header names and values of identities,
    /// exemptions and filters, tiers, costs and statuses. Accepted rules
    /// serve requests that carry the header.
    #[test]
    fn any_names_and_values_serve_requests(
        throttle in mostly("[a-z][a-z0-9_-]{0,10}"),
        namespace in mostly("[a-z][a-z0-9_-]{0,10}"),
        header in mostly("x-[a-z]{1,8}"),
        value in mostly("[ -~]{0,12}"),
        tier in mostly("[ -~]{0,12}"),
        tier_rate in mostly("[1-9][0-9]{0,3}/(s|min|h)"),
        cost in proptest::prop_oneof![9 => 1u64..4, 1 => proptest::num::u64::ANY],
        failure_status in proptest::prop_oneof![9 => 400i64..600, 1 => proptest::num::i64::ANY],
        ipv6_prefix in proptest::prop_oneof![9 => 0i64..=128, 1 => proptest::num::i64::ANY],
        instances in proptest::prop_oneof![9 => 1i64..8, 1 => proptest::num::i64::ANY],
        forgive in mostly("[1-9][0-9]{0,2}(s|m|h|d)"),
        source in proptest::sample::select(vec!["peer", "header", "x-forwarded-for", "forwarded"]),
        scope in proptest::sample::select(vec!["route", "method_route", "global"]),
    ) {
        let quote = toml_string;
        let identity = match source {
            "header" => format!("header = {}\n", quote(&header)),
            "peer" => String::new(),
            _ => "trusted_proxies = [\"10.0.0.0/8\"]\n".to_owned(),
        };
        let text = format!(
            "[backends]\nlocal = \"memory://\"\n\n[layer]\nfailure_status = {failure_status}\n\n\
             [identity]\nsource = {}\n{identity}ipv6_prefix = {ipv6_prefix}\n\n\
             [exempt]\nheaders = {{ {} = {} }}\n\n\
             [throttles.{}]\nrate = \"3/min\"\nnamespace = {}\ncost = {cost}\nfailure_policy = \"fallback\"\n\
             fallback_instances = {instances}\npenalty = {{ steps = [\"1m\"], forgive_after = {} }}\n\n\
             [[rules]]\nthrottle = {}\nscope = {}\nheaders = {{ {} = {} }}\nlimits = {{ {} = {} }}\n",
            quote(source), quote(&header), quote(&format!("{value}!")), quote(&throttle),
            quote(&namespace), quote(&forgive), quote(&throttle), quote(scope), quote(&header),
            quote(&value), quote(&tier), quote(&tier_rate),
        );
        let served = serve_once(&text, &header, &value);
        proptest::prop_assert!(served.is_ok(), "{}\n{text}", served.unwrap_err());
    }

    /// Any value in any field of a throttle or a rule.
    #[test]
    fn any_values_in_every_field(
        rate in "\\PC{0,30}",
        strategy in "\\PC{0,20}",
        burst in proptest::num::i64::ANY,
        steps in proptest::collection::vec("\\PC{0,12}", 0..4),
        path in "\\PC{0,30}",
        method in "\\PC{0,10}",
        status in proptest::num::i64::ANY,
        cidr in "\\PC{0,20}",
        shadow in "\\PC{0,8}",
    ) {
        let quote = toml_string;
        let steps: Vec<String> = steps.iter().map(|s| quote(s)).collect();
        let text = format!(
            "[exempt]\ncidrs = [{}]\n\n[throttles.t]\nrate = {}\nstrategy = {}\nburst = {burst}\n\
             shadow = {}\npenalty = {{ steps = [{}] }}\n\n[[rules]]\nthrottle = \"t\"\n\
             paths = [{}]\nmethods = [{}]\ncount = {{ statuses = [{status}] }}\n",
            quote(&cidr), quote(&rate), quote(&strategy), quote(&shadow), steps.join(", "),
            quote(&path), quote(&method),
        );
        proptest::prop_assert!(check(&text).is_ok());
    }
}

#[tokio::test]
async fn a_broken_file_is_logged_once_and_a_fixed_one_again() {
    let _serial = WATCHING.lock().await;
    let file = TempRules::new(ITEMS);
    let rules = Rules::load(&file.0).await.unwrap();
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    file.write(&ITEMS.replace("3/min", "3/mni"));
    for _ in 0..3 {
        assert!(rules.reload().await.is_err());
    }
    assert_eq!(logs.count("ERROR"), 1, "{}", logs.text());
    assert!(logs.text().contains("rules.toml:3:8:"), "{}", logs.text());
    assert!(
        logs.text().contains("the previous rules stay"),
        "{}",
        logs.text()
    );
    file.write(&ITEMS.replace("3/min", "4/min"));
    rules.reload().await.unwrap();
    assert_eq!(logs.count("INFO"), 1, "{}", logs.text());
    assert!(
        logs.text().contains("rate 3/min → 4/min; counters kept"),
        "{}",
        logs.text()
    );
    file.write(&ITEMS.replace("3/min", "3/mni"));
    assert!(rules.reload().await.is_err());
    assert_eq!(
        logs.count("ERROR"),
        2,
        "broken again: logged again\n{}",
        logs.text()
    );
}

/// Log lines written by a test's subscriber.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn count(&self, level: &str) -> usize {
        self.text()
            .lines()
            .filter(|line| line.contains(level))
            .count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn app(rules: &Rules, handler_delay: Duration) -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(move || async move {
                tokio::time::sleep(handler_delay).await;
                "item"
            }),
        )
        .route("/login", post(|| async { StatusCode::UNAUTHORIZED }))
        .layer(rules.layer())
}

async fn statuses(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client.get(url).send().await.unwrap().status().as_u16());
    }
    out
}

const ITEMS: &str = r#"
[throttles.items]
rate = "3/min"
strategy = "sliding_window_log"

[[rules]]
throttle = "items"
paths = ["/items/*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_drives_real_requests_with_filters_counting_and_exemptions() {
    let text = r#"
[throttles.items]
rate = "3/min"
strategy = "sliding_window_log"

[throttles.login]
rate = "2/min"
penalty = { steps = ["1m"] }

[exempt]
headers = { "x-internal" = "s3cret" }

[[rules]]
throttle = "items"
methods = ["GET"]
paths = ["/items/*"]

[[rules]]
throttle = "login"
paths = ["/login"]
count = { statuses = ["4xx"] }
"#;
    let rules = Rules::from_toml(text, "inline").await.unwrap();
    let server = serve(app(&rules, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let items = format!("{}/items/1", server.url);
    assert_eq!(statuses(&client, &items, 4).await, [200, 200, 200, 429]);
    // The exempting header, exactly: never throttled; a near miss is not.
    let exempt = client
        .get(&items)
        .header("x-internal", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(exempt.status(), 200);
    let near = client
        .get(&items)
        .header("x-internal", "s3cre")
        .send()
        .await
        .unwrap();
    assert_eq!(near.status(), 429);
    // Failed logins: 2, then the breach locks out for the first step.
    let login = format!("{}/login", server.url);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(client.post(&login).send().await.unwrap());
    }
    let codes: Vec<u16> = seen.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [401, 401, 429]);
    assert_eq!(seen[2].headers()["retry-after"], "60");
}

/// The tests that watch files or send SIGHUP run one at a time: a signal
/// reaches every watch in the process.
static WATCHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until the rules reach `generation` (a reload happened), at most
/// a few seconds of real time.
async fn wait_for(rules: &Rules, generation: u64) {
    let start = Instant::now();
    while rules.generation() < generation {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload to generation {generation} (at {})",
            rules.generation()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_takes_effect_and_a_broken_one_is_refused() {
    let _serial = WATCHING.lock().await;
    let file = TempRules::new(ITEMS);
    let rules = Rules::load(&file.0).await.unwrap();
    let _watch = rules.watch().unwrap();
    let server = serve(app(&rules, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let items = format!("{}/items/1", server.url);
    assert_eq!(statuses(&client, &items, 2).await, [200, 200]);
    // A higher limit: the counter is kept (2 used), so 3 more of 5 pass.
    file.write(&ITEMS.replace("3/min", "5/min"));
    wait_for(&rules, 2).await;
    assert_eq!(statuses(&client, &items, 4).await, [200, 200, 200, 429]);
    // A broken file: refused, the old limit holds.
    file.write(&ITEMS.replace("3/min", "5/mni"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rules.generation(), 2, "a broken file was put in place");
    assert_eq!(statuses(&client, &items, 1).await, [429]);
    let error = rules.reload().await.unwrap_err();
    assert_eq!((error.line(), error.column()), (3, 8), "{error}");
    // Fixed again, saved in place: in force again.
    file.write_in_place(&ITEMS.replace("3/min", "10/min"));
    wait_for(&rules, 3).await;
    assert_eq!(statuses(&client, &items, 1).await, [200]);
}

/// A Kubernetes ConfigMap volume: `rules.toml` is a link to
/// `..data/rules.toml`, and an update makes a new directory and swaps the
/// `..data` link to it. No event names `rules.toml`.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_update_is_seen() {
    use std::os::unix::fs::symlink;

    let _serial = WATCHING.lock().await;
    let file = TempRules::new("");
    let dir = file.0.parent().unwrap().to_path_buf();
    std::fs::remove_file(&file.0).unwrap();
    let version = |n: u32, text: &str| {
        let versioned = dir.join(format!("..2026_12_02_{n}"));
        std::fs::create_dir(&versioned).unwrap();
        std::fs::write(versioned.join("rules.toml"), text).unwrap();
        let link = dir.join("..data_tmp");
        symlink(versioned.file_name().unwrap(), &link).unwrap();
        std::fs::rename(&link, dir.join("..data")).unwrap();
    };
    version(1, ITEMS);
    symlink("..data/rules.toml", &file.0).unwrap();
    let rules = Rules::load(&file.0).await.unwrap();
    let _watch = rules.watch().unwrap();
    let server = serve(app(&rules, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let items = format!("{}/items/1", server.url);
    version(2, &ITEMS.replace("3/min", "1/min"));
    wait_for(&rules, 2).await;
    assert_eq!(statuses(&client, &items, 2).await, [200, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file() {
    let _serial = WATCHING.lock().await;
    let file = TempRules::new(ITEMS);
    let rules = Rules::load(&file.0).await.unwrap();
    // Changed before the watch begins: only the signal can bring it in.
    file.write(&ITEMS.replace("3/min", "1/min"));
    let _watch = rules.watch().unwrap();
    assert_eq!(rules.generation(), 1);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&rules, 2).await;
    let server = serve(app(&rules, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let items = format!("{}/items/1", server.url);
    assert_eq!(statuses(&client, &items, 2).await, [200, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_under_the_rules_they_started_with() {
    let _serial = WATCHING.lock().await;
    let file = TempRules::new(ITEMS);
    let rules = Rules::load(&file.0).await.unwrap();
    let server = serve(app(&rules, Duration::from_millis(500))).await;
    let client = reqwest::Client::new();
    let items = format!("{}/items/1", server.url);
    let in_flight = tokio::spawn({
        let (client, items) = (client.clone(), items.clone());
        async move { client.get(&items).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    file.write(
        &ITEMS
            .replace("throttles.items", "throttles.catalog")
            .replace("throttle = \"items\"", "throttle = \"catalog\""),
    );
    let reloaded = rules.reload().await.unwrap();
    assert!(
        reloaded
            .changes
            .iter()
            .any(|c| c.contains("\"items\" removed")),
        "{reloaded:?}"
    );
    // The request that started before the reload carries the old rules'
    // policy; one after it, the new one's.
    let old = in_flight.await.unwrap();
    assert_eq!(old.headers()["ratelimit-policy"], "\"items\";q=3;w=60");
    let new = client.get(&items).send().await.unwrap();
    assert_eq!(new.headers()["ratelimit-policy"], "\"catalog\";q=3;w=60");
}

#[tokio::test]
async fn a_reload_says_which_counters_it_kept() {
    let _serial = WATCHING.lock().await;
    let text = r#"
[throttles.counted]
rate = "10/min"
strategy = "sliding_window_counter"

[throttles.metered]
rate = "10/min"
strategy = "token_bucket"

[throttles.moved]
rate = "10/min"
"#;
    let file = TempRules::new(text);
    let rules = Rules::load(&file.0).await.unwrap();
    file.write(&text.replacen("10/min", "20/min", 2).replace(
        "rate = \"10/min\"\n",
        "rate = \"10/min\"\nnamespace = \"other\"\n",
    ));
    let reloaded = rules.reload().await.unwrap();
    let changes = reloaded.changes.join("\n");
    assert!(
        changes.contains("throttle \"counted\": rate 10/min → 20/min; counters kept"),
        "{changes}"
    );
    assert!(
        changes.contains("throttle \"metered\": rate 10/min → 20/min; counters start afresh"),
        "{changes}"
    );
    assert!(
        changes.contains("throttle \"moved\": namespace traffik → other; counters start afresh"),
        "{changes}"
    );
    // Unchanged: nothing to say.
    assert!(rules.reload().await.unwrap().changes.is_empty());
}

#[test]
fn the_shipped_schema_is_the_files_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rules.schema.json");
    let generated = Rules::schema();
    if std::env::var_os("TRAFFIK_WRITE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        shipped == generated,
        "rules.schema.json is out of date: run \
         TRAFFIK_WRITE_SCHEMA=1 cargo test -p traffik-axum --features config --test config"
    );
}

/// Every key the schema knows is in docs/configuration.md's reference, and
/// every key the reference lists is one the schema knows: the two cannot
/// drift.
#[test]
fn the_reference_documents_exactly_the_schemas_keys() {
    let schema: serde_json::Value = serde_json::from_str(&Rules::schema()).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    collect_keys(&schema, &mut keys);
    let docs = include_str!("../../docs/configuration.md");
    let reference = docs
        .split("<!-- reference:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- reference:end -->").next())
        .expect("docs/configuration.md has a reference section");
    let mut documented = std::collections::BTreeSet::new();
    for line in reference.lines().filter(|line| line.starts_with("| `")) {
        let key = line[3..].split('`').next().unwrap_or_default();
        let last = key.rsplit('.').next().unwrap_or(key);
        documented.insert(last.trim_end_matches("[]").to_owned());
    }
    let missing: Vec<_> = keys.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&keys).collect();
    assert!(missing.is_empty(), "not in the reference: {missing:?}");
    assert!(
        unknown.is_empty(),
        "in the reference, not in the schema: {unknown:?}"
    );
}

fn collect_keys(value: &serde_json::Value, keys: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                keys.extend(properties.keys().cloned());
            }
            for child in map.values() {
                collect_keys(child, keys);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                collect_keys(child, keys);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_demo_rules_are_valid() {
    let rules = Rules::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/rules.toml"
    ))
    .await
    .unwrap();
    assert_eq!(rules.throttles(), ["global", "items", "login"]);
}

#[tokio::test]
async fn a_fallback_policy_with_its_share_is_accepted() {
    let text =
        "[throttles.api]\nrate = \"10/s\"\nfailure_policy = \"fallback\"\nfallback_instances = 4\n";
    let rules = Rules::from_toml(text, "inline").await.unwrap();
    assert_eq!(rules.throttles(), ["api"]);
    let unknown = "[throttles.api]\nrate = \"10/s\"\nfailure_policy = \"fallbak\"\n";
    let error = Rules::from_toml(unknown, "inline").await.unwrap_err();
    assert_eq!((error.line(), error.column()), (3, 18), "{error}");
}

/// An operator's peek, reset, block and unblock act on the very keys real
/// requests use (the client, then the route template).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_peeks_resets_blocks_and_unblocks_the_keys_requests_use() {
    use traffik_axum::config::Client;
    use traffik_core::ErrorKind;

    let text = r#"
[throttles.global]
rate = "100/min"

[throttles.items]
rate = "3/min"
strategy = "sliding_window_log"
penalty = { steps = ["1m"] }

[[rules]]
throttle = "global"
scope = "global"

[[rules]]
throttle = "items"
paths = ["/items/*"]
"#;
    let rules = Rules::from_toml(text, "inline").await.unwrap();
    let server = serve(app(&rules, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let items_url = format!("{}/items/1", server.url);
    assert_eq!(statuses(&client, &items_url, 2).await, [200, 200]);

    let items = rules.admin("items").unwrap();
    let me = items
        .key(&Client::named("127.0.0.1").route("/items/{id}"))
        .unwrap();
    let status = items.peek(&me).await.unwrap();
    assert_eq!((status.limit, status.remaining), (3, 1), "{status:?}");
    assert_eq!((status.blocked_for, status.offences), (None, Some(0)));
    let global = rules.admin("global").unwrap();
    let everywhere = global.key(&Client::named("127.0.0.1")).unwrap();
    assert_eq!(global.peek(&everywhere).await.unwrap().remaining, 98);

    // Reset: the whole budget again, as the next requests see.
    items.reset(&me).await.unwrap();
    assert_eq!(items.peek(&me).await.unwrap().remaining, 3);
    assert_eq!(statuses(&client, &items_url, 3).await, [200, 200, 200]);

    // Block for ten minutes: denied with the block's wait; unblocked and
    // reset, admitted again.
    items.block(&me, Duration::from_secs(600)).await.unwrap();
    let denied = client.get(&items_url).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.headers()["retry-after"], "600");
    // Real time: a few milliseconds may have gone since the block.
    let left = items.peek(&me).await.unwrap().blocked_for.unwrap();
    assert!(
        left <= Duration::from_secs(600) && left > Duration::from_secs(599),
        "{left:?}"
    );
    items.unblock(&me).await.unwrap();
    items.reset(&me).await.unwrap();
    assert_eq!(statuses(&client, &items_url, 1).await, [200]);

    // What cannot be a key of these throttles says why.
    let refused = [
        items.key(&Client::named("127.0.0.1")).unwrap_err(),
        global
            .key(&Client::named("127.0.0.1").route("/items/{id}"))
            .unwrap_err(),
        items
            .key(&Client::named("alice").route("/items/{id}"))
            .unwrap_err(),
        global
            .block(&everywhere, Duration::from_secs(1))
            .await
            .unwrap_err(),
        rules.admin("nope").unwrap_err(),
    ];
    for (error, says) in refused.iter().zip([
        "keyed per route",
        "keyed by the client alone",
        "is not one",
        "has no penalty",
        "the rules define global, items",
    ]) {
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains(says), "{error}");
    }
}

/// A tier for an IP address, written as the reference writes it
/// (`"ip:127.0.0.1"`), applies to requests from that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_for_an_ipv4_address_applies_to_it() {
    let text = r#"
[throttles.items]
rate = "100/min"
strategy = "sliding_window_log"

[[rules]]
throttle = "items"
paths = ["/items/*"]
limits = { "ip:127.0.0.1" = "1/min" }
"#;
    let rules = Rules::from_toml(text, "inline").await.unwrap();
    let server = serve(app(&rules, Duration::ZERO)).await;
    let client = reqwest::Client::new();
    let items = format!("{}/items/1", server.url);
    assert_eq!(statuses(&client, &items, 2).await, [200, 429]);
}
