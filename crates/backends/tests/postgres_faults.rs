//! Connection faults: a TCP proxy between the store and the server that
//! cuts the connection carrying an append's `COMMIT` (before the server
//! sees it, or after it committed but before the client hears so) and
//! goes down (connections refused); and a `pg_ctl restart` of a private
//! server in the middle of a workload.
//!
//! The promises checked: an append whose `COMMIT` was cut in flight is
//! `OutcomeUnknown` (never `Ok`, never `Unavailable`); a refused
//! connection is `Unavailable`; a keyed retry after either is
//! exactly-once; every acknowledged append survives; the same store
//! handle works again afterwards without being reopened.
#![cfg(feature = "postgres")]

#[path = "support/postgres_server.rs"]
mod postgres_server;
#[path = "support/tcp_proxy.rs"]
mod tcp_proxy;

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stowage_core::{Digest, ErrorKind, NewEvent, RunId, RunMetadata, Stores};
use tcp_proxy::{Cut, Proxy};

/// A schema dropped when the guard goes away (on the binary's server).
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        postgres_server::drop_schema(&self.0);
    }
}

/// `base` with its host and port replaced by `addr`, and `query`.
fn via(base: &str, addr: std::net::SocketAddr, query: &str) -> String {
    let mut url = url::Url::parse(base).expect("base URL");
    url.set_host(Some(&addr.ip().to_string())).expect("host");
    url.set_port(Some(addr.port())).expect("port");
    url.set_query(None);
    format!("{url}?{query}")
}

fn keyed(key: &str) -> NewEvent {
    NewEvent::new("tick", json!({ "key": key })).with_idempotency_key(key)
}

/// Every event of `run`: (seq, key), checked gap-free.
async fn events(stores: &Stores, run: RunId) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .runs
            .read_events(run, after, 500)
            .await
            .expect("read_events");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        out.extend(
            page.into_iter()
                .map(|e| (e.seq, e.idempotency_key.expect("every append is keyed"))),
        );
    }
    for (i, (seq, _)) in out.iter().enumerate() {
        assert_eq!(*seq, i as u64, "seqs are gap-free");
    }
    out
}

/// Every key stored exactly once, at the seq its caller was acknowledged.
fn exactly_once(stored: &[(u64, String)], acked: &BTreeMap<String, u64>) {
    let mut seen = BTreeMap::new();
    for (seq, key) in stored {
        assert!(
            seen.insert(key.clone(), *seq).is_none(),
            "key {key} stored twice"
        );
    }
    for (key, seq) in acked {
        assert_eq!(seen.get(key), Some(seq), "acknowledged key {key}");
    }
    assert_eq!(seen.len(), acked.len(), "nothing stored that was not acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_commit_is_outcome_unknown_and_keyed_retries_are_exactly_once() {
    let base = postgres_server::base_url();
    let upstream = url::Url::parse(&base).expect("base URL");
    let upstream = (
        upstream.host_str().expect("host").to_owned(),
        upstream.port().unwrap_or(5432),
    )
        .to_socket_addrs()
        .expect("resolve the server")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await;
    let schema = Schema(postgres_server::unique_schema("cut"));
    let direct = stowage_backends::open(&postgres_server::url(&schema.0, ""))
        .await
        .expect("open direct");
    // Plain TCP: the proxy reads the protocol to find the COMMIT.
    let query = format!(
        "schema={}&pool_size=2&connect_timeout_ms=2000&sslmode=disable",
        schema.0
    );
    let cut = stowage_backends::open(&via(&base, proxy.addr, &query))
        .await
        .expect("open through the proxy");
    let run = cut
        .runs
        .create_run(Digest::of(b"cut"), RunMetadata::new("cut"))
        .await
        .expect("run");
    let mut acked = BTreeMap::new();
    let mut append = |key: String, seq: u64| assert!(acked.insert(key, seq).is_none());
    for i in 0..3 {
        let key = format!("plain-{i}");
        append(
            key.clone(),
            cut.runs
                .append_event(run, keyed(&key))
                .await
                .expect("append")
                .seq,
        );
    }

    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        for mode in [Cut::AfterCommit, Cut::BeforeCommit] {
            let key = format!("cut-{mode:?}-{round}");
            proxy.arm(mode);
            let err = cut
                .runs
                .append_event(run, keyed(&key))
                .await
                .expect_err("an append whose COMMIT was cut cannot succeed");
            assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{mode:?}: {err:?}");
            // What really happened, seen through a connection of its own.
            let stored = events(&direct, run).await;
            let there = stored.iter().find(|(_, k)| *k == key).map(|(s, _)| *s);
            match mode {
                Cut::AfterCommit => assert!(there.is_some(), "{key}: the server committed"),
                _ => assert!(there.is_none(), "{key}: the server never saw the COMMIT"),
            }
            // The retry, on the same handle: the pool replaced the cut
            // connection; the key makes it exactly-once.
            let again = cut
                .runs
                .append_event(run, keyed(&key))
                .await
                .expect("the keyed retry");
            if let Some(seq) = there {
                assert_eq!(again.seq, seq, "{key}: the retry returns the original");
            }
            append(key.clone(), again.seq);
            let twice = cut
                .runs
                .append_event(run, keyed(&key))
                .await
                .expect("again");
            assert_eq!(twice.seq, again.seq, "{key}");
        }
    }
    assert_eq!(proxy.cuts(), 2 * ROUNDS, "every armed cut happened");

    // Down: pooled connections are cut and new ones refused.
    proxy.down();
    for i in 0..3 {
        let key = format!("refused-{i}");
        let err = cut
            .runs
            .append_event(run, keyed(&key))
            .await
            .expect_err("nothing is listening");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
        assert!(err.is_retryable(), "{err:?}");
        assert!(events(&direct, run).await.iter().all(|(_, k)| *k != key));
    }
    let err = stowage_backends::open(&via(&base, proxy.addr, &query))
        .await
        .expect_err("opening through a proxy that is down");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    proxy.up().await;
    for i in 0..3 {
        let key = format!("refused-{i}");
        append(
            key.clone(),
            cut.runs
                .append_event(run, keyed(&key))
                .await
                .expect("back up")
                .seq,
        );
    }

    let stored = events(&direct, run).await;
    exactly_once(&stored, &acked);
    let report = direct.runs.verify_run(run).await.expect("verify_run");
    assert_eq!(report.len as usize, acked.len());
    cut.close().await.expect("close");
    direct.close().await.expect("close");
}

