//! A runtime shut down while writes are in flight — a `#[tokio::test]`
//! ending, a service stopping without `Stores::close` — on every embedded
//! backend compiled in: nothing hangs, the store opens again, and every
//! append that was acknowledged is there, in one verified chain per run.
//! PostgreSQL and Redis too (a schema or key prefix of the test's own).
#![cfg(any(
    feature = "file",
    feature = "sled",
    feature = "rocksdb",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, LogKind, NewEvent, NewLogEntry, RunId, RunMetadata};

/// How long the whole test may take before it counts as a hang.
const WATCHDOG: Duration = Duration::from_secs(90);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// What the writers had acknowledged when their runtime went away.
#[derive(Default)]
struct Acked {
    events: Vec<(RunId, u64)>,
    entries: Vec<(String, u64)>,
    blobs: Vec<Digest>,
}

/// Starts writers on `url` in a runtime of their own, shuts that runtime
/// down under them, then reopens the store and checks every acknowledged
/// write.
fn shutdown_mid_writes(url: &str) {
    let acked = Arc::new(Mutex::new(Acked::default()));
    let rt = runtime();
    let (stores, runs) = rt.block_on(async {
        let stores = stowage_backends::open(url).await.expect("open");
        let mut runs = Vec::new();
        for i in 0..8u8 {
            let run = stores
                .runs
                .create_run(Digest::of(&[i]), RunMetadata::new("shutdown"))
                .await
                .expect("create run");
            runs.push(run);
        }
        for i in 0..4 {
            stores
                .sessions
                .create_session(&format!("s{i}"), json!({ "i": i }))
                .await
                .expect("create session");
        }
        (stores, runs)
    });
    for (t, run) in runs.iter().copied().enumerate() {
        let (stores, acked) = (stores.clone(), Arc::clone(&acked));
        rt.spawn(async move {
            for i in 0u64.. {
                let event = NewEvent::new("step", json!({ "t": t, "i": i }));
                let Ok(e) = stores.runs.append_event(run, event).await else {
                    return;
                };
                acked.lock().unwrap().events.push((run, e.seq));
            }
        });
    }
    for s in 0..4 {
        let (stores, acked) = (stores.clone(), Arc::clone(&acked));
        rt.spawn(async move {
            let id = format!("s{s}");
            loop {
                let entry = NewLogEntry::new(LogKind::Incoming, "u", "t", "m");
                let Ok(e) = stores.sessions.append_log(&id, entry).await else {
                    return;
                };
                acked.lock().unwrap().entries.push((id.clone(), e.seq));
            }
        });
    }
    {
        let (stores, acked) = (stores.clone(), Arc::clone(&acked));
        rt.spawn(async move {
            for i in 0u64.. {
                let mut blob = vec![7u8; 200_000];
                blob[..8].copy_from_slice(&i.to_be_bytes());
                let Ok(d) = stores.cas.put(Bytes::from(blob)).await else {
                    return;
                };
                acked.lock().unwrap().blobs.push(d);
            }
        });
    }
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
    drop(stores);
    rt.shutdown_timeout(Duration::ZERO);

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(!acked.events.is_empty(), "no append was acknowledged");
    let rt = runtime();
    rt.block_on(async {
        // Blocking threads of the old runtime may still hold the store for
        // a moment (a file lock, a sled or RocksDB directory lock).
        let deadline = Instant::now() + Duration::from_secs(30);
        let stores = loop {
            match stowage_backends::open(url).await {
                Ok(stores) => break stores,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{url} did not open again after the shutdown: {e}"),
            }
        };
        for run in &runs {
            let len = stores.runs.verify_run(*run).await.expect("verify run").len;
            let most = acked
                .events
                .iter()
                .filter(|(r, _)| r == run)
                .map(|(_, seq)| seq + 1)
                .max()
                .unwrap_or(0);
            assert!(len >= most, "run {run}: {len} events, {most} acknowledged");
        }
        for s in 0..4 {
            let id = format!("s{s}");
            let len = stores
                .sessions
                .verify_log(&id)
                .await
                .expect("verify log")
                .len;
            let most = acked
                .entries
                .iter()
                .filter(|(i, _)| *i == id)
                .map(|(_, seq)| seq + 1)
                .max()
                .unwrap_or(0);
            assert!(
                len >= most,
                "session {id}: {len} entries, {most} acknowledged"
            );
        }
        for d in &acked.blobs {
            stores.cas.verify(d).await.expect("an acknowledged blob");
        }
        stores.close().await.expect("close");
    });
}

/// Runs `shutdown_mid_writes` on a thread of its own, failing if it does
/// not finish within [`WATCHDOG`] (a hang is the bug this looks for).
fn within_watchdog(url: String) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = std::panic::catch_unwind(|| shutdown_mid_writes(&url));
        let _ = done.send(outcome);
    });
    match finished.recv_timeout(WATCHDOG) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("shutting a runtime down mid-writes hung for {WATCHDOG:?}"),
    }
}

fn dir_url(scheme: &str, dir: &std::path::Path, name: &str) -> String {
    format!("{scheme}://{}", dir.join(name).display())
}

#[cfg(feature = "file")]
#[test]
fn file_survives_a_runtime_shut_down_mid_writes() {
    let dir = tempfile::tempdir().unwrap();
    within_watchdog(dir_url("file", dir.path(), "store"));
}

#[cfg(feature = "sled")]
#[test]
fn sled_survives_a_runtime_shut_down_mid_writes() {
    let dir = tempfile::tempdir().unwrap();
    within_watchdog(dir_url("sled", dir.path(), "store"));
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_survives_a_runtime_shut_down_mid_writes() {
    let dir = tempfile::tempdir().unwrap();
    within_watchdog(dir_url("rocksdb", dir.path(), "store"));
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_survives_a_runtime_shut_down_mid_writes() {
    let dir = tempfile::tempdir().unwrap();
    within_watchdog(dir_url("sqlite", dir.path(), "store.db"));
}

#[cfg(feature = "postgres")]
#[path = "support/postgres_server.rs"]
mod postgres_server;

#[cfg(feature = "postgres")]
#[test]
fn postgres_survives_a_runtime_shut_down_mid_writes() {
    let schema = postgres_server::unique_schema("shutdown");
    within_watchdog(postgres_server::url(&schema, ""));
    postgres_server::drop_schema(&schema);
}

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

#[cfg(feature = "redis")]
#[test]
fn redis_survives_a_runtime_shut_down_mid_writes() {
    within_watchdog(redis_server::fresh_url("shutdown"));
}
