//! A Redis server for the CLI tests: `STOWAGE_TEST_REDIS_URL` when set,
//! else a private `redis-server` on a free loopback port, started once per
//! test binary and stopped when it exits (a `sh` watchdog kills it when
//! our stdin pipe closes). A minimal copy of
//! `crates/backends/tests/support/redis_server.rs` (test support cannot be
//! shared between crates' test targets).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HELP: &str =
    "the Redis CLI tests need a server: set STOWAGE_TEST_REDIS_URL=redis://host:port/db \
(written under unique key prefixes; nothing is flushed), or install redis-server";

struct Process {
    _child: Child,
    _stdin: ChildStdin,
}

static SERVER: OnceLock<(String, Option<Mutex<Process>>)> = OnceLock::new();

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn start() -> (String, Option<Mutex<Process>>) {
    if let Ok(url) = std::env::var("STOWAGE_TEST_REDIS_URL") {
        if !url.is_empty() {
            return (url, None);
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("redis-server \"$@\" & pid=$!; read _ignored; kill $pid; wait $pid")
        .arg("sh")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{HELP}: {e}"));
    let stdin = child.stdin.take().expect("piped stdin");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping(port) {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on port {port}; {HELP}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let process = Process {
        _child: child,
        _stdin: stdin,
    };
    (
        format!("redis://127.0.0.1:{port}/0"),
        Some(Mutex::new(process)),
    )
}

/// A store URL on the test server under a key prefix nobody else uses.
pub fn fresh_url(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let (base, _) = SERVER.get_or_init(start);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let sep = if base.contains('?') { '&' } else { '?' };
    format!(
        "{base}{sep}prefix=t-cli-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
