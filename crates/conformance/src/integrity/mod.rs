//! Integrity checks (SPEC §2–4, §6): data damaged behind the SDK's back is
//! reported as `Corrupted`, never returned as if it were right.
//!
//! Each check damages data through [`Harness::tamper`]; a harness that
//! returns `Unsupported` makes the check not apply (it prints why).

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use stowage_core::{Digest, Error, ErrorKind, LogEntry, Result, RunEvent, Stores};

use crate::harness::{Harness, Tamper};
use crate::util::{entry, event, expect_kind, meta, ok, open, skipped, spec};

mod records;
pub use records::*;

/// Applies `target`; `false` (after printing why) when the harness cannot tamper.
pub(crate) async fn tampered(h: &dyn Harness, s: &Stores, check: &str, target: Tamper) -> bool {
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

/// Asserts that streaming the damaged blob `d` fails, at once or at some
/// chunk, with `Corrupted` (never delivering wrong bytes to the end).
pub(crate) async fn stream_corrupted(s: &Stores, d: &Digest) {
    match s.cas.get_stream(d).await {
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
    stream_corrupted(&s, &d).await;
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

/// A damaged run event: `verify_run` is `Corrupted`; other runs still verify; `read_events` gives `Corrupted` or the events as written, never the edit.
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
    // `Corrupted`, or the events as written (a cache of them): never the
    // edited payload.
    let reread: Result<_> = s.runs.read_events(run, None, 10).await;
    match reread {
        Ok(events) => {
            assert_eq!(events.len(), 5, "a damaged event is not dropped silently");
            assert!(
                events.iter().all(|e| e.compute_hash() == e.hash),
                "read_events handed out an edited event"
            );
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}"),
    }
}

/// A damaged session log entry: `verify_log` is `Corrupted`; other logs still verify; `read_log` gives `Corrupted` or the entries as written.
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
    match s.sessions.read_log("victim", None, 10).await {
        Ok(entries) => {
            assert_eq!(entries.len(), 5, "a damaged entry is not dropped silently");
            assert!(
                entries.iter().all(|e| e.compute_hash() == e.hash),
                "read_log handed out an edited entry"
            );
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}"),
    }
}

/// `events` from `from` on renumbered and re-hashed into one valid chain
/// after `events[from - 1]`: what someone who knows the hash rules writes
/// when rewriting a log behind the SDK's back.
fn rechain_events(mut events: Vec<RunEvent>, from: usize) -> Vec<RunEvent> {
    for i in from..events.len() {
        let prev = i.checked_sub(1).and_then(|p| events.get(p)).map(|e| e.hash);
        let e = &mut events[i];
        e.seq = i as u64;
        e.prev_hash = prev;
        e.hash = e.compute_hash();
    }
    events
}

/// As [`rechain_events`], for session log entries.
fn rechain_log(mut entries: Vec<LogEntry>, from: usize) -> Vec<LogEntry> {
    for i in from..entries.len() {
        let prev = i
            .checked_sub(1)
            .and_then(|p| entries.get(p))
            .map(|e| e.hash);
        let e = &mut entries[i];
        e.seq = i as u64;
        e.prev_hash = prev;
        e.hash = e.compute_hash();
    }
    entries
}

/// A dropped tail, a dropped middle re-chained over, an edited event
/// re-chained over, and a damaged head in the run record: `verify_run`
/// reports each as `Corrupted` (the record keeps the event count and the
/// head hash, so a consistent-looking shorter or rewritten chain does not
/// pass); an undamaged run still verifies.
pub async fn run_truncation_and_rewrites_corrupted(h: &dyn Harness) {
    const CHECK: &str = "integrity::run_truncation_and_rewrites_corrupted";
    let s = open(h).await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
        for i in 0..6 {
            ok(s.runs.append_event(run, event("step", i)).await, "append");
        }
        runs.push(run);
    }
    let runs_store = &s.runs;
    let events =
        |run| async move { ok(runs_store.read_events(run, None, 100).await, "read_events") };
    let cases: Vec<(&str, Tamper)> = vec![
        ("the last two events dropped", {
            let mut e = events(runs[0]).await;
            e.truncate(4);
            Tamper::RunEvents {
                run: runs[0],
                events: e,
            }
        }),
        ("event 2 dropped and the rest re-chained", {
            let mut e = events(runs[1]).await;
            e.remove(2);
            Tamper::RunEvents {
                run: runs[1],
                events: rechain_events(e, 2),
            }
        }),
        ("event 3 edited and the rest re-chained", {
            let mut e = events(runs[2]).await;
            e[3].payload = json!({"rewritten": true});
            Tamper::RunEvents {
                run: runs[2],
                events: rechain_events(e, 3),
            }
        }),
        (
            "the record's head hash replaced",
            Tamper::RunHead {
                run: runs[3],
                head: Some(stowage_core::Digest::of(b"not the head")),
            },
        ),
    ];
    for (i, (what, target)) in cases.into_iter().enumerate() {
        if !tampered(h, &s, CHECK, target).await {
            return;
        }
        expect_kind(
            s.runs.verify_run(runs[i]).await,
            ErrorKind::Corrupted,
            &format!("verify_run after {what}"),
        );
    }
    let report = ok(
        s.runs.verify_run(runs[4]).await,
        "verify_run of an undamaged run",
    );
    assert_eq!(report.len, 6, "an undamaged run verifies whole");
}

