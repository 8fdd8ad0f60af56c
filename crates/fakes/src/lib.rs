//! # stowage-fakes
//!
//! Fakes for downstream test suites (SPEC §9): write your tests against the
//! same [`Stores`](stowage_core::Stores) your application uses, and control
//! time, ids, failures and latency from the test.
//!
//! | part | what it is for |
//! |---|---|
//! | [`FakeStores`] | in-memory stores that pass the whole conformance suite, so tests against them mean something; deterministic (fake clock, sequential ids); [`snapshot`](FakeStores::snapshot) / [`fork`](FakeStores::fork) of the whole state |
//! | [`FakeClock`] | a [`Clock`](stowage_core::Clock) that moves only when told (set, advance, or auto-advance per read); clones share it |
//! | [`SequentialIds`] | an [`IdGenerator`](stowage_core::IdGenerator) issuing reproducible, strictly increasing UUID v7 run ids, also with a frozen clock |
//! | [`FaultInjector`] | wraps **any** `Stores` (a fake or a real backend): fail the next / n-th / every / a seeded fraction of the calls of an [`Operation`] (or a whole store, every write, any call — see [`Scope`]) with a chosen [`ErrorKind`](stowage_core::ErrorKind), before or after the call is applied, and add latency |
//! | [`Recorder`] | wraps any `Stores` and records every call: operation, key arguments, outcome |
//! | [`interpose`] / [`Interceptor`] | the one wrapper both of the above plug into (re-exported from [`stowage_core::layer`], where the tracing, metrics, retry and timeout layers of `stowage-layers` plug in too); write your own interceptor to pause or observe calls |
//!
//! Wrappers stack: `Recorder::wrap(FaultInjector::wrap(fakes.stores()).0)`
//! records what the code under test saw, injected errors included. A
//! [`FaultController`] and a [`CallLog`] are also [`Layer`]s, so they stack
//! in one chain with each other and with the tracing, metrics, retry and
//! timeout layers of `stowage-layers`:
//! `fakes.stores().layer(&faults).layer(&log)`.
//!
//! ## A downstream test
//!
//! Code under test: store a tool output, retrying transient failures.
//!
//! ```
//! use stowage_core::{Digest, ErrorKind, Result, Stores};
//! use stowage_fakes::{FakeStores, FaultInjector, Operation, Recorder};
//!
//! async fn save_output(stores: &Stores, output: &'static [u8]) -> Result<Digest> {
//!     let mut attempts = 0;
//!     loop {
//!         match stores.cas.put(bytes::Bytes::from_static(output)).await {
//!             Err(e) if e.is_retryable() && attempts < 3 => attempts += 1,
//!             other => return other,
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // #[tokio::test] async fn retries_unavailable_puts() {
//! let fakes = FakeStores::new();
//! let (faulty, faults) = FaultInjector::wrap(fakes.stores());
//! let (stores, log) = Recorder::wrap(faulty);
//!
//! faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
//! faults.fail_nth(Operation::CasPut, 2, ErrorKind::Unavailable);
//!
//! let digest = save_output(&stores, b"tool output").await.unwrap();
//!
//! assert_eq!(faults.injected(Operation::CasPut), 2);
//! let outcomes: Vec<_> = log.calls().iter().map(|c| c.outcome).collect();
//! assert_eq!(outcomes, [Err(ErrorKind::Unavailable), Err(ErrorKind::Unavailable), Ok(())]);
//! // The fake really stored it.
//! assert!(fakes.stores().cas.contains(&digest).await.unwrap());
//! // }
//! # });
//! ```
//!
//! ## Determinism
//!
//! With [`FakeStores::new`] every timestamp is [`FakeClock::DEFAULT_START`]
//! until the test moves the clock, and run ids are
//! `RunId::new_v7(now, 0)`, `RunId::new_v7(now, 1)`, …, so assertions on
//! ids, timestamps and list orders are stable across runs. Fraction faults
//! draw from a generator seeded by the test. Latency uses
//! [`tokio::time::sleep`]: under `tokio::time::pause` it costs no real time.
//!
//! ## What the fakes are not
//!
//! They are not durable (the conformance suite's reopen checks do not
//! apply) and not shared between processes.

mod clock;
mod fake_stores;
mod fault;
mod ids;
mod operation;
mod recorder;

pub use clock::FakeClock;
pub use fake_stores::{FakeStores, Snapshot};
pub use fault::{Fault, FaultController, FaultInjector, RuleId, Timing, Trigger};
pub use ids::SequentialIds;
pub use operation::{Operation, Scope, StoreKind};
pub use recorder::{CallLog, RecordedCall, Recorder};
pub use stowage_core::layer::{interpose, Call, Entity, Interceptor, Layer, Outcome, Proceed};

#[cfg(test)]
mod send_sync {
    use super::*;
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<FakeStores>();
        assert_send_sync::<Snapshot>();
        assert_send_sync::<FakeClock>();
        assert_send_sync::<SequentialIds>();
        assert_send_sync::<FaultController>();
        assert_send_sync::<CallLog>();
    }
}
