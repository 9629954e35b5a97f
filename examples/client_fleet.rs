//! Run with `cargo run -p traffik-examples --example client_fleet` (needs
//! `redis-server` on the PATH, or `REDIS_URL` pointing at a Redis).
//!
//! Three client processes call one upstream limited at 10/s, each through
//! traffik-client with a limit of 10/s shared in Redis: together they stay
//! within it, and none gets a 429.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use traffik_backends::AnyBackend;
use traffik_client::StackBuilder;
use traffik_client::limit::Limiter;
use traffik_client::reqwest::Client;
use traffik_core::Gcra;
use traffik_examples::upstream;

const PROCESSES: usize = 3;
const CALLS: usize = 20;

/// A Redis for the example: `REDIS_URL`, or a `redis-server` started on a
/// free port (killed when dropped).
struct Redis {
    url: String,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Result<Redis, Box<dyn std::error::Error>> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Ok(Redis { url, child: None });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("start redis-server ({e}): install it (apt-get install -y redis-server) or set REDIS_URL"))?;
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Redis {
            url: format!("redis://127.0.0.1:{port}"),
            child: Some(child),
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One client process: `CALLS` concurrent calls through the shared limit.
async fn worker(redis: &str, url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let limiter = Limiter::builder("fleet", "10/s".parse()?)
        .strategy(Gcra::with_burst(2.try_into()?))
        .backend(AnyBackend::from_url(redis).await?)
        .build()?;
    let client = Client::new(reqwest::Client::new(), StackBuilder::new().limiter(limiter));
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut ok = 0;
    for call in calls {
        ok += usize::from(matches!(call.await?, Ok(200)));
    }
    println!("ok={ok}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, redis, url] = args.as_slice() {
        if flag == "--worker" {
            return worker(redis, url).await;
        }
    }
    let redis = Redis::start()?;
    let api = upstream::start("10/s").await;
    println!(
        "{PROCESSES} processes × {CALLS} calls, one limit of 10/s in Redis ({}), an upstream at 10/s\n",
        redis.url
    );
    let exe = std::env::current_exe()?;
    let workers = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--worker", &redis.url, &api.url("/data")])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(Child::wait_with_output)
            .collect::<Result<Vec<_>, _>>()
    })
    .await??;
    for (i, output) in outputs.iter().enumerate() {
        println!(
            "  process {}: {}",
            i + 1,
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    let (rate, busiest) = api.data_rate(2);
    println!(
        "\n  the upstream saw {} calls at {rate:.2}/s beyond the burst of 2 (at most {busiest} in any second), {} × 429",
        api.seen.data.lock().len(),
        api.seen.throttled.load(Ordering::Relaxed)
    );
    Ok(())
}
