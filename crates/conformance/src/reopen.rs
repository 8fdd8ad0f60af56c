//! Reopen checks (SPEC §2 durability, §8): acknowledged data of every store
//! survives closing and reopening a durable store; seqs continue gap-free
//! and idempotency keys are still honoured.
//!
//! They apply when [`Capabilities::survives_kill`] is true (every
//! [`DurabilityLevel`] but `None`), and then the harness must implement
//! [`Harness::reopen`]. On other backends they print why they do not
//! apply.
//!
//! [`Capabilities::survives_kill`]: stowage_core::Capabilities::survives_kill
//! [`DurabilityLevel`]: stowage_core::DurabilityLevel

use bytes::Bytes;
use serde_json::json;
use stowage_core::{AgentKey, ErrorKind, PutOutcome, RunSummary, SessionState, Stores};

use crate::harness::Harness;
use crate::util::{
    assertion, entry, event, expect_kind, keyed_entry, meta, ok, open, rmeta, signer, skipped,
    snapshot, spec, superseding,
};

/// Reopens `s`, or `None` (after printing why) when the backend is not durable.
pub(crate) async fn reopened(h: &dyn Harness, s: Stores, check: &str) -> Option<Stores> {
    let level = s.capabilities.durability;
    if !level.survives_kill() {
        skipped(
            check,
            format!(
                "backend {:?} has durability {level}, so there is nothing to reopen",
                s.capabilities.backend
            ),
        );
        return None;
    }
    match h.reopen(s).await {
        Ok(s) => Some(s),
        Err(e) => panic!(
            "{check}: the backend claims durability {level}, which survives closing the \
             store, so its harness must reopen the store: {e}"
        ),
    }
}

/// Blobs (including the empty one) survive reopen; deleted blobs stay deleted.
pub async fn cas_survives(h: &dyn Harness) {
    let s = open(h).await;
    let blobs = [
        Bytes::new(),
        Bytes::from_static(b"kept"),
        Bytes::from(vec![9u8; 200_000]),
    ];
    for b in &blobs {
        ok(s.cas.put(b.clone()).await, "put");
    }
    let gone = ok(s.cas.put(Bytes::from_static(b"gone")).await, "put");
    ok(s.cas.delete(&gone).await, "delete");
    let before = snapshot(&s, &[], &[]).await;
    let Some(s) = reopened(h, s, "reopen::cas_survives").await else {
        return;
    };
    assert_eq!(
        snapshot(&s, &[], &[]).await,
        before,
        "blobs must survive reopen exactly"
    );
    for b in &blobs {
        let d = stowage_core::Digest::of(b);
        assert_eq!(
            ok(s.cas.get(&d).await, "get after reopen"),
            *b,
            "blob bytes after reopen"
        );
        ok(s.cas.verify(&d).await, "verify after reopen");
    }
    assert!(
        !ok(s.cas.contains(&gone).await, "contains"),
        "a deleted blob stays deleted after reopen"
    );
}

/// Runs, events, summaries survive; seqs continue gap-free; idempotency keys and terminal states hold.
pub async fn runs_survive(h: &dyn Harness) {
    let s = open(h).await;
    let live = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let done = ok(s.runs.create_run(spec(2), meta("b")).await, "create_run");
    let mut keyed = event("k", 99);
    keyed.idempotency_key = Some("once".into());
    let original = ok(s.runs.append_event(live, keyed.clone()).await, "append");
    for i in 0..4 {
        ok(s.runs.append_event(live, event("k", i)).await, "append");
        ok(s.runs.append_event(done, event("k", i)).await, "append");
    }
    ok(
        s.runs.fail_run(done, RunSummary::new("broke")).await,
        "fail_run",
    );
    let before = snapshot(&s, &[], &[]).await;
    let Some(s) = reopened(h, s, "reopen::runs_survive").await else {
        return;
    };
    assert_eq!(
        snapshot(&s, &[], &[]).await,
        before,
        "runs and events must survive reopen exactly"
    );
    ok(s.runs.verify_run(live).await, "verify_run after reopen");
    assert_eq!(
        ok(s.runs.append_event(live, keyed).await, "retry after reopen"),
        original,
        "idempotency keys survive reopen"
    );
    assert_eq!(
        ok(
            s.runs.append_event(live, event("k", 5)).await,
            "append after reopen"
        )
        .seq,
        5,
        "seqs continue gap-free after reopen"
    );
    ok(
        s.runs.verify_run(live).await,
        "the chain continues across reopen",
    );
    expect_kind(
        s.runs.append_event(done, event("k", 9)).await,
        ErrorKind::Conflict,
        "a terminal run stays terminal after reopen",
    );
    ok(
        s.runs.create_run(spec(3), meta("c")).await,
        "create_run after reopen",
    );
}

