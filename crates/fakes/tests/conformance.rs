//! The whole conformance suite against the fakes: once against
//! [`FakeStores`] directly, once through a [`FaultInjector`] (over a
//! [`Recorder`]) with no faults armed, to prove the wrappers are transparent.

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Result, StoreEnv, Stores};
use stowage_fakes::{CallLog, FakeStores, FaultController, FaultInjector, Recorder};

/// Applies `target` to the memory engine under the fakes.
async fn tamper_fake(fakes: &FakeStores, target: Tamper) -> Result<()> {
    stowage_conformance::tamper_engine(fakes.backend().engine(), target).await
}

/// A fresh [`FakeStores`]: not durable (no reopen), tamperable.
struct FakeHarness {
    fakes: FakeStores,
}

#[async_trait]
impl Harness for FakeHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(self.fakes.stores())
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        // The fakes are the memory backend with a fake clock and ids.
        Ok(MemoryBackend::new(env).stores())
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        tamper_fake(&self.fakes, target).await
    }
}

/// A fresh [`FakeStores`] behind a recorder and a fault injector with
/// nothing armed.
struct WrappedHarness {
    fakes: FakeStores,
    stores: Stores,
    faults: FaultController,
    log: CallLog,
}

#[async_trait]
impl Harness for WrappedHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(self.stores.clone())
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        let (recorded, _log) = Recorder::wrap(MemoryBackend::new(env).stores());
        Ok(FaultInjector::wrap(recorded).0)
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        tamper_fake(&self.fakes, target).await
    }
}

async fn fake_harness() -> FakeHarness {
    FakeHarness {
        fakes: FakeStores::new(),
    }
}

async fn wrapped_harness() -> WrappedHarness {
    let fakes = FakeStores::new();
    let (recorded, log) = Recorder::wrap(fakes.stores());
    let (stores, faults) = FaultInjector::wrap(recorded);
    WrappedHarness {
        fakes,
        stores,
        faults,
        log,
    }
}

mod fakes {
    use super::fake_harness;
    stowage_conformance::conformance_tests!(fake_harness);
}

mod through_fault_injector {
    use super::wrapped_harness;
    stowage_conformance::conformance_tests!(wrapped_harness);
}

/// The second suite really exercises both layers: every call the checks
/// make passes the injector and the recorder, and nothing is injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrapped_harness_routes_every_call_through_both_layers() {
    let h = wrapped_harness().await;
    stowage_conformance::runs::concurrent_appends(&h).await;
    stowage_conformance::integrity::tampered_log_entry_corrupted(&h).await;
    let calls = h.faults.total_calls();
    assert!(
        calls > 1_000,
        "only {calls} calls went through the injector"
    );
    assert_eq!(h.faults.total_injected(), 0);
    assert_eq!(h.log.len() as u64, calls, "the recorder saw every call");
    assert!(
        h.log.calls().iter().any(|c| c.outcome.is_err()),
        "errors pass through too"
    );
}
