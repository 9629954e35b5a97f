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

use traffik_benches::{client_stacks, upstream};
use traffik_client::reqwest::Client;

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
    // Built inside the runtime, as an application would.
    let caller = runtime.block_on(async {
        match variant.as_str() {
            "bare" => Caller::Bare(http),
            "limit" => Caller::Stack(client_stacks::limited(http)),
            _ => Caller::Stack(client_stacks::full(http)),
        }
    });
    measured(&runtime, &caller, &url, 10);
    measured(&runtime, &caller, &url, n);
    let _ = server.kill();
    let _ = server.wait();
}