/// Release histories survive; seqs and rollbacks continue from where they were.
pub async fn releases_survive(h: &dyn Harness) {
    let s = open(h).await;
    for i in 0..3 {
        ok(
            s.releases
                .promote("svc", spec(i), rmeta(&format!("v{i}")), None)
                .await,
            "promote",
        );
    }
    ok(s.releases.rollback("svc", "ops").await, "rollback");
    ok(
        s.releases
            .promote("a:b/🚀", spec(9), rmeta("x"), None)
            .await,
        "promote",
    );
    let before = snapshot(&s, &[], &[]).await;
    let Some(s) = reopened(h, s, "reopen::releases_survive").await else {
        return;
    };
    assert_eq!(
        snapshot(&s, &[], &[]).await,
        before,
        "release histories must survive reopen exactly"
    );
    let back = ok(
        s.releases.rollback("svc", "ops").await,
        "rollback after reopen",
    );
    assert_eq!(
        (back.seq, back.spec_digest),
        (4, spec(0)),
        "rollback continues walking back after reopen"
    );
    let next = ok(
        s.releases
            .promote("svc", spec(5), rmeta("v5"), Some(4))
            .await,
        "compare-and-promote after reopen",
    );
    assert_eq!(next.seq, 5, "seqs continue gap-free after reopen");
}

/// Session records and logs survive; seqs, chains and idempotency keys continue; deletes and replacements hold.
pub async fn sessions_survive(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("chat", json!({"v": 1})).await,
        "create",
    );
    ok(
        s.sessions
            .save_session("chat", json!({"v": 2}), Some(1))
            .await,
        "save",
    );
    let original = ok(
        s.sessions.append_log("chat", keyed_entry("hi", "m1")).await,
        "append",
    );
    ok(
        s.sessions.append_log("chat", entry("there")).await,
        "append",
    );
    ok(
        s.sessions.create_session("compacted", json!({})).await,
        "create",
    );
    ok(
        s.sessions
            .append_log("compacted", keyed_entry("old", "old-key"))
            .await,
        "append",
    );
    ok(
        s.sessions
            .replace_log("compacted", vec![entry("summary")], None)
            .await,
        "replace_log",
    );
    ok(s.sessions.create_session("gone", json!({})).await, "create");
    ok(s.sessions.append_log("gone", entry("x")).await, "append");
    ok(s.sessions.delete_session("gone").await, "delete");
    ok(
        s.sessions.create_session("closed", json!({})).await,
        "create",
    );
    ok(
        s.sessions.append_log("closed", entry("last")).await,
        "append",
    );
    ok(
        s.sessions
            .set_session_state("closed", SessionState::Cancelled, None)
            .await,
        "close",
    );
    let before = snapshot(&s, &[], &[]).await;
    let Some(s) = reopened(h, s, "reopen::sessions_survive").await else {
        return;
    };
    assert_eq!(
        snapshot(&s, &[], &[]).await,
        before,
        "sessions and logs must survive reopen exactly"
    );
    assert_eq!(
        ok(
            s.sessions.append_log("chat", keyed_entry("hi", "m1")).await,
            "retry after reopen"
        ),
        original,
        "log idempotency keys survive reopen"
    );
    let next = ok(
        s.sessions.append_log("chat", entry("again")).await,
        "append after reopen",
    );
    assert_eq!(next.seq, 2, "log seqs continue gap-free after reopen");
    ok(
        s.sessions.verify_log("chat").await,
        "the chain continues across reopen",
    );
    let reborn = ok(
        s.sessions
            .append_log("compacted", keyed_entry("old", "old-key"))
            .await,
        "append",
    );
    assert_eq!(
        reborn.seq, 1,
        "keys of a replaced log stay gone after reopen"
    );
    expect_kind(
        s.sessions.save_session("chat", json!(0), Some(1)).await,
        ErrorKind::Conflict,
        "a stale expected_version after reopen",
    );
    let saved = ok(
        s.sessions.save_session("chat", json!(3), Some(2)).await,
        "save with the version from before reopen",
    );
    assert_eq!(saved.version, 3, "versions continue after reopen");
    assert_eq!(
        (saved.log_len, saved.log_head),
        (3, Some(next.hash)),
        "a save after reopen keeps the log's length and head"
    );
    expect_kind(
        s.sessions.append_log("closed", entry("late")).await,
        ErrorKind::Conflict,
        "a session closed before reopen refuses appends after it",
    );
    let closed = ok(s.sessions.verify_log("closed").await, "verify a closed log");
    assert_eq!(
        closed.len, 1,
        "a closed session keeps its log across reopen"
    );
    assert_eq!(
        ok(s.sessions.load_session("gone").await, "load"),
        None,
        "a deleted session stays deleted"
    );
}

