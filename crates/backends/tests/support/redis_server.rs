//! Redis servers for the tests, and the conformance [`Harness`].
//!
//! * `STOWAGE_TEST_REDIS_URL` set: every test uses that server (under its
//!   own key prefix; nothing is ever flushed).
//! * Otherwise a private `redis-server --port <free> --save '' --appendonly no`
//!   is started on loopback, once per test binary, and stopped when the
//!   binary exits (it runs under a `sh` watchdog that kills it when our
//!   stdin pipe closes, so even a killed test binary leaves nothing behind).
//! * Otherwise the tests fail loudly, naming both options.
//!
//! [`cluster`] starts a real 3-node Redis Cluster on loopback ports the
//! same way (`redis-server --cluster-enabled yes` ×3 + `redis-cli --cluster create`).
//!
//! [`tls::spawn_tls`] starts a private TLS-only server with a throwaway CA
//! (`redis_tls_server.rs`).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Result, StoreEnv, Stores};

const HELP: &str =
    "the Redis tests need a server: set STOWAGE_TEST_REDIS_URL=redis://host:port/db \
(a server the tests may write to under unique key prefixes; nothing is flushed), \
or install redis-server (e.g. `apt-get install redis-server`) so the tests can start a private one";

/// A redis-server process kept alive by an open stdin pipe.
pub struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    dir: Option<PathBuf>,
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    l.local_addr().expect("local addr").port()
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Starts `redis-server` with `args` on a free loopback port; an argument
/// `{free_port}` stands for another free port (a cluster bus port).
///
/// A port found free may be taken by someone else before the server binds
/// it (it then exits at once, and another server answers on the port): a
/// server that exits, or does not itself listen and answer within
/// [`ATTEMPT`], is stopped and started again on fresh ports.
pub fn spawn(extra: &[&str], dir: Option<PathBuf>) -> Process {
    for _ in 0..ATTEMPTS {
        let port = free_port();
        let port_s = port.to_string();
        let extra: Vec<String> = extra
            .iter()
            .map(|a| match *a {
                "{free_port}" => free_port().to_string(),
                a => a.to_owned(),
            })
            .collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        if let Some(d) = &dir {
            // A stopped attempt removed it.
            std::fs::create_dir_all(d).expect("create the server's directory");
        }
        if let Some(process) = launch(port, &["--port", &port_s], &extra, dir.clone(), ping) {
            return process;
        }
    }
    panic!(
        "redis-server did not answer on {ATTEMPTS} fresh ports within {} s each; {HELP}",
        ATTEMPT.as_secs()
    );
}

/// How long a starting server may take to answer (a loaded CI machine).
const ATTEMPT: Duration = Duration::from_secs(20);
/// How many fresh ports [`spawn`] tries.
const ATTEMPTS: usize = 3;

/// Starts `redis-server` with `args` on `port` (e.g. to restart a server
/// on the port its clients know).
pub fn spawn_on(port: u16, extra: &[&str]) -> Process {
    let port_s = port.to_string();
    launch(port, &["--port", &port_s], extra, None, ping).unwrap_or_else(|| {
        panic!(
            "redis-server on port {port} did not answer within {} s; {HELP}",
            ATTEMPT.as_secs()
        )
    })
}

/// A free loopback port (for [`spawn_on`]).
pub fn any_free_port() -> u16 {
    free_port()
}

