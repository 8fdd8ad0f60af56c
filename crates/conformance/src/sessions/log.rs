//! Session logs: appends, the hash chain, pagination, idempotency, concurrency.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::json;
use stowage_core::validate::{MAX_LOG_PAYLOAD_BYTES, MAX_PAGE};
use stowage_core::{ErrorKind, LogEntry, LogKind, NewLogEntry, Timestamp};

use crate::harness::Harness;
use crate::util::{
    assert_unchanged, entry, expect_kind, invalid_ids, keyed_entry, ok, open, race, snapshot,
};

/// Tasks and appends per task in the concurrency check.
const TASKS: usize = 32;
const PER_TASK: usize = 50;

/// Appends get seqs 0, 1, 2, … chained by `prev_hash`; every field round-trips.
pub async fn log_append_read_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let kinds = [LogKind::Incoming, LogKind::Internal, LogKind::Checkpoint];
    let mut stored: Vec<LogEntry> = Vec::new();
    for i in 0..9u64 {
        let payload: Vec<u8> = (0..=255u8).cycle().skip(i as usize).take(300).collect();
        let mut new = NewLogEntry::new(
            kinds[i as usize % 3],
            format!("sender:{i}/ü"),
            format!("type {{{i}}}"),
            Bytes::from(payload),
        )
        .with_timestamp(Timestamp::from_millis(5_000_000 + i));
        new.idempotency_key = (i % 2 == 0).then(|| format!("msg-{i}"));
        let e = ok(s.sessions.append_log("s", new.clone()).await, "append_log");
        assert_eq!(e.seq, i, "log seqs start at 0 with no gaps");
        assert_eq!(e.session_id, "s", "entry names its session");
        assert_eq!(
            (
                e.kind,
                &e.sender,
                &e.message_type,
                &e.payload,
                &e.idempotency_key
            ),
            (
                new.kind,
                &new.sender,
                &new.message_type,
                &new.payload,
                &new.idempotency_key
            ),
            "every field of a log entry round-trips"
        );
        assert_eq!(
            Some(e.timestamp),
            new.timestamp,
            "caller's timestamp stored exactly"
        );
        assert_eq!(
            e.prev_hash,
            stored.last().map(|p| p.hash),
            "prev_hash links to the previous entry"
        );
        assert_eq!(e.hash, e.compute_hash(), "the entry hash covers its fields");
        stored.push(e);
    }
    let empty = ok(
        s.sessions.append_log("s", entry(Bytes::new())).await,
        "append an empty payload",
    );
    assert!(empty.payload.is_empty(), "an empty payload round-trips");
    stored.push(empty);
    assert_eq!(
        ok(s.sessions.read_log("s", None, MAX_PAGE).await, "read_log"),
        stored,
        "read_log returns what was appended"
    );
    let report = ok(s.sessions.verify_log("s").await, "verify_log");
    assert_eq!(
        (report.len, report.head),
        (10, stored.last().map(|e| e.hash)),
        "verify_log walks the whole chain"
    );
    ok(
        s.sessions.create_session("empty", json!({})).await,
        "create",
    );
    assert_eq!(
        ok(s.sessions.verify_log("empty").await, "verify_log").len,
        0,
        "an empty log verifies"
    );
}

/// `read_log(after_seq, limit)` is ascending, exclusive, `limit` after ordering.
pub async fn read_log_paginated(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    for i in 0..25 {
        ok(
            s.sessions.append_log("s", entry(format!("{i}"))).await,
            "append",
        );
    }
    let seqs = |v: Vec<LogEntry>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(ok(s.sessions.read_log("s", None, 3).await, "read")),
        vec![0, 1, 2],
        "first page"
    );
    assert_eq!(
        seqs(ok(s.sessions.read_log("s", Some(0), 2).await, "read")),
        vec![1, 2],
        "after is exclusive"
    );
    assert_eq!(
        seqs(ok(s.sessions.read_log("s", Some(22), 9).await, "read")),
        vec![23, 24],
        "last page"
    );
    assert!(
        ok(s.sessions.read_log("s", Some(24), 9).await, "read").is_empty(),
        "past the end"
    );
    assert!(
        ok(s.sessions.read_log("s", None, 0).await, "read").is_empty(),
        "limit 0"
    );
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = ok(s.sessions.read_log("s", after, 6).await, "read page");
        assert!(page.len() <= 6, "page longer than limit");
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

/// An entry whose idempotency key is already in the log is not stored again: the original comes back.
pub async fn log_idempotency_key_returns_original(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    ok(s.sessions.create_session("t", json!({})).await, "create");
    let first = ok(
        s.sessions
            .append_log("s", keyed_entry("hello", "msg-1"))
            .await,
        "append",
    );
    ok(s.sessions.append_log("s", entry("between")).await, "append");
    let again = ok(
        s.sessions
            .append_log("s", keyed_entry("hello", "msg-1"))
            .await,
        "retried append",
    );
    assert_eq!(
        again, first,
        "a duplicate message id returns the original entry"
    );
    assert_eq!(
        ok(s.sessions.read_log("s", None, 10).await, "read").len(),
        2,
        "nothing stored twice"
    );
    let other = ok(
        s.sessions
            .append_log("t", keyed_entry("hello", "msg-1"))
            .await,
        "same key elsewhere",
    );
    assert_eq!(
        (other.seq, other.session_id.as_str()),
        (0, "t"),
        "idempotency keys are per session"
    );
}

