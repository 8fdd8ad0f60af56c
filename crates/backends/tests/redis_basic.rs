//! Targeted checks of the Redis backend against a real `redis-server`
//! (see `support/redis_server.rs` for how the server is found or started).
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, Resolution, RunFilter,
    RunId, RunMetadata, RunStatus, RunSummary, SessionState, SigningKey, Stores, Supersession,
    SupersessionDraft, SupersessionKind, Timestamp,
};

async fn open(tag: &str) -> Stores {
    stowage_backends::open(&redis_server::fresh_url(tag))
        .await
        .expect("open redis store")
}

#[tokio::test]
async fn capabilities_are_honest() {
    let s = open("caps").await;
    assert_eq!(s.capabilities.backend, "redis");
    assert!(s.capabilities.shared);
    assert_eq!(s.capabilities.max_blob_size, 512 * 1024 * 1024 - 4);
}

#[tokio::test]
async fn blobs_round_trip_and_list_in_order() {
    let s = open("cas").await;
    let mut digests = Vec::new();
    for b in [&b""[..], b"a", b"bb", b"ccc"] {
        let d = s.cas.put(Bytes::copy_from_slice(b)).await.unwrap();
        assert_eq!(d, Digest::of(b));
        assert_eq!(&s.cas.get(&d).await.unwrap()[..], b);
        assert_eq!(s.cas.stat(&d).await.unwrap().size, b.len() as u64);
        digests.push(d);
    }
    digests.sort();
    assert_eq!(s.cas.list(None, 100).await.unwrap(), digests);
    assert_eq!(
        s.cas.list(Some(&digests[1]), 1).await.unwrap(),
        vec![digests[2]]
    );
    assert!(s.cas.delete(&digests[0]).await.unwrap());
    assert!(!s.cas.delete(&digests[0]).await.unwrap());
    assert_eq!(
        s.cas.get(&digests[0]).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.cas.list(None, 100).await.unwrap(), digests[1..].to_vec());
}