const TASKS: usize = 8;
const PER_TASK: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_mid_workload_loses_nothing_acknowledged() {
    // Always a server of its own: this test restarts it.
    let server = postgres_server::PrivateServer::started();
    let url = format!(
        "{}?schema=restart&pool_size=8&connect_timeout_ms=2000",
        server.url
    );
    let stores = stowage_backends::open(&url).await.expect("open");
    let run = stores
        .runs
        .create_run(Digest::of(b"restart"), RunMetadata::new("restart"))
        .await
        .expect("run");
    let acks = Arc::new(AtomicUsize::new(0));
    let outage_over = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (stores, acks) = (stores.clone(), Arc::clone(&acks));
        let outage_over = Arc::clone(&outage_over);
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failures: BTreeMap<String, usize> = BTreeMap::new();
            // At least PER_TASK appends, and on until the restart is over:
            // the workload spans the whole outage.
            let mut i = 0;
            while i < PER_TASK || !outage_over.load(Ordering::SeqCst) {
                i += 1;
                let key = format!("t{task}-{i}");
                loop {
                    match stores.runs.append_event(run, keyed(&key)).await {
                        Ok(e) => {
                            acked.push((key.clone(), e.seq));
                            acks.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e.kind(),
                                    ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
                                ),
                                "{key}: {e:?}"
                            );
                            *failures.entry(format!("{:?}", e.kind())).or_default() += 1;
                            // Retry the same key (exactly-once) after a pause.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }
            (acked, failures)
        }));
    }
    // Restart once a third of the appends were acknowledged.
    while acks.load(Ordering::SeqCst) < TASKS * PER_TASK / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = acks.load(Ordering::SeqCst);
    let restarting = {
        let outage_over = Arc::clone(&outage_over);
        tokio::task::spawn_blocking(move || {
            server.restart();
            outage_over.store(true, Ordering::SeqCst);
            server
        })
    };
    let server = restarting.await.expect("restart");
    let mut acked = BTreeMap::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let (mine, failed) = task.await.expect("task");
        for (key, seq) in mine {
            assert!(acked.insert(key, seq).is_none());
        }
        for (kind, n) in failed {
            *failures.entry(kind).or_default() += n;
        }
    }
    println!(
        "restart after {at} of {} acks; failures during the outage: {failures:?}",
        acked.len()
    );
    assert!(
        !failures.is_empty(),
        "the workload saw the outage (else the test tested nothing)"
    );
    assert!(outage_over.load(Ordering::SeqCst));
    // The same handle, never reopened: everything acknowledged is there,
    // once, gap-free, and the chain verifies.
    let stored = events(&stores, run).await;
    assert!(acked.len() > at, "appends went on after the restart");
    exactly_once(&stored, &acked);
    let report = stores.runs.verify_run(run).await.expect("verify_run");
    assert_eq!(report.len as usize, acked.len());
    stores.close().await.expect("close");
    drop(server);
}
