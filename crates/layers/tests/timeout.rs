//! The timeout layer against latency injected by the fakes' fault
//! injector, on Tokio's paused clock (no real waiting).

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::{ErrorKind, NewEvent, RunMetadata, StoreEnv, Stores};
use stowage_fakes::{FaultController, FaultInjector, Operation};
use stowage_layers::{RetryLayer, TimeoutLayer};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(1);

fn setup() -> (Stores, FaultController, Stores) {
    let bare = MemoryBackend::new(StoreEnv::default()).stores();
    let (faulty, faults) = FaultInjector::wrap(bare.clone());
    (faulty, faults, bare)
}

async fn new_run(stores: &Stores) -> stowage_core::RunId {
    let spec = stores.cas.put(Bytes::from_static(b"spec")).await.unwrap();
    stores
        .runs
        .create_run(spec, RunMetadata::new("agent"))
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_write_is_outcome_unknown_at_the_deadline() {
    let (faulty, faults, _bare) = setup();
    let stores = faulty.layer(TimeoutLayer::new(DEADLINE));
    let run = new_run(&stores).await;
    faults.add_latency(Operation::RunsAppendEvent, Duration::from_secs(30));
    let started = Instant::now();
    let err = stores
        .runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), DEADLINE, "answered at the deadline");
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    let message = err.message();
    assert!(message.contains("runs.append_event"), "{message}");
    assert!(message.contains(&run.to_string()), "{message}");
    assert!(message.contains("1s"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_read_is_unavailable() {
    let (faulty, faults, _bare) = setup();
    let stores = faulty.layer(TimeoutLayer::new(DEADLINE));
    let run = new_run(&stores).await;
    faults.add_latency(Operation::RunsGetRun, Duration::from_secs(30));
    let err = stores.runs.get_run(run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("runs.get_run"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn calls_within_the_deadline_pass() {
    let (faulty, faults, _bare) = setup();
    let stores = faulty.layer(TimeoutLayer::new(DEADLINE));
    let run = new_run(&stores).await;
    faults.add_latency(Operation::RunsAppendEvent, Duration::from_millis(999));
    let event = stores
        .runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap();
    assert_eq!(event.seq, 0);
}

/// Timeout below retry: each attempt gets the deadline. A timed-out read
/// is retried; a timed-out append without a key is not, with one it is.
#[tokio::test(start_paused = true)]
async fn under_a_retry_layer_each_attempt_has_the_deadline() {
    let (faulty, faults, bare) = setup();
    let retry = RetryLayer::new()
        .with_max_attempts(3)
        .with_base_delay(Duration::from_millis(100))
        .with_jitter(false);
    let stores = faulty.layer(TimeoutLayer::new(DEADLINE)).layer(retry);
    let run = new_run(&stores).await;

    let slow_reads = faults.add_latency(Operation::RunsGetRun, Duration::from_secs(30));
    let started = Instant::now();
    let err = stores.runs.get_run(run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(faults.calls(Operation::RunsGetRun), 3);
    // Three deadlines and two backoffs (100 ms, 200 ms).
    assert_eq!(started.elapsed(), Duration::from_millis(3_300));
    faults.remove(slow_reads);

    let slow_appends = faults.add_latency(Operation::RunsAppendEvent, Duration::from_secs(30));
    let err = stores
        .runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(
        faults.calls(Operation::RunsAppendEvent),
        1,
        "no key: not retried"
    );

    let mut keyed = NewEvent::new("step", json!(2));
    keyed.idempotency_key = Some("k".into());
    let err = stores
        .runs
        .append_event(run, keyed.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(
        faults.calls(Operation::RunsAppendEvent),
        4,
        "keyed: retried"
    );
    faults.remove(slow_appends);
    let appended = stores.runs.append_event(run, keyed).await.unwrap();
    assert_eq!(appended.seq, 0);
    assert_eq!(bare.runs.read_events(run, None, 10).await.unwrap().len(), 1);
}

/// Timeout above retry: the deadline bounds all attempts together.
#[tokio::test(start_paused = true)]
async fn above_a_retry_layer_the_deadline_bounds_all_attempts() {
    let (faulty, faults, _bare) = setup();
    let retry = RetryLayer::new()
        .with_max_attempts(10)
        .with_base_delay(Duration::from_millis(300))
        .with_jitter(false);
    let stores = faulty.layer(retry).layer(TimeoutLayer::new(DEADLINE));
    faults.fail_always(Operation::CasGet, ErrorKind::Unavailable);
    let started = Instant::now();
    let err = stores
        .cas
        .get(&stowage_core::Digest::of(b"x"))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), DEADLINE);
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("did not answer within"), "{err}");
    // Attempts at 0, 300 ms and 900 ms; the next would be at 2.1 s.
    assert_eq!(faults.calls(Operation::CasGet), 3);
}
