//! A store on a read-only medium (a real `mount -o remount,ro` tmpfs):
//! opening it for writing is `Unsupported` pointing at `?mode=read_only`,
//! never `Internal`; the file backend opens it with `mode=read_only`, reads
//! and verifies everything, changes nothing and refuses writes; sled
//! refuses both clearly; SQLite (which would silently open the file
//! read-only and fail every write as retryable) refuses it at open.
#![cfg(any(feature = "file", feature = "sled", feature = "sqlite"))]

#[path = "support/tmpfs.rs"]
mod tmpfs;

use bytes::Bytes;
#[cfg(feature = "file")]
use serde_json::json;
use stowage_backends::open;
use stowage_core::ErrorKind;
#[cfg(any(feature = "file", feature = "sqlite"))]
use stowage_core::{Digest, LogKind, NewLogEntry};
use tmpfs::Tmpfs;

/// Every file under `dir` with its bytes, to prove nothing changed.
#[cfg(any(feature = "file", feature = "sqlite"))]
fn contents(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[cfg(feature = "file")]
#[tokio::test]
async fn a_file_store_on_a_read_only_mount_opens_with_mode_read_only() {
    let fs = Tmpfs::mount("16m");
    let url = format!("file://{}/store", fs.path().display());
    let blob = Bytes::from(vec![5u8; 300_000]);
    {
        let s = open(&url).await.unwrap();
        s.cas.put(blob.clone()).await.unwrap();
        s.sessions
            .create_session("s", json!({ "v": 1 }))
            .await
            .unwrap();
        for i in 0..3u8 {
            let e = NewLogEntry::new(LogKind::Incoming, "user", "text", vec![i; 100]);
            s.sessions.append_log("s", e).await.unwrap();
        }
    }
    fs.remount_read_only();
    let before = contents(&fs.path().join("store"));

    let err = open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("read-only"), "{err}");
    assert!(err.message().contains("mode=read_only"), "{err}");

    let s = open(&format!("{url}?mode=read_only")).await.unwrap();
    let d = Digest::of(&blob);
    assert_eq!(s.cas.get(&d).await.unwrap(), blob);
    s.cas.verify(&d).await.unwrap();
    assert_eq!(s.sessions.read_log("s", None, 100).await.unwrap().len(), 3);
    s.sessions.verify_log("s").await.unwrap();
    let err = s.cas.put(Bytes::from_static(b"new")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("mode=read_only"), "{err}");
    let e = NewLogEntry::new(LogKind::Incoming, "user", "text", vec![9]);
    let err = s.sessions.append_log("s", e).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    drop(s);
    assert!(
        contents(&fs.path().join("store")) == before,
        "a read-only open changed the store"
    );

    // A directory without a store is NotFound, not created.
    let missing = format!("file://{}/none?mode=read_only", fs.path().display());
    assert_eq!(
        open(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// `mode=read_only` also opens a store on writable storage without
/// touching it, even one with a torn tail, which it leaves in place.
#[cfg(feature = "file")]
#[tokio::test]
async fn mode_read_only_leaves_a_torn_tail_and_takes_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "file://{}/store?checkpoint_interval=0",
        dir.path().display()
    );
    let writer = open(&url).await.unwrap();
    writer.cas.put(Bytes::from_static(b"kept")).await.unwrap();
    // A second, read-only opener while the writer holds the lock.
    let reader = open(&format!("{url}&mode=read_only")).await.unwrap();
    assert!(reader.cas.contains(&Digest::of(b"kept")).await.unwrap());
    drop((reader, writer));
    let seg = dir.path().join("store").join(format!("{:016x}.wal", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(log_end(&bytes));
    bytes.extend_from_slice(&[0xab; 40]);
    std::fs::write(&seg, &bytes).unwrap();
    let reader = open(&format!("{url}&mode=read_only")).await.unwrap();
    assert!(reader.cas.contains(&Digest::of(b"kept")).await.unwrap());
    drop(reader);
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the torn tail was cut");
}

/// Where the records of a segment end: after its 24-byte header, each
/// record is a 24-byte header (payload length first, u32 LE) and its
/// payload; zeros follow the last one. (The last non-zero byte is not the
/// end: a record may end in zero bytes, a random id's for one.)
#[cfg(feature = "file")]
fn log_end(segment: &[u8]) -> usize {
    let mut at = 24;
    while let Some(len) = segment.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        at += 24 + len;
    }
    at
}

#[cfg(feature = "sled")]
#[tokio::test]
async fn a_sled_store_on_a_read_only_mount_is_refused_clearly() {
    let fs = Tmpfs::mount("64m");
    let url = format!("sled://{}/store", fs.path().display());
    {
        let s = open(&url).await.unwrap();
        s.cas.put(Bytes::from_static(b"x")).await.unwrap();
    }
    fs.remount_read_only();
    for url in [url.clone(), format!("{url}?mode=read_only")] {
        let err = open(&url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}: {err}");
        assert!(err.message().contains("read-only"), "{url}: {err}");
    }
}

/// SQLite opens a file it cannot write read-only without a word, so the
/// store used to open "durable" and fail every write with `Unavailable`
/// (retryable) forever. It is refused at open, `Unsupported` naming the
/// file, and nothing on the medium changes; a new file (or directory) on
/// the read-only medium is refused the same way.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_store_on_a_read_only_mount_is_refused_at_open() {
    let fs = Tmpfs::mount("16m");
    let url = format!("sqlite://{}/agents.db", fs.path().display());
    let blob = Bytes::from_static(b"x");
    {
        let s = open(&url).await.unwrap();
        s.cas.put(blob.clone()).await.unwrap();
        let e = NewLogEntry::new(LogKind::Incoming, "user", "text", vec![1; 10]);
        s.sessions
            .create_session("s", serde_json::json!({}))
            .await
            .unwrap();
        s.sessions.append_log("s", e).await.unwrap();
        s.close().await.unwrap();
    }
    fs.remount_read_only();
    let before = contents(fs.path());

    let err = open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.message().contains("read-only"), "{err}");
    assert!(err.message().contains("agents.db"), "{err}");
    for fresh in ["new.db", "sub/dir/new.db"] {
        let url = format!("sqlite://{}/{fresh}", fs.path().display());
        let err = open(&url).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}: {err}");
        assert!(err.message().contains("read-only"), "{url}: {err}");
    }
    assert!(
        contents(fs.path()) == before,
        "a refused open changed the medium"
    );

    // The data is intact: readable once the medium is writable again
    // (here: a copy on writable storage).
    let copy = tempfile::tempdir().unwrap();
    // The database with its WAL, if one is left: how a WAL database is
    // copied.
    for name in ["agents.db", "agents.db-wal"] {
        if fs.path().join(name).exists() {
            std::fs::copy(fs.path().join(name), copy.path().join(name)).unwrap();
        }
    }
    let s = open(&format!("sqlite://{}/agents.db", copy.path().display()))
        .await
        .unwrap();
    assert_eq!(s.cas.get(&Digest::of(&blob)).await.unwrap(), blob);
    assert_eq!(s.sessions.read_log("s", None, 10).await.unwrap().len(), 1);
    s.close().await.unwrap();
}
