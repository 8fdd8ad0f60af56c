//! Review of the blocking client that replaced `postgres::Client`
//! (`src/postgres/client.rs`, commit 4295268): what its connect timeout
//! bounds, and how a pooled connection the server went away from is
//! answered. Needs a PostgreSQL server (see `support/postgres_server.rs`)
//! for the second test; the first brings a fake server of its own.
#![cfg(feature = "postgres")]

#[path = "support/postgres_server.rs"]
mod postgres_server;
#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stowage_core::{Digest, ErrorKind, RunMetadata};
use tcp_proxy::Proxy;

/// A fake PostgreSQL server: answers the startup with `AuthenticationOk`
/// and `ReadyForQuery` (the connect, startup and login succeed at once),
/// then never answers a query — a server hung after login, a pooler
/// whose backends are gone. `release` closes every connection.
struct LoginThenSilent {
    port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl LoginThenSilent {
    fn start() -> LoginThenSilent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let kept = Arc::clone(&conns);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                kept.lock()
                    .unwrap()
                    .push(stream.try_clone().expect("clone"));
                std::thread::spawn(move || {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                    if stream.read_exact(&mut rest).is_err() {
                        return;
                    }
                    // AuthenticationOk, ReadyForQuery (idle).
                    let _ = stream.write_all(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I");
                    // Then reads whatever comes and never answers.
                    let mut buf = [0u8; 4096];
                    while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
                });
            }
        });
        LoginThenSilent { port, conns }
    }

    fn release(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for LoginThenSilent {
    fn drop(&mut self) {
        self.release();
    }
}

/// `PostgresEngine::open` is documented `Unavailable` when the server
/// "does not answer within connect_timeout", and `Pool::connect` (every
/// open and checkout) as `Unavailable` when the server is "silent for
/// connect_timeout" (pool.rs:203). Only `client::connect` is bounded:
/// the `SHOW server_encoding` that `Pool::connect` sends right after it
/// (pool.rs:209, `utf8`), the `prepare_all` batch of `Conn::reconnect`
/// and the migration's queries have no bound, so a server that completes
/// the login and then goes silent hangs `open` (and each checkout, and
/// the blocking thread under it) for ever, whatever `connect_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_silent_after_login_fails_open_within_connect_timeout() {
    let server = LoginThenSilent::start();
    let url = format!(
        "postgres://u@127.0.0.1:{}/db?schema=silent&sslmode=disable&connect_timeout_ms=500&pool_size=1",
        server.port
    );
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), stowage_backends::open(&url)).await;
    // Lets the blocking thread stuck on the silent connection go.
    server.release();
    match outcome {
        Ok(Ok(_)) => panic!("opened a store on a server that never answers a query"),
        Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
        Err(_) => panic!(
            "open still hanging after {:?} although connect_timeout_ms=500: the server \
             logged the store in and never answered `SHOW server_encoding`",
            started.elapsed()
        ),
    }
}

/// A read whose pooled connection the server dropped between jobs (the
/// proxy goes down: connections cut, new ones refused) is `Unavailable`
/// in time, and the same store works once the server is back. After the
/// first error the new client never polls the connection again
/// (`Link::ended`) and relies on tokio-postgres >= 0.7.15 closing the
/// request channel on a connection error (`poll_message`): then the
/// job's `ROLLBACK` and the pool's `is_closed` see the loss at once. With
/// tokio-postgres 0.7.0..0.7.14 — which `tokio-postgres = "0.7"` in
/// Cargo.toml admits — the `ROLLBACK` waits for an answer from a
/// connection nobody polls: this read hangs for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_the_server_dropped_the_connection_is_unavailable_in_time() {
    let base = postgres_server::base_url();
    let parsed = url::Url::parse(&base).expect("base URL");
    let upstream = (
        parsed.host_str().expect("host"),
        parsed.port().unwrap_or(5432),
    )
        .to_socket_addrs()
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await;
    let schema = postgres_server::unique_schema("gone");
    let mut via = parsed.clone();
    via.set_host(Some("127.0.0.1")).expect("host");
    via.set_port(Some(proxy.addr.port())).expect("port");
    via.set_query(Some(&format!(
        "schema={schema}&pool_size=2&connect_timeout_ms=1000&sslmode=disable"
    )));
    let stores = stowage_backends::open(via.as_str()).await.expect("open");
    let run = stores
        .runs
        .create_run(Digest::of(b"gone"), RunMetadata::new("gone"))
        .await
        .expect("run");
    stores.runs.get_run(run).await.expect("a first read");
    proxy.down();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let read = tokio::time::timeout(Duration::from_secs(20), stores.runs.get_run(run)).await;
        match read {
            Ok(Err(e)) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
            Ok(Ok(_)) => panic!("read through a proxy that is down"),
            Err(_) => panic!("a read on a connection the server dropped hangs"),
        }
    }
    proxy.up().await;
    stores
        .runs
        .get_run(run)
        .await
        .expect("a read once the server is back");
    stores.close().await.expect("close");
    postgres_server::drop_schema(&schema);
}
