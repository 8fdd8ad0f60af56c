//! Tests of what the [`KvEngine`](super::engine::KvEngine) adapter adds:
//! the run-record cache after failed writes, and durability tickets
//! covering what a job read.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::json;
use stowage_core::{Digest, Error, ErrorKind, NewEvent, Result, RunMetadata, RunSummary, Stores};

use super::seam::{Batch, DurableFuture, OrderedKv};
use super::testing::{reads_from_inner, test_stores, MemKv};

/// Fails the next write: 1 = without applying it, 2 = after applying it
/// (an ambiguous outcome, as when a sync fails after the data was written).
#[derive(Default)]
struct FlakyKv {
    inner: MemKv,
    fail_next: AtomicU8,
}

impl OrderedKv for FlakyKv {
    reads_from_inner!();

    fn write(&self, batch: Batch) -> Result<()> {
        match self.fail_next.swap(0, Ordering::SeqCst) {
            1 => Err(Error::internal("injected write failure")),
            2 => {
                self.inner.write(batch)?;
                Err(Error::internal("injected failure after the write"))
            }
            _ => self.inner.write(batch),
        }
    }
}

fn flaky_stores() -> (Stores, Arc<FlakyKv>) {
    test_stores(FlakyKv::default())
}

#[tokio::test]
async fn failed_appends_leave_no_cached_head_behind() {
    let (stores, engine) = flaky_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    let step = |i: u64| NewEvent::new("step", json!({ "i": i }));
    let first = stores.runs.append_event(run, step(0)).await.unwrap();
    assert_eq!(first.seq, 0);

    // A write that fails without applying: the next append reuses seq 1.
    engine.fail_next.store(1, Ordering::SeqCst);
    assert!(stores.runs.append_event(run, step(1)).await.is_err());
    let second = stores.runs.append_event(run, step(1)).await.unwrap();
    assert_eq!((second.seq, second.prev_hash), (1, Some(first.hash)));

    // A write that applied but reported failure: the next append sees it.
    engine.fail_next.store(2, Ordering::SeqCst);
    assert!(stores.runs.append_event(run, step(2)).await.is_err());
    let fourth = stores.runs.append_event(run, step(3)).await.unwrap();
    assert_eq!(fourth.seq, 3);
    let events = stores.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(fourth.prev_hash, events.get(2).map(|e| e.hash));
    assert_eq!(stores.runs.verify_run(run).await.unwrap().len, 4);
    assert_eq!(stores.runs.get_run(run).await.unwrap().event_count, 4);

    // A finished run takes no more appends, cached or not.
    stores
        .runs
        .complete_run(run, RunSummary::new("done"))
        .await
        .unwrap();
    let err = stores.runs.append_event(run, step(4)).await.unwrap_err();
    assert_ne!(err.kind(), ErrorKind::Internal);
    assert_eq!(stores.runs.get_run(run).await.unwrap().event_count, 4);
}

#[tokio::test]
async fn idempotent_retries_keep_the_head() {
    let (stores, _) = flaky_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    let keyed = || {
        let mut event = NewEvent::new("step", json!({}));
        event.idempotency_key = Some("k".into());
        event
    };
    let a = stores.runs.append_event(run, keyed()).await.unwrap();
    let again = stores.runs.append_event(run, keyed()).await.unwrap();
    assert_eq!(a, again);
    let next = stores
        .runs
        .append_event(run, NewEvent::new("step", json!({})))
        .await
        .unwrap();
    assert_eq!((next.seq, next.prev_hash), (1, Some(a.hash)));
}

/// An engine with group commit whose fsyncs the test controls: every
/// deferred write gets the next ticket, and a wait for durability (the
/// writer thread's or an async one) records the ticket it was asked for
/// and marks it durable.
#[derive(Default)]
struct Deferring {
    inner: MemKv,
    written: AtomicU64,
    synced: AtomicU64,
    waits: Mutex<Vec<u64>>,
}

impl OrderedKv for Deferring {
    reads_from_inner!();

    fn write(&self, batch: Batch) -> Result<()> {
        self.inner.write(batch)
    }

    fn group_commits(&self) -> bool {
        true
    }

    fn write_deferred(&self, batch: Batch) -> Result<Option<u64>> {
        self.inner.write(batch)?;
        Ok(Some(self.written.fetch_add(1, Ordering::SeqCst) + 1))
    }

    fn unsynced_ticket(&self) -> Option<u64> {
        let written = self.written.load(Ordering::SeqCst);
        (written > self.synced.load(Ordering::SeqCst)).then_some(written)
    }

    fn wait_durable_blocking(&self, ticket: u64) -> Result<()> {
        self.waits.lock().push(ticket);
        self.synced.fetch_max(ticket, Ordering::SeqCst);
        Ok(())
    }

    fn wait_durable(self: Arc<Self>, ticket: u64) -> DurableFuture {
        Box::pin(std::future::ready(self.wait_durable_blocking(ticket)))
    }
}

#[tokio::test]
async fn a_retry_answered_from_a_write_not_yet_durable_waits_for_it() {
    let (stores, engine) = test_stores(Deferring::default());
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    let event = NewEvent::new("step", json!({})).with_idempotency_key("k");
    // create_run wrote three times: its call's spec reference, the run,
    // then the removal of the call's reference (not waited for).
    let original = stores.runs.append_event(run, event.clone()).await.unwrap();
    assert_eq!(*engine.waits.lock(), vec![1, 2, 4]);
    // As if the original's fsync were still running.
    engine.synced.store(3, Ordering::SeqCst);
    let retried = stores.runs.append_event(run, event).await.unwrap();
    assert_eq!(retried, original);
    assert_eq!(*engine.waits.lock(), vec![1, 2, 4, 4]);
    // Nothing pending: a retry answers at once.
    stores
        .runs
        .append_event(
            run,
            NewEvent::new("step", json!({})).with_idempotency_key("k"),
        )
        .await
        .unwrap();
    assert_eq!(*engine.waits.lock(), vec![1, 2, 4, 4]);
}
