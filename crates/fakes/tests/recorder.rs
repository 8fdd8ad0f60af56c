//! The call recorder and the interposer it shares with fault injection.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use stowage_core::lifecycle::{BlobGc, IfRunning, RunRetention, SessionRetention};
use stowage_core::{
    AgentKey, BlobReader, Digest, Error, ErrorKind, LogKind, NewEvent, NewLogEntry,
    ReleaseMetadata, RunFilter, RunMetadata, RunStatus, RunSummary, SessionState, SigningKey,
    Supersession, SupersessionDraft, SupersessionKind, Timestamp,
};
use stowage_fakes::{
    interpose, Call, CallLog, FakeStores, FaultInjector, Interceptor, Operation, Proceed, Recorder,
    StoreKind,
};

#[tokio::test]
async fn records_calls_in_order_with_outcomes() {
    let (stores, log) = Recorder::wrap(FakeStores::new().stores());
    assert!(log.is_empty());
    let d = stores.cas.put(Bytes::from_static(b"abc")).await.unwrap();
    stores.cas.get(&d).await.unwrap();
    let _ = stores.cas.get(&Digest::of(b"missing")).await;
    stores
        .sessions
        .create_session("chat/1", json!({}))
        .await
        .unwrap();
    let _ = stores.sessions.create_session("chat/1", json!({})).await;

    assert_eq!(
        log.ops(),
        [
            Operation::CasPut,
            Operation::CasGet,
            Operation::CasGet,
            Operation::SessionsCreateSession,
            Operation::SessionsCreateSession,
        ]
    );
    let calls = log.calls();
    let outcomes: Vec<_> = calls.iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Ok(()),
            Ok(()),
            Err(ErrorKind::NotFound),
            Ok(()),
            Err(ErrorKind::AlreadyExists),
        ]
    );
    assert_eq!(calls[0].to_string(), "cas.put(3 bytes) -> ok");
    assert_eq!(calls[1].args, d.short());
    assert_eq!(
        calls[4].to_string(),
        "sessions.create_session(session \"chat/1\") -> err(already_exists)"
    );
    assert_eq!(log.len(), 5);
    assert_eq!(log.count(Operation::CasGet), 2);
    assert_eq!(log.count(StoreKind::Sessions), 2);
    assert_eq!(log.calls_to(StoreKind::Cas).len(), 3);
    assert_eq!(
        log.last().map(|c| c.op),
        Some(Operation::SessionsCreateSession)
    );
}

#[tokio::test]
async fn take_and_clear_empty_the_log() {
    let (stores, log) = Recorder::wrap(FakeStores::new().stores());
    stores.cas.list(None, 1).await.unwrap();
    let clone = log.clone();
    let taken = clone.take();
    assert_eq!(taken.len(), 1);
    assert!(log.is_empty(), "clones share the log");
    stores.cas.list(None, 1).await.unwrap();
    log.clear();
    assert!(log.calls().is_empty());
    assert_eq!(log.last(), None);
}

#[tokio::test]
async fn long_identifiers_are_shortened_in_args() {
    let (stores, log) = Recorder::wrap(FakeStores::new().stores());
    let long = "x".repeat(200);
    let _ = stores.sessions.load_session(&long).await;
    let args = &log.calls()[0].args;
    assert!(args.len() < 100, "{args}");
    assert!(args.contains('…'), "{args}");
}

#[tokio::test]
async fn stacked_over_an_injector_it_sees_injected_errors() {
    let fakes = FakeStores::new();
    let (faulty, faults) = FaultInjector::wrap(fakes.stores());
    let (stores, seen_by_caller) = Recorder::wrap(faulty);
    faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    let _ = stores.cas.put(Bytes::from_static(b"a")).await;
    stores.cas.put(Bytes::from_static(b"a")).await.unwrap();
    let outcomes: Vec<_> = seen_by_caller.calls().iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, [Err(ErrorKind::Unavailable), Ok(())]);
}

