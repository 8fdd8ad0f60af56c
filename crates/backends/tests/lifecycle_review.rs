//! Lifecycle operations (SPEC §10) on memory, sled and SQLite: recreated
//! and forked entities, GC referrers, pruning and sweep paging.
#![cfg(any(feature = "memory", feature = "sled", feature = "sqlite"))]

#[macro_use]
#[path = "support/lifecycle_backends.rs"]
mod backends;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_core::lifecycle::{BlobGc, IfRunning, Referrer, RunRetention, SessionRetention};
use stowage_core::{
    Digest, ErrorKind, NewEvent, RunMetadata, RunStatus, RunSummary, SessionState, Timestamp,
};

use backends::*;

/// A session pruned and created again under the same id starts clean: no
/// log, no idempotency keys, no head of the old one.
async fn recreated_session_starts_clean(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    s.sessions
        .create_session("s/1", json!({"v": 1}))
        .await
        .unwrap();
    for i in 0..3u8 {
        s.sessions
            .append_log("s/1", entry(i).with_idempotency_key(format!("m{i}")))
            .await
            .unwrap();
    }
    clock.advance(10_000);
    let policy = SessionRetention::idle_for(Duration::from_secs(1)).batch(1);
    assert_eq!(sessions_sweep(&s, &policy, true).await.1, 1);
    clock.advance(10_000);
    assert_eq!(sessions_sweep(&s, &policy, false).await.1, 1);
    assert!(s.sessions.load_session("s/1").await.unwrap().is_none());
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!((st.sessions, st.log_entries), (0, 0), "{st:?}");

    let again = s
        .sessions
        .create_session("s/1", json!({"v": 2}))
        .await
        .unwrap();
    assert_eq!(
        (again.version, again.log_len, again.state),
        (1, 0, SessionState::Open)
    );
    let e = s
        .sessions
        .append_log("s/1", entry(9).with_idempotency_key("m1"))
        .await
        .unwrap();
    assert_eq!(e.seq, 0, "an old idempotency key answered the new session");
    assert_eq!(e.payload, Bytes::from(vec![9u8; 8]));
    assert!(s.sessions.verify_log("s/1").await.is_ok());
}