/// Starts `redis-server` listening on `port` as `port_args` say, and waits
/// until that process holds the listening socket and `ready(port)`; `None`
/// (the server stopped) if it exits or is not ready within [`ATTEMPT`].
fn launch(
    port: u16,
    port_args: &[&str],
    extra: &[&str],
    dir: Option<PathBuf>,
    ready: fn(u16) -> bool,
) -> Option<Process> {
    let mut args = port_args.to_vec();
    args.extend_from_slice(&["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    args.extend_from_slice(extra);
    let mut cmd = Command::new("sh");
    // The watchdog prints the server's pid, then waits for our stdin to close.
    cmd.arg("-c")
        .arg("redis-server \"$@\" >/dev/null 2>&1 & pid=$!; echo $pid; read _ignored; kill $pid; wait $pid; if [ -n \"$STOWAGE_RM_DIR\" ]; then rm -rf \"$STOWAGE_RM_DIR\"; fi")
        .arg("sh")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(d) = &dir {
        cmd.current_dir(d).env("STOWAGE_RM_DIR", d);
    }
    let probe = Command::new("redis-server").arg("--version").output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        panic!("{HELP}");
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{HELP}: {e}"));
    let stdin = child.stdin.take();
    let mut pid = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut pid);
    }
    let process = Process {
        child,
        stdin,
        port,
        dir,
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .expect("the watchdog prints the server's pid");
    let deadline = Instant::now() + ATTEMPT;
    loop {
        match port_owner::owner(pid, port) {
            // Another server took the port first; ours has exited.
            Owner::Gone => return None,
            Owner::Ours if ready(port) => break,
            Owner::Ours | Owner::NotYet => {}
        }
        if Instant::now() > deadline {
            eprintln!(
                "redis-server on port {port} did not answer within {} s; stopping it",
                ATTEMPT.as_secs()
            );
            return None; // Dropping it stops the server.
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(process)
}

#[path = "redis_tls_server.rs"]
pub mod tls;

#[path = "port_owner.rs"]
mod port_owner;
use port_owner::Owner;

/// What keeps the shared standalone server alive.
enum Keeper {
    External,
    Process(Mutex<Process>),
    #[cfg(feature = "testcontainers")]
    Docker(Box<Mutex<docker::Docker>>),
}

static STANDALONE: OnceLock<(String, Keeper)> = OnceLock::new();

/// The base URL of the standalone server every test of this binary shares:
/// `STOWAGE_TEST_REDIS_URL`, else (feature `testcontainers`, Docker
/// reachable) Redis in a container, else a private `redis-server`.
pub fn base_url() -> String {
    let (url, _) = STANDALONE.get_or_init(|| {
        if let Ok(url) = std::env::var("STOWAGE_TEST_REDIS_URL") {
            if !url.is_empty() {
                return (url, Keeper::External);
            }
        }
        #[cfg(feature = "testcontainers")]
        if let Some((url, d)) = docker::start() {
            return (url, Keeper::Docker(Box::new(Mutex::new(d))));
        }
        let p = spawn(&[], None);
        (
            format!("redis://127.0.0.1:{}/0", p.port),
            Keeper::Process(Mutex::new(p)),
        )
    });
    url.clone()
}

/// Redis in Docker through `testcontainers` (feature `testcontainers` of
/// stowage-backends): used when no URL is given and a Docker engine is
/// reachable (`DOCKER_HOST` or `/var/run/docker.sock`).
#[cfg(feature = "testcontainers")]
mod docker {
    use std::process::{Child, Command, Stdio};

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerAsync, GenericImage};

    /// The container, the runtime that started it, and a watchdog that
    /// removes it when the test binary exits.
    pub struct Docker {
        _container: ContainerAsync<GenericImage>,
        _runtime: tokio::runtime::Runtime,
        _watchdog: Option<Child>,
    }

    fn available() -> bool {
        std::env::var_os("DOCKER_HOST").is_some()
            || std::path::Path::new("/var/run/docker.sock").exists()
    }

    /// Starts `redis:7.2`, or `None` (with a note) when Docker is absent
    /// or the start fails.
    pub fn start() -> Option<(String, Docker)> {
        if !available() {
            return None;
        }
        let started = std::thread::spawn(|| -> Result<(String, Docker), String> {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let container = runtime
                .block_on(
                    GenericImage::new("redis", "7.2")
                        .with_exposed_port(6379.tcp())
                        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
                        .start(),
                )
                .map_err(|e| e.to_string())?;
            let port = runtime
                .block_on(container.get_host_port_ipv4(6379.tcp()))
                .map_err(|e| e.to_string())?;
            let host = runtime
                .block_on(container.get_host())
                .map_err(|e| e.to_string())?;
            let watchdog = Command::new("sh")
                .arg("-c")
                .arg("read _ignored; docker rm -f \"$1\" >/dev/null 2>&1")
                .arg("sh")
                .arg(container.id())
                .stdin(Stdio::piped())
                .spawn()
                .ok();
            let url = format!("redis://{host}:{port}/0");
            Ok((
                url,
                Docker {
                    _container: container,
                    _runtime: runtime,
                    _watchdog: watchdog,
                },
            ))
        })
        .join();
        match started {
            Ok(Ok(found)) => Some(found),
            Ok(Err(e)) => {
                eprintln!("testcontainers: cannot start Redis in Docker ({e}); using redis-server");
                None
            }
            Err(_) => None,
        }
    }
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `base` with `params` appended to its query.
pub fn with_params(base: &str, params: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{params}")
}

/// A fresh store URL on the shared standalone server.
pub fn fresh_url(tag: &str) -> String {
    with_params(&base_url(), &format!("prefix={}", unique_prefix(tag)))
}

/// A 3-node cluster on loopback (ports of the three primaries).
pub struct Cluster {
    pub nodes: Vec<Process>,
}

static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();

/// The base URL (a seed node, `cluster=true`) of this binary's cluster.
pub fn cluster_url() -> String {
    let c = CLUSTER.get_or_init(|| Mutex::new(start_cluster()));
    let port = c
        .lock()
        .map(|c| c.nodes[0].port)
        .unwrap_or_else(|e| e.into_inner().nodes[0].port);
    format!("redis://127.0.0.1:{port}/?cluster=true")
}

/// The client ports of this binary's cluster nodes.
pub fn cluster_ports() -> Vec<u16> {
    let c = CLUSTER.get_or_init(|| Mutex::new(start_cluster()));
    let c = c.lock().unwrap_or_else(|e| e.into_inner());
    c.nodes.iter().map(|n| n.port).collect()
}

fn start_cluster() -> Cluster {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let dir = std::env::temp_dir().join(unique_prefix("cluster-node"));
        // An explicit bus port: the default (port + 10000) may not exist
        // for a high ephemeral port.
        nodes.push(spawn(
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                "{free_port}",
                "--cluster-config-file",
                "nodes.conf",
                "--dir",
                ".",
            ],
            Some(dir),
        ));
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap_or_else(|e| panic!("redis-cli --cluster create failed to start ({e}); {HELP}"));
    assert!(
        out.status.success(),
        "redis-cli --cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &n.port.to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not become ok: {info}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Cluster { nodes }
}

/// The conformance harness: a unique key prefix per harness.
pub struct RedisHarness {
    url: String,
    prefix: String,
}

impl RedisHarness {
    /// A harness on the shared standalone server.
    pub fn standalone() -> Self {
        let prefix = unique_prefix("conf");
        RedisHarness {
            url: with_params(&base_url(), &format!("prefix={prefix}")),
            prefix,
        }
    }

    /// A harness on the shared 3-node cluster.
    pub fn cluster() -> Self {
        let prefix = unique_prefix("cconf");
        RedisHarness {
            url: with_params(&cluster_url(), &format!("prefix={prefix}")),
            prefix,
        }
    }

    /// A harness on a TLS server, trusting its CA.
    pub fn tls(server: &tls::TlsServer) -> Self {
        let prefix = unique_prefix("tconf");
        RedisHarness {
            url: format!(
                "{}?tls_ca={}&prefix={prefix}",
                server.base_url(),
                server.ca.display()
            ),
            prefix,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[async_trait]
impl Harness for RedisHarness {
    async fn open(&self) -> Result<Stores> {
        stowage_backends::open(&self.url).await
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        stowage_backends::open(&self.url).await
    }

    /// Through a second engine on the same store, as another process
    /// would edit it.
    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        let options = stowage_backends::redis::RedisOptions::from_url(&self.url)?;
        let engine = stowage_backends::redis::open_engine(options).await?;
        stowage_conformance::tamper_engine(&engine, target).await
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        let own = format!("prefix={}", self.prefix);
        let url = self.url.replace(&own, &format!("{own}-env"));
        stowage_backends::open_with(&url, env).await
    }
}
