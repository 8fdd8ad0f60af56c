//! Run events: seqs, the hash chain, pagination, compare-and-append, idempotency.

use serde_json::json;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, NewEvent, RunSummary, Timestamp};

use crate::harness::Harness;
use crate::util::{event, expect_kind, meta, ok, open, spec, tricky_ids};

/// Appends get seqs 0, 1, 2, … chained by `prev_hash`; reads return exactly what was stored.
pub async fn append_read_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut stored = Vec::new();
    for i in 0..10u64 {
        let mut e = NewEvent::new(
            format!("kind-{i}"),
            json!({"i": i, "s": "ü🚀", "f": 1.5, "z": null}),
        );
        e.timestamp = Some(Timestamp::from_millis(1_000_000 + i * 7));
        let ev = ok(s.runs.append_event(id, e.clone()).await, "append_event");
        assert_eq!(ev.seq, i, "seqs start at 0 and have no gaps");
        assert_eq!(ev.run_id, id, "event names its run");
        assert_eq!(ev.kind, e.kind, "kind stored");
        assert_eq!(ev.payload, e.payload, "payload stored exactly");
        assert_eq!(
            ev.timestamp,
            e.timestamp.unwrap_or_default(),
            "caller's timestamp stored exactly"
        );
        assert_eq!(
            ev.prev_hash,
            stored.last().map(|p: &stowage_core::RunEvent| p.hash),
            "prev_hash links to the previous event"
        );
        assert_eq!(
            ev.hash,
            ev.compute_hash(),
            "the event hash covers its fields"
        );
        stored.push(ev);
    }
    assert_eq!(
        ok(s.runs.read_events(id, None, MAX_PAGE).await, "read_events"),
        stored,
        "read_events returns what was appended"
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        10,
        "event_count"
    );
    let report = ok(s.runs.verify_run(id).await, "verify_run");
    assert_eq!(report.len, 10, "verify_run walks every event");
    assert_eq!(
        report.head,
        stored.last().map(|e| e.hash),
        "verify_run reports the head hash"
    );
    let empty = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let report = ok(s.runs.verify_run(empty).await, "verify_run of an empty run");
    assert_eq!(
        (report.len, report.head),
        (0, None),
        "an empty chain verifies"
    );
    assert!(
        ok(s.runs.read_events(empty, None, 10).await, "read").is_empty(),
        "no events"
    );
}

/// `read_events(after_seq, limit)` is ascending, exclusive, `limit` after ordering.
pub async fn read_events_paginated(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    for i in 0..25 {
        ok(s.runs.append_event(id, event("k", i)).await, "append");
    }
    let seqs = |v: Vec<stowage_core::RunEvent>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(ok(s.runs.read_events(id, None, 3).await, "read")),
        vec![0, 1, 2],
        "first page"
    );
    assert_eq!(
        seqs(ok(s.runs.read_events(id, Some(0), 2).await, "read")),
        vec![1, 2],
        "after is exclusive"
    );
    assert_eq!(
        seqs(ok(s.runs.read_events(id, Some(22), 10).await, "read")),
        vec![23, 24],
        "last page"
    );
    assert!(
        ok(s.runs.read_events(id, Some(24), 10).await, "read").is_empty(),
        "past the end"
    );
    assert!(
        ok(s.runs.read_events(id, Some(1000), 10).await, "read").is_empty(),
        "far past the end"
    );
    assert!(
        ok(s.runs.read_events(id, None, 0).await, "read").is_empty(),
        "limit 0"
    );
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = ok(s.runs.read_events(id, after, 4).await, "read page");
        assert!(page.len() <= 4, "page longer than limit");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        all.extend(page.into_iter().map(|e| e.seq));
    }
    assert_eq!(
        all,
        (0..25).collect::<Vec<_>>(),
        "pages cover every seq once, in order"
    );
}

