//! Opening the file backend by URL through the public API: options,
//! capabilities, the single-opener lock, and durability across reopen.

#![cfg(feature = "file")]

#[path = "support/reopen.rs"]
mod reopen;

use bytes::Bytes;
use stowage_backends::open;
use stowage_core::{DurabilityLevel, ErrorKind};

fn url(dir: &std::path::Path, query: &str) -> String {
    let mut u = url::Url::from_file_path(dir).expect("absolute temp dir");
    if !query.is_empty() {
        u.set_query(Some(query));
    }
    u.to_string()
}

#[tokio::test]
async fn bad_urls_are_invalid_input() {
    for bad in [
        "file:///",
        "file://somehost/dir",
        "file:///tmp/x?durability=sometimes",
        "file:///tmp/x?unknown=1",
        "file:///tmp/x?segment_size=12",
        "file:///tmp/x?salvage=maybe",
    ] {
        let err = open(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
    }
}

#[tokio::test]
async fn stores_open_by_url_and_declare_their_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&url(&dir.path().join("s"), "max_blob_size=100"))
        .await
        .unwrap();
    let caps = &stores.capabilities;
    assert_eq!(caps.backend, "file");
    assert!(caps.survives_power_loss() && caps.streaming && !caps.shared);
    assert_eq!(caps.durability, DurabilityLevel::PowerLoss);
    assert_eq!(caps.max_blob_size, 100);
    let err = stores.cas.put(Bytes::from(vec![0; 101])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let d = stores.cas.put(Bytes::from(vec![0; 100])).await.unwrap();
    assert_eq!(stores.cas.stat(&d).await.unwrap().size, 100);
}

#[tokio::test]
async fn a_second_opener_gets_an_error_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let u = url(&dir.path().join("s"), "");
    let first = open(&u).await.unwrap();
    let err = open(&u).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let pid = std::process::id().to_string();
    assert!(err.message().contains(&pid), "names the holder: {err}");
    drop(first);
    open(&u).await.unwrap();
}

#[tokio::test]
async fn writes_survive_reopen_in_both_durability_modes() {
    for query in [
        "durability=sync",
        "durability=buffered",
        "segment_size=4096",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let u = url(&dir.path().join("s"), query);
        let stores = open(&u).await.unwrap();
        let mut digests = Vec::new();
        for i in 0..50u32 {
            let bytes = Bytes::from(vec![i as u8; 1000 + i as usize]);
            digests.push((stores.cas.put(bytes.clone()).await.unwrap(), bytes));
        }
        drop(stores);
        let stores = open(&u).await.unwrap();
        for (d, bytes) in &digests {
            assert_eq!(&stores.cas.get(d).await.unwrap(), bytes, "{query}");
        }
    }
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let u = url(&store, "segment_size=4096&checkpoint_interval=0");
    let stores = open(&u).await.unwrap();
    for i in 0..20u8 {
        stores.cas.put(Bytes::from(vec![i; 3000])).await.unwrap();
    }
    drop(stores);
    let first = store.join(format!("{:016x}.wal", 1));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let err = open(&u).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("0000000000000001.wal"), "{err}");
    assert!(err.message().contains("offset"), "{err}");
    // Salvage opens what is intact and the store works again.
    let salvaged = open(&url(
        &store,
        "segment_size=4096&checkpoint_interval=0&salvage=true",
    ))
    .await
    .unwrap();
    salvaged
        .cas
        .put(Bytes::from_static(b"after"))
        .await
        .unwrap();
}

/// Maintenance due after writes through the stores (a checkpoint every
/// 8 KiB of log here) runs on its own: checkpoints appear, deleted blobs'
/// segments are compacted away, and every live blob survives reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_checkpoints_and_compaction_run_during_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let u = url(&store, "segment_size=4096&checkpoint_interval=8192");
    let stores = open(&u).await.unwrap();
    let mut live = Vec::new();
    let mut written = 0u64;
    for i in 0..300u32 {
        let bytes = Bytes::from(vec![(i % 251) as u8; 900 + i as usize]);
        written += bytes.len() as u64;
        let digest = stores.cas.put(bytes.clone()).await.unwrap();
        if i % 10 == 0 {
            live.push((digest, bytes));
        } else {
            stores.cas.delete(&digest).await.unwrap();
        }
    }
    let files: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".ckp")),
        "a checkpoint was written: {files:?}"
    );
    let log_bytes: u64 = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".wal") || name.ends_with(".pack")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        log_bytes < written / 2,
        "compaction reclaimed the deleted blobs: {log_bytes} bytes of log and packs for {written} written"
    );
    drop(stores);
    let stores = open(&u).await.unwrap();
    for (d, bytes) in &live {
        assert_eq!(&stores.cas.get(d).await.unwrap(), bytes);
    }
}

/// `?require=` on file and memory URLs: buffered is `process_crash`, memory
/// is `none`, an unknown level is `InvalidInput` listing the levels.
#[tokio::test]
async fn require_checks_the_durability_level_of_file_and_memory_urls() {
    let dir = tempfile::tempdir().unwrap();
    let buffered = url(
        &dir.path().join("b"),
        "durability=buffered&require=power_loss",
    );
    let err = open(&buffered).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        err.message().contains("offers durability process_crash"),
        "{err}"
    );
    assert!(!dir.path().join("b").exists());
    let ok = url(
        &dir.path().join("b"),
        "durability=buffered&require=process_crash",
    );
    let s = open(&ok).await.unwrap();
    assert_eq!(s.capabilities.durability, DurabilityLevel::ProcessCrash);
    drop(s);
    let s = open(&url(&dir.path().join("s"), "require=power_loss"))
        .await
        .unwrap();
    assert!(s.capabilities.survives_power_loss());
    drop(s);
    let err = open("memory://?require=process_crash").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("offers durability none"), "{err}");
    assert_eq!(
        open("memory://?require=none")
            .await
            .unwrap()
            .capabilities
            .durability,
        DurabilityLevel::None
    );
    let err = open(&url(&dir.path().join("x"), "require=fsync"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("power_loss"), "{err}");
}

/// A child process being spawned shares the lock file's open file until it
/// execs: a store this process has just closed must still reopen at once
/// (the lock naming this process is retried briefly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_reopens_while_the_process_spawns_children() {
    let dir = tempfile::tempdir().unwrap();
    let url = url(dir.path(), "");
    reopen::reopens_while_spawning(&url, 100).await;
}
