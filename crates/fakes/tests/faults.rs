//! Fault injection: every trigger, timing, scope and counter.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, ErrorKind, NewEvent, ReleaseMetadata, RunMetadata, RunSummary, Stores};
use stowage_fakes::{
    FakeStores, Fault, FaultController, FaultInjector, Operation, Scope, StoreKind, Timing, Trigger,
};

fn setup() -> (FakeStores, Stores, FaultController) {
    let fakes = FakeStores::new();
    let (stores, faults) = FaultInjector::wrap(fakes.stores());
    (fakes, stores, faults)
}

fn blob(n: u32) -> Bytes {
    Bytes::from(format!("blob {n}"))
}

#[tokio::test]
async fn fail_next_fails_one_call_and_applies_nothing() {
    let (fakes, stores, faults) = setup();
    let rule = faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    assert_eq!(faults.armed(), 1);

    let err = stores.cas.put(blob(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("injected"), "{err}");
    assert!(err.message().contains("cas.put"), "{err}");
    assert!(err.message().contains(&rule.to_string()), "{err}");
    assert!(err.is_retryable());
    let raw = fakes.stores();
    assert!(
        !raw.cas.contains(&Digest::of(b"blob 1")).await.unwrap(),
        "nothing applied"
    );

    assert_eq!(faults.armed(), 0, "a one-shot rule is spent once it fires");
    assert!(!faults.remove(rule));
    let digest = stores.cas.put(blob(1)).await.unwrap();
    assert!(raw.cas.contains(&digest).await.unwrap());
}

#[tokio::test]
async fn fail_next_ignores_other_operations() {
    let (_fakes, stores, faults) = setup();
    faults.fail_next(Operation::CasGet, ErrorKind::Internal);
    let digest = stores.cas.put(blob(1)).await.unwrap();
    assert!(stores.cas.contains(&digest).await.unwrap());
    assert_eq!(
        stores.cas.get(&digest).await.unwrap_err().kind(),
        ErrorKind::Internal
    );
    assert_eq!(stores.cas.get(&digest).await.unwrap(), blob(1));
}

#[tokio::test]
async fn fail_nth_fails_exactly_the_nth_call() {
    let (fakes, stores, faults) = setup();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    faults.fail_nth(Operation::RunsAppendEvent, 3, ErrorKind::StorageFull);

    let mut outcomes = Vec::new();
    for i in 0..5 {
        let r = stores
            .runs
            .append_event(run, NewEvent::new("step", json!({ "i": i })))
            .await;
        outcomes.push(r.map(|e| e.seq).map_err(|e| e.kind()));
    }
    assert_eq!(
        outcomes,
        [Ok(0), Ok(1), Err(ErrorKind::StorageFull), Ok(2), Ok(3)]
    );
    let stored = fakes
        .stores()
        .runs
        .read_events(run, None, 100)
        .await
        .unwrap();
    assert_eq!(stored.len(), 4, "the failed append was not applied");
    assert_eq!(faults.calls(Operation::RunsAppendEvent), 5);
    assert_eq!(faults.injected(Operation::RunsAppendEvent), 1);
}

#[tokio::test]
async fn nth_zero_counts_as_first() {
    let (_fakes, stores, faults) = setup();
    faults.fail_nth(Operation::CasPut, 0, ErrorKind::Unavailable);
    assert!(stores.cas.put(blob(1)).await.is_err());
    assert!(stores.cas.put(blob(1)).await.is_ok());
}

#[tokio::test]
async fn nth_counts_from_when_the_rule_is_armed() {
    let (_fakes, stores, faults) = setup();
    for i in 0..3 {
        stores.cas.put(blob(i)).await.unwrap();
    }
    faults.fail_nth(Operation::CasPut, 2, ErrorKind::Unavailable);
    assert!(stores.cas.put(blob(10)).await.is_ok());
    assert!(stores.cas.put(blob(11)).await.is_err());
}

/// Which of `calls` puts fail under a fraction rule with `seed`.
async fn fraction_pattern(fraction: f64, seed: u64, calls: u32) -> Vec<bool> {
    let (_fakes, stores, faults) = setup();
    faults.fail_fraction(Operation::CasPut, fraction, seed, ErrorKind::Unavailable);
    let mut failed = Vec::new();
    for i in 0..calls {
        failed.push(stores.cas.put(blob(i)).await.is_err());
    }
    let count = failed.iter().filter(|f| **f).count() as u64;
    assert_eq!(faults.injected(Operation::CasPut), count);
    failed
}

#[tokio::test]
async fn fraction_is_reproducible_with_a_seed() {
    let first = fraction_pattern(0.3, 7, 400).await;
    let second = fraction_pattern(0.3, 7, 400).await;
    assert_eq!(first, second, "same seed, same calls: same failures");
    let other_seed = fraction_pattern(0.3, 8, 400).await;
    assert_ne!(first, other_seed, "another seed gives another pattern");

    let failures = first.iter().filter(|f| **f).count();
    // A seeded, fixed draw: the bound only guards against a wrong formula.
    assert!(
        (60..=180).contains(&failures),
        "{failures} of 400 failed at 0.3"
    );
}

#[tokio::test]
async fn fraction_edges_never_and_always() {
    assert!(fraction_pattern(0.0, 1, 100).await.iter().all(|f| !f));
    assert!(fraction_pattern(1.0, 1, 100).await.iter().all(|f| *f));
    assert!(fraction_pattern(f64::NAN, 1, 20).await.iter().all(|f| !f));
    assert!(fraction_pattern(-3.0, 1, 20).await.iter().all(|f| !f));
    assert!(fraction_pattern(7.0, 1, 20).await.iter().all(|f| *f));
}

#[tokio::test]
async fn fraction_rule_sees_only_its_scope() {
    // Calls outside the scope do not consume draws: interleaving gets do not
    // change which puts fail.
    let plain = fraction_pattern(0.5, 99, 50).await;
    let (_fakes, stores, faults) = setup();
    faults.fail_fraction(Operation::CasPut, 0.5, 99, ErrorKind::Unavailable);
    let mut interleaved = Vec::new();
    for i in 0..50 {
        let _ = stores.cas.get(&Digest::of(b"x")).await;
        interleaved.push(stores.cas.put(blob(i)).await.is_err());
    }
    assert_eq!(plain, interleaved);
}

#[tokio::test]
async fn after_apply_applies_the_call_and_loses_the_reply() {
    let (fakes, stores, faults) = setup();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    faults.inject(Fault::next(Operation::RunsAppendEvent, ErrorKind::OutcomeUnknown).after_apply());

    let mut event = NewEvent::new("tool_call", json!({ "tool": "search" }));
    event.idempotency_key = Some("call-1".into());
    let err = stores
        .runs
        .append_event(run, event.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    assert!(err.message().contains("injected") && err.message().contains("runs.append_event"));

    let stored = fakes
        .stores()
        .runs
        .read_events(run, None, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "the append was applied");

    // The retry with the same idempotency key is exactly-once.
    let retried = stores.runs.append_event(run, event).await.unwrap();
    assert_eq!(retried, stored[0]);
    assert_eq!(stores.runs.get_run(run).await.unwrap().event_count, 1);
}

#[tokio::test]
async fn after_apply_replaces_an_error_reply_too() {
    let (_fakes, stores, faults) = setup();
    faults.inject(Fault::always(Operation::CasGet, ErrorKind::Internal).after_apply());
    let err = stores.cas.get(&Digest::of(b"absent")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Internal,
        "the NotFound reply was replaced"
    );
}

#[tokio::test]
async fn after_apply_of_a_terminal_transition() {
    let (fakes, stores, faults) = setup();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    faults.inject(Fault::next(Operation::RunsCompleteRun, ErrorKind::Unavailable).after_apply());
    assert!(stores
        .runs
        .complete_run(run, RunSummary::new("ok"))
        .await
        .is_err());
    let status = fakes.stores().runs.get_run(run).await.unwrap().status;
    assert!(status.is_terminal(), "complete_run was applied: {status}");
    let again = stores.runs.complete_run(run, RunSummary::new("ok")).await;
    assert_eq!(again.unwrap_err().kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn every_error_kind_can_be_injected() {
    let (_fakes, stores, faults) = setup();
    for kind in ErrorKind::ALL {
        faults.fail_next(Operation::SessionsLoadSession, kind);
        let err = stores.sessions.load_session("s").await.unwrap_err();
        assert_eq!(err.kind(), kind);
        assert!(err.message().contains("sessions.load_session"), "{err}");
    }
    assert_eq!(
        faults.injected(Operation::SessionsLoadSession),
        ErrorKind::ALL.len() as u64
    );
}

#[tokio::test]
async fn store_and_any_scopes() {
    let (_fakes, stores, faults) = setup();
    let releases = faults.fail_always(StoreKind::Releases, ErrorKind::Unavailable);
    let meta = ReleaseMetadata::new("v1", "ci");
    assert!(stores
        .releases
        .promote("planner", Digest::of(b"a"), meta.clone(), None)
        .await
        .is_err());
    assert!(stores.releases.current("planner").await.is_err());
    assert!(stores.releases.list_names(None, 10).await.is_err());
    assert!(
        stores.cas.put(blob(1)).await.is_ok(),
        "other stores unaffected"
    );
    assert!(faults.remove(releases));
    assert!(stores
        .releases
        .promote("planner", Digest::of(b"a"), meta, None)
        .await
        .is_ok());

    faults.fail_always(Scope::Any, ErrorKind::Unavailable);
    assert!(stores.cas.list(None, 10).await.is_err());
    assert!(stores
        .supersessions
        .is_superseded(&Digest::of(b"x"))
        .await
        .is_err());
    assert!(stores.sessions.list_sessions(None, 10).await.is_err());
    faults.clear();
    assert_eq!(faults.armed(), 0);
    assert!(stores.cas.list(None, 10).await.is_ok());
}

#[tokio::test]
async fn default_methods_are_operations_of_their_own() {
    let (_fakes, stores, faults) = setup();
    let runs = &stores.runs;
    let a = runs
        .create_run(Digest::of(b"s"), RunMetadata::new("x"))
        .await
        .unwrap();
    faults.fail_always(Operation::RunsCompleteRun, ErrorKind::Unavailable);
    assert!(runs.complete_run(a, RunSummary::new("done")).await.is_err());
    let finished = runs
        .finish_run(
            a,
            stowage_core::RunStatus::Completed,
            RunSummary::new("done"),
        )
        .await;
    assert!(finished.is_ok(), "finish_run is not complete_run");
    assert_eq!(faults.calls(Operation::RunsCompleteRun), 1);
    assert_eq!(faults.calls(Operation::RunsFinishRun), 1);
}

#[tokio::test]
async fn earliest_armed_rule_decides_and_every_rule_counts() {
    let (_fakes, stores, faults) = setup();
    faults.fail_nth(Operation::CasPut, 2, ErrorKind::StorageFull);
    faults.fail_nth(Scope::Any, 2, ErrorKind::Internal);
    faults.fail_nth(Scope::Any, 3, ErrorKind::Unavailable);
    assert!(stores.cas.put(blob(1)).await.is_ok());
    let second = stores.cas.put(blob(2)).await.unwrap_err();
    assert_eq!(second.kind(), ErrorKind::StorageFull);
    assert_eq!(faults.armed(), 1, "both rules that fired are spent");
    let third = stores.cas.put(blob(3)).await.unwrap_err();
    assert_eq!(third.kind(), ErrorKind::Unavailable);
    assert_eq!(
        faults.injected(Operation::CasPut),
        2,
        "one injection per failed call"
    );
}

#[tokio::test]
async fn counters_count_and_reset() {
    let (_fakes, stores, faults) = setup();
    faults.fail_next(Operation::CasContains, ErrorKind::Unavailable);
    let d = stores.cas.put(blob(1)).await.unwrap();
    let _ = stores.cas.contains(&d).await;
    let _ = stores.cas.contains(&d).await;
    let _ = stores.cas.stat(&d).await;
    assert_eq!(faults.calls(Operation::CasPut), 1);
    assert_eq!(faults.calls(Operation::CasContains), 2);
    assert_eq!(faults.calls(Operation::CasStat), 1);
    assert_eq!(faults.calls(Operation::CasGet), 0);
    assert_eq!(faults.total_calls(), 4);
    assert_eq!(faults.total_injected(), 1);
    faults.reset_counters();
    assert_eq!(faults.total_calls(), 0);
    assert_eq!(faults.total_injected(), 0);
}

#[tokio::test]
async fn controller_clones_share_rules() {
    let (_fakes, stores, faults) = setup();
    let other = faults.clone();
    other.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    assert!(stores.cas.put(blob(1)).await.is_err());
    assert_eq!(faults.injected(Operation::CasPut), 1);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_calls_in_scope() {
    let (_fakes, stores, faults) = setup();
    let slow = faults.add_latency(Operation::CasPut, Duration::from_millis(250));
    faults.add_latency(StoreKind::Cas, Duration::from_millis(50));

    let start = tokio::time::Instant::now();
    stores.cas.put(blob(1)).await.unwrap();
    let put_took = start.elapsed();
    assert!(put_took >= Duration::from_millis(300), "{put_took:?}");
    assert!(put_took < Duration::from_secs(1), "{put_took:?}");

    let start = tokio::time::Instant::now();
    stores.cas.list(None, 10).await.unwrap();
    let list_took = start.elapsed();
    assert!(list_took >= Duration::from_millis(50) && list_took < Duration::from_millis(250));

    let start = tokio::time::Instant::now();
    stores.sessions.list_sessions(None, 10).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "out of scope: no delay");

    assert!(faults.remove(slow));
    let start = tokio::time::Instant::now();
    stores.cas.put(blob(2)).await.unwrap();
    assert!(start.elapsed() < Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn latency_combines_with_a_fault() {
    let (fakes, stores, faults) = setup();
    faults.add_latency(Operation::CasPut, Duration::from_secs(5));
    faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    let start = tokio::time::Instant::now();
    assert!(stores.cas.put(blob(1)).await.is_err());
    assert!(start.elapsed() >= Duration::from_secs(5));
    assert!(fakes.stores().cas.list(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_calls_fail_exactly_once_for_a_one_shot_rule() {
    let (fakes, stores, faults) = setup();
    faults.fail_nth(Operation::CasPut, 37, ErrorKind::Unavailable);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let stores = stores.clone();
            tokio::spawn(async move { stores.cas.put(blob(i)).await })
        })
        .collect();
    let mut failures = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 1);
    assert_eq!(faults.calls(Operation::CasPut), 100);
    assert_eq!(
        fakes.stores().cas.list(None, 1_000).await.unwrap().len(),
        99
    );
}

#[test]
fn fault_builders_fill_every_field() {
    let f = Fault::nth(Operation::CasGet, 4, ErrorKind::Corrupted);
    assert_eq!(f.scope, Scope::Op(Operation::CasGet));
    assert_eq!(f.trigger, Trigger::Nth(4));
    assert_eq!(f.kind, ErrorKind::Corrupted);
    assert_eq!(f.timing, Timing::BeforeApply);
    assert_eq!(
        Fault::next(Scope::Any, ErrorKind::Internal).trigger,
        Trigger::Nth(1)
    );
    assert_eq!(
        Fault::always(StoreKind::Cas, ErrorKind::Internal)
            .after_apply()
            .timing,
        Timing::AfterApply
    );
}

#[test]
fn operations_are_named_store_dot_method_and_unique() {
    let names: HashSet<&str> = Operation::ALL.iter().map(|op| op.as_str()).collect();
    assert_eq!(names.len(), Operation::ALL.len());
    for op in Operation::ALL {
        assert_eq!(op.to_string(), format!("{}.{}", op.store(), op.method()));
    }
    assert_eq!(
        Operation::SessionsSetSessionState.to_string(),
        "sessions.set_session_state"
    );
    assert_eq!(
        Operation::SupersessionsByAgent.to_string(),
        "supersessions.by_agent"
    );
    assert_eq!(Scope::from(StoreKind::Runs).to_string(), "runs.*");
}

#[tokio::test]
async fn writes_scope_makes_the_store_read_only() {
    let (_fakes, stores, faults) = setup();
    let d = stores.cas.put(blob(1)).await.unwrap();
    stores
        .sessions
        .create_session("s", serde_json::json!({}))
        .await
        .unwrap();
    faults.fail_always(Scope::Writes, ErrorKind::StorageFull);

    assert_eq!(
        stores.cas.put(blob(2)).await.unwrap_err().kind(),
        ErrorKind::StorageFull
    );
    assert!(stores.sessions.delete_session("s").await.is_err());
    let entry = stowage_core::NewLogEntry::new(stowage_core::LogKind::Internal, "a", "b", "c");
    assert!(stores.sessions.append_log("s", entry).await.is_err());
    assert_eq!(
        stores.cas.get(&d).await.unwrap(),
        blob(1),
        "reads still work"
    );
    assert!(stores.sessions.load_session("s").await.unwrap().is_some());
    assert!(stores.sessions.verify_log("s").await.is_ok());
}

#[test]
fn writes_and_reads_partition_the_operations() {
    let writes: Vec<_> = Operation::ALL.iter().filter(|op| op.is_write()).collect();
    assert_eq!(writes.len(), 29);
    for op in Operation::ALL {
        assert_ne!(Scope::Writes.matches(op), Scope::Reads.matches(op), "{op}");
    }
    assert!(Operation::CasPutStream.is_write());
    assert!(!Operation::CasGetStream.is_write());
    assert!(!Operation::SupersessionsResolve.is_write());
}