/// `expected_seq` makes a compare-and-append: a mismatch is `Conflict` and stores nothing.
pub async fn expected_seq_conflict(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut e = event("k", 0);
    e.expected_seq = Some(0);
    assert_eq!(
        ok(
            s.runs.append_event(id, e).await,
            "append with the right expected_seq"
        )
        .seq,
        0,
        "seq"
    );
    for wrong in [0, 2, u64::MAX] {
        let mut e = event("k", 1);
        e.expected_seq = Some(wrong);
        expect_kind(
            s.runs.append_event(id, e).await,
            ErrorKind::Conflict,
            &format!("append with expected_seq {wrong} when next is 1"),
        );
    }
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        1,
        "a failed compare-and-append stores nothing"
    );
    let mut e = event("k", 1);
    e.expected_seq = Some(1);
    assert_eq!(
        ok(s.runs.append_event(id, e).await, "append").seq,
        1,
        "seq after a conflict"
    );
}

/// A retried append with the same idempotency key returns the original event and stores nothing twice.
pub async fn idempotency_key_returns_original(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut e = event("tool_call", 1);
    e.idempotency_key = Some("msg-1".into());
    let first = ok(s.runs.append_event(id, e.clone()).await, "first append");
    ok(s.runs.append_event(id, event("other", 2)).await, "append");
    let again = ok(s.runs.append_event(id, e.clone()).await, "retried append");
    assert_eq!(again, first, "a retry returns the original event");
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        2,
        "nothing stored twice"
    );
    // Keys are per run.
    let other = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let ev = ok(
        s.runs.append_event(other, e).await,
        "same key in another run",
    );
    assert_eq!(ev.seq, 0, "idempotency keys are scoped to their run");
    ok(s.runs.verify_run(id).await, "verify_run");
}

/// A retry after the run completed returns the original event; a new key is `Conflict`.
pub async fn idempotency_after_completion(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut e = event("k", 1);
    e.idempotency_key = Some("once".into());
    let first = ok(s.runs.append_event(id, e.clone()).await, "append");
    ok(
        s.runs.complete_run(id, RunSummary::new("done")).await,
        "complete_run",
    );
    let again = ok(s.runs.append_event(id, e).await, "retry after completion");
    assert_eq!(
        again, first,
        "a retried append returns the original even after the run ended"
    );
    let mut fresh = event("k", 2);
    fresh.idempotency_key = Some("new".into());
    expect_kind(
        s.runs.append_event(id, fresh).await,
        ErrorKind::Conflict,
        "a new key after completion",
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        1,
        "nothing stored"
    );
}

/// A retry of a compare-and-append (same idempotency key and content) returns the original event although its expected seq is now stale; a new key with that stale seq is `Conflict`.
pub async fn idempotent_retry_with_stale_expected_seq(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut e = event("k", 1);
    e.idempotency_key = Some("m1".into());
    e.expected_seq = Some(0);
    let first = ok(
        s.runs.append_event(id, e.clone()).await,
        "compare-and-append",
    );
    let again = ok(
        s.runs.append_event(id, e.clone()).await,
        "a retry whose expected seq (0) is now stale",
    );
    assert_eq!(
        again, first,
        "a retried compare-and-append returns the original event, not Conflict"
    );
    e.idempotency_key = Some("m2".into());
    expect_kind(
        s.runs.append_event(id, e).await,
        ErrorKind::Conflict,
        "a new key with a stale expected seq",
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        1,
        "nothing stored twice"
    );
}

/// Event kinds and idempotency keys with tricky characters round-trip and do not collide.
pub async fn tricky_kinds_and_keys_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let ids = tricky_ids();
    for (i, tricky) in ids.iter().enumerate() {
        let mut e = event(tricky, i as u64);
        e.idempotency_key = Some(tricky.clone());
        let ev = ok(
            s.runs.append_event(id, e).await,
            &format!("append with kind/key {tricky:?}"),
        );
        assert_eq!(
            ev.seq, i as u64,
            "look-alike keys {tricky:?} must not collide"
        );
    }
    let events = ok(s.runs.read_events(id, None, MAX_PAGE).await, "read_events");
    assert_eq!(events.len(), ids.len(), "every event stored");
    for (ev, tricky) in events.iter().zip(&ids) {
        assert_eq!(&ev.kind, tricky, "kind round trip");
        assert_eq!(ev.idempotency_key.as_ref(), Some(tricky), "key round trip");
    }
}

