//! The retry layer against the fakes' fault injector: what is retried,
//! what never is, and the backoff between attempts.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::{Digest, ErrorKind, NewEvent, RunMetadata, StoreEnv, Stores};
use stowage_fakes::{Fault, FaultController, FaultInjector, Operation};
use stowage_layers::RetryLayer;
use tokio::time::Instant;

/// The memory backend behind a fault injector, behind `retry`; also the
/// bare stores, to look at what was really stored.
fn setup(retry: RetryLayer) -> (Stores, FaultController, Stores) {
    let bare = MemoryBackend::new(StoreEnv::default()).stores();
    let (faulty, faults) = FaultInjector::wrap(bare.clone());
    (faulty.layer(retry), faults, bare)
}

fn quick() -> RetryLayer {
    RetryLayer::new()
        .with_base_delay(Duration::from_millis(10))
        .with_max_attempts(4)
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
async fn unavailable_n_times_then_success() {
    let (stores, faults, bare) = setup(quick());
    let run = new_run(&stores).await;
    for n in 1..=3 {
        faults.fail_nth(Operation::RunsAppendEvent, n, ErrorKind::Unavailable);
    }
    let event = stores
        .runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap();
    assert_eq!(event.seq, 0);
    assert_eq!(faults.calls(Operation::RunsAppendEvent), 4);
    assert_eq!(faults.injected(Operation::RunsAppendEvent), 3);
    let stored = bare.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "applied exactly once");
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let (stores, faults, _bare) = setup(quick());
    faults.fail_always(Operation::CasGet, ErrorKind::Unavailable);
    let err = stores.cas.get(&Digest::of(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("injected"), "{err}");
    assert_eq!(faults.calls(Operation::CasGet), 4);
}

#[tokio::test(start_paused = true)]
async fn outcome_unknown_append_without_key_is_not_retried() {
    let (stores, faults, bare) = setup(quick());
    let run = new_run(&stores).await;
    faults.inject(Fault::next(Operation::RunsAppendEvent, ErrorKind::OutcomeUnknown).after_apply());
    let err = stores
        .runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(faults.calls(Operation::RunsAppendEvent), 1, "not retried");
    let stored = bare.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(
        stored.len(),
        1,
        "it was applied; a retry would have doubled it"
    );
}

#[tokio::test(start_paused = true)]
async fn outcome_unknown_append_with_key_is_retried_exactly_once() {
    let (stores, faults, bare) = setup(quick());
    let run = new_run(&stores).await;
    faults.inject(Fault::next(Operation::RunsAppendEvent, ErrorKind::OutcomeUnknown).after_apply());
    let mut event = NewEvent::new("step", json!(1));
    event.idempotency_key = Some("step-1".into());
    let appended = stores.runs.append_event(run, event).await.unwrap();
    assert_eq!(appended.seq, 0, "the original entry comes back");
    assert_eq!(faults.calls(Operation::RunsAppendEvent), 2, "retried once");
    let stored = bare.runs.read_events(run, None, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "the key made the retry exactly-once");
}

#[tokio::test(start_paused = true)]
async fn outcome_unknown_log_append_with_key_is_retried() {
    let (stores, faults, bare) = setup(quick());
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    faults
        .inject(Fault::next(Operation::SessionsAppendLog, ErrorKind::OutcomeUnknown).after_apply());
    let mut entry = stowage_core::NewLogEntry::new(
        stowage_core::LogKind::Incoming,
        "alice",
        "text",
        Bytes::from_static(b"hi"),
    );
    entry.idempotency_key = Some("msg-1".into());
    let appended = stores.sessions.append_log("s", entry).await.unwrap();
    assert_eq!(appended.seq, 0);
    assert_eq!(faults.calls(Operation::SessionsAppendLog), 2);
    assert_eq!(
        bare.sessions.read_log("s", None, 10).await.unwrap().len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn outcome_unknown_is_retried_for_idempotent_operations_only() {
    let (stores, faults, _bare) = setup(quick());
    // cas.put is content-addressed: repeating it stores nothing new.
    faults.inject(Fault::next(Operation::CasPut, ErrorKind::OutcomeUnknown).after_apply());
    let digest = stores.cas.put(Bytes::from_static(b"blob")).await.unwrap();
    assert_eq!(digest, Digest::of(b"blob"));
    assert_eq!(faults.calls(Operation::CasPut), 2);
    // A read changes nothing.
    faults.fail_next(Operation::CasContains, ErrorKind::OutcomeUnknown);
    assert!(stores.cas.contains(&digest).await.unwrap());
    assert_eq!(faults.calls(Operation::CasContains), 2);
    // Creating a session would fail with AlreadyExists the second time.
    faults.inject(
        Fault::next(Operation::SessionsCreateSession, ErrorKind::OutcomeUnknown).after_apply(),
    );
    let err = stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(faults.calls(Operation::SessionsCreateSession), 1);
}

#[tokio::test(start_paused = true)]
async fn other_errors_are_returned_at_once() {
    let (stores, faults, _bare) = setup(quick());
    for kind in [
        ErrorKind::Conflict,
        ErrorKind::Corrupted,
        ErrorKind::StorageFull,
        ErrorKind::Internal,
    ] {
        faults.reset_counters();
        faults.fail_next(Operation::CasGet, kind);
        let err = stores.cas.get(&Digest::of(b"x")).await.unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(faults.calls(Operation::CasGet), 1, "{kind} retried");
    }
    // Genuine errors of the store are not retried either.
    faults.reset_counters();
    let err = stores.cas.get(&Digest::of(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(faults.calls(Operation::CasGet), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stream_put_runs_once() {
    let (stores, faults, _bare) = setup(quick());
    faults.fail_next(Operation::CasPutStream, ErrorKind::Unavailable);
    let reader: stowage_core::BlobReader = Box::pin(std::io::Cursor::new(b"streamed".to_vec()));
    let err = stores.cas.put_stream(reader).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(
        faults.calls(Operation::CasPutStream),
        1,
        "its reader is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_max_delay() {
    let retry = RetryLayer::new()
        .with_max_attempts(5)
        .with_base_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(250))
        .with_jitter(false);
    let (stores, faults, _bare) = setup(retry);
    faults.fail_always(Operation::CasGet, ErrorKind::Unavailable);
    let started = Instant::now();
    let _ = stores.cas.get(&Digest::of(b"x")).await.unwrap_err();
    // 100 + 200 + 250 + 250 ms between the 5 attempts.
    assert_eq!(started.elapsed(), Duration::from_millis(800));
    assert_eq!(faults.calls(Operation::CasGet), 5);
}

#[test]
fn jitter_stays_in_the_upper_half_of_each_delay() {
    let retry = RetryLayer::new()
        .with_base_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1));
    let mut distinct = std::collections::BTreeSet::new();
    for retry_no in 1..=6 {
        let full = Duration::from_millis(100 * (1 << (retry_no - 1))).min(Duration::from_secs(1));
        for _ in 0..200 {
            let d = retry.delay(retry_no);
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry_no}: {d:?} vs {full:?}"
            );
            distinct.insert(d);
        }
    }
    assert!(distinct.len() > 100, "jitter varies the delays");
    let exact = retry.clone().with_jitter(false);
    assert_eq!(exact.delay(1), Duration::from_millis(100));
    assert_eq!(exact.delay(40), Duration::from_secs(1), "no overflow");
}

#[tokio::test(start_paused = true)]
async fn zero_attempts_means_one_run() {
    let (stores, faults, _bare) = setup(RetryLayer::new().with_max_attempts(0));
    faults.fail_next(Operation::CasGet, ErrorKind::Unavailable);
    let err = stores.cas.get(&Digest::of(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(faults.calls(Operation::CasGet), 1);
}

/// A lifecycle write whose answer says what this call removed is not run
/// again after an unknown outcome: a second run after an applied first
/// one would answer "nothing was there" (`Ok(false)`, a sweep of 0).
#[tokio::test(start_paused = true)]
async fn lifecycle_removals_are_not_retried_after_an_unknown_outcome() {
    use stowage_core::lifecycle::{IfRunning, RunRetention};
    use stowage_core::RunSummary;
    let (stores, faults, bare) = setup(quick());

    let run = new_run(&stores).await;
    faults.inject(
        Fault::next(Operation::LifecycleDeleteRun, ErrorKind::OutcomeUnknown).after_apply(),
    );
    let reply = stores.lifecycle.delete_run(run, IfRunning::Delete).await;
    assert_eq!(reply.unwrap_err().kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(faults.calls(Operation::LifecycleDeleteRun), 1);
    let gone = bare.runs.get_run(run).await.unwrap_err();
    assert_eq!(
        gone.kind(),
        ErrorKind::NotFound,
        "the first attempt applied"
    );

    let digest = Digest::of(b"pinned");
    stores.lifecycle.pin_blob(&digest, "keep").await.unwrap();
    faults.inject(
        Fault::next(Operation::LifecycleUnpinBlob, ErrorKind::OutcomeUnknown).after_apply(),
    );
    let reply = stores.lifecycle.unpin_blob(&digest, "keep").await;
    assert_eq!(reply.unwrap_err().kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(faults.calls(Operation::LifecycleUnpinBlob), 1);

    let finished = new_run(&stores).await;
    stores
        .runs
        .complete_run(finished, RunSummary::new("done"))
        .await
        .unwrap();
    faults.inject(
        Fault::next(Operation::LifecyclePruneRuns, ErrorKind::OutcomeUnknown).after_apply(),
    );
    let sweep = stores
        .lifecycle
        .prune_runs(&RunRetention::finished(), None)
        .await;
    assert_eq!(sweep.unwrap_err().kind(), ErrorKind::OutcomeUnknown);
    assert_eq!(faults.calls(Operation::LifecyclePruneRuns), 1);
}

/// `pin_blob` answers the same however often it runs: retried.
#[tokio::test(start_paused = true)]
async fn pin_blob_is_retried_after_an_unknown_outcome() {
    let (stores, faults, _bare) = setup(quick());
    let digest = Digest::of(b"pinned");
    faults
        .inject(Fault::next(Operation::LifecyclePinBlob, ErrorKind::OutcomeUnknown).after_apply());
    stores.lifecycle.pin_blob(&digest, "keep").await.unwrap();
    assert_eq!(faults.calls(Operation::LifecyclePinBlob), 2);
}
