//! Tests of the stores' rules over the reference engine (`MemoryEngine`),
//! which stores nothing but what the rules write (chunked blobs in
//! `blobs`).

use std::sync::Arc;

use crate::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunFilter, RunMetadata,
    RunStatus, RunSummary, SessionState, Stores, Supersession, SupersessionDraft, SupersessionKind,
    Timestamp,
};
use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::json;

use super::cas::CHUNK_BYTES;
use crate::engine::{keys, stores, tamper, Direction, Engine, Entry, MemoryEngine, Scope, Table};

const HOSTILE: [&str; 7] = ["a", "a:b", "a/b", "{a}", "🚀", "..", "a\u{200f}b"];

mod blobs;
mod lifecycle;
mod session_heads;
mod session_tails;
mod tails;

/// Stores over a fresh memory engine (8 MiB blobs), and the engine.
fn mem_stores() -> (Stores, MemoryEngine) {
    let engine = MemoryEngine::new().with_blob_limit(8 * 1024 * 1024);
    (
        stores(Arc::new(engine.clone()), crate::StoreEnv::default()),
        engine,
    )
}

/// Raw entries of `table` from `start` on, at most `limit`.
async fn scan(
    engine: &MemoryEngine,
    table: Table,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Vec<Entry> {
    let (start, end) = (start.to_vec(), end.map(<[u8]>::to_vec));
    let (tx, rx) = std::sync::mpsc::channel();
    engine
        .read(Box::new(move |reader| {
            let _ =
                tx.send(reader.scan(table, &start, end.as_deref(), Direction::Forward, limit)?);
            Ok(())
        }))
        .await
        .unwrap();
    rx.recv().unwrap()
}

/// Runs `job` behind the stores' back, durably.
async fn write_raw(engine: &MemoryEngine, job: crate::engine::WriteJob) {
    let durable = engine.write(Scope::Unshared, job).await.unwrap();
    durable.wait().await.unwrap();
}

/// Writes raw entries behind the stores' back.
async fn put_raw(engine: &MemoryEngine, entries: Vec<(Table, Vec<u8>, Vec<u8>)>) {
    write_raw(
        engine,
        Box::new(move |txn| {
            for (table, key, value) in entries.clone() {
                txn.put(table, key, value)?;
            }
            Ok(())
        }),
    )
    .await;
}

fn big_blob(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_unique_gap_free_seqs() {
    let (stores, _) = mem_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let runs = Arc::clone(&stores.runs);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let e = runs
                        .append_event(run, NewEvent::new("tick", json!({"t": t, "i": i})))
                        .await
                        .unwrap();
                    seqs.push(e.seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..1600).collect::<Vec<u64>>());
    let report = stores.runs.verify_run(run).await.unwrap();
    assert_eq!(report.len, 1600);
}

#[tokio::test]
async fn pages_longer_than_a_decode_batch_come_back_whole_and_in_order() {
    // Pages are decoded by the caller in batches (`decode_page`), from
    // the engine (`RawPage`) or the stores' cache.
    let (stores, engine) = mem_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap();
    stores
        .sessions
        .create_session("long", json!({}))
        .await
        .unwrap();
    let n = 2 * super::DECODE_BATCH + 7;
    for i in 0..n {
        stores
            .runs
            .append_event(run, NewEvent::new("tick", json!({ "i": i })))
            .await
            .unwrap();
        let entry = NewLogEntry::new(LogKind::Incoming, "u", "t", i.to_string());
        stores.sessions.append_log("long", entry).await.unwrap();
    }
    let cached = stores.runs.read_events(run, None, n + 10).await.unwrap();
    engine.cache().unwrap().clear();
    let events = stores.runs.read_events(run, None, n + 10).await.unwrap();
    assert_eq!(events, cached);
    assert_eq!(events.len(), n);
    for (i, e) in events.iter().enumerate() {
        assert_eq!((e.seq, &e.payload), (i as u64, &json!({ "i": i })));
    }
    let after = stores.runs.read_events(run, Some(5), 3).await.unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8]);
    let log = stores
        .sessions
        .read_log("long", None, n + 10)
        .await
        .unwrap();
    assert_eq!(log.len(), n);
    for (i, entry) in log.iter().enumerate() {
        assert_eq!(entry.seq, i as u64);
        assert_eq!(entry.payload, Bytes::from(i.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_terminal_transitions_have_one_winner() {
    let (stores, _) = mem_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let runs = Arc::clone(&stores.runs);
            tokio::spawn(async move {
                let status = [RunStatus::Completed, RunStatus::Failed][i % 2];
                runs.finish_run(run, status, RunSummary::new("x")).await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict),
        }
    }
    assert_eq!(wins, 1);
    let err = stores
        .runs
        .append_event(run, NewEvent::new("late", json!(null)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_log_appends_and_promotes_are_all_kept() {
    let (stores, _) = mem_stores();
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = stores.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let entry = NewLogEntry::new(LogKind::Incoming, "u", "t", format!("{t}/{i}"));
                s.sessions.append_log("s", entry).await.unwrap();
                let meta = ReleaseMetadata::new(format!("{t}/{i}"), "ci");
                s.releases
                    .promote("r", Digest::of(b"x"), meta, None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(stores.sessions.verify_log("s").await.unwrap().len, 320);
    assert_eq!(stores.releases.current("r").await.unwrap().seq, 319);
    let history = stores.releases.history("r", None, 1000).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..320).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn prefix_ids_never_leak_into_each_others_scans() {
    let (stores, _) = mem_stores();
    for id in HOSTILE {
        stores
            .sessions
            .create_session(id, json!({ "id": id }))
            .await
            .unwrap();
        let entry = NewLogEntry::new(LogKind::Internal, id, id, id.as_bytes().to_vec());
        stores.sessions.append_log(id, entry).await.unwrap();
        let meta = ReleaseMetadata::new(id, "ci");
        stores
            .releases
            .promote(id, Digest::of(id.as_bytes()), meta, None)
            .await
            .unwrap();
    }
    for id in HOSTILE {
        let log = stores.sessions.read_log(id, None, 100).await.unwrap();
        assert_eq!(log.len(), 1, "{id}");
        assert_eq!(&log[0].payload[..], id.as_bytes());
        let history = stores.releases.history(id, None, 100).await.unwrap();
        assert_eq!(history.len(), 1, "{id}");
        assert_eq!(history[0].spec_digest, Digest::of(id.as_bytes()));
    }
    let mut sorted: Vec<&str> = HOSTILE.to_vec();
    sorted.sort_unstable();
    let names = stores.releases.list_names(None, 100).await.unwrap();
    assert_eq!(names, sorted);
    let ids: Vec<String> = stores
        .sessions
        .list_sessions(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, sorted);
    // Deleting "a" leaves "a:b" (whose log key starts with the same bytes).
    assert!(stores.sessions.delete_session("a").await.unwrap());
    assert_eq!(
        stores
            .sessions
            .read_log("a:b", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let after = stores.releases.list_names(Some("a"), 2).await.unwrap();
    assert_eq!(
        after,
        sorted[sorted.iter().position(|n| *n == "a").unwrap() + 1..][..2]
    );
}

#[tokio::test]
async fn tampering_is_reported_as_corrupted() {
    let (stores, engine) = mem_stores();
    for blob in [Bytes::new(), big_blob(CHUNK_BYTES + 3)] {
        let digest = stores.cas.put(blob).await.unwrap();
        tamper::blob(&engine, digest).await.unwrap();
        assert_eq!(
            stores.cas.get(&digest).await.unwrap_err().kind(),
            ErrorKind::Corrupted
        );
        assert_eq!(
            stores.cas.verify(&digest).await.unwrap_err().kind(),
            ErrorKind::Corrupted
        );
        // Damage is reported when the stream opens (a header whose size
        // its chunks cannot hold) or while it runs (a damaged chunk).
        let err = match stores.cas.get_stream(&digest).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Corrupted);
    }
    let run = stores
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    for i in 0..3 {
        stores
            .runs
            .append_event(run, NewEvent::new("k", json!(i)))
            .await
            .unwrap();
    }
    tamper::run_event(&engine, run, 1).await.unwrap();
    let err = stores.runs.verify_run(run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.message().contains("seq 1"), "{err}");
    // Reads check each event's hash too (found by review: read_events
    // handed out the edited payload): never wrong data, where the engine
    // keeps no checksum either. Pages before the damage still read.
    let err = stores.runs.read_events(run, None, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.message().contains("seq 1"), "{err}");
    assert_eq!(
        stores.runs.read_events(run, None, 1).await.unwrap().len(),
        1
    );
    stores
        .sessions
        .create_session("s", json!(null))
        .await
        .unwrap();
    for i in 0..3 {
        let e = NewLogEntry::new(LogKind::Incoming, "u", "t", vec![i]);
        stores.sessions.append_log("s", e).await.unwrap();
    }
    tamper::log_entry(&engine, "s".into(), 2).await.unwrap();
    assert_eq!(
        stores.sessions.verify_log("s").await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    let err = stores.sessions.read_log("s", None, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.message().contains("seq 2"), "{err}");
    // Garbage where a record should be is Corrupted, never a panic.
    put_raw(&engine, vec![(Table::Runs, keys::run(run), vec![1, 0xff])]).await;
    assert_eq!(
        stores.runs.get_run(run).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
}

#[tokio::test]
async fn a_lost_head_record_is_damage_not_a_shorter_log() {
    let (stores, engine) = mem_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    stores
        .sessions
        .create_session("s", json!(null))
        .await
        .unwrap();
    for i in 0..2 {
        let event = NewEvent::new("k", json!(i));
        stores.runs.append_event(run, event).await.unwrap();
        let entry = NewLogEntry::new(LogKind::Incoming, "u", "t", vec![i]);
        stores.sessions.append_log("s", entry).await.unwrap();
    }
    write_raw(
        &engine,
        Box::new(move |txn| {
            txn.delete(Table::RunHeads, keys::run(run))?;
            txn.delete(Table::SessionHeads, keys::session("s"))
        }),
    )
    .await;
    // Behind the stores' back: no cached head to fall back on.
    engine.cache().unwrap().clear();
    let corrupted = |e: crate::Error| assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    corrupted(stores.runs.get_run(run).await.unwrap_err());
    corrupted(stores.runs.verify_run(run).await.unwrap_err());
    let event = NewEvent::new("k", json!("again"));
    corrupted(stores.runs.append_event(run, event).await.unwrap_err());
    corrupted(stores.sessions.load_session("s").await.unwrap_err());
    let entry = NewLogEntry::new(LogKind::Incoming, "u", "t", "again");
    corrupted(stores.sessions.append_log("s", entry).await.unwrap_err());
    // Nothing was overwritten: the first event is still the first.
    let first = scan(&engine, Table::RunEvents, &keys::run_event(run, 0), None, 1).await;
    let first = crate::encoding::decode_event("run event", &first[0].1).unwrap();
    assert_eq!(first.payload, json!(0));
}

#[tokio::test]
async fn idempotent_appends_return_the_original() {
    let (stores, _) = mem_stores();
    let run = stores
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    let mut event = NewEvent::new("k", json!(1));
    event.idempotency_key = Some("once".into());
    let first = stores.runs.append_event(run, event.clone()).await.unwrap();
    stores
        .runs
        .complete_run(run, RunSummary::new("done"))
        .await
        .unwrap();
    assert_eq!(stores.runs.append_event(run, event).await.unwrap(), first);
    assert_eq!(stores.runs.get_run(run).await.unwrap().event_count, 1);

    stores
        .sessions
        .create_session("s", json!(null))
        .await
        .unwrap();
    let mut entry = NewLogEntry::new(LogKind::Incoming, "u", "t", "hi");
    entry.idempotency_key = Some("m1".into());
    let first = stores
        .sessions
        .append_log("s", entry.clone())
        .await
        .unwrap();
    assert_eq!(
        stores
            .sessions
            .append_log("s", entry.clone())
            .await
            .unwrap(),
        first
    );
    // After replace_log the key belongs to the new log.
    let replaced = stores
        .sessions
        .replace_log("s", vec![entry.clone()], Some(1))
        .await
        .unwrap();
    assert_eq!(
        stores.sessions.append_log("s", entry).await.unwrap(),
        replaced[0]
    );
    let err = stores
        .sessions
        .replace_log("s", vec![], Some(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn list_runs_filters_newest_first_with_cursor() {
    let (stores, _) = mem_stores();
    let mut ids = Vec::new();
    for i in 0..6u8 {
        let agent = if i % 2 == 0 { "even" } else { "even:odd" };
        let id = stores
            .runs
            .create_run(Digest::of(&[i % 3]), RunMetadata::new(agent))
            .await
            .unwrap();
        ids.push(id);
    }
    ids.sort_unstable();
    let newest: Vec<_> = ids.iter().rev().copied().collect();
    let all = stores
        .runs
        .list_runs(&RunFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), newest);
    let even = RunFilter {
        agent_name: Some("even".into()),
        ..Default::default()
    };
    let page = stores.runs.list_runs(&even, None, 100).await.unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.iter().all(|r| r.metadata.agent_name == "even"));
    let second = stores
        .runs
        .list_runs(&even, Some(page[0].id), 1)
        .await
        .unwrap();
    assert_eq!(second[0].id, page[1].id);
    stores
        .runs
        .complete_run(page[1].id, RunSummary::new("ok"))
        .await
        .unwrap();
    let spec = RunFilter {
        spec_digest: Some(page[1].spec_digest),
        status: Some(RunStatus::Completed),
        ..Default::default()
    };
    let done = stores.runs.list_runs(&spec, None, 100).await.unwrap();
    assert_eq!(
        done.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![page[1].id]
    );
}

fn signed(key: u8, target: &[u8], replacement: Option<&[u8]>, ts: u64) -> Supersession {
    let key = crate::SigningKey::from_bytes(&[key; 32]);
    Supersession::sign(
        &key,
        SupersessionDraft {
            target: Digest::of(target),
            replacement: replacement.map(Digest::of),
            kind: SupersessionKind::Correction,
            reason: "r".into(),
            timestamp: Timestamp::from_millis(ts),
            hlc: None,
        },
    )
}

#[tokio::test]
async fn an_edited_supersession_is_corrupted_not_followed() {
    let (stores, engine) = mem_stores();
    let record = signed(1, b"x", Some(b"y"), 1);
    stores.supersessions.put(record.clone()).await.unwrap();
    let other = signed(1, b"z", None, 2);
    stores.supersessions.put(other.clone()).await.unwrap();
    // Point the replacement elsewhere behind the stores' back.
    let mut edited = record.clone();
    edited.replacement = Some(Digest::of(b"forged"));
    let key = keys::supersession(&record.target);
    let value = crate::encoding::encode_record(&edited).unwrap();
    put_raw(&engine, vec![(Table::Supersessions, key, value)]).await;
    let corrupted = |e: crate::Error| assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    let s = &stores.supersessions;
    corrupted(s.get(&record.target).await.unwrap_err());
    corrupted(s.resolve(&record.target).await.unwrap_err());
    corrupted(s.list(None, 10).await.unwrap_err());
    let agent = record.agent;
    corrupted(
        s.by_agent(&agent, Timestamp::from_millis(0), None, None, 10)
            .await
            .unwrap_err(),
    );
    // The undamaged record still reads.
    assert_eq!(s.get(&other.target).await.unwrap(), Some(other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_supersessions_never_commit_a_cycle() {
    for _ in 0..20 {
        let (stores, _) = mem_stores();
        let a = signed(1, b"x", Some(b"y"), 1);
        let b = signed(1, b"y", Some(b"x"), 2);
        let (ra, rb) = tokio::join!(
            tokio::spawn({
                let s = stores.clone();
                async move { s.supersessions.put(a).await }
            }),
            tokio::spawn({
                let s = stores.clone();
                async move { s.supersessions.put(b).await }
            }),
        );
        let results = [ra.unwrap(), rb.unwrap()];
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(stores
            .supersessions
            .resolve(&Digest::of(b"x"))
            .await
            .is_ok());
    }
}

#[tokio::test]
async fn by_agent_is_newest_first_within_the_time_range() {
    let (stores, _) = mem_stores();
    for (i, ts) in [5, 1, 9, 5, 7].into_iter().enumerate() {
        let target = format!("t{i}");
        stores
            .supersessions
            .put(signed(3, target.as_bytes(), None, ts))
            .await
            .unwrap();
    }
    stores
        .supersessions
        .put(signed(4, b"other", None, 6))
        .await
        .unwrap();
    let agent = crate::AgentKey::of(&crate::SigningKey::from_bytes(&[3; 32]));
    let got = stores
        .supersessions
        .by_agent(
            &agent,
            Timestamp::from_millis(5),
            Some(Timestamp::from_millis(7)),
            None,
            2,
        )
        .await
        .unwrap();
    let stamps: Vec<u64> = got.iter().map(|s| s.timestamp.as_millis()).collect();
    assert_eq!(stamps, vec![7, 5]);
    let all = stores
        .supersessions
        .by_agent(&agent, Timestamp::ZERO, None, None, 100)
        .await
        .unwrap();
    let mut expected = all.clone();
    crate::supersession::sort_newest_first(&mut expected);
    assert_eq!(all, expected);
    assert_eq!(all.len(), 5);
}

#[tokio::test]
async fn sessions_follow_core_rules_and_delete_with_their_log() {
    let (stores, engine): (Stores, _) = mem_stores();
    let s = stores
        .sessions
        .create_session("s", json!({"n": 0}))
        .await
        .unwrap();
    assert_eq!(s.version, 1);
    let err = stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let s = stores
        .sessions
        .save_session("s", json!({"n": 1}), Some(1))
        .await
        .unwrap();
    assert_eq!(s.version, 2);
    let err = stores
        .sessions
        .save_session("s", json!({}), Some(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let e = NewLogEntry::new(LogKind::Incoming, "u", "t", "x");
    stores.sessions.append_log("s", e.clone()).await.unwrap();
    let s = stores
        .sessions
        .set_session_state("s", SessionState::Resolved, None)
        .await
        .unwrap();
    assert_eq!((s.version, s.log_len), (3, 1));
    let err = stores.sessions.append_log("s", e).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(stores.sessions.delete_session("s").await.unwrap());
    assert!(stores.sessions.load_session("s").await.unwrap().is_none());
    for table in [
        Table::SessionLog,
        Table::SessionIdempotency,
        Table::Sessions,
        Table::SessionHeads,
    ] {
        assert!(scan(&engine, table, &[], None, 1).await.is_empty());
    }
    let err = stores.sessions.read_log("s", None, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = stores
        .sessions
        .load_session("bad\u{1}id")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
