//! The whole conformance suite through every layer stacked on the memory
//! backend — in two orders, with the fakes' fault injector (nothing armed)
//! and call recorder in the stack too — to prove the layers are
//! transparent and compose in any order.

use std::time::Duration;

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Result, StoreEnv, Stores};
use stowage_fakes::{CallLog, FaultController, FaultInjector, Recorder};
use stowage_layers::{MetricsLayer, RetryLayer, TimeoutLayer, TracingLayer};

/// The memory backend behind a stack of layers.
struct LayeredHarness {
    backend: MemoryBackend,
    stores: Stores,
    faults: FaultController,
    log: CallLog,
}

#[async_trait]
impl Harness for LayeredHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(self.stores.clone())
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        stowage_conformance::tamper_engine(self.backend.engine(), target).await
    }
}

/// A generous deadline: the suite's concurrency checks must never hit it.
const DEADLINE: Duration = Duration::from_secs(120);

/// Innermost first: faults, timeout, retry, recorder, metrics, tracing.
async fn tracing_outermost() -> LayeredHarness {
    let backend = MemoryBackend::new(StoreEnv::default());
    let faults = FaultController::new();
    let log = CallLog::default();
    let stores = backend
        .stores()
        .layer(&faults)
        .layer(TimeoutLayer::new(DEADLINE))
        .layer(RetryLayer::new())
        .layer(&log)
        .layer(MetricsLayer::new())
        .layer(TracingLayer::new());
    LayeredHarness {
        backend,
        stores,
        faults,
        log,
    }
}

/// The reverse order: tracing, metrics, recorder, retry, timeout, faults.
async fn tracing_innermost() -> LayeredHarness {
    let backend = MemoryBackend::new(StoreEnv::default());
    let (recorded, log) = Recorder::wrap(
        backend
            .stores()
            .layer(TracingLayer::new())
            .layer(MetricsLayer::new()),
    );
    let (faulty, faults) = FaultInjector::wrap(
        recorded
            .layer(RetryLayer::new())
            .layer(TimeoutLayer::new(DEADLINE)),
    );
    LayeredHarness {
        backend,
        stores: faulty,
        faults,
        log,
    }
}

mod tracing_outermost {
    use super::tracing_outermost;
    stowage_conformance::conformance_tests!(tracing_outermost);
}

mod tracing_innermost {
    use super::tracing_innermost;
    stowage_conformance::conformance_tests!(tracing_innermost);
}

/// The suite really passes through the whole stack: every call reaches the
/// injector and the recorder, nothing is injected, and errors pass through
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_passes_every_layer() {
    for h in [tracing_outermost().await, tracing_innermost().await] {
        stowage_conformance::runs::concurrent_appends(&h).await;
        stowage_conformance::integrity::tampered_log_entry_corrupted(&h).await;
        let calls = h.faults.total_calls();
        assert!(
            calls > 1_000,
            "only {calls} calls went through the injector"
        );
        assert_eq!(h.faults.total_injected(), 0);
        assert_eq!(h.log.len() as u64, calls, "the recorder saw every call");
        assert!(h.log.calls().iter().any(|c| c.outcome.is_err()));
    }
}
