//! Closing stores wrapped by the interposer (recorder, fault injection)
//! closes the wrapped backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::{Close, Result, Stores};
use stowage_fakes::{FakeStores, FaultInjector, Recorder};

/// Counts how often the backend was closed.
struct Counting(Arc<AtomicUsize>);

#[async_trait]
impl Close for Counting {
    async fn close(&self) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn counted() -> (Stores, Arc<AtomicUsize>) {
    let closes = Arc::new(AtomicUsize::new(0));
    let stores = FakeStores::new()
        .stores()
        .with_closer(Arc::new(Counting(Arc::clone(&closes))));
    (stores, closes)
}

#[tokio::test]
async fn closing_a_wrapper_closes_the_backend_once() {
    let (inner, closes) = counted();
    let (recorded, _log) = Recorder::wrap(inner);
    let (faulty, _faults) = FaultInjector::wrap(recorded);
    faulty.close().await.unwrap();
    assert_eq!(closes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stores_without_a_closer_close_as_a_no_op() {
    let (recorded, log) = Recorder::wrap(FakeStores::new().stores());
    recorded.close().await.unwrap();
    assert!(log.is_empty(), "close is not a store call");
}
