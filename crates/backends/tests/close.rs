//! `Stores::close` on every embedded backend compiled in (memory, SQLite): it
//! flushes, releases the store so that it opens again at once in this
//! process, and handles kept past it get a clear error instead of a panic
//! or a hang. Redis: `redis_options.rs`. No test here starts a process: a
//! child being spawned inherits the lock file's descriptor until it execs,
//! which would hold the released lock for that moment.

use bytes::Bytes;
use stowage_backends::open;

#[cfg(any(
    feature = "file",
    feature = "sled",
    feature = "rocksdb",
    feature = "sqlite"
))]
#[path = "support/after_close.rs"]
mod after_close;
#[cfg(any(
    feature = "file",
    feature = "sled",
    feature = "rocksdb",
    feature = "sqlite"
))]
use {
    after_close::refused_after_close,
    serde_json::json,
    stowage_core::{NewEvent, RunMetadata, Stores},
};

/// Writes a blob and a run with one event; returns what to read back.
#[cfg(any(
    feature = "file",
    feature = "sled",
    feature = "rocksdb",
    feature = "sqlite"
))]
async fn write_some(stores: &Stores) -> (stowage_core::Digest, stowage_core::RunId) {
    let d = stores.cas.put(Bytes::from_static(b"closed")).await.unwrap();
    let run = stores
        .runs
        .create_run(d, RunMetadata::new("agent"))
        .await
        .unwrap();
    stores
        .runs
        .append_event(run, NewEvent::new("step", json!({ "i": 1 })))
        .await
        .unwrap();
    (d, run)
}

/// Open, write, close, reopen the same URL at once, read back; then a
/// handle kept from the first open is refused.
#[cfg(any(
    feature = "file",
    feature = "sled",
    feature = "rocksdb",
    feature = "sqlite"
))]
async fn close_then_reopen(url: &str) {
    let stores = open(url).await.unwrap();
    let kept = stores.clone();
    let (digest, run) = write_some(&stores).await;
    stores.close().await.unwrap();
    let again = open(url)
        .await
        .unwrap_or_else(|e| panic!("reopening {url} right after close: {e}"));
    assert_eq!(&again.cas.get(&digest).await.unwrap()[..], b"closed");
    assert_eq!(again.runs.get_run(run).await.unwrap().event_count, 1);
    refused_after_close(&kept, digest).await;
    // Closing the kept clone again is harmless and leaves `again` alone.
    kept.close().await.unwrap();
    assert!(again.cas.contains(&digest).await.unwrap());
    again.close().await.unwrap();
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_stores_close_and_reopen_in_process() {
    let dir = tempfile::tempdir().unwrap();
    close_then_reopen(&format!("file://{}/store", dir.path().display())).await;
    let buffered = format!(
        "file://{}/buffered?durability=buffered",
        dir.path().display()
    );
    close_then_reopen(&buffered).await;
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "current_thread")]
async fn file_stores_close_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    close_then_reopen(&format!("file://{}/store", dir.path().display())).await;
}

#[cfg(feature = "sled")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_stores_close_and_reopen_in_process() {
    let dir = tempfile::tempdir().unwrap();
    close_then_reopen(&format!("sled://{}/store", dir.path().display())).await;
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_stores_close_and_reopen_in_process() {
    let dir = tempfile::tempdir().unwrap();
    close_then_reopen(&format!("rocksdb://{}/store", dir.path().display())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_close_and_reopen_in_process() {
    let dir = tempfile::tempdir().unwrap();
    close_then_reopen(&format!("sqlite://{}/store.db", dir.path().display())).await;
    let buffered = format!(
        "sqlite://{}/buffered.db?durability=buffered",
        dir.path().display()
    );
    close_then_reopen(&buffered).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "current_thread")]
async fn sqlite_stores_close_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    close_then_reopen(&format!("sqlite://{}/store.db", dir.path().display())).await;
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn memory_close_closes_every_handle() {
    let stores = open("memory://").await.unwrap();
    let kept = stores.clone();
    stores.close().await.unwrap();
    // As on every backend: a closed store refuses calls, on every handle.
    let err = kept.cas.put(Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), stowage_core::ErrorKind::Conflict, "{err}");
}