/// 32 tasks × 50 appends to one log: seqs unique and gap-free, nothing lost, the chain verifies.
pub async fn log_concurrent_appends(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("hot", json!({})).await, "create");
    let sessions = s.sessions.clone();
    let results = race(TASKS, |t| {
        let sessions = sessions.clone();
        async move {
            let mut out = Vec::new();
            for i in 0..PER_TASK {
                out.push(
                    sessions
                        .append_log("hot", entry(format!("{t}/{i}")))
                        .await
                        .map(|e| e.seq),
                );
            }
            out
        }
    })
    .await;
    let mut seen = BTreeSet::new();
    for r in results.into_iter().flatten() {
        let seq = ok(r, "concurrent append_log");
        assert!(
            seen.insert(seq),
            "log seq {seq} handed out twice under concurrency"
        );
    }
    let total = (TASKS * PER_TASK) as u64;
    assert_eq!(
        seen,
        (0..total).collect(),
        "log seqs must be gap-free under concurrency"
    );
    let log = ok(s.sessions.read_log("hot", None, MAX_PAGE).await, "read_log");
    assert!(
        log.iter().map(|e| e.seq).eq(0..total),
        "read_log must return seqs 0..{total} in numeric order (seq keys must sort numerically)"
    );
    let payloads: BTreeSet<Bytes> = log.iter().map(|e| e.payload.clone()).collect();
    assert_eq!(
        payloads.len() as u64,
        total,
        "every appended entry stored exactly once"
    );
    assert_eq!(
        ok(s.sessions.verify_log("hot").await, "verify_log").len,
        total,
        "chain verifies after concurrent appends"
    );
}

/// 16 tasks appending the same message id: one entry stored, all get it back.
pub async fn log_racing_idempotent_appends(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let sessions = s.sessions.clone();
    let results = race(16, |_| {
        let sessions = sessions.clone();
        async move {
            sessions
                .append_log("s", keyed_entry("the one message", "once"))
                .await
        }
    })
    .await;
    let entries: Vec<LogEntry> = results
        .into_iter()
        .map(|r| ok(r, "racing idempotent append"))
        .collect();
    assert!(
        entries.iter().all(|e| *e == entries[0]),
        "every racing duplicate returns the one original entry"
    );
    assert_eq!(
        ok(s.sessions.read_log("s", None, 10).await, "read").len(),
        1,
        "stored once"
    );
}

/// Invalid senders, message types, keys and payloads over 1 MiB are `InvalidInput` and change nothing.
pub async fn log_hostile_entries_rejected(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    ok(s.sessions.append_log("s", entry("ok")).await, "append");
    let before = snapshot(&s, &[], &[]).await;
    let bad = ErrorKind::InvalidInput;
    for (id, why) in invalid_ids() {
        let e = NewLogEntry::new(LogKind::Incoming, id.clone(), "text", "x");
        expect_kind(
            s.sessions.append_log("s", e).await,
            bad,
            &format!("log sender {why}"),
        );
        let e = NewLogEntry::new(LogKind::Incoming, "user", id.clone(), "x");
        expect_kind(
            s.sessions.append_log("s", e).await,
            bad,
            &format!("log message type {why}"),
        );
        expect_kind(
            s.sessions.append_log("s", keyed_entry("x", &id)).await,
            bad,
            &format!("log idempotency key {why}"),
        );
        expect_kind(
            s.sessions
                .replace_log("s", vec![keyed_entry("x", &id)], None)
                .await,
            bad,
            &format!("replace_log with a key {why}"),
        );
    }
    let big = Bytes::from(vec![0u8; MAX_LOG_PAYLOAD_BYTES + 1]);
    expect_kind(
        s.sessions.append_log("s", entry(big.clone())).await,
        bad,
        "log payload over 1 MiB",
    );
    expect_kind(
        s.sessions
            .replace_log("s", vec![entry("ok"), entry(big)], None)
            .await,
        bad,
        "replace_log with a payload over 1 MiB",
    );
    let dup = vec![keyed_entry("a", "k"), keyed_entry("b", "k")];
    expect_kind(
        s.sessions.replace_log("s", dup, None).await,
        bad,
        "replace_log with a duplicate idempotency key",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "hostile log entries",
    );
    let exact = Bytes::from(vec![1u8; MAX_LOG_PAYLOAD_BYTES]);
    ok(
        s.sessions.append_log("s", entry(exact)).await,
        "a payload of exactly 1 MiB is accepted",
    );
}
