//! `Stores::close` over the engine on the simulated disk: it flushes,
//! releases the lock even while the test keeps the engine alive, and
//! reports a failed fsync instead of swallowing it.

use super::super::vfs::Vfs;
use super::*;
use bytes::Bytes;
use stowage_core::{Durability, ErrorKind};

fn buffered() -> FileOptions {
    FileOptions {
        durability: Durability::Buffered,
        ..small_opts()
    }
}

#[test]
fn close_makes_buffered_writes_durable_and_releases_the_lock() {
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, buffered()).unwrap());
    let stores = stores_over(&kv).unwrap();
    let rt = runtime();
    let digest = rt.block_on(async {
        let d = stores.cas.put(Bytes::from_static(b"kept")).await.unwrap();
        stores.close().await.unwrap();
        d
    });
    // `kv` is still alive here: close released the lock itself.
    let again = open_sim(&fs, buffered()).unwrap();
    drop(again);
    drop(kv);
    // Only synced data survives power loss: close synced the buffered put.
    fs.power_loss(None);
    let kv = Arc::new(open_sim(&fs, buffered()).unwrap());
    let stores = stores_over(&kv).unwrap();
    rt.block_on(async {
        assert_eq!(&stores.cas.get(&digest).await.unwrap()[..], b"kept");
    });
}

#[test]
fn close_returns_the_error_of_a_failed_fsync_and_still_releases_the_lock() {
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, buffered()).unwrap());
    let stores = stores_over(&kv).unwrap();
    let rt = runtime();
    rt.block_on(async {
        stores.cas.put(Bytes::from_static(b"x")).await.unwrap();
        fs.fail_next_sync();
        let err = stores.close().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
        assert!(err.message().contains("file store"), "{err}");
    });
    assert!(open_sim(&fs, buffered()).is_ok(), "the lock was released");
}

#[test]
fn close_of_a_poisoned_store_reports_the_poison() {
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, small_opts()).unwrap());
    let stores = stores_over(&kv).unwrap();
    let rt = runtime();
    rt.block_on(async {
        fs.fail_next_sync();
        assert!(stores.cas.put(Bytes::from_static(b"x")).await.is_err());
        let err = stores.close().await.unwrap_err();
        assert!(err.message().contains("failed fsync"), "{err}");
    });
    assert!(open_sim(&fs, small_opts()).is_ok(), "the lock was released");
}

#[test]
fn handles_kept_past_close_get_a_clear_error() {
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, small_opts()).unwrap());
    let stores = stores_over(&kv).unwrap();
    let kept = stores.clone();
    let rt = runtime();
    rt.block_on(async {
        let d = kept.cas.put(Bytes::from_static(b"x")).await.unwrap();
        stores.close().await.unwrap();
        let err = kept.cas.get(&d).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.message().contains("closed"), "{err}");
        let err = kept.cas.put(Bytes::from_static(b"y")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        // Closing again (through the kept clone) is fine.
        kept.close().await.unwrap();
    });
}

/// A group-commit round handed to a blocking pool that is shutting down
/// (a task finishing while its runtime drops) is dropped unrun; it gives
/// its lead back, so later waits for durability — here, the checkpoint of
/// an engine dropped on the way out — lead a round themselves instead of
/// waiting forever for one that never comes.
#[test]
fn a_round_dropped_by_a_shutting_down_runtime_gives_its_lead_back() {
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, small_opts()).unwrap());
    let mut batch = Batch::default();
    batch.put(Table::Meta, b"k".to_vec(), b"v".to_vec());
    let seq = kv.append_batch(&batch).unwrap().expect("a synced store");

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = rt.handle().clone();
    rt.shutdown_background();
    let err = handle
        .block_on(Arc::clone(&kv).durable(seq))
        .expect_err("no blocking pool runs the round");
    // The record is written and the close below makes it durable: what
    // the caller was told is that the outcome is unknown, not a failure.
    assert_eq!(err.kind(), stowage_core::ErrorKind::OutcomeUnknown, "{err}");

    let (done, finished) = std::sync::mpsc::channel();
    let kv2 = Arc::clone(&kv);
    std::thread::spawn(move || done.send(kv2.block_until_durable(seq)));
    let outcome = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("waiting for durability hung: the dropped round kept its lead");
    outcome.unwrap();
}

/// A checkpoint that failed leaves the store due for one: the close tries
/// again instead of reporting a clean close with no checkpoint written.
#[test]
fn close_after_a_failed_checkpoint_checkpoints() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    for b in workload(3, 20) {
        kv.write(b).unwrap();
    }
    fs.fail_next_create();
    kv.checkpoint().unwrap_err();
    let ckps = |fs: &SimFs| {
        fs.list(&sim_dir())
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".ckp"))
            .count()
    };
    assert_eq!(ckps(&fs), 0);
    kv.close().unwrap();
    assert_eq!(ckps(&fs), 1, "the close wrote the checkpoint");
}
