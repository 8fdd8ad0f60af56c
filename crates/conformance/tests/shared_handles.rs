//! The `shared` checks themselves: they pass when two handles share one
//! memory store (as two processes share a Redis database) and fail when the
//! "second handle" is really a different store.

use std::panic::{catch_unwind, AssertUnwindSafe};

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{self as suite, Harness};
use stowage_core::{Result, StoreEnv, Stores};

/// A memory store that claims to be shared; `open_another` returns a second
/// handle onto the same state, or (when `split`) onto a different store.
struct SharedMemory {
    backend: MemoryBackend,
    split: bool,
}

impl SharedMemory {
    fn new(split: bool) -> Self {
        SharedMemory {
            backend: MemoryBackend::new(StoreEnv::default()),
            split,
        }
    }

    fn claim_shared(mut stores: Stores) -> Stores {
        stores.capabilities.shared = true;
        stores
    }
}

#[async_trait]
impl Harness for SharedMemory {
    async fn open(&self) -> Result<Stores> {
        Ok(Self::claim_shared(self.backend.stores()))
    }

    async fn open_another(&self, _stores: &Stores) -> Result<Stores> {
        if self.split {
            let other = MemoryBackend::new(StoreEnv::default());
            return Ok(Self::claim_shared(other.stores()));
        }
        Ok(Self::claim_shared(self.backend.stores()))
    }
}

#[test]
fn two_handles_onto_one_store_pass() {
    suite::__run(async {
        // Each check expects a fresh store.
        suite::shared::handles_see_each_other(&SharedMemory::new(false)).await;
        suite::shared::handles_race(&SharedMemory::new(false)).await;
    });
}

#[test]
fn handles_onto_different_stores_fail_see_each_other() {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        suite::__run(async {
            suite::shared::handles_see_each_other(&SharedMemory::new(true)).await
        })
    }));
    assert!(
        outcome.is_err(),
        "handles_see_each_other passed with two unrelated stores"
    );
}

#[test]
fn handles_onto_different_stores_fail_race() {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        suite::__run(async { suite::shared::handles_race(&SharedMemory::new(true)).await })
    }));
    assert!(
        outcome.is_err(),
        "handles_race passed with two unrelated stores"
    );
}
