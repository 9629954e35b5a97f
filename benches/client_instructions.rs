//! Instructions per call on the client's side, for callgrind:
//! `valgrind --tool=callgrind target/release/client-instructions
//! <bare|limit|full> N` with N = 200 and 400; the difference of the
//! program's totals over the difference of N is one call (a GET to a local
//! server in a child process, which callgrind does not follow, over a
//! kept-alive connection; all of the client's runtime on one thread).
//! Whole-program totals, not `--toggle-collect`: the client's work runs in
//! tasks a toggle on one function does not reliably cover.

use std::hint::black_box;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use traffik_benches::upstream;
use traffik_client::StackBuilder;
use traffik_client::breaker::Breaker;
use traffik_client::coalesce::Coalesce;
use traffik_client::limit::Limiter;
use traffik_client::reqwest::Client;
use traffik_client::retry::{RetryBudget, RetryPolicy};

enum Caller {
    Bare(reqwest::Client),
    Stack(Client),
}

impl Caller {
    async fn call(&self, url: &str) {
        let response = match self {
            Caller::Bare(http) => http.get(url).send().await.unwrap(),
            Caller::Stack(client) => client.get(url).send().await.unwrap(),
        };
        black_box(response.bytes().await.unwrap());
    }
}

#[inline(never)]
fn measured(runtime: &tokio::runtime::Runtime, caller: &Caller, url: &str, n: u64) {
    runtime.block_on(async {
        for _ in 0..n {
            caller.call(url).await;
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().expect("bare, limit, full or serve");
    if variant == "serve" {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let upstream = upstream::start("1000000000/min").await;
            println!("{}", upstream.url("/free"));
            std::future::pending::<()>().await;
        });
        return;
    }
    let n: u64 = args.next().expect("N").parse().expect("a number");
    let mut server = Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server process");
    let mut url = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let limiter = || {
        Limiter::builder("overhead", "1000000000/min".parse().unwrap())
            .build()
            .unwrap()
    };
    let caller = runtime.block_on(async {
        match variant.as_str() {
            "bare" => Caller::Bare(http),
            "limit" => Caller::Stack(Client::new(http, StackBuilder::new().limiter(limiter()))),
            _ => Caller::Stack(Client::new(
                http,
                StackBuilder::new()
                    .coalesce(Coalesce::new("overhead"))
                    .breaker(Breaker::builder("overhead").build().unwrap())
                    .limiter(limiter())
                    .retry(RetryPolicy::new())
                    .retry_budget(RetryBudget::builder("overhead").build().unwrap())
                    .attempt_timeout(Duration::from_secs(5))
                    .total_timeout(Duration::from_secs(10)),
            )),
        }
    });
    measured(&runtime, &caller, &url, 10);
    measured(&runtime, &caller, &url, n);
    let _ = server.kill();
    let _ = server.wait();
}
