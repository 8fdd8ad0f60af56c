//! Deferred durability: a store call writes on the store's writer thread
//! (or a blocking-pool thread), which goes on with other work while the
//! caller waits for the engine's shared fsync asynchronously.
//!
//! [`collect`] runs one call's closure with a per-thread slot armed;
//! [`write`] lets the engine defer durability only while the slot is armed
//! and records the highest ticket in it. `KvStore::acknowledge` then
//! awaits that ticket before the call's result reaches its caller, so
//! nothing is acknowledged before it is durable. Outside `collect` (no slot armed)
//! [`write`] is an ordinary durable write, so a caller that would not wait
//! can never receive a deferred one.

use std::cell::Cell;

use stowage_core::Result;

use super::seam::{Batch, OrderedKv};

/// This thread's slot.
#[derive(Clone, Copy)]
enum Slot {
    /// No store call is collecting on this thread.
    Off,
    /// One is; the highest ticket written so far, if any.
    Armed(Option<u64>),
}

thread_local! {
    static SLOT: Cell<Slot> = const { Cell::new(Slot::Off) };
}

/// Disarms the slot when the closure returns or unwinds, so a panic never
/// leaves a later write on this pool thread deferred.
struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        SLOT.with(|s| s.set(Slot::Off));
    }
}

/// Runs `f` with deferred writes allowed; returns its result and the
/// ticket to await before acknowledging it (`None`: nothing deferred).
pub(super) fn collect<T>(f: impl FnOnce() -> Result<T>) -> (Result<T>, Option<u64>) {
    SLOT.with(|s| s.set(Slot::Armed(None)));
    let armed = Armed;
    let result = f();
    let ticket = match SLOT.with(Cell::get) {
        Slot::Armed(ticket) => ticket,
        Slot::Off => None,
    };
    drop(armed);
    (result, ticket)
}

/// Writes `batch`, deferring durability to the enclosing [`collect`] if
/// there is one.
pub(super) fn write(engine: &dyn OrderedKv, batch: Batch) -> Result<()> {
    let Slot::Armed(highest) = SLOT.with(Cell::get) else {
        return engine.write(batch);
    };
    if let Some(ticket) = engine.write_deferred(batch)? {
        SLOT.with(|s| s.set(Slot::Armed(highest.max(Some(ticket)))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use parking_lot::Mutex;
    use serde_json::json;
    use stowage_core::{Digest, NewEvent, RunMetadata};

    use super::super::seam::DurableFuture;
    use super::super::testing::{reads_from_inner, test_stores, MemKv};
    use super::*;

    /// An engine with group commit whose fsyncs the test controls: every
    /// deferred write gets the next ticket, and `wait_durable` records the
    /// ticket it was asked for and marks it durable.
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

        fn wait_durable(self: Arc<Self>, ticket: u64) -> DurableFuture {
            self.waits.lock().push(ticket);
            self.synced.fetch_max(ticket, Ordering::SeqCst);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[test]
    fn writes_outside_a_store_call_are_never_deferred() {
        let engine = Deferring::default();
        write(&engine, Batch::default()).unwrap();
        assert_eq!(engine.written.load(Ordering::SeqCst), 0);
        let (result, ticket) = collect(|| write(&engine, Batch::default()));
        result.unwrap();
        assert_eq!(ticket, Some(1));
        // Disarmed again once the call is over.
        write(&engine, Batch::default()).unwrap();
        assert_eq!(engine.written.load(Ordering::SeqCst), 1);
    }

    /// An idempotent retry writes nothing, but the original it returns may
    /// not be durable yet: the retry waits for it as well.
    #[tokio::test]
    async fn a_retry_answered_from_a_write_not_yet_durable_waits_for_it() {
        let (stores, engine) = test_stores(Deferring::default());
        let run = stores
            .runs
            .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
            .await
            .unwrap();
        let event = NewEvent {
            idempotency_key: Some("k".into()),
            ..NewEvent::new("step", json!({}))
        };
        let original = stores.runs.append_event(run, event.clone()).await.unwrap();
        assert_eq!(*engine.waits.lock(), vec![1, 2]);
        // As if the original's fsync were still running.
        engine.synced.store(1, Ordering::SeqCst);
        let retried = stores.runs.append_event(run, event).await.unwrap();
        assert_eq!(retried, original);
        assert_eq!(*engine.waits.lock(), vec![1, 2, 2]);
        // Nothing pending: a retry answers at once.
        stores
            .runs
            .append_event(
                run,
                NewEvent {
                    idempotency_key: Some("k".into()),
                    ..NewEvent::new("step", json!({}))
                },
            )
            .await
            .unwrap();
        assert_eq!(*engine.waits.lock(), vec![1, 2, 2]);
    }
}
