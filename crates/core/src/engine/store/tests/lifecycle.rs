//! Lifecycle rules that the conformance suite cannot reach through the
//! public API: a store written before the blob reference index existed,
//! a blob with more reference entries than a page holds, damaged records.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::{mem_stores, put_raw, scan, write_raw};
use crate::engine::{keys, Engine, Scope, Table};
use crate::lifecycle::{BlobGc, Referrer, RunRetention, SessionRetention, Sweep};
use crate::{
    Digest, ErrorKind, LogKind, NewLogEntry, ReleaseMetadata, Result, RunId, RunMetadata,
    RunSummary, SessionState, Timestamp,
};

/// Removes every reference entry and the index marker, as in a store
/// written before references were recorded.
async fn forget_references(engine: &crate::engine::MemoryEngine) {
    engine
        .write(
            Scope::Unshared,
            Box::new(|txn| {
                txn.delete_range(Table::BlobRefs, Vec::new(), vec![0xFF; 40])?;
                txn.delete(Table::Meta, keys::refs_indexed())
            }),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
}

#[tokio::test]
async fn collection_first_indexes_what_older_stores_reference() {
    let (s, engine) = mem_stores();
    let spec = s.cas.put(Bytes::from_static(b"spec")).await.unwrap();
    let output = s.cas.put(Bytes::from_static(b"output")).await.unwrap();
    let released = s.cas.put(Bytes::from_static(b"released")).await.unwrap();
    let garbage = s.cas.put(Bytes::from_static(b"garbage")).await.unwrap();
    let run = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    let summary = RunSummary::new("done").with_blobs([output]);
    s.runs.complete_run(run, summary).await.unwrap();
    let meta = ReleaseMetadata::new("v1", "ci");
    s.releases
        .promote("prod", released, meta, None)
        .await
        .unwrap();
    forget_references(&engine).await;
    assert!(scan(&engine, Table::BlobRefs, &[], None, 10)
        .await
        .is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await;

    let sweep = s
        .lifecycle
        .gc_blobs(&BlobGc::grace(Duration::ZERO), None)
        .await
        .unwrap();
    assert_eq!(sweep.affected, 1, "only the unreferenced blob goes");
    for kept in [spec, output, released] {
        assert!(
            s.cas.contains(&kept).await.unwrap(),
            "an old reference was not honoured"
        );
    }
    assert!(!s.cas.contains(&garbage).await.unwrap());
    let marker = scan(&engine, Table::Meta, &keys::refs_indexed(), None, 1).await;
    assert_eq!(marker.len(), 1, "the index is marked complete");
}

/// A damaged run record stops no sweep and loses nothing it may
/// reference: gc keeps its blobs and goes on; pruning leaves it (reads and
/// `verify_run` report it) and goes on past it, page after page.
#[tokio::test]
async fn damaged_runs_are_kept_and_sweeps_go_on() {
    let (s, engine) = mem_stores();
    let (mut runs, mut specs) = (Vec::new(), Vec::new());
    for i in 0..6u8 {
        let spec = s.cas.put(Bytes::from(vec![i; 8])).await.unwrap();
        let run = s
            .runs
            .create_run(spec, RunMetadata::new("a"))
            .await
            .unwrap();
        s.runs
            .complete_run(run, RunSummary::new("done"))
            .await
            .unwrap();
        runs.push(run);
        specs.push(spec);
    }
    let garbage = s.cas.put(Bytes::from_static(b"garbage")).await.unwrap();
    let damaged = [runs[0], runs[3]];
    for run in damaged {
        put_raw(
            &engine,
            vec![(Table::Runs, keys::run(run), b"not a run".to_vec())],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;

    let gc = BlobGc::grace(Duration::ZERO).batch(2);
    let mut after = None;
    loop {
        let sweep = s.lifecycle.gc_blobs(&gc, after.as_ref()).await.unwrap();
        match sweep.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(!s.cas.contains(&garbage).await.unwrap());
    for spec in &specs {
        assert!(
            s.cas.contains(spec).await.unwrap(),
            "a referenced blob went"
        );
    }

    for agent in [None, Some("a")] {
        let mut policy = RunRetention::finished().batch(2);
        policy.agent_name = agent.map(str::to_owned);
        let mut after = None;
        loop {
            let sweep = s.lifecycle.prune_runs(&policy, after).await.unwrap();
            match sweep.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    for run in runs {
        let kind = s.runs.get_run(run).await.unwrap_err().kind();
        let want = if damaged.contains(&run) {
            ErrorKind::Corrupted
        } else {
            ErrorKind::NotFound
        };
        assert_eq!(kind, want, "run {run}");
    }
}

/// Found by review: `blob_referrers` read one page of the index (10 000
/// entries), so a spec shared by that many runs lost its pins, which sort
/// after the runs — and export, which copies pins from it, dropped them.
/// Every referrer is listed, each run once even when its entry and a
/// call's fall on both sides of a page boundary.
#[tokio::test]
async fn a_popular_blob_lists_every_referrer() {
    let (s, engine) = mem_stores();
    let spec = Digest::of(b"planner spec");
    let runs: Vec<RunId> = (0..=crate::validate::MAX_PAGE as u128 / 2 + 1)
        .map(|i| RunId::new_v7(Timestamp::from_millis(1), i))
        .collect();
    let mut entries = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let now = 1u64.to_be_bytes().to_vec();
        entries.push((
            Table::BlobRefs,
            keys::blob_ref(&spec, &Referrer::Run(*run)),
            now.clone(),
        ));
        // Every run but the first has a call's entry beside its own, so
        // the page boundary falls between a run's two entries.
        if i > 0 {
            entries.push((
                Table::BlobRefs,
                keys::blob_ref_call(&spec, &Referrer::Run(*run), 7),
                now,
            ));
        }
    }
    put_raw(&engine, entries).await;
    s.lifecycle.pin_blob(&spec, "golden").await.unwrap();

    let listed = s.lifecycle.blob_referrers(&spec).await.unwrap();
    let mut want: Vec<Referrer> = runs.iter().copied().map(Referrer::Run).collect();
    want.sort();
    want.push(Referrer::Pin("golden".into()));
    assert_eq!(listed.len(), want.len());
    assert!(listed == want, "runs in order, each once, then the pin");
}

/// Calls `sweep` from the start until its cursor runs out.
async fn sweep_all(sweep: impl AsyncFn(Option<String>) -> Result<Sweep<String>>) {
    let mut after = None;
    while let Some(next) = sweep(after).await.unwrap().next {
        after = Some(next);
    }
}

/// A damaged session stops no sweep (found by review: one undecodable
/// record failed every `expire_sessions` and `prune_sessions`, and the
/// CLI's sweeps with them). A record that cannot be decoded and a session
/// whose last log entry is damaged or missing (its activity is unknown)
/// are kept; the others are expired, then pruned, page after page.
#[tokio::test]
async fn damaged_sessions_are_kept_and_sweeps_go_on() {
    let (s, engine) = mem_stores();
    let ids: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    for id in &ids {
        s.sessions.create_session(id, json!({})).await.unwrap();
        let entry = NewLogEntry::new(LogKind::Incoming, "user", "text", &b"hi"[..]);
        s.sessions.append_log(id, entry).await.unwrap();
    }
    put_raw(
        &engine,
        vec![
            (
                Table::Sessions,
                keys::session("s0"),
                b"not a session".to_vec(),
            ),
            (
                Table::SessionLog,
                keys::log_entry("s2", 0),
                b"not an entry".to_vec(),
            ),
        ],
    )
    .await;
    write_raw(
        &engine,
        Box::new(|txn| txn.delete(Table::SessionLog, keys::log_entry("s4", 0))),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    let policy = SessionRetention::idle_for(Duration::ZERO).batch(2);
    sweep_all(async |after| s.lifecycle.expire_sessions(&policy, after.as_deref()).await).await;
    for id in ["s1", "s3", "s5"] {
        let session = s.sessions.load_session(id).await.unwrap().unwrap();
        assert_eq!(session.state, SessionState::Expired, "{id}");
    }
    for id in ["s2", "s4"] {
        let session = s.sessions.load_session(id).await.unwrap().unwrap();
        assert_eq!(session.state, SessionState::Open, "{id} is kept");
    }

    tokio::time::sleep(Duration::from_millis(5)).await;
    let policy = policy.state(SessionState::Open);
    sweep_all(async |after| s.lifecycle.prune_sessions(&policy, after.as_deref()).await).await;
    for id in &ids {
        let loaded = s.sessions.load_session(id).await;
        match id.as_str() {
            "s0" => assert_eq!(loaded.unwrap_err().kind(), ErrorKind::Corrupted),
            "s2" | "s4" => assert!(loaded.unwrap().is_some(), "{id} is kept"),
            _ => assert!(loaded.unwrap().is_none(), "{id} is pruned"),
        }
    }
}