/// Supersessions survive; identical puts stay no-ops; cycles are still refused.
pub async fn supersessions_survive(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let (a, b) = (assertion(1), assertion(2));
    let first = superseding(&key, a, Some(b), 10);
    ok(s.supersessions.put(first.clone()).await, "put");
    ok(
        s.supersessions
            .put(superseding(&key, assertion(3), None, 10))
            .await,
        "put",
    );
    let agents = [AgentKey::of(&key)];
    let targets = [a, b, assertion(3)];
    let before = snapshot(&s, &agents, &targets).await;
    let Some(s) = reopened(h, s, "reopen::supersessions_survive").await else {
        return;
    };
    assert_eq!(
        snapshot(&s, &agents, &targets).await,
        before,
        "supersessions must survive reopen exactly"
    );
    assert_eq!(
        ok(s.supersessions.put(first).await, "put"),
        PutOutcome::AlreadyPresent,
        "identical put after reopen"
    );
    expect_kind(
        s.supersessions.put(superseding(&key, b, Some(a), 11)).await,
        ErrorKind::Conflict,
        "a cycle after reopen",
    );
}

/// Writes made between repeated reopens all survive, in order.
pub async fn repeated_reopen(h: &dyn Harness) {
    let mut s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    for round in 0..3u64 {
        ok(
            s.sessions.append_log("s", entry(format!("r{round}"))).await,
            "append_log",
        );
        ok(
            s.runs.append_event(run, event("k", round)).await,
            "append_event",
        );
        let before = snapshot(&s, &[], &[]).await;
        let Some(next) = reopened(h, s, "reopen::repeated_reopen").await else {
            return;
        };
        s = next;
        assert_eq!(
            snapshot(&s, &[], &[]).await,
            before,
            "round {round}: state after reopen"
        );
    }
    assert_eq!(
        ok(s.sessions.verify_log("s").await, "verify_log").len,
        3,
        "log across three reopens"
    );
    assert_eq!(
        ok(s.runs.verify_run(run).await, "verify_run").len,
        3,
        "events across three reopens"
    );
}

/// Lifecycle effects survive reopen: a deleted run stays deleted, an
/// expired session stays expired, pins and references still protect their
/// blobs from GC, and a fork is a session like any other.
pub async fn lifecycle_survives(h: &dyn Harness) {
    use std::time::Duration;
    use stowage_core::lifecycle::{BlobGc, IfRunning, SessionRetention};

    let s = open(h).await;
    let pinned = ok(s.cas.put(Bytes::from_static(b"pinned")).await, "put");
    let spec_blob = ok(s.cas.put(Bytes::from_static(b"spec")).await, "put");
    ok(s.lifecycle.pin_blob(&pinned, "keep").await, "pin_blob");
    let kept = ok(s.runs.create_run(spec_blob, meta("a")).await, "create_run");
    let gone = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    ok(
        s.runs.append_event(gone, event("step", 0)).await,
        "append_event",
    );
    ok(
        s.lifecycle.delete_run(gone, IfRunning::Delete).await,
        "delete_run",
    );
    ok(
        s.sessions.create_session("idle", json!(null)).await,
        "create_session",
    );
    ok(
        s.sessions.append_log("idle", entry("hi")).await,
        "append_log",
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let expiry = SessionRetention::idle_for(Duration::ZERO);
    ok(
        s.lifecycle.expire_sessions(&expiry, None).await,
        "expire_sessions",
    );
    ok(
        s.lifecycle.fork_session("idle", "fork").await,
        "fork_session",
    );
    let before = ok(s.lifecycle.stats().await, "stats");
    let Some(s) = reopened(h, s, "reopen::lifecycle_survives").await else {
        return;
    };
    assert_eq!(ok(s.lifecycle.stats().await, "stats after reopen"), before);
    expect_kind(
        s.runs.get_run(gone).await,
        ErrorKind::NotFound,
        "a deleted run after reopen",
    );
    ok(s.runs.get_run(kept).await, "the kept run after reopen");
    let idle = ok(s.sessions.load_session("idle").await, "load_session");
    assert_eq!(
        idle.map(|x| x.state),
        Some(stowage_core::SessionState::Expired)
    );
    ok(
        s.sessions.verify_log("fork").await,
        "verify_log of a fork after reopen",
    );
    ok(
        s.lifecycle
            .gc_blobs(&BlobGc::grace(Duration::ZERO), None)
            .await,
        "gc_blobs",
    );
    assert!(
        ok(s.cas.contains(&pinned).await, "contains"),
        "a pin must survive reopen"
    );
    assert!(
        ok(s.cas.contains(&spec_blob).await, "contains"),
        "a run reference must survive reopen"
    );
}
