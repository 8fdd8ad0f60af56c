//! Regression tests from a review of core's shared store algorithms
//! (`stowage_core::engine::store`), through the memory backend. Each test
//! was a contract violation that every backend inherited from core.

#![cfg(feature = "memory")]

use std::sync::{Arc, Mutex};

use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::engine::{tamper, Engine, Reader, Scope, Table, Txn};
use stowage_core::{
    Digest, ErrorKind, LogEntry, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunEvent,
    RunMetadata, SigningKey, StoreEnv, Stores, Supersession, SupersessionDraft, SupersessionKind,
    Timestamp,
};

fn backend() -> (MemoryBackend, Stores) {
    let backend = MemoryBackend::new(StoreEnv::default());
    let stores = backend.stores();
    (backend, stores)
}

/// The raw value under `key` in `table`, read through the engine.
async fn raw_get(engine: &dyn Engine, table: Table, key: Vec<u8>) -> Option<Vec<u8>> {
    let out = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&out);
    engine
        .read(Box::new(move |reader: &dyn Reader| {
            *slot.lock().unwrap() = reader.get(table, &key)?;
            Ok(())
        }))
        .await
        .unwrap();
    let value = out.lock().unwrap().take();
    value
}

/// Writes `value` under `key` in `table` behind the stores' back.
async fn raw_put(engine: &dyn Engine, table: Table, key: Vec<u8>, value: Vec<u8>) {
    engine
        .write(
            Scope::Unshared,
            Box::new(move |txn: &mut dyn Txn| txn.put(table, key.clone(), value.clone())),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
}

// ---- hash chains: a forged tail past the recorded head ---------------------

/// SPEC §4: `verify_run` detects edits made behind the SDK's back. An event
/// appended behind the SDK's back (correctly chained after the last one)
/// sits past the count the run's head records: `read_events` serves it as
/// part of the run, yet `verify_run` stops at the recorded count and says
/// the chain is fine.
#[tokio::test]
async fn verify_run_detects_a_forged_event_past_the_recorded_head() {
    let (backend, s) = backend();
    let run = s
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    let e0 = s
        .runs
        .append_event(run, NewEvent::new("step", json!({"n": 0})))
        .await
        .unwrap();
    let e1 = s
        .runs
        .append_event(run, NewEvent::new("step", json!({"n": 1})))
        .await
        .unwrap();
    let forged = RunEvent::build(
        run,
        2,
        Some(e1.hash),
        NewEvent::new("transfer", json!({"to": "attacker"})),
        Timestamp::from_millis(1),
    )
    .unwrap();
    tamper::run_events(backend.engine(), run, vec![e0, e1, forged])
        .await
        .unwrap();

    let recorded = s.runs.get_run(run).await.unwrap().event_count;
    let served = s.runs.read_events(run, None, 100).await.unwrap().len();
    let verified = s.runs.verify_run(run).await;
    assert_eq!(
        verified.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::Corrupted),
        "the run records {recorded} events, read_events serves {served} (one forged \
         behind the SDK's back), and verify_run answered {verified:?}"
    );
}

/// SPEC §6: `verify_log` as `verify_run` — a log entry added behind the
/// SDK's back past the recorded head is served by `read_log` and passes
/// `verify_log`.
#[tokio::test]
async fn verify_log_detects_a_forged_entry_past_the_recorded_head() {
    let (backend, s) = backend();
    s.sessions.create_session("chat", json!({})).await.unwrap();
    let e0 = s
        .sessions
        .append_log(
            "chat",
            NewLogEntry::new(LogKind::Incoming, "user", "text", "hi"),
        )
        .await
        .unwrap();
    let forged = LogEntry::build(
        "chat",
        1,
        Some(e0.hash),
        NewLogEntry::new(LogKind::Internal, "agent", "text", "forged"),
        Timestamp::from_millis(1),
    )
    .unwrap();
    tamper::log_entries(backend.engine(), "chat".into(), vec![e0, forged])
        .await
        .unwrap();

    let recorded = s
        .sessions
        .load_session("chat")
        .await
        .unwrap()
        .unwrap()
        .log_len;
    let served = s.sessions.read_log("chat", None, 100).await.unwrap().len();
    let verified = s.sessions.verify_log("chat").await;
    assert_eq!(
        verified.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::Corrupted),
        "the session records {recorded} entries, read_log serves {served} (one forged \
         behind the SDK's back), and verify_log answered {verified:?}"
    );
}

// ---- wrong data where Corrupted was possible --------------------------------