#[tokio::test]
async fn stacked_under_an_injector_it_sees_only_calls_that_arrived() {
    let fakes = FakeStores::new();
    let (recorded, arrived) = Recorder::wrap(fakes.stores());
    let (stores, faults) = FaultInjector::wrap(recorded);
    faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    faults.fail_nth(Operation::CasContains, 1, ErrorKind::OutcomeUnknown);
    faults.inject(
        stowage_fakes::Fault::next(Operation::CasGet, ErrorKind::OutcomeUnknown).after_apply(),
    );
    let _ = stores.cas.put(Bytes::from_static(b"a")).await;
    let _ = stores.cas.contains(&Digest::of(b"a")).await;
    let d = stores.cas.put(Bytes::from_static(b"a")).await.unwrap();
    assert!(stores.cas.get(&d).await.is_err());
    let calls = arrived.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].op, Operation::CasPut);
    assert_eq!(calls[1].op, Operation::CasGet);
    assert_eq!(
        calls[1].outcome,
        Ok(()),
        "the get was applied; its reply was lost above"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_calls_are_all_recorded() {
    let fakes = FakeStores::new();
    let (stores, log) = Recorder::wrap(fakes.stores());
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("a"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let stores = stores.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    stores
                        .runs
                        .append_event(run, NewEvent::new("e", json!([t, i])))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.count(Operation::RunsAppendEvent), 640);
    assert!(log.calls().iter().all(|c| c.outcome.is_ok()));
    assert_eq!(
        fakes.stores().runs.get_run(run).await.unwrap().event_count,
        640
    );
}

/// An interceptor that forgets to run the call.
struct Forgetful;

#[async_trait]
impl Interceptor for Forgetful {
    async fn around(&self, _call: &Call, _proceed: Proceed<'_>) -> Option<Error> {
        None
    }
}

#[tokio::test]
async fn an_interceptor_that_skips_the_call_yields_internal() {
    let fakes = FakeStores::new();
    let stores = interpose(fakes.stores(), Arc::new(Forgetful));
    let err = stores.cas.put(Bytes::from_static(b"a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("cas.put"), "{err}");
    assert!(fakes.stores().cas.list(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn wrapper_keeps_capabilities_and_blob_limit() {
    let fakes = FakeStores::new();
    let raw = fakes.stores();
    let (stores, log) = Recorder::wrap(raw.clone());
    assert_eq!(stores.capabilities, raw.capabilities);
    assert_eq!(stores.cas.max_blob_size(), raw.cas.max_blob_size());
    assert!(log.is_empty(), "max_blob_size is not an operation");
}

/// Calls every async trait method once, in `Operation::ALL` order.
#[tokio::test]
async fn every_method_is_recorded_as_its_own_operation() {
    let (s, log) = Recorder::wrap(FakeStores::new().stores());

    // cas
    let d = s.cas.put(Bytes::from_static(b"blob")).await.unwrap();
    s.cas.get(&d).await.unwrap();
    assert!(s.cas.contains(&d).await.unwrap());
    assert_eq!(s.cas.stat(&d).await.unwrap().size, 4);
    assert!(s.cas.delete(&d).await.unwrap());
    assert!(s.cas.list(None, 10).await.unwrap().is_empty());
    assert!(s.cas.verify(&d).await.is_err());
    let reader: BlobReader = Box::pin(&b"streamed"[..]);
    let streamed = s.cas.put_stream(reader).await.unwrap();
    let mut chunks = s.cas.get_stream(&streamed).await.unwrap();
    assert_eq!(
        chunks.next().await.unwrap().unwrap(),
        Bytes::from_static(b"streamed")
    );

    // runs
    let run = s
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    s.runs
        .append_event(run, NewEvent::new("step", json!(1)))
        .await
        .unwrap();
    s.runs
        .complete_run(run, RunSummary::new("done"))
        .await
        .unwrap();
    assert!(s.runs.fail_run(run, RunSummary::new("x")).await.is_err());
    assert!(s.runs.cancel_run(run, RunSummary::new("x")).await.is_err());
    let fin = s
        .runs
        .finish_run(run, RunStatus::Failed, RunSummary::new("x"))
        .await;
    assert_eq!(fin.unwrap_err().kind(), ErrorKind::Conflict);
    s.runs.get_run(run).await.unwrap();
    assert_eq!(s.runs.read_events(run, None, 10).await.unwrap().len(), 1);
    assert_eq!(
        s.runs
            .list_runs(&RunFilter::default(), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    s.runs.verify_run(run).await.unwrap();

    // releases
    let meta = ReleaseMetadata::new("v1", "ci");
    s.releases
        .promote("planner", Digest::of(b"a"), meta, None)
        .await
        .unwrap();
    assert!(s.releases.rollback("planner", "oncall").await.is_err());
    s.releases
        .rollback_to("planner", 0, "oncall")
        .await
        .unwrap();
    s.releases.current("planner").await.unwrap();
    assert_eq!(
        s.releases.history("planner", None, 10).await.unwrap().len(),
        2
    );
    assert_eq!(s.releases.list_names(None, 10).await.unwrap(), ["planner"]);

    // sessions
    s.sessions.create_session("chat", json!({})).await.unwrap();
    s.sessions.load_session("chat").await.unwrap();
    s.sessions
        .save_session("chat", json!({"a": 1}), Some(1))
        .await
        .unwrap();
    s.sessions
        .set_session_state("chat", SessionState::Suspended, None)
        .await
        .unwrap();
    assert_eq!(s.sessions.list_sessions(None, 10).await.unwrap().len(), 1);
    assert!(s.sessions.delete_session("gone").await.is_ok());
    let entry = NewLogEntry::new(LogKind::Incoming, "user", "text", "hi");
    s.sessions.append_log("chat", entry.clone()).await.unwrap();
    assert_eq!(
        s.sessions.read_log("chat", None, 10).await.unwrap().len(),
        1
    );
    s.sessions
        .replace_log("chat", vec![entry], None)
        .await
        .unwrap();
    s.sessions.verify_log("chat").await.unwrap();

    // supersessions
    let key = SigningKey::from_bytes(&[3; 32]);
    let record = Supersession::sign(
        &key,
        SupersessionDraft::new(
            Digest::of(b"old"),
            Some(Digest::of(b"new")),
            SupersessionKind::Correction,
            "fixed",
            Timestamp::from_millis(10),
        ),
    );
    s.supersessions.put(record).await.unwrap();
    assert!(s
        .supersessions
        .get(&Digest::of(b"old"))
        .await
        .unwrap()
        .is_some());
    assert!(s
        .supersessions
        .is_superseded(&Digest::of(b"old"))
        .await
        .unwrap());
    let agent = AgentKey::of(&key);
    let mine = s
        .supersessions
        .by_agent(&agent, Timestamp::ZERO, None, None, 10)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(s.supersessions.list(None, 10).await.unwrap(), mine);
    s.supersessions.resolve(&Digest::of(b"old")).await.unwrap();

    // lifecycle
    let l = &s.lifecycle;
    assert!(l.delete_run(run, IfRunning::Keep).await.unwrap());
    l.prune_runs(&RunRetention::finished(), None).await.unwrap();
    let idle = SessionRetention::idle_for(std::time::Duration::from_secs(60));
    l.expire_sessions(&idle, None).await.unwrap();
    l.prune_sessions(&idle, None).await.unwrap();
    l.pin_blob(&streamed, "keep").await.unwrap();
    assert!(l.unpin_blob(&streamed, "keep").await.unwrap());
    assert!(l.blob_referrers(&streamed).await.unwrap().is_empty());
    l.gc_blobs(&BlobGc::grace(std::time::Duration::from_secs(60)), None)
        .await
        .unwrap();
    assert!(l.fork_session("nope", "copy").await.is_err());
    l.fork_release("planner", "planner-copy").await.unwrap();
    l.stats().await.unwrap();
    l.compact().await.unwrap();

    assert_eq!(
        log.ops(),
        Operation::ALL,
        "one record per call, in call order"
    );
    let args: Vec<String> = log.calls().into_iter().map(|c| c.args).collect();
    assert!(args.iter().all(|a| !a.is_empty()));
    assert!(
        args[10].contains(&run.to_string()) && args[10].contains("\"step\""),
        "{}",
        args[10]
    );
}

/// The injector and the recorder are layers like any other: one chain.
#[tokio::test]
async fn injector_and_recorder_stack_as_layers() {
    let fakes = FakeStores::new();
    let faults = stowage_fakes::FaultController::new();
    let log = CallLog::default();
    let stores = fakes.stores().layer(&faults).layer(&log);
    faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    let blob = Bytes::from_static(b"layered");
    assert_eq!(
        stores.cas.put(blob.clone()).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    stores.cas.put(blob).await.unwrap();
    let outcomes: Vec<_> = log.calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, [Err(ErrorKind::Unavailable), Ok(())]);
    assert_eq!(faults.calls(Operation::CasPut), 2);
    assert_eq!(faults.injected(Operation::CasPut), 1);
}