/// Events and idempotency keys of one run never show up in another; seqs are per run.
pub async fn runs_isolated(h: &dyn Harness) {
    let s = open(h).await;
    let a = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let b = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    for i in 0..3 {
        ok(s.runs.append_event(a, event("a", i)).await, "append a");
    }
    let eb = ok(s.runs.append_event(b, event("b", 0)).await, "append b");
    assert_eq!(eb.seq, 0, "seqs are per run");
    let ra = ok(s.runs.read_events(a, None, MAX_PAGE).await, "read a");
    let rb = ok(s.runs.read_events(b, None, MAX_PAGE).await, "read b");
    assert!(
        ra.iter().all(|e| e.run_id == a && e.kind == "a") && ra.len() == 3,
        "run a holds only its events"
    );
    assert_eq!(rb, vec![eb], "run b holds only its event");
    let mut ka = NewEvent::new("k", json!(1));
    ka.idempotency_key = Some("x".into());
    let mut kb = NewEvent::new("k", json!(2));
    kb.idempotency_key = Some("x".into());
    let got_a = ok(s.runs.append_event(a, ka).await, "keyed append to a");
    let got_b = ok(
        s.runs.append_event(b, kb).await,
        "same key, other content, in b",
    );
    assert_eq!(
        (got_a.seq, got_b.seq, got_b.payload),
        (3, 1, json!(2)),
        "an idempotency key in one run is not seen by another"
    );
}

/// Timestamps at the edges of `u64` milliseconds (0, 2^53 + 1, `u64::MAX`) round-trip exactly in events, summaries and session log entries, and the chain verifies.
pub async fn extreme_timestamps_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let edges = [0, 1, (1 << 53) + 1, u64::MAX - 1, u64::MAX].map(Timestamp::from_millis);
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut stored = Vec::new();
    for (i, at) in edges.into_iter().enumerate() {
        let e = NewEvent::new("tick", json!({ "i": i })).with_timestamp(at);
        let event = ok(s.runs.append_event(id, e).await, "append_event");
        assert_eq!(event.timestamp, at, "the returned event's timestamp");
        stored.push(event);
    }
    let read = ok(s.runs.read_events(id, None, 10).await, "read_events");
    assert_eq!(read, stored, "events read back with their timestamps");
    let mut summary = RunSummary::new("done");
    summary.finished_at = Some(Timestamp::MAX);
    let run = ok(s.runs.complete_run(id, summary).await, "complete_run");
    assert_eq!(run.finished_at, Some(Timestamp::MAX), "finished_at");
    let run = ok(s.runs.get_run(id).await, "get_run");
    assert_eq!(
        run.finished_at,
        Some(Timestamp::MAX),
        "finished_at read back"
    );
    ok(s.runs.verify_run(id).await, "verify_run");

    ok(
        s.sessions.create_session("edges", json!({})).await,
        "create_session",
    );
    let mut entries = Vec::new();
    for at in edges {
        let entry = crate::util::entry(&b"x"[..]).with_timestamp(at);
        let entry = ok(s.sessions.append_log("edges", entry).await, "append_log");
        assert_eq!(entry.timestamp, at, "the returned entry's timestamp");
        entries.push(entry);
    }
    let read = ok(s.sessions.read_log("edges", None, 10).await, "read_log");
    assert_eq!(read, entries, "log entries read back with their timestamps");
    ok(s.sessions.verify_log("edges").await, "verify_log");
}