/// SPEC §2: never wrong data where it could return `Corrupted`. Run B's
/// event put in run A's log (intact hash, via the tamper hook) comes back
/// from `read_events(A)` as A's event 0 although it names run B.
#[tokio::test]
async fn read_events_refuses_an_event_of_another_run() {
    let (backend, s) = backend();
    let spec = Digest::of(b"spec");
    let a = s
        .runs
        .create_run(spec, RunMetadata::new("agent"))
        .await
        .unwrap();
    let b = s
        .runs
        .create_run(spec, RunMetadata::new("agent"))
        .await
        .unwrap();
    s.runs
        .append_event(a, NewEvent::new("step", json!({"run": "a"})))
        .await
        .unwrap();
    let foreign = s
        .runs
        .append_event(b, NewEvent::new("step", json!({"run": "b"})))
        .await
        .unwrap();
    tamper::run_events(backend.engine(), a, vec![foreign])
        .await
        .unwrap();
    let read = s.runs.read_events(a, None, 10).await;
    assert_eq!(
        read.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::Corrupted),
        "read_events({a}) answered {read:?}"
    );
}

/// SPEC §2: never wrong data where it could return `Corrupted`. A run
/// record found under another run's key (a swapped value) is returned by
/// `get_run` as is: asking for run A yields run B. (The supersession store
/// checks that a record is stored under its own key; runs do not.)
#[tokio::test]
async fn get_run_refuses_a_record_stored_under_another_id() {
    let (backend, s) = backend();
    let a = s
        .runs
        .create_run(Digest::of(b"a"), RunMetadata::new("alice"))
        .await
        .unwrap();
    let b = s
        .runs
        .create_run(Digest::of(b"b"), RunMetadata::new("bob"))
        .await
        .unwrap();
    let engine = backend.engine();
    let b_record = raw_get(engine, Table::Runs, b.to_bytes().to_vec())
        .await
        .unwrap();
    raw_put(engine, Table::Runs, a.to_bytes().to_vec(), b_record).await;
    let got = s.runs.get_run(a).await;
    assert_eq!(
        got.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::Corrupted),
        "get_run({a}) answered {:?}",
        got.as_ref().map(|r| (r.id, &r.metadata.agent_name))
    );
}

/// SPEC §2: never wrong data where it could return `Corrupted`. The
/// idempotency index of a run names a seq; the retry path returns the
/// event at that seq without checking that it carries the key, so a
/// damaged index entry makes a keyed append return an unrelated event
/// that has no key at all (and stores nothing).
#[tokio::test]
async fn a_keyed_retry_refuses_an_event_without_that_key() {
    let (backend, s) = backend();
    let run = s
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    let plain = s
        .runs
        .append_event(run, NewEvent::new("step", json!({})))
        .await
        .unwrap();
    assert_eq!(plain.idempotency_key, None);
    // The index entry of key "k" (run id ++ u16 length ++ key) names seq 0.
    let mut key = run.to_bytes().to_vec();
    key.extend_from_slice(&1u16.to_be_bytes());
    key.extend_from_slice(b"k");
    raw_put(
        backend.engine(),
        Table::RunIdempotency,
        key,
        0u64.to_be_bytes().to_vec(),
    )
    .await;
    let keyed = NewEvent::new("step", json!({})).with_idempotency_key("k");
    let got = s.runs.append_event(run, keyed).await;
    match &got {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}"),
        Ok(event) => assert_eq!(
            event.idempotency_key.as_deref(),
            Some("k"),
            "append with key \"k\" answered {event:?}"
        ),
    }
}

// ---- failed calls must change nothing ---------------------------------------

/// SPEC §2 (all-or-nothing) and `ReleaseRegistry::promote` ("`Conflict` on
/// an `expected_current_seq` mismatch, changing nothing"): a refused
/// compare-and-promote leaves a reference of the release to the spec it
/// did not promote (runs take back what a failed call recorded; releases
/// do not).
#[tokio::test]
async fn a_refused_compare_and_promote_references_nothing() {
    let (_backend, s) = backend();
    let spec = s
        .cas
        .put(bytes::Bytes::from_static(b"never promoted"))
        .await
        .unwrap();
    let before = s.lifecycle.stats().await.unwrap().blob_references;
    let refused = s
        .releases
        .promote("planner", spec, ReleaseMetadata::new("v1", "ci"), Some(0))
        .await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Conflict);
    assert!(s
        .releases
        .history("planner", None, 10)
        .await
        .unwrap()
        .is_empty());
    let referrers = s.lifecycle.blob_referrers(&spec).await.unwrap();
    let after = s.lifecycle.stats().await.unwrap().blob_references;
    assert!(
        referrers.is_empty() && after == before,
        "a refused promote of a name with no history left referrers {referrers:?} \
         (reference entries {before} -> {after})"
    );
}