/// A dropped tail, a dropped middle re-chained over, an edited entry
/// re-chained over, and a damaged head in the session record: `verify_log`
/// reports each as `Corrupted` (the session record keeps the log length
/// and head hash, also across `replace_log`); an undamaged log still
/// verifies, and so does a replaced one.
pub async fn log_truncation_and_rewrites_corrupted(h: &dyn Harness) {
    const CHECK: &str = "integrity::log_truncation_and_rewrites_corrupted";
    let s = open(h).await;
    let ids: Vec<String> = (0..6).map(|i| format!("victim-{i}")).collect();
    for id in &ids {
        ok(s.sessions.create_session(id, json!({})).await, "create");
        for i in 0..6 {
            ok(
                s.sessions.append_log(id, entry(format!("m{i}"))).await,
                "append",
            );
        }
    }
    // A replaced log is recorded too: its tail is as evident as any other.
    let compacted: Vec<_> = (0..4).map(|i| entry(format!("c{i}"))).collect();
    ok(
        s.sessions.replace_log(&ids[4], compacted, Some(6)).await,
        "replace_log",
    );
    let sessions = &s.sessions;
    let log = |id: String| async move { ok(sessions.read_log(&id, None, 100).await, "read_log") };
    let cases: Vec<(&str, &String, Tamper)> = vec![
        ("the last two entries dropped", &ids[0], {
            let mut e = log(ids[0].clone()).await;
            e.truncate(4);
            Tamper::LogEntries {
                session: ids[0].clone(),
                entries: e,
            }
        }),
        ("entry 2 dropped and the rest re-chained", &ids[1], {
            let mut e = log(ids[1].clone()).await;
            e.remove(2);
            Tamper::LogEntries {
                session: ids[1].clone(),
                entries: rechain_log(e, 2),
            }
        }),
        ("entry 3 edited and the rest re-chained", &ids[2], {
            let mut e = log(ids[2].clone()).await;
            e[3].payload = bytes::Bytes::from_static(b"rewritten");
            Tamper::LogEntries {
                session: ids[2].clone(),
                entries: rechain_log(e, 3),
            }
        }),
        (
            "the record's head hash replaced",
            &ids[3],
            Tamper::LogHead {
                session: ids[3].clone(),
                head: Some(stowage_core::Digest::of(b"not the head")),
            },
        ),
        ("the last entry of a replaced log dropped", &ids[4], {
            let mut e = log(ids[4].clone()).await;
            e.pop();
            Tamper::LogEntries {
                session: ids[4].clone(),
                entries: e,
            }
        }),
    ];
    for (what, id, target) in cases {
        if !tampered(h, &s, CHECK, target).await {
            return;
        }
        expect_kind(
            s.sessions.verify_log(id).await,
            ErrorKind::Corrupted,
            &format!("verify_log after {what}"),
        );
    }
    let report = ok(
        s.sessions.verify_log(&ids[5]).await,
        "verify_log of an undamaged log",
    );
    assert_eq!(report.len, 6, "an undamaged log verifies whole");
    let session = ok(s.sessions.load_session(&ids[5]).await, "load_session");
    let session = session.unwrap_or_else(|| panic!("session {} vanished", ids[5]));
    assert_eq!(
        (session.log_len, session.log_head),
        (6, report.head),
        "the session record keeps the log's length and head"
    );
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let last = ok(s.runs.append_event(run, event("step", 0)).await, "append");
    let record = ok(s.runs.get_run(run).await, "get_run");
    assert_eq!(
        (record.event_count, record.head),
        (1, Some(last.hash)),
        "the run record keeps the event count and head"
    );
}
