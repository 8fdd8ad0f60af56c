//! Review of `client.rs` (commit 4295268) against the `postgres` crate's
//! `Client` it replaced. Needs a PostgreSQL server:
//! `STOWAGE_TEST_POSTGRES_URL` (default `postgres://root@127.0.0.1:5432/test`).

use std::time::{Duration, Instant};

use super::*;

fn server() -> url::Url {
    let base = std::env::var("STOWAGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    url::Url::parse(&base).expect("STOWAGE_TEST_POSTGRES_URL")
}

/// A loopback port that drops every SYN (a listener whose accept queue is
/// full): a TCP connect to it hangs as to a blackholed address (an AAAA
/// record on a host whose IPv6 route goes nowhere, a dead replica's IP).
/// Keep the returned values alive as long as the blackhole is needed.
fn blackhole() -> (u16, tokio::runtime::Runtime, impl Sized) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Fills the accept queue (never accepted): later SYNs are dropped.
    let filler = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let probe = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(300),
    );
    assert!(probe.is_err(), "the blackhole answered a connect");
    (port, rt, (listener, filler))
}

/// libpq, and the `postgres` crate's `Client` this replaced, apply
/// `connect_timeout` to each address separately: a host whose first
/// address is blackholed connects through the next one after
/// `connect_timeout`. `client::connect` wraps the driver's whole connect —
/// which still gives the first address its own full `connect_timeout` for
/// the TCP connect — in one more `connect_timeout`: both expire together,
/// the next address is never reached, and every connect (open, each
/// checkout, each reconnect) fails with `Unavailable` although the server
/// is up on the next address. Two hosts stand in for a DNS name with two
/// addresses here (same driver loop, same per-attempt timeout): stowage
/// takes one host name, and this machine has no name with two addresses.
#[test]
fn a_blackholed_first_address_falls_through_to_the_next_as_before() {
    let pg = server();
    let (dead, _rt, _hole) = blackhole();
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(dead)
        .host(pg.host_str().unwrap())
        .port(pg.port().unwrap_or(5432))
        .user(pg.username())
        .dbname(pg.path().trim_start_matches('/'))
        .connect_timeout(Duration::from_millis(1000));
    // The postgres crate (the client before 4295268) connects: first
    // address timed out after 1 s, the second answered.
    let old_config: postgres::Config = config.clone().into();
    let started = Instant::now();
    let old = old_config.connect(tokio_postgres::NoTls);
    assert!(
        old.is_ok(),
        "control: the postgres crate could not connect either: {:?}",
        old.err()
    );
    eprintln!("postgres crate: connected after {:?}", started.elapsed());
    drop(old);
    let started = Instant::now();
    match connect(&config, tokio_postgres::NoTls, "connecting") {
        Ok(mut client) => {
            client.batch_execute("SELECT 1").unwrap();
        }
        Err(e) => panic!(
            "the new client gave up after {:?} although the next address answers \
             (the postgres crate connected): {e}",
            started.elapsed()
        ),
    }
}