/// As above for `SupersessionStore::put`: a record refused with
/// `Conflict` (its target is already superseded by another record) leaves
/// a reference from that target's supersession to the refused record's
/// replacement, which the stored supersession does not name.
#[tokio::test]
async fn a_refused_supersession_references_nothing() {
    let (_backend, s) = backend();
    let key = SigningKey::from_bytes(&[3; 32]);
    let target = Digest::of(b"claim");
    let sign = |replacement: &[u8]| {
        Supersession::sign(
            &key,
            SupersessionDraft::new(
                target,
                Some(Digest::of(replacement)),
                SupersessionKind::Correction,
                "fix",
                Timestamp::from_millis(5),
            ),
        )
    };
    s.supersessions.put(sign(b"first")).await.unwrap();
    let losing = Digest::of(b"second");
    let refused = s.supersessions.put(sign(b"second")).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Conflict);
    let referrers = s.lifecycle.blob_referrers(&losing).await.unwrap();
    assert!(
        referrers.is_empty(),
        "a refused supersession left referrers {referrers:?} of its replacement"
    );
}

// ---- CAS: an acknowledged put that cannot be read ----------------------------

/// SPEC §3: `put(bytes) -> Digest` stores the bytes so that `get` gives
/// them back. When the stored copy is damaged (bit rot; here the tamper
/// hook), putting the very same bytes again answers `Ok(digest)` but only
/// refreshes the header's put time: the damaged chunks stay, every `get`
/// keeps failing, and no call short of `delete` + `put` repairs it.
#[tokio::test]
async fn putting_the_same_bytes_again_repairs_a_damaged_blob() {
    let (backend, s) = backend();
    let bytes = bytes::Bytes::from_static(b"a prompt worth keeping");
    let digest = s.cas.put(bytes.clone()).await.unwrap();
    assert!(backend.corrupt_blob(&digest));
    assert_eq!(
        s.cas.get(&digest).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    let again = s.cas.put(bytes.clone()).await.unwrap();
    assert_eq!(again, digest);
    let got = s.cas.get(&digest).await;
    assert_eq!(
        got.as_ref().ok(),
        Some(&bytes),
        "put answered Ok({}) for bytes it then cannot return: get answered {got:?}",
        digest.short()
    );
}

/// As above, when the damage is in the header: a `put` of the same bytes
/// writes the blob again, and a `delete` removes it.
#[tokio::test]
async fn a_damaged_header_is_replaced_by_a_put_and_removed_by_a_delete() {
    let (backend, s) = backend();
    let bytes = bytes::Bytes::from_static(b"a header gone bad");
    let digest = s.cas.put(bytes.clone()).await.unwrap();
    tamper::blob_header_size(backend.engine(), digest)
        .await
        .unwrap();
    assert_eq!(
        s.cas.get(&digest).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert_eq!(s.cas.put(bytes.clone()).await.unwrap(), digest);
    assert_eq!(s.cas.get(&digest).await.unwrap(), bytes);

    tamper::blob_header_size(backend.engine(), digest)
        .await
        .unwrap();
    assert!(s.cas.delete(&digest).await.unwrap());
    assert!(!s.cas.contains(&digest).await.unwrap());
    assert_eq!(s.cas.put(bytes.clone()).await.unwrap(), digest);
    assert_eq!(s.cas.get(&digest).await.unwrap(), bytes);
}

/// A streamed put of the same bytes repairs a damaged blob too.
#[tokio::test]
async fn a_streamed_put_repairs_a_damaged_blob() {
    let (backend, s) = backend();
    let bytes = bytes::Bytes::from(vec![7u8; 3 * 1024 * 1024 + 5]);
    let digest = s.cas.put(bytes.clone()).await.unwrap();
    assert!(backend.corrupt_blob(&digest));
    let reader: stowage_core::BlobReader = Box::pin(std::io::Cursor::new(bytes.to_vec()));
    assert_eq!(s.cas.put_stream(reader).await.unwrap(), digest);
    assert_eq!(s.cas.get(&digest).await.unwrap(), bytes);
}

/// `fork_release` into a name that has a history is `AlreadyExists` and
/// references nothing.
#[tokio::test]
async fn a_refused_release_fork_references_nothing() {
    let (_backend, s) = backend();
    let (a, b) = (Digest::of(b"spec a"), Digest::of(b"spec b"));
    let meta = || ReleaseMetadata::new("v1", "ci");
    s.releases.promote("src", a, meta(), None).await.unwrap();
    s.releases.promote("dst", b, meta(), None).await.unwrap();
    let refused = s.lifecycle.fork_release("src", "dst").await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        s.lifecycle.blob_referrers(&a).await.unwrap(),
        vec![stowage_core::lifecycle::Referrer::Release("src".into())]
    );
    // A fork that lands references the copied specs under its new name.
    s.lifecycle.fork_release("src", "copy").await.unwrap();
    assert_eq!(
        s.lifecycle.blob_referrers(&a).await.unwrap(),
        vec![
            stowage_core::lifecycle::Referrer::Release("copy".into()),
            stowage_core::lifecycle::Referrer::Release("src".into()),
        ]
    );
}
