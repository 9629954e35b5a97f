//! Real servers for the tests: each started on free loopback ports in its
//! own temporary directory, and stopped (killed) when dropped.
//!
//! A missing server binary fails the test with the command that installs it.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to get the binaries this module starts.
const INSTALL: &str = "run scripts/setup.sh, or: apt-get install -y redis-server memcached";

fn require(binary: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{binary}` is not installed, and this test needs a real one: {INSTALL}")
    })
}

/// A port nothing listens on now (and, for cluster nodes, whose bus port
/// `port + 10000` is free too).
pub(crate) fn free_port(with_bus: bool) -> u16 {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} on port {port} exited at start: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what} did not listen on port {port} within 10 s");
}

fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("traffik-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// One `redis-server` process.
pub(crate) struct RedisServer {
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(free_port(false), Vec::new())
    }

    /// A server with extra `redis-server` arguments.
    pub(crate) fn start_with_args(extra: &[&str]) -> RedisServer {
        RedisServer::start_with(
            free_port(false),
            extra.iter().map(|s| (*s).to_owned()).collect(),
        )
    }

    /// The server's temporary directory (for a unix socket, say).
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn start_with(port: u16, extra: Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            port,
            child: None,
            dir: temp_dir(&format!("redis-{port}")),
            extra,
        };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (like a crash: no shutdown, no save).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut child = Command::new(require("redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}; {INSTALL}"));
        wait_for_port(self.port, &mut child, "redis-server");
        self.child = Some(child);
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new(require("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running redis-cli: {e}; {INSTALL}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Redis Cluster of three masters, joined with `redis-cli --cluster create`.
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub(crate) fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let port = free_port(true);
                let extra = vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{port}.conf"),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                ];
                RedisServer::start_with(port, extra)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let output = Command::new(require("redis-cli"))
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("running redis-cli --cluster create: {e}; {INSTALL}"));
        assert!(
            output.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        // Wait until every node sees the whole cluster.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while !node.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// One `memcached` process.
pub(crate) struct MemcachedServer {
    pub(crate) port: u16,
    pub(crate) child: Option<Child>,
}

impl MemcachedServer {
    pub(crate) fn start() -> MemcachedServer {
        MemcachedServer::start_on(free_port(false))
    }

    pub(crate) fn start_on(port: u16) -> MemcachedServer {
        let mut server = MemcachedServer { port, child: None };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port)
    }

    /// Kills the process (like a crash).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port (empty, as after a crash).
    pub(crate) fn restart(&mut self) {
        self.kill();
        let mut command = Command::new(require("memcached"));
        command.args([
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-m",
            "64",
            "-t",
            "2",
        ]);
        // Run as root, memcached wants to be told which user to be; as
        // anyone else it ignores this.
        command.args(["-u", "root"]);
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting memcached: {e}; {INSTALL}"));
        wait_for_port(self.port, &mut child, "memcached");
        self.child = Some(child);
    }

    /// A statistic from `stats`, over a raw connection.
    pub(crate) fn stat(&self, name: &str) -> u64 {
        use std::io::{BufRead, BufReader, Write};
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to memcached");
        stream.write_all(b"stats\r\n").expect("send stats");
        let reader = BufReader::new(stream);
        for line in reader.lines() {
            let line = line.expect("read stats");
            if line == "END" {
                break;
            }
            let mut words = line.split(' ');
            if words.next() == Some("STAT") && words.next() == Some(name) {
                return words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        panic!("memcached has no statistic {name}");
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the ignored test `worker` of this test binary in four OS processes,
/// for `kind` against `url`, and returns how many hits they admitted in all.
pub(crate) fn admitted_by_four_processes(
    worker: &str,
    url: &str,
    kind: traffik_core::StrategyKind,
) -> u64 {
    let exe = std::env::current_exe().expect("the test binary");
    let workers: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    worker,
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("TRAFFIK_WORKER_URL", url)
                .env("TRAFFIK_WORKER_STRATEGY", kind.as_str())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .collect();
    workers
        .into_iter()
        .map(|worker| {
            let output = worker.wait_with_output().expect("a worker process");
            assert!(output.status.success(), "a worker process failed");
            let text = String::from_utf8_lossy(&output.stdout);
            let count = text
                .lines()
                .find_map(|l| l.split("admitted=").nth(1))
                .expect("the worker printed no count");
            count.trim().parse::<u64>().expect("a count")
        })
        .sum()
}

/// The worker's side: 32 concurrent tasks hit one key four times each
/// through the throttle `make` builds for the parent's URL and strategy,
/// and the count admitted is printed for the parent.
pub(crate) fn work<B>(
    make: impl FnOnce(
        &str,
        traffik_core::StrategyKind,
    ) -> traffik_core::Throttle<B, traffik_core::ManualClock>,
) where
    B: traffik_core::Backend + Clone,
{
    let (url, strategy) = worker_setup();
    let throttle = make(&url, strategy.kind());
    report_admitted(move || {
        let throttle = throttle.clone();
        async move {
            throttle
                .hit("one-key")
                .await
                .expect("a decision")
                .is_allowed()
        }
    });
}

/// The parent's URL and strategy, as a worker process reads them.
fn worker_setup() -> (String, traffik_core::AnyStrategy) {
    let url = std::env::var("TRAFFIK_WORKER_URL")
        .expect("TRAFFIK_WORKER_URL: run by a test across processes");
    let strategy = std::env::var("TRAFFIK_WORKER_STRATEGY")
        .expect("TRAFFIK_WORKER_STRATEGY")
        .parse()
        .expect("a strategy");
    (url, strategy)
}

/// 32 concurrent tasks make four requests each with `request` (whether it
/// was admitted), on a runtime of four threads; the count admitted is
/// printed for the parent.
fn report_admitted<F, Fut>(request: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let admitted = runtime.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let requests: Vec<Fut> = (0..4).map(|_| request()).collect();
                tokio::spawn(async move {
                    let mut admitted = 0u64;
                    for request in requests {
                        admitted += u64::from(request.await);
                    }
                    admitted
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.expect("a task");
        }
        total
    });
    println!("\nadmitted={admitted}");
}

/// The throttles of the group workers: a loose "50/min" of the parent's
/// strategy and a tight "10/s" fixed window, on `backend`, at one fixed
/// time in every process.
pub(crate) fn group_throttles<B: traffik_core::Backend + Clone>(
    backend: &B,
    kind: traffik_core::StrategyKind,
) -> (
    traffik_core::Throttle<B, traffik_core::ManualClock>,
    traffik_core::Throttle<B, traffik_core::ManualClock>,
) {
    let clock = traffik_core::ManualClock::new(traffik_backends::conformance::START_MS);
    let make = |name: String, rate: &str, strategy: traffik_core::AnyStrategy| {
        traffik_core::Throttle::builder(name, rate.parse().expect("a rate"))
            .namespace("across")
            .strategy(strategy)
            .failure_policy(traffik_core::FailurePolicy::Error)
            .clock(clock.clone())
            .build(backend.clone())
            .expect("a throttle")
    };
    (
        make(format!("minute-{kind}"), "50/min", kind.into()),
        make(
            format!("second-{kind}"),
            "10/s",
            traffik_core::FixedWindow.into(),
        ),
    )
}

/// The worker's side for groups: 32 concurrent tasks hit one client's
/// group of `group_throttles` four times each; the count admitted is
/// printed for the parent.
pub(crate) fn work_group<B>(make: impl FnOnce(&str) -> B)
where
    B: traffik_core::Backend + Clone,
{
    let (url, strategy) = worker_setup();
    let backend = make(&url);
    let (minute, second) = group_throttles(&backend, strategy.kind());
    let group = traffik_core::ThrottleGroup::new([minute, second]).expect("a group");
    report_admitted(move || {
        let group = group.clone();
        async move {
            group
                .hit("group-key")
                .await
                .expect("decisions")
                .is_allowed()
        }
    });
}

/// Across four processes, how much of the loose limit of `group_throttles`
/// was charged (its capacity less what a peek shows unspent).
pub(crate) async fn group_charged<B: traffik_core::Backend + Clone>(
    backend: &B,
    kind: traffik_core::StrategyKind,
) -> u64 {
    let (minute, _) = group_throttles(backend, kind);
    let left = minute.peek("group-key").await.expect("a peek");
    let capacity = minute.limit().capacity();
    capacity - left.remaining() - u64::from(left.is_allowed())
}

/// Sends `signal` (`STOP`, `CONT`, …) to a process, with `kill`.
fn send_signal(child: Option<&Child>, signal: &str) {
    let Some(child) = child else {
        panic!("no process to send SIG{signal} to");
    };
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// A server process a test can crash, hang and start again.
pub(crate) trait Restartable {
    /// `kill -9`: gone at once, like a crash.
    fn kill(&mut self);
    /// Starts it again on the same port.
    fn restart(&mut self);
    /// `SIGSTOP`: hung, its connections open but silent.
    fn pause(&mut self);
    /// `SIGCONT`.
    fn resume(&mut self);
}

impl Restartable for RedisServer {
    fn kill(&mut self) {
        RedisServer::kill(self);
    }
    fn restart(&mut self) {
        RedisServer::restart(self);
    }
    fn pause(&mut self) {
        send_signal(self.child.as_ref(), "STOP");
    }
    fn resume(&mut self) {
        send_signal(self.child.as_ref(), "CONT");
    }
}

impl Restartable for MemcachedServer {
    fn kill(&mut self) {
        MemcachedServer::kill(self);
    }
    fn restart(&mut self) {
        MemcachedServer::restart(self);
    }
    fn pause(&mut self) {
        send_signal(self.child.as_ref(), "STOP");
    }
    fn resume(&mut self) {
        send_signal(self.child.as_ref(), "CONT");
    }
}

/// A Redis master, one replica and three sentinels watching them as
/// `traffik`, each a real `redis-server` process (`--sentinel` for the
/// sentinels).
pub(crate) struct RedisSentinels {
    pub(crate) master: RedisServer,
    pub(crate) replica: RedisServer,
    pub(crate) sentinels: Vec<RedisServer>,
}

impl RedisSentinels {
    pub(crate) fn start() -> RedisSentinels {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port(false);
                let dir = temp_dir(&format!("sentinel-{port}"));
                let conf = dir.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\nsentinel monitor traffik 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds traffik 1000\n\
                         sentinel failover-timeout traffik 3000\n",
                        master.port
                    ),
                )
                .expect("write a sentinel's config");
                let mut server = RedisServer {
                    port,
                    child: None,
                    dir,
                    extra: Vec::new(),
                };
                let mut child = Command::new(require("redis-server"))
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting redis-server --sentinel: {e}; {INSTALL}"));
                wait_for_port(port, &mut child, "redis-server --sentinel");
                server.child = Some(child);
                server
            })
            .collect::<Vec<_>>();
        let set = RedisSentinels {
            master,
            replica,
            sentinels,
        };
        // Wait until the replica is in sync and every sentinel knows both.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !set
            .replica
            .cli(&["info", "replication"])
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        for sentinel in &set.sentinels {
            while !sentinel
                .cli(&["sentinel", "replicas", "traffik"])
                .contains(&set.replica.port.to_string())
            {
                assert!(
                    Instant::now() < deadline,
                    "a sentinel did not see the replica"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        set
    }

    /// `redis+sentinel://…/traffik`.
    pub(crate) fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/traffik", hosts.join(","))
    }

    /// The port of the master the sentinels name now.
    pub(crate) fn master_port(&self) -> u16 {
        let said = self.sentinels[0].cli(&["sentinel", "get-master-addr-by-name", "traffik"]);
        said.lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("no master address in {said:?}"))
    }
}

/// Crashes `server` under a throttle with `FailurePolicy::Deny` on a backend
/// with short timeouts: every decision meanwhile must fail fast and be a
/// policy denial; once the server is back, decisions must resume with no
/// restart of the backend.
pub(crate) async fn outage<B: traffik_core::Backend>(server: &mut impl Restartable, backend: B) {
    use traffik_core::{FailurePolicy, Gcra, Reason, Throttle};
    let throttle = Throttle::builder("faults", "1000/min".parse().expect("a rate"))
        .strategy(Gcra::new())
        .failure_policy(FailurePolicy::Deny)
        .build(backend)
        .expect("a throttle");
    let hit = || async { throttle.hit("k").await.expect("the policy decides") };
    assert_eq!(hit().await.reason(), Reason::WithinLimit);

    server.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let decision = hit().await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(decision.reason(), Reason::BackendFailure);
        assert!(!decision.is_allowed());
    }
    assert!(throttle.failures() >= 5);

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hit().await.reason() != Reason::WithinLimit {
        assert!(
            Instant::now() < deadline,
            "decisions did not resume after the server came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