#[tokio::test]
async fn runs_chain_finish_and_list() {
    let s = open("runs").await;
    let spec = Digest::of(b"spec");
    let a = s
        .runs
        .create_run(spec, RunMetadata::new("alpha"))
        .await
        .unwrap();
    let b = s
        .runs
        .create_run(Digest::of(b"other"), RunMetadata::new("beta"))
        .await
        .unwrap();
    for i in 0..5 {
        let e = s
            .runs
            .append_event(a, NewEvent::new("step", json!({"i": i})))
            .await
            .unwrap();
        assert_eq!(e.seq, i);
    }
    let mut keyed = NewEvent::new("once", json!(1));
    keyed.idempotency_key = Some("k1".into());
    let first = s.runs.append_event(a, keyed.clone()).await.unwrap();
    let again = s.runs.append_event(a, keyed.clone()).await.unwrap();
    assert_eq!(first, again);
    let mut cas = NewEvent::new("cas", json!(null));
    cas.expected_seq = Some(3);
    assert_eq!(
        s.runs.append_event(a, cas).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert_eq!(s.runs.get_run(a).await.unwrap().event_count, 6);
    assert_eq!(s.runs.verify_run(a).await.unwrap().len, 6);
    let page = s.runs.read_events(a, Some(1), 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    let done = s.runs.complete_run(a, RunSummary::new("ok")).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.event_count, 6);
    assert_eq!(
        s.runs
            .fail_run(a, RunSummary::new("x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let late = s
        .runs
        .append_event(a, NewEvent::new("late", json!(1)))
        .await
        .unwrap_err();
    assert_eq!(late.kind(), ErrorKind::Conflict, "{late}");
    // The key used before the run ended still returns the original.
    assert_eq!(s.runs.append_event(a, keyed).await.unwrap(), first);
    let all = s
        .runs
        .list_runs(&RunFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), {
        let mut ids = vec![a, b];
        ids.sort();
        ids.reverse();
        ids
    });
    let by_spec = RunFilter::all().spec(spec);
    assert_eq!(s.runs.list_runs(&by_spec, None, 10).await.unwrap().len(), 1);
    let running = RunFilter::all().status(RunStatus::Running);
    assert_eq!(s.runs.list_runs(&running, None, 10).await.unwrap()[0].id, b);
    let unknown = stowage_core::RunId::new_v7(Timestamp::from_millis(5), 5);
    assert_eq!(
        s.runs.get_run(unknown).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.runs
            .read_events(unknown, None, 5)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn releases_promote_and_roll_back() {
    let s = open("rel").await;
    let m = || ReleaseMetadata::new("v", "ci");
    let name = "plan{ner}:%7D";
    for x in [b"a", b"b", b"c"] {
        s.releases
            .promote(name, Digest::of(x), m(), None)
            .await
            .unwrap();
    }
    let r = s.releases.rollback(name, "oncall").await.unwrap();
    assert_eq!(r.spec_digest, Digest::of(b"b"));
    let r = s.releases.rollback(name, "oncall").await.unwrap();
    assert_eq!(r.spec_digest, Digest::of(b"a"));
    assert_eq!(
        s.releases
            .rollback(name, "oncall")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(s.releases.current(name).await.unwrap().seq, 4);
    let h = s.releases.history(name, Some(4), 2).await.unwrap();
    assert_eq!(h.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3, 2]);
    assert_eq!(
        s.releases
            .promote(name, Digest::of(b"x"), m(), Some(2))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    s.releases
        .promote("other", Digest::of(b"x"), m(), None)
        .await
        .unwrap();
    assert_eq!(
        s.releases.list_names(None, 10).await.unwrap(),
        vec!["other".to_owned(), name.to_owned()]
    );
    assert_eq!(
        s.releases.current("never").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.releases
            .rollback_to(name, 99, "x")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn sessions_records_logs_and_replace() {
    let s = open("sess").await;
    let id = "chat}{1";
    s.sessions
        .create_session(id, json!({"a": 1}))
        .await
        .unwrap();
    assert_eq!(
        s.sessions
            .create_session(id, json!({}))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    let v2 = s
        .sessions
        .save_session(id, json!({"a": 2}), Some(1))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        s.sessions
            .save_session(id, json!({}), Some(1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let v3 = s
        .sessions
        .set_session_state(id, SessionState::Suspended, None)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    let mut e = NewLogEntry::new(LogKind::Incoming, "user", "text", "hi");
    e.idempotency_key = Some("m1".into());
    let first = s.sessions.append_log(id, e.clone()).await.unwrap();
    assert_eq!(s.sessions.append_log(id, e).await.unwrap(), first);
    s.sessions
        .append_log(id, NewLogEntry::new(LogKind::Internal, "bot", "text", "yo"))
        .await
        .unwrap();
    assert_eq!(s.sessions.verify_log(id).await.unwrap().len, 2);
    assert_eq!(
        s.sessions
            .replace_log(id, vec![], Some(5))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let cp = NewLogEntry::new(LogKind::Checkpoint, "sys", "summary", "both");
    s.sessions.replace_log(id, vec![cp], Some(2)).await.unwrap();
    let log = s.sessions.read_log(id, None, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    let next = s
        .sessions
        .append_log(id, NewLogEntry::new(LogKind::Incoming, "u", "t", "x"))
        .await
        .unwrap();
    assert_eq!(next.seq, 1);
    assert_eq!(next.prev_hash, Some(log[0].hash));
    s.sessions.create_session("b", json!(null)).await.unwrap();
    let listed: Vec<_> = s
        .sessions
        .list_sessions(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec!["b".to_owned(), id.to_owned()]);
    // A resolved session's log is final; the record keeps its length.
    let closed = s
        .sessions
        .set_session_state(id, SessionState::Resolved, None)
        .await
        .unwrap();
    assert_eq!((closed.log_len, closed.log_head), (2, Some(next.hash)));
    let refused = s
        .sessions
        .append_log(id, NewLogEntry::new(LogKind::Incoming, "u", "t", "late"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict, "{refused}");
    assert!(s.sessions.delete_session(id).await.unwrap());
    assert!(!s.sessions.delete_session(id).await.unwrap());
    assert!(s.sessions.load_session(id).await.unwrap().is_none());
    assert_eq!(
        s.sessions.read_log(id, None, 1).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.sessions.list_sessions(None, 10).await.unwrap().len(), 1);
}

fn sup(key: &SigningKey, target: &[u8], replacement: Option<&[u8]>, ts: u64) -> Supersession {
    Supersession::sign(
        key,
        SupersessionDraft::new(
            Digest::of(target),
            replacement.map(Digest::of),
            SupersessionKind::Correction,
            "r",
            Timestamp::from_millis(ts),
        ),
    )
}

#[tokio::test]
async fn supersessions_put_cycles_and_by_agent() {
    let s = open("sup").await;
    let key = SigningKey::from_bytes(&[3; 32]);
    let a = sup(&key, b"a", Some(b"b"), 10);
    assert_eq!(
        s.supersessions.put(a.clone()).await.unwrap(),
        stowage_core::PutOutcome::Stored
    );
    assert_eq!(
        s.supersessions.put(a.clone()).await.unwrap(),
        stowage_core::PutOutcome::AlreadyPresent
    );
    assert_eq!(
        s.supersessions
            .put(sup(&key, b"a", None, 11))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    s.supersessions
        .put(sup(&key, b"b", Some(b"c"), 12))
        .await
        .unwrap();
    let cycle = s
        .supersessions
        .put(sup(&key, b"c", Some(b"a"), 13))
        .await
        .unwrap_err();
    assert_eq!(cycle.kind(), ErrorKind::Conflict, "{cycle}");
    assert!(s
        .supersessions
        .is_superseded(&Digest::of(b"a"))
        .await
        .unwrap());
    assert!(!s
        .supersessions
        .is_superseded(&Digest::of(b"c"))
        .await
        .unwrap());
    assert_eq!(
        s.supersessions.resolve(&Digest::of(b"a")).await.unwrap(),
        Resolution::Current {
            hash: Digest::of(b"c"),
            hops: 2
        }
    );
    let agent = stowage_core::AgentKey::of(&key);
    let newest = s
        .supersessions
        .by_agent(&agent, Timestamp::ZERO, None, None, 1)
        .await
        .unwrap();
    assert_eq!(newest[0].target, Digest::of(b"b"));
    let window = s
        .supersessions
        .by_agent(
            &agent,
            Timestamp::from_millis(10),
            Some(Timestamp::from_millis(11)),
            None,
            5,
        )
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].target, Digest::of(b"a"));
}

async fn new_run(s: &Stores) -> RunId {
    s.runs
        .create_run(Digest::of(b"x"), RunMetadata::new("a"))
        .await
        .unwrap()
}

#[tokio::test]
async fn tampering_is_corrupted() {
    use stowage_conformance::{Harness, Tamper};
    let h = redis_server::RedisHarness::standalone();
    let s = h.open().await.unwrap();
    let d = s.cas.put(Bytes::from_static(b"precious")).await.unwrap();
    h.tamper(&s, Tamper::Blob(d)).await.unwrap();
    assert_eq!(
        s.cas.get(&d).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    let run = new_run(&s).await;
    for i in 0..3 {
        s.runs
            .append_event(run, NewEvent::new("k", json!(i)))
            .await
            .unwrap();
    }
    h.tamper(&s, Tamper::RunEvent { run, seq: 1 })
        .await
        .unwrap();
    assert_eq!(
        s.runs.verify_run(run).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    s.sessions.create_session("s{1}", json!({})).await.unwrap();
    s.sessions
        .append_log("s{1}", NewLogEntry::new(LogKind::Incoming, "u", "t", "x"))
        .await
        .unwrap();
    h.tamper(
        &s,
        Tamper::LogEntry {
            session: "s{1}".into(),
            seq: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.sessions.verify_log("s{1}").await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    let s2 = h.reopen(s).await.unwrap();
    assert_eq!(s2.runs.get_run(run).await.unwrap().event_count, 3);
}

/// Listings page through their sorted-set index in batches of 256: more
/// entries than one batch, deleted entries in between, and `after`/`limit`
/// must still give every live entry once, in order.
#[tokio::test]
async fn listings_cross_index_batches_and_skip_deleted_entries() {
    let s = open("lex-batches").await;
    let mut ids: Vec<String> = (0..600).map(|i| format!("s{i:04}")).collect();
    for id in &ids {
        s.sessions.create_session(id, json!({})).await.unwrap();
    }
    // Delete every third session, so some batches are mostly gone.
    for id in ids.iter().step_by(3) {
        assert!(s.sessions.delete_session(id).await.unwrap());
    }
    ids = ids
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| id)
        .collect();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .sessions
            .list_sessions(after.as_deref(), 70)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 70);
        after = page.last().map(|p| p.id.clone());
        seen.extend(page.into_iter().map(|p| p.id));
    }
    assert_eq!(seen, ids);

    let spec = Digest::of(b"spec");
    let names: Vec<String> = (0..300).map(|i| format!("r{i:04}")).collect();
    for n in &names {
        s.releases
            .promote(n, spec, ReleaseMetadata::new("v1", "ci"), None)
            .await
            .unwrap();
    }
    let all = s.releases.list_names(None, 1000).await.unwrap();
    assert_eq!(all, names);
    let tail = s.releases.list_names(Some("r0255"), 10).await.unwrap();
    assert_eq!(tail, names[256..266].to_vec());

    let mut digests = Vec::new();
    for i in 0..300u32 {
        digests.push(
            s.cas
                .put(Bytes::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap(),
        );
    }
    digests.sort();
    assert_eq!(s.cas.list(None, 1000).await.unwrap(), digests);
    assert_eq!(
        s.cas.list(Some(&digests[100]), 5).await.unwrap(),
        digests[101..106].to_vec()
    );
}

/// One write job staging many puts, with a delete, a re-put and a range
/// delete between them: the engine applies them all, in staging order.
#[tokio::test]
async fn one_apply_keeps_staging_order_across_many_puts() {
    use stowage_core::engine::{Direction, Engine, Scope, Table};
    let opts =
        stowage_backends::redis::RedisOptions::from_url(&redis_server::fresh_url("apply")).unwrap();
    let engine = stowage_backends::redis::open_engine(opts).await.unwrap();
    let key = |i: u32| format!("k{i:05}").into_bytes();
    engine
        .write(
            Scope::Unshared,
            Box::new(move |txn| {
                for i in 0..1500 {
                    txn.put(Table::Blobs, key(i), vec![1])?;
                }
                txn.delete(Table::Blobs, key(7))?;
                txn.put(Table::Blobs, key(8), vec![2])?;
                txn.delete(Table::Blobs, key(8))?;
                txn.delete_range(Table::Blobs, key(100), key(1200))?;
                txn.put(Table::Blobs, key(9), vec![3])?;
                txn.put(Table::Blobs, key(1100), vec![4])?;
                txn.put(Table::Blobs, key(9), vec![5])
            }),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = (0..100)
        .chain(1200..1500)
        .filter(|i| *i != 7 && *i != 8)
        .map(|i| (key(i), vec![if i == 9 { 5 } else { 1 }]))
        .collect();
    expected.push((key(1100), vec![4]));
    expected.sort();
    let (tx, rx) = std::sync::mpsc::channel();
    engine
        .read(Box::new(move |reader| {
            let all = reader.scan(Table::Blobs, b"", None, Direction::Forward, 5000)?;
            tx.send(all).unwrap();
            Ok(())
        }))
        .await
        .unwrap();
    assert_eq!(rx.try_iter().last().unwrap(), expected);
}
