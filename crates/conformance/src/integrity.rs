//! Integrity checks (SPEC §2–4, §6): data damaged behind the SDK's back is
//! reported as `Corrupted`, never returned as if it were right.
//!
//! Each check damages data through [`Harness::tamper`]; a harness that
//! returns `Unsupported` makes the check not apply (it prints why).

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use stowage_core::{Error, ErrorKind, Result, Stores};

use crate::harness::{Harness, Tamper};
use crate::util::{entry, event, expect_kind, meta, ok, open, skipped, spec};

/// Applies `target`; `false` (after printing why) when the harness cannot tamper.
async fn tampered(h: &dyn Harness, s: &Stores, check: &str, target: Tamper) -> bool {
    let what = format!("{target:?}");
    match h.tamper(s, target).await {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            skipped(
                check,
                format!("the harness cannot tamper with stored data: {e}"),
            );
            false
        }
        Err(e) => panic!("harness: tamper({what}) failed: {e}"),
    }
}

/// Prints how the backend reported the damage when it was not as a broken
/// chain link: a backend may catch it earlier, with a storage checksum,
/// and `Corrupted` is all the contract requires.
fn note_broken_link(err: &Error, seq: u64) {
    if !err.message().contains(&format!("seq {seq}")) {
        println!("note: the damage at seq {seq} was reported by a storage check, not as a broken chain link: {err}");
    }
}

/// A damaged blob: `get`, `verify` and `get_stream` report `Corrupted`; other blobs are fine; delete + put repairs it.
pub async fn tampered_blob_corrupted(h: &dyn Harness) {
    let s = open(h).await;
    let bytes = Bytes::from((0..5000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let d = ok(s.cas.put(bytes.clone()).await, "put");
    let other = ok(s.cas.put(Bytes::from_static(b"bystander")).await, "put");
    if !tampered(h, &s, "integrity::tampered_blob_corrupted", Tamper::Blob(d)).await {
        return;
    }
    expect_kind(
        s.cas.get(&d).await,
        ErrorKind::Corrupted,
        "cas.get of a damaged blob (never wrong data)",
    );
    expect_kind(
        s.cas.verify(&d).await,
        ErrorKind::Corrupted,
        "cas.verify of a damaged blob",
    );
    match s.cas.get_stream(&d).await {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::Corrupted,
            "get_stream of a damaged blob: {e}"
        ),
        Ok(mut stream) => {
            let mut failed = None;
            while let Some(chunk) = stream.next().await {
                if let Err(e) = chunk {
                    failed = Some(e.kind());
                    break;
                }
            }
            assert_eq!(
                failed,
                Some(ErrorKind::Corrupted),
                "get_stream of a damaged blob must end in Corrupted, not deliver wrong bytes"
            );
        }
    }
    assert_eq!(
        ok(s.cas.get(&other).await, "get of an undamaged blob").as_ref(),
        b"bystander",
        "other blobs unaffected"
    );
    ok(s.cas.verify(&other).await, "verify of an undamaged blob");
    assert!(
        ok(s.cas.delete(&d).await, "delete of a damaged blob"),
        "a damaged blob can be deleted"
    );
    ok(s.cas.put(bytes.clone()).await, "put after delete");
    assert_eq!(
        ok(s.cas.get(&d).await, "get after repair"),
        bytes,
        "the blob is repaired"
    );
}

/// A damaged run event: `verify_run` is `Corrupted`; other runs still verify.
pub async fn tampered_run_event_corrupted(h: &dyn Harness) {
    let s = open(h).await;
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let bystander = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    for i in 0..5 {
        ok(s.runs.append_event(run, event("step", i)).await, "append");
        ok(
            s.runs.append_event(bystander, event("step", i)).await,
            "append",
        );
    }
    if !tampered(
        h,
        &s,
        "integrity::tampered_run_event_corrupted",
        Tamper::RunEvent { run, seq: 2 },
    )
    .await
    {
        return;
    }
    let err = expect_kind(
        s.runs.verify_run(run).await,
        ErrorKind::Corrupted,
        "verify_run after an event was damaged",
    );
    note_broken_link(&err, 2);
    ok(
        s.runs.verify_run(bystander).await,
        "verify_run of an undamaged run",
    );
    let reread: Result<_> = s.runs.read_events(run, None, 10).await;
    if let Ok(events) = reread {
        assert_eq!(events.len(), 5, "a damaged event is not dropped silently");
    }
}

/// A damaged session log entry: `verify_log` is `Corrupted`; other logs still verify.
pub async fn tampered_log_entry_corrupted(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("victim", json!({})).await,
        "create",
    );
    ok(
        s.sessions.create_session("bystander", json!({})).await,
        "create",
    );
    for i in 0..5 {
        ok(
            s.sessions
                .append_log("victim", entry(format!("m{i}")))
                .await,
            "append",
        );
        ok(
            s.sessions
                .append_log("bystander", entry(format!("m{i}")))
                .await,
            "append",
        );
    }
    let target = Tamper::LogEntry {
        session: "victim".into(),
        seq: 3,
    };
    if !tampered(h, &s, "integrity::tampered_log_entry_corrupted", target).await {
        return;
    }
    let err = expect_kind(
        s.sessions.verify_log("victim").await,
        ErrorKind::Corrupted,
        "verify_log after an entry was damaged",
    );
    note_broken_link(&err, 3);
    ok(
        s.sessions.verify_log("bystander").await,
        "verify_log of an undamaged log",
    );
}
