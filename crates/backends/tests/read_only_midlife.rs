//! A medium that turns read-only while a store is open for writing: a
//! real ext4 on a loop device, remounted read-only by the kernel's own
//! error path (`errors=remount-ro`), as a failing disk does. Writes fail
//! with an honest kind, reads of acknowledged data go on, close works,
//! and after the operator repairs the file system a reopen finds
//! everything acknowledged and takes writes again. Found by review
//! (session 19): the file engine poisoned itself (every read failed
//! `Internal`) and SQLite answered `OutcomeUnknown` to every write,
//! forever.
#![cfg(any(feature = "file", feature = "sqlite", feature = "rocksdb"))]

#[path = "support/ext4.rs"]
mod ext4;

use bytes::Bytes;
use ext4::Ext4;
use serde_json::json;
use stowage_backends::open;
use stowage_core::{ErrorKind, NewEvent, RunMetadata};

/// The whole story on the store at `url` (on `fs`); the first write
/// after the turn gets one of `first_kinds`, every later one
/// `Unsupported`.
async fn a_medium_turning_read_only(fs: &Ext4, url: &str, first_kinds: &[ErrorKind]) {
    let s = open(url).await.unwrap();
    let blob = Bytes::from_static(b"acknowledged before the medium turned read-only");
    let digest = s.cas.put(blob.clone()).await.unwrap();
    let run = s
        .runs
        .create_run(digest, RunMetadata::new("agent"))
        .await
        .unwrap();
    s.runs
        .append_event(run, NewEvent::new("step", json!(0)))
        .await
        .unwrap();

    fs.fail();
    let first = s
        .runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap_err();
    assert!(
        first_kinds.contains(&first.kind()),
        "the first write: {first}"
    );
    let later = s.cas.put(Bytes::from_static(b"later")).await.unwrap_err();
    assert_eq!(
        later.kind(),
        ErrorKind::Unsupported,
        "a later write: {later}"
    );
    assert!(!later.is_retryable(), "{later}");
    // Large enough for SQLite to spill pages in mid-transaction.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let err = s.cas.put(Bytes::from(big)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "a large write: {err}");
    assert_eq!(s.cas.get(&digest).await.unwrap(), blob, "reads go on");
    let events = s.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(events[0].payload, json!(0));
    let closed = s.close().await;
    if first.kind() == ErrorKind::OutcomeUnknown {
        // That write is in doubt, and so the close says.
        let err = closed.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    } else {
        closed.unwrap();
    }

    fs.repair();
    let s = open(url).await.unwrap();
    assert_eq!(s.cas.get(&digest).await.unwrap(), blob);
    let events = s.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(events[0].payload, json!(0), "the acknowledged event");
    s.runs
        .append_event(run, NewEvent::new("step", json!(2)))
        .await
        .unwrap();
    s.runs.verify_run(run).await.unwrap();
    s.close().await.unwrap();
}

/// The write the medium refuses was buffered and is visible until the
/// store closes: `OutcomeUnknown` (or `Unsupported` when it needed more
/// zeros reserved ahead first, which applied nothing).
#[cfg(feature = "file")]
#[tokio::test]
async fn a_file_store_whose_medium_turns_read_only_keeps_reading() {
    let fs = Ext4::mount(64);
    let url = format!("file://{}/store", fs.path().display());
    let kinds = [ErrorKind::OutcomeUnknown, ErrorKind::Unsupported];
    a_medium_turning_read_only(&fs, &url, &kinds).await;
}

/// SQLite's refused `COMMIT` wrote no commit frame: `Unsupported`.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_store_whose_medium_turns_read_only_refuses_writes_clearly() {
    let fs = Ext4::mount(64);
    let url = format!("sqlite://{}/store.db", fs.path().display());
    a_medium_turning_read_only(&fs, &url, &[ErrorKind::Unsupported]).await;
}

/// RocksDB stops writes itself after a failed write (its background
/// error): nothing is applied from then on.
#[cfg(feature = "rocksdb")]
#[tokio::test]
async fn a_rocksdb_store_whose_medium_turns_read_only_refuses_writes_clearly() {
    let fs = Ext4::mount(64);
    let url = format!("rocksdb://{}/store", fs.path().display());
    a_medium_turning_read_only(&fs, &url, &[ErrorKind::Unsupported]).await;
}
