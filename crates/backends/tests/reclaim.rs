//! Space freed by lifecycle deletions goes back to the file system on
//! `Lifecycle::compact` (docs/lifecycle.md): the store's directory or file
//! shrinks, and what remains reads back.

#![cfg(any(feature = "file", feature = "sqlite"))]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use stowage_core::lifecycle::{BlobGc, RunRetention};
use stowage_core::{RunMetadata, RunSummary, Stores};

/// Bytes of every file under `path` (or of `path` itself).
fn disk_usage(path: &Path) -> u64 {
    let meta = std::fs::metadata(path).expect("stat the store");
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .expect("list the store")
        .map(|e| disk_usage(&e.expect("a directory entry").path()))
        .sum()
}

/// Writes 8 MiB of blobs and 60 runs, deletes nine tenths of both, and
/// returns the digests and runs that remain.
async fn fill_then_delete(s: &Stores) -> (Vec<stowage_core::Digest>, Vec<stowage_core::RunId>) {
    let mut blobs = Vec::new();
    for n in 0..32u8 {
        blobs.push(
            s.cas
                .put(Bytes::from(vec![n; 256 * 1024]))
                .await
                .expect("put"),
        );
    }
    let mut runs = Vec::new();
    for n in 0..60u64 {
        let id = s
            .runs
            .create_run(
                stowage_core::Digest::of(&n.to_be_bytes()),
                RunMetadata::new("a"),
            )
            .await
            .expect("create_run");
        for e in 0..20 {
            let event = stowage_core::NewEvent::new(
                "step",
                serde_json::json!({"e": e, "pad": "x".repeat(200)}),
            );
            s.runs.append_event(id, event).await.expect("append");
        }
        runs.push(id);
    }
    // Keep every tenth; prune the other runs and collect the other blobs.
    for (i, id) in runs.iter().enumerate() {
        if i % 10 == 0 {
            s.lifecycle
                .pin_blob(&blobs[i % 32], "keep")
                .await
                .expect("pin");
        } else {
            s.runs
                .complete_run(*id, RunSummary::new("done"))
                .await
                .expect("complete");
        }
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut after = None;
    loop {
        let sweep = s
            .lifecycle
            .prune_runs(&RunRetention::finished().batch(16), after)
            .await
            .expect("prune_runs");
        match sweep.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut after = None;
    loop {
        let sweep = s
            .lifecycle
            .gc_blobs(&BlobGc::grace(Duration::ZERO).batch(8), after.as_ref())
            .await
            .expect("gc_blobs");
        match sweep.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let kept_runs: Vec<_> = runs.iter().step_by(10).copied().collect();
    let kept_blobs: Vec<_> = (0..60).step_by(10).map(|i| blobs[i % 32]).collect();
    (kept_blobs, kept_runs)
}

async fn check_remaining(s: &Stores, blobs: &[stowage_core::Digest], runs: &[stowage_core::RunId]) {
    for digest in blobs {
        s.cas.verify(digest).await.expect("a kept blob verifies");
    }
    for id in runs {
        assert_eq!(
            s.runs
                .read_events(*id, None, 100)
                .await
                .expect("read")
                .len(),
            20
        );
        s.runs.verify_run(*id).await.expect("a kept run verifies");
    }
    let stats = s.lifecycle.stats().await.expect("stats");
    assert_eq!((stats.runs, stats.run_events), (6, 120));
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_compaction_returns_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    let url = format!(
        "{}?segment_size=1048576&checkpoint_interval=0",
        url::Url::from_file_path(&store).expect("absolute")
    );
    let s = stowage_backends::open(&url).await.expect("open");
    let (blobs, runs) = fill_then_delete(&s).await;
    let before = disk_usage(&store);
    s.lifecycle.compact().await.expect("compact");
    let after = disk_usage(&store);
    assert!(
        after * 3 < before,
        "compaction returned too little: {before} bytes before, {after} after"
    );
    check_remaining(&s, &blobs, &runs).await;
    s.close().await.expect("close");
    let s = stowage_backends::open(&url).await.expect("reopen");
    check_remaining(&s, &blobs, &runs).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_vacuum_returns_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let url = format!("sqlite://{}", path.display());
    let s = stowage_backends::open(&url).await.expect("open");
    let (blobs, runs) = fill_then_delete(&s).await;
    let before = disk_usage(dir.path());
    s.lifecycle.compact().await.expect("compact");
    let after = disk_usage(dir.path());
    assert!(
        after * 3 < before,
        "VACUUM returned too little: {before} bytes before, {after} after"
    );
    check_remaining(&s, &blobs, &runs).await;
    // Other writers carry on after a vacuum.
    s.cas
        .put(Bytes::from_static(b"after"))
        .await
        .expect("put after vacuum");
}
