//! `stores.lifecycle` on Redis: retention, expiry, blob references and
//! garbage collection, forks and statistics, on a single node and (the
//! `cluster_*` tests, whose code paths differ) on a 3-node cluster. Forks
//! and statistics are in `redis_lifecycle_forks.rs`. Each
//! test has its own key prefix; nothing is flushed. The clock is the
//! test's, so grace periods and idleness are exact. The GC race is in
//! `redis_lifecycle_race.rs`.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

#[path = "support/lifecycle.rs"]
mod lifecycle;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_core::lifecycle::{BlobGc, IfRunning, Referrer, RunRetention, SessionRetention};
use stowage_core::{
    Digest, ErrorKind, NewEvent, ReleaseMetadata, RunFilter, RunMetadata, RunStatus, RunSummary,
    SessionState, Timestamp,
};

use lifecycle::{entry, open_at, standalone, sup, Clock, T0};

async fn delete_run_removes_everything(url: String) {
    let clock = Clock::at(T0);
    let s = open_at(&url, &clock).await;
    let spec = Digest::of(b"spec");
    let r = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    for i in 0..3 {
        let mut e = NewEvent::new("k", json!(i));
        if i == 1 {
            e = e.with_idempotency_key("once");
        }
        s.runs.append_event(r, e).await.unwrap();
    }
    s.runs
        .finish_run(r, RunStatus::Completed, RunSummary::new("ok"))
        .await
        .unwrap();
    let running = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    let stats = s.lifecycle.stats().await.unwrap();
    assert_eq!((stats.runs, stats.run_events), (2, 3));

    let refused = s.lifecycle.delete_run(running, IfRunning::Keep).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Conflict);
    assert!(s.lifecycle.delete_run(r, IfRunning::Keep).await.unwrap());
    assert!(!s.lifecycle.delete_run(r, IfRunning::Keep).await.unwrap());
    assert_eq!(
        s.runs.get_run(r).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let read = s.runs.read_events(r, None, 10).await;
    assert_eq!(read.unwrap_err().kind(), ErrorKind::NotFound);
    for filter in [
        RunFilter::default(),
        RunFilter::default().agent("a"),
        RunFilter::default().spec(spec),
    ] {
        let ids: Vec<_> = s
            .runs
            .list_runs(&filter, None, 100)
            .await
            .unwrap()
            .iter()
            .map(|run| run.id)
            .collect();
        assert_eq!(ids, vec![running]);
    }
    let stats = s.lifecycle.stats().await.unwrap();
    assert_eq!((stats.runs, stats.run_events), (1, 0));
    assert!(s
        .lifecycle
        .delete_run(running, IfRunning::Delete)
        .await
        .unwrap());
    let stats = s.lifecycle.stats().await.unwrap();
    // What is left are the runs' blob references, until a collection
    // finds their referrers gone.
    assert_eq!((stats.runs, stats.run_events), (0, 0));
    let appended = s
        .runs
        .append_event(running, NewEvent::new("k", json!(1)))
        .await;
    assert_eq!(appended.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn delete_run_removes_record_events_keys_and_index_entries() {
    delete_run_removes_everything(standalone("del")).await;
}

#[tokio::test]
async fn cluster_delete_run() {
    delete_run_removes_everything(lifecycle::cluster("del")).await;
}

async fn prune_by_policy(url: String) {
    let clock = Clock::at(T0);
    let s = open_at(&url, &clock).await;
    let mut a = Vec::new();
    for i in 0..5u64 {
        clock.set(T0 + 10 * i);
        let r = s
            .runs
            .create_run(Digest::of(b"s"), RunMetadata::new("a"))
            .await
            .unwrap();
        s.runs
            .append_event(r, NewEvent::new("k", json!(i)))
            .await
            .unwrap();
        let status = if i == 2 {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        };
        s.runs
            .finish_run(r, status, RunSummary::new("done"))
            .await
            .unwrap();
        a.push(r);
    }
    clock.set(T0 + 100);
    let b_running = s
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("b"))
        .await
        .unwrap();

    // Completed before T0+35, keeping the newest 2 of each agent, 2 per call.
    let policy = RunRetention::finished()
        .finished_before(Timestamp::from_millis(T0 + 35))
        .status(RunStatus::Completed)
        .keep_newest_per_agent(2)
        .batch(2);
    let (mut after, mut calls, mut deleted, mut events, mut examined) = (None, 0, 0, 0, 0);
    loop {
        let sweep = s.lifecycle.prune_runs(&policy, after).await.unwrap();
        calls += 1;
        assert!(sweep.examined <= 2);
        deleted += sweep.affected;
        events += sweep.removed;
        examined += sweep.examined;
        match sweep.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // The third page was full, so a fourth call finds the end.
    assert_eq!((calls, examined), (4, 6));
    // a0, a1, a3 qualify (a2 failed, a4 finished too late); a3 is among the
    // newest two of agent a, so a0 and a1 go.
    assert_eq!((deleted, events), (2, 2));
    for (i, r) in a.iter().enumerate() {
        let present = s.runs.get_run(*r).await.is_ok();
        assert_eq!(present, i >= 2, "run a{i}");
    }
    // Running runs are kept unless asked for; then they count as finishing now.
    let all = RunRetention::finished().agent("b");
    assert_eq!(
        s.lifecycle.prune_runs(&all, None).await.unwrap().affected,
        0
    );
    let swept = s
        .lifecycle
        .prune_runs(&all.including_running(), None)
        .await
        .unwrap();
    assert_eq!(swept.affected, 1);
    assert!(s.runs.get_run(b_running).await.is_err());
    let bad = s
        .lifecycle
        .prune_runs(&RunRetention::finished().agent(""), None)
        .await;
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidInput);
    // keep_newest_per_agent(1) leaves exactly the newest run of a.
    let keep_one = RunRetention::finished().keep_newest_per_agent(1);
    assert_eq!(
        s.lifecycle
            .prune_runs(&keep_one, None)
            .await
            .unwrap()
            .affected,
        2
    );
    assert!(s.runs.get_run(a[4]).await.is_ok());
    assert_eq!(s.lifecycle.stats().await.unwrap().runs, 1);
}

#[tokio::test]
async fn prune_runs_by_policy_in_batches() {
    prune_by_policy(standalone("prune")).await;
}

#[tokio::test]
async fn cluster_prune_runs() {
    prune_by_policy(lifecycle::cluster("prune")).await;
}

#[tokio::test]
async fn sessions_expire_then_prune_by_idleness() {
    let clock = Clock::at(T0);
    let s = open_at(&standalone("sessions"), &clock).await;
    for id in ["idle", "chatty", "done"] {
        s.sessions
            .create_session(id, json!({"id": id}))
            .await
            .unwrap();
    }
    s.sessions.append_log("idle", entry(1)).await.unwrap();
    let late = entry(2).with_timestamp(Timestamp::from_millis(T0 + 50));
    s.sessions.append_log("chatty", late).await.unwrap();
    s.sessions
        .set_session_state("done", SessionState::Resolved, None)
        .await
        .unwrap();
    clock.set(T0 + 100);
    let policy = SessionRetention::idle_for(Duration::from_millis(60)).batch(2);
    let first = s.lifecycle.expire_sessions(&policy, None).await.unwrap();
    assert_eq!((first.examined, first.affected), (2, 0));
    assert_eq!(first.next.as_deref(), Some("done"));
    let second = s
        .lifecycle
        .expire_sessions(&policy, Some("done"))
        .await
        .unwrap();
    assert_eq!(
        (second.examined, second.affected, second.next),
        (1, 1, None)
    );
    let idle = s.sessions.load_session("idle").await.unwrap().unwrap();
    assert_eq!((idle.state, idle.version), (SessionState::Expired, 2));
    let chatty = s.sessions.load_session("chatty").await.unwrap().unwrap();
    assert_eq!(chatty.state, SessionState::Open);

    // Expiring counts as activity: nothing is idle enough to prune yet.
    let prune = SessionRetention::idle_for(Duration::from_millis(60));
    assert_eq!(
        s.lifecycle
            .prune_sessions(&prune, None)
            .await
            .unwrap()
            .affected,
        0
    );
    clock.set(T0 + 200);
    let pruned = s.lifecycle.prune_sessions(&prune, None).await.unwrap();
    assert_eq!((pruned.affected, pruned.removed), (1, 1));
    assert!(s.sessions.load_session("idle").await.unwrap().is_none());
    let listed = s.sessions.list_sessions(None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    let resolved = prune.clone().state(SessionState::Resolved);
    assert_eq!(
        s.lifecycle
            .prune_sessions(&resolved, None)
            .await
            .unwrap()
            .affected,
        1
    );
    let stats = s.lifecycle.stats().await.unwrap();
    assert_eq!((stats.sessions, stats.log_entries), (1, 1));
}

#[tokio::test]
async fn gc_collects_only_unreferenced_blobs_past_the_grace_period() {
    let clock = Clock::at(T0);
    let s = open_at(&standalone("gc"), &clock).await;
    let put = |b: &'static [u8]| s.cas.put(Bytes::from_static(b));
    let (spec, made, released) = (
        put(b"spec").await.unwrap(),
        put(b"made").await.unwrap(),
        put(b"rel").await.unwrap(),
    );
    let (old, new, pinned) = (
        put(b"old").await.unwrap(),
        put(b"new").await.unwrap(),
        put(b"pin").await.unwrap(),
    );
    let (garbage, refreshed) = (
        put(b"garbage!").await.unwrap(),
        put(b"again").await.unwrap(),
    );
    let run = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    let summary = RunSummary::new("ok").with_blobs([made]);
    s.runs
        .finish_run(run, RunStatus::Completed, summary)
        .await
        .unwrap();
    let meta = ReleaseMetadata::new("v1", "ci");
    s.releases.promote("r", released, meta, None).await.unwrap();
    s.supersessions.put(sup(old, new)).await.unwrap();
    s.lifecycle.pin_blob(&pinned, "keep").await.unwrap();
    s.lifecycle.pin_blob(&pinned, "keep").await.unwrap();
    assert_eq!(
        s.lifecycle.pin_blob(&pinned, "").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        s.lifecycle.blob_referrers(&spec).await.unwrap(),
        vec![Referrer::Run(run)]
    );
    assert_eq!(
        s.lifecycle.blob_referrers(&new).await.unwrap(),
        vec![Referrer::Supersession(old)]
    );

    let policy = BlobGc::grace(Duration::from_secs(60));
    // Within the grace period nothing goes.
    assert_eq!(lifecycle::gc_all(&s, &policy).await, (8, 0, 0));
    clock.set(T0 + 61_000);
    // A put restarts the grace period; so does a reference, even stale.
    s.cas.put(Bytes::from_static(b"again")).await.unwrap();
    let young = s
        .runs
        .create_run(refreshed, RunMetadata::new("a"))
        .await
        .unwrap();
    assert!(s
        .lifecycle
        .delete_run(young, IfRunning::Delete)
        .await
        .unwrap());
    assert_eq!(lifecycle::gc_all(&s, &policy).await, (8, 1, 8));
    assert!(!s.cas.contains(&garbage).await.unwrap());
    assert!(s.cas.contains(&refreshed).await.unwrap());

    // Deleting the run frees its spec and declared blob (their entries
    // were recorded at T0, before the cutoff); unpinning frees the pin.
    assert!(s.lifecycle.delete_run(run, IfRunning::Keep).await.unwrap());
    assert!(s.lifecycle.unpin_blob(&pinned, "keep").await.unwrap());
    assert!(!s.lifecycle.unpin_blob(&pinned, "keep").await.unwrap());
    assert_eq!(lifecycle::gc_all(&s, &policy).await, (7, 3, 4 + 4 + 3));
    assert!(s.cas.contains(&refreshed).await.unwrap());
    assert_eq!(
        s.lifecycle.blob_referrers(&refreshed).await.unwrap(),
        vec![Referrer::Run(young)]
    );
    clock.set(T0 + 200_000);
    assert_eq!(lifecycle::gc_all(&s, &policy).await, (4, 1, 5));
    for d in [released, old, new] {
        assert!(s.cas.contains(&d).await.unwrap(), "{d}");
    }
    for d in [spec, made, pinned, garbage, refreshed] {
        assert!(!s.cas.contains(&d).await.unwrap(), "{d}");
        assert!(s.lifecycle.blob_referrers(&d).await.unwrap().is_empty());
    }
    let stats = s.lifecycle.stats().await.unwrap();
    assert_eq!(
        (stats.blobs, stats.blob_bytes, stats.blob_references),
        (3, 21, 3)
    );
    // In batches: a cursor per call.
    let first = s
        .lifecycle
        .gc_blobs(&policy.clone().batch(2), None)
        .await
        .unwrap();
    assert_eq!(first.examined, 2);
    let rest = s
        .lifecycle
        .gc_blobs(&policy.batch(2), first.next.as_ref())
        .await
        .unwrap();
    assert_eq!((rest.examined, rest.next), (1, None));
}
