//! The `traffik` binary, run as a user runs it: against a real Redis that
//! an application's layer shares, with its exit codes, and replaying logs.

#[path = "../../traffik-backends/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use axum::Router;
use axum::routing::post;
use support::{MemcachedServer, RedisServer};
use traffik_axum::config::Rules;

fn traffik(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_traffik"))
        .args(args)
        .output()
        .expect("run traffik")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn login_rules(url: &str) -> String {
    format!(
        r#"
[backends]
shared = "{url}"

[throttles.login]
rate = "3/15min"
strategy = "sliding_window_log"
penalty = {{ steps = ["1m"] }}

[[rules]]
throttle = "login"
paths = ["/login"]
"#
    )
}

/// An operator blocks, inspects and unblocks a client from the command
/// line; an application serving the same rules on the same Redis sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_blocks_and_unblocks_a_client_the_application_then_sees() {
    let redis = RedisServer::start();
    operator_round_trip(&redis.url()).await;
}

/// The same on Memcached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_blocks_and_unblocks_a_client_on_memcached_too() {
    let memcached = MemcachedServer::start();
    operator_round_trip(&memcached.url()).await;
}

async fn operator_round_trip(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = write(dir.path(), "rules.toml", &login_rules(store));
    let rules = Rules::load(&rules_path).await.unwrap();
    let app = Router::new()
        .route("/login", post(|| async { "welcome" }))
        .layer(rules.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/login", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let http = reqwest::Client::new();
    assert_eq!(http.post(&url).send().await.unwrap().status(), 200);

    let on_login = [
        "--rules",
        &rules_path,
        "--throttle",
        "login",
        "--route",
        "/login",
    ];
    let run = |command: &str, extra: &[&str]| {
        let mut args = vec![command];
        args.extend_from_slice(&on_login);
        args.extend_from_slice(extra);
        args.push("127.0.0.1");
        tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
            move || traffik(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let peeked = run("peek", &["--json"]).await.unwrap();
    assert!(peeked.status.success(), "{}", stderr(&peeked));
    let json: serde_json::Value = serde_json::from_slice(&peeked.stdout).unwrap();
    assert_eq!(json["limit"], 3);
    assert_eq!(json["remaining"], 2, "{json}");
    assert_eq!(json["key"], "ip:127.0.0.1|r:/login");
    assert_eq!(json["blocked_for_ms"], serde_json::Value::Null);

    let blocked = run("block", &["--for", "10m"]).await.unwrap();
    assert!(blocked.status.success(), "{}", stderr(&blocked));
    let table = stdout(&blocked);
    assert!(table.contains("blocked for  10m\n"), "{table}");
    let denied = http.post(&url).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.headers()["retry-after"], "600");

    let unblocked = run("unblock", &[]).await.unwrap();
    assert!(unblocked.status.success(), "{}", stderr(&unblocked));
    assert!(stdout(&unblocked).contains("not blocked"));
    let reset = run("reset", &["--json"]).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    assert_eq!(json["remaining"], 3, "{json}");
    assert_eq!(http.post(&url).send().await.unwrap().status(), 200);
}

#[test]
fn failures_have_their_own_exit_codes_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules.toml", &login_rules("memory://"));
    let broken = write(
        dir.path(),
        "broken.toml",
        "[throttles.x]\nrate = \"2/1Os\"\n",
    );
    let unreachable = write(dir.path(), "far.toml", &login_rules("redis://127.0.0.1:1"));
    let cases: [(&[&str], i32, &str); 8] = [
        (
            &["peek", "--rules", &rules, "--throttle", "nope", "1.2.3.4"],
            5,
            "defines login",
        ),
        (
            &["peek", "--rules", &broken, "--throttle", "x", "1.2.3.4"],
            3,
            "broken.toml:2:8",
        ),
        (
            &[
                "peek",
                "--rules",
                &rules,
                "--backend",
                "ftp://x",
                "--throttle",
                "login",
                "1.2.3.4",
            ],
            3,
            "backend",
        ),
        (
            &[
                "peek",
                "--rules",
                &unreachable,
                "--throttle",
                "login",
                "--route",
                "/login",
                "1.2.3.4",
            ],
            4,
            "store",
        ),
        (
            &["peek", "--rules", &rules, "--throttle", "login", "1.2.3.4"],
            2,
            "keyed per route",
        ),
        (
            &[
                "peek",
                "--rules",
                &rules,
                "--throttle",
                "login",
                "--route",
                "/login",
                "alice",
            ],
            2,
            "is not one",
        ),
        (&["peek", "--throttle", "login", "alice"], 2, "--rules"),
        (
            &["hot", "--backend", "redis://127.0.0.1:6379"],
            2,
            "cannot list",
        ),
    ];
    for (args, code, says) in cases {
        let output = traffik(args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// A throttle defined by flags, keyed by the identity as code passes it.
#[test]
fn flags_define_a_throttle_as_code_does() {
    let output = traffik(&[
        "peek",
        "--backend",
        "memory://",
        "--throttle",
        "login",
        "--rate",
        "5/15min",
        "--json",
        "alice@example.com",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (json["limit"].as_u64(), json["remaining"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(json["key"], "alice@example.com");
}

/// A log whose answer is known line by line: one client posts 8 failed
/// logins in a minute against 5 a minute (3 denied), another 2 (none), and
/// a shadow rule would deny the first client's sixth to eighth search.
#[test]
fn replay_counts_what_each_rule_would_have_denied() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.toml",
        r#"
[throttles.login]
rate = "5/min"
strategy = "fixed_window"

[throttles.search]
rate = "5/min"
strategy = "fixed_window"
shadow = true

[[rules]]
throttle = "login"
methods = ["POST"]
paths = ["/login"]

[[rules]]
throttle = "search"
paths = ["/search"]
"#,
    );
    let mut log = String::new();
    for n in 0..8 {
        log.push_str(&format!(
            "198.51.100.66 - - [30/Nov/2026:10:00:{n:02} +0000] \"POST /login HTTP/1.1\" 401 0 \"-\" \"-\"\n"
        ));
        log.push_str(&format!(
            "{{\"time\": \"2026-11-30T10:00:{n:02}Z\", \"remote_addr\": \"198.51.100.66\", \"method\": \"GET\", \"path\": \"/search?q={n}\", \"status\": 200}}\n"
        ));
    }
    for n in 0..2 {
        log.push_str(&format!(
            "203.0.113.7 - - [30/Nov/2026:10:01:{n:02} +0000] \"POST /login HTTP/1.1\" 200 0 \"-\" \"-\"\n"
        ));
    }
    log.push_str("garbage\n");
    let log_path = write(dir.path(), "access.log", &log);
    let plot = dir.path().join("replay.svg");
    let output = traffik(&[
        "replay",
        "--rules",
        &rules,
        "--route",
        "/login",
        "--route",
        "/search",
        "--json",
        "--plot",
        &plot.display().to_string(),
        &log_path,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["lines"], 19);
    assert_eq!(json["skipped"]["no address"], 1);
    assert_eq!(json["rejected"], 3, "{json}");
    let rule = |name: &str| {
        json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["throttle"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no rule {name} in {json}"))
    };
    let login = rule("login");
    assert_eq!(
        (&login["decided"], &login["allowed"], &login["denied"]),
        (&10.into(), &7.into(), &3.into())
    );
    assert_eq!(login["top_denied"][0]["identity"], "198.51.100.66");
    assert_eq!(login["top_denied"][0]["denied"], 3);
    let search = rule("search");
    assert_eq!(
        (&search["denied"], &search["shadow_denied"]),
        (&0.into(), &3.into())
    );
    // Per minute: 10:00 holds the first client's denials, 10:01 none.
    let minutes = json["minutes"].as_object().unwrap();
    assert_eq!(minutes.len(), 2);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("login") && svg.contains("search"));

    let human = traffik(&["replay", "--rules", &rules, &log_path]);
    let text = stdout(&human);
    assert!(text.contains("replayed 19 lines"), "{text}");
    assert!(
        text.contains("skipped 1 unreadable lines (the first, line 19: no address)"),
        "{text}"
    );
}

/// A day's sample log replays, and its attacker comes out on top.
#[test]
fn a_sample_day_names_its_attackers() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(dir.path(), "day.log", &traffik_cli::sample::day(50_000, 7));
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/rules.toml");
    let output = traffik(&[
        "replay",
        "--rules",
        rules,
        "--route",
        "/items/{id}",
        "--route",
        "/login",
        "--json",
        &log,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let top = |name: &str| {
        json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["throttle"] == name)
            .map(|r| r["top_denied"][0]["identity"].clone())
    };
    assert_eq!(top("login"), Some("198.51.100.66".into()), "{json}");
    assert_eq!(top("items"), Some("192.0.2.200".into()), "{json}");
}

/// A hostile log: a line of a megabyte, bytes that are not UTF-8, a last
/// line without a newline. Each is counted, none stops the replay, and the
/// good lines around them are read.
#[test]
fn replay_survives_huge_and_broken_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "rules.toml",
        "[throttles.all]\nrate = \"1/min\"\n\n[[rules]]\nthrottle = \"all\"\nscope = \"global\"\n",
    );
    let good =
        "198.51.100.66 - - [30/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 0 \"-\" \"-\"";
    let mut log = Vec::new();
    log.extend_from_slice(format!("{good}\n").as_bytes());
    log.extend(std::iter::repeat_n(b'x', 1 << 20));
    log.push(b'\n');
    log.extend_from_slice(b"\xff\xfe not text\n");
    log.extend_from_slice(good.as_bytes());
    let path = dir.path().join("hostile.log");
    std::fs::write(&path, &log).unwrap();
    let output = traffik(&[
        "replay",
        "--rules",
        &rules,
        "--json",
        &path.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["lines"], 4, "{json}");
    assert_eq!(json["skipped"]["line too long"], 1, "{json}");
    assert_eq!(json["skipped"]["not UTF-8"], 1, "{json}");
    assert_eq!(json["rules"][0]["decided"], 2, "{json}");
    assert_eq!(json["rules"][0]["denied"], 1, "{json}");
}

/// A block made by flags on a throttle code defines is the block that
/// code's lockout finds, on a real Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_by_flags_is_seen_by_the_codes_lockout() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "block",
        "--backend",
        &url,
        "--throttle",
        "login",
        "--rate",
        "5/15min",
        "--for",
        "10m",
        "--json",
        "alice@example.com",
    ]
    .map(str::to_owned);
    let output = tokio::task::spawn_blocking(move || {
        traffik(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["key"], "alice@example.com");
    assert!(
        json["blocked_for_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 599_000),
        "{json}"
    );
    let store = traffik_backends::AnyBackend::from_url(&url).await.unwrap();
    let lockout = traffik_core::Throttle::builder("login", "5/15min".parse().unwrap())
        .build(store)
        .unwrap()
        .penalized(traffik_core::Penalty::fixed(std::time::Duration::from_secs(60)).unwrap())
        .unwrap();
    let blocked = lockout.blocked("alice@example.com").await.unwrap();
    assert!(blocked.is_some_and(|denial| denial.retry_after_ms() > 599_000));
    assert_eq!(lockout.blocked("bob@example.com").await.unwrap(), None);
}