/// A fork keeps every entry's idempotency key: a retry on the fork returns
/// the copied entry and stores nothing.
async fn fork_session_keeps_idempotency(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    s.sessions.create_session("a", json!({})).await.unwrap();
    for i in 0..3u8 {
        clock.advance(5);
        s.sessions
            .append_log("a", entry(i).with_idempotency_key(format!("m{i}")))
            .await
            .unwrap();
    }
    clock.advance(100);
    let fork = s.lifecycle.fork_session("a", "b").await.unwrap();
    assert_eq!((fork.version, fork.log_len), (1, 3));
    let src = s.sessions.read_log("a", None, 10).await.unwrap();
    let copy = s.sessions.read_log("b", None, 10).await.unwrap();
    assert_eq!(src.len(), copy.len());
    for (a, b) in src.iter().zip(&copy) {
        assert_eq!(
            (a.seq, a.timestamp, &a.idempotency_key, &a.payload),
            (b.seq, b.timestamp, &b.idempotency_key, &b.payload)
        );
        assert_eq!(b.session_id, "b");
    }
    let retried = s
        .sessions
        .append_log("b", entry(1).with_idempotency_key("m1"))
        .await
        .unwrap();
    assert_eq!(retried.seq, 1);
    assert_eq!(
        s.sessions.load_session("b").await.unwrap().unwrap().log_len,
        3
    );
    let conflict = s
        .sessions
        .append_log("b", entry(7).with_idempotency_key("m1"))
        .await
        .unwrap_err();
    assert_eq!(conflict.kind(), ErrorKind::Conflict);
    let next = s.sessions.append_log("b", entry(4)).await.unwrap();
    assert_eq!(next.seq, 3);
    assert_eq!(s.sessions.verify_log("b").await.unwrap().len, 4);
    assert_eq!(s.sessions.verify_log("a").await.unwrap().len, 3);
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!((st.sessions, st.log_entries), (2, 7), "{st:?}");
    // Into an existing session: AlreadyExists, nothing changed.
    let err = s.lifecycle.fork_session("a", "b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(s.sessions.read_log("b", None, 10).await.unwrap().len(), 4);
    let err = s.lifecycle.fork_session("nope", "c").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(s.sessions.load_session("c").await.unwrap().is_none());
}

/// fork_release copies the whole history; rollbacks on the copy walk it,
/// and the source is untouched.
async fn fork_release_rollbacks(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    let specs: Vec<Digest> = (0..3u8).map(|i| Digest::of(&[i])).collect();
    for (i, d) in specs.iter().enumerate() {
        clock.advance(1);
        s.releases
            .promote("p", *d, md(&format!("v{i}")), None)
            .await
            .unwrap();
    }
    s.releases.rollback("p", "ops").await.unwrap();
    clock.advance(1);
    let cur = s.lifecycle.fork_release("p", "q").await.unwrap();
    assert_eq!(cur, s.releases.current("p").await.unwrap().tap_name("q"));
    let hp = s.releases.history("p", None, 100).await.unwrap();
    let hq = s.releases.history("q", None, 100).await.unwrap();
    assert_eq!(hp.len(), hq.len());
    for (a, b) in hp.iter().zip(&hq) {
        assert_eq!(a.clone().tap_name("q"), *b);
    }
    let r = s.releases.rollback("q", "ops").await.unwrap();
    assert_eq!(r.spec_digest, specs[0]);
    assert_eq!(s.releases.current("p").await.unwrap().spec_digest, specs[1]);
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!((st.release_names, st.release_records), (2, 9), "{st:?}");
    let names = s.releases.list_names(None, 10).await.unwrap();
    assert_eq!(names, vec!["p".to_owned(), "q".to_owned()]);
    assert_eq!(
        s.lifecycle.fork_release("p", "q").await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        s.lifecycle
            .fork_release("zz", "y")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // Every spec stays referenced by both names.
    clock.advance(1_000_000);
    assert_eq!(
        gc_all(&s, &BlobGc::grace(Duration::from_secs(1))).await.1,
        0
    );
}

trait TapName {
    fn tap_name(self, name: &str) -> Self;
}
impl TapName for stowage_core::ReleaseRecord {
    fn tap_name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }
}

/// Every kind of referrer keeps its blob; removing the run frees only
/// what the run alone referenced.
async fn gc_keeps_every_referrer(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    let mut d = Vec::new();
    for i in 0..8u8 {
        d.push(
            s.cas
                .put(Bytes::from(vec![i; 100 + usize::from(i)]))
                .await
                .unwrap(),
        );
    }
    let run = s
        .runs
        .create_run(d[0], RunMetadata::new("a"))
        .await
        .unwrap();
    s.runs
        .append_event(run, NewEvent::new("k", json!(1)).with_blobs([d[1]]))
        .await
        .unwrap();
    s.runs
        .finish_run(
            run,
            RunStatus::Completed,
            RunSummary::new("ok").with_blobs([d[2]]),
        )
        .await
        .unwrap();
    s.releases
        .promote("rel", d[3], md("v"), None)
        .await
        .unwrap();
    s.lifecycle.pin_blob(&d[4], "keep").await.unwrap();
    let key = stowage_core::SigningKey::from_bytes(&[3; 32]);
    let sup = stowage_core::Supersession::sign(
        &key,
        stowage_core::SupersessionDraft::new(
            d[5],
            Some(d[6]),
            stowage_core::SupersessionKind::Correction,
            "r",
            Timestamp::from_millis(T0),
        ),
    );
    s.supersessions.put(sup).await.unwrap();
    clock.advance(3_600_000);
    let grace = BlobGc::grace(Duration::from_secs(60)).batch(2);
    let (examined, deleted) = gc_all(&s, &grace).await;
    assert_eq!((examined, deleted), (8, 1));
    assert!(!s.cas.contains(&d[7]).await.unwrap());
    for x in &d[..7] {
        assert!(s.cas.contains(x).await.unwrap(), "{x} collected");
    }
    assert!(s.lifecycle.delete_run(run, IfRunning::Keep).await.unwrap());
    clock.advance(3_600_000);
    let (_, deleted) = gc_all(&s, &grace).await;
    assert_eq!(deleted, 3);
    for x in &d[3..7] {
        assert!(s.cas.contains(x).await.unwrap(), "{x} collected");
    }
    assert!(s.lifecycle.unpin_blob(&d[4], "keep").await.unwrap());
    clock.advance(3_600_000);
    assert_eq!(gc_all(&s, &grace).await.1, 1);
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!(st.blobs, 3, "{st:?}");
}

/// keep_newest_per_agent over many small batches, with two agents whose
/// names share a prefix.
async fn prune_keeps_newest_in_batches(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    let spec = Digest::of(b"spec");
    let mut ids = std::collections::HashMap::<&str, Vec<_>>::new();
    for i in 0..20 {
        let agent = if i % 3 == 0 { "ab" } else { "a" };
        clock.advance(1);
        let r = s
            .runs
            .create_run(spec, RunMetadata::new(agent))
            .await
            .unwrap();
        s.runs
            .append_event(r, NewEvent::new("k", json!(i)))
            .await
            .unwrap();
        if i != 19 {
            s.runs.complete_run(r, RunSummary::new("ok")).await.unwrap();
        }
        ids.entry(agent).or_default().push(r);
    }
    let policy = RunRetention::finished().keep_newest_per_agent(3).batch(2);
    let (examined, affected) = prune_all(&s, &policy).await;
    assert_eq!(examined, 20);
    // "a": 13 runs, the newest is running; keep newest 3 -> delete 10.
    // "ab": 7 runs, keep 3 -> delete 4.
    assert_eq!(affected, 14);
    for (agent, runs) in &ids {
        let left: Vec<_> = s
            .runs
            .list_runs(&stowage_core::RunFilter::default().agent(*agent), None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut newest: Vec<_> = runs.iter().rev().take(3).copied().collect();
        newest.sort();
        newest.reverse();
        assert_eq!(left, newest, "agent {agent}");
    }
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!((st.runs, st.run_events), (6, 6), "{st:?}");
}

/// A run deleted while running: every later call on it is NotFound.
async fn deleted_run_is_gone(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    let r = s
        .runs
        .create_run(Digest::of(b"x"), RunMetadata::new("a"))
        .await
        .unwrap();
    s.runs
        .append_event(r, NewEvent::new("k", json!(1)).with_idempotency_key("i"))
        .await
        .unwrap();
    assert!(s.lifecycle.delete_run(r, IfRunning::Delete).await.unwrap());
    for e in [
        s.runs
            .append_event(r, NewEvent::new("k", json!(1)).with_idempotency_key("i"))
            .await
            .unwrap_err(),
        s.runs
            .append_event(r, NewEvent::new("k", json!(2)))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    }
    let e = s
        .runs
        .complete_run(r, RunSummary::new("x"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = s.runs.verify_run(r).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!((st.runs, st.run_events), (0, 0), "{st:?}");
    assert_eq!(
        s.lifecycle.blob_referrers(&Digest::of(b"x")).await.unwrap(),
        vec![Referrer::Run(r)]
    );
}

/// Session sweeps page by id: sessions deleted or created between pages
/// neither stop the sweep nor get expired twice.
async fn session_sweep_paging(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    for i in 0..10 {
        s.sessions
            .create_session(&format!("s{i:02}"), json!({}))
            .await
            .unwrap();
    }
    clock.advance(10_000);
    let policy = SessionRetention::idle_for(Duration::from_secs(1)).batch(3);
    let first = s.lifecycle.expire_sessions(&policy, None).await.unwrap();
    assert_eq!((first.examined, first.affected), (3, 3));
    let next = first.next.unwrap();
    assert_eq!(next, "s02");
    // Remove the next candidates before the next page.
    s.sessions.delete_session("s03").await.unwrap();
    s.sessions.delete_session("s04").await.unwrap();
    let mut after = Some(next);
    let mut total = 3;
    while let Some(a) = after {
        let sw = s
            .lifecycle
            .expire_sessions(&policy, Some(&a))
            .await
            .unwrap();
        total += sw.affected;
        after = sw.next;
    }
    assert_eq!(total, 8);
    for i in (0..10).filter(|i| *i != 3 && *i != 4) {
        let st = s
            .sessions
            .load_session(&format!("s{i:02}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((st.state, st.version), (SessionState::Expired, 2));
    }
}

on_backends!(recreated_session_starts_clean);
on_backends!(fork_session_keeps_idempotency);
on_backends!(fork_release_rollbacks);
on_backends!(gc_keeps_every_referrer);
on_backends!(prune_keeps_newest_in_batches);
on_backends!(deleted_run_is_gone);
on_backends!(session_sweep_paging);
