//! Session heads: an append reads and rewrites the small head, never the
//! session record, and every view of a session still tells its log's
//! length and chain head.

use std::time::Duration;

use super::*;
use crate::encoding::encode_record;
use crate::lifecycle::SessionRetention;
use crate::Session;

/// The raw value stored under session `id` in `table`.
async fn raw(engine: &MemoryEngine, table: Table, id: &str) -> Option<Vec<u8>> {
    let key = keys::session(id);
    let mut end = key.clone();
    end.push(0);
    scan(engine, table, &key, Some(&end), 1)
        .await
        .into_iter()
        .next()
        .map(|(_, v)| v)
}

/// Stores `session`'s record as a build before heads kept it, and drops
/// its head.
async fn as_before_heads(engine: &MemoryEngine, session: &Session) {
    let (id, record) = (session.id.clone(), encode_record(session).unwrap());
    let durable = engine
        .write(
            Scope::Unshared,
            Box::new(move |txn| {
                txn.put(Table::Sessions, keys::session(&id), record.clone())?;
                txn.delete(Table::SessionHeads, keys::session(&id))
            }),
        )
        .await
        .unwrap();
    durable.wait().await.unwrap();
}

fn entry(n: u64) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "u", "t", format!("m{n}"))
}

#[tokio::test]
async fn appends_rewrite_the_head_not_the_record() {
    let (stores, engine) = mem_stores();
    let data = json!({"notes": "x".repeat(200_000)});
    stores.sessions.create_session("s", data).await.unwrap();
    let record = raw(&engine, Table::Sessions, "s").await.unwrap();
    let mut last = None;
    for n in 0..3 {
        last = Some(stores.sessions.append_log("s", entry(n)).await.unwrap());
    }
    assert_eq!(raw(&engine, Table::Sessions, "s").await.unwrap(), record);
    let head = raw(&engine, Table::SessionHeads, "s").await.unwrap();
    assert!(head.len() < 64, "a head is small: {} bytes", head.len());
    let loaded = stores.sessions.load_session("s").await.unwrap().unwrap();
    assert_eq!(
        (loaded.log_len, loaded.log_head),
        (3, Some(last.unwrap().hash))
    );
    let listed = stores.sessions.list_sessions(None, 10).await.unwrap();
    assert_eq!(listed, vec![loaded.clone()]);
    assert_eq!(stores.sessions.verify_log("s").await.unwrap().len, 3);
    // Saving the data keeps the log's length and head.
    let saved = stores
        .sessions
        .save_session("s", json!({}), Some(1))
        .await
        .unwrap();
    assert_eq!(
        (saved.log_len, saved.log_head),
        (loaded.log_len, loaded.log_head)
    );
    let replaced = stores
        .sessions
        .replace_log("s", vec![entry(9)], Some(3))
        .await
        .unwrap();
    let loaded = stores.sessions.load_session("s").await.unwrap().unwrap();
    assert_eq!(
        (loaded.log_len, loaded.log_head),
        (1, Some(replaced[0].hash))
    );
    assert_eq!(loaded.version, 2);
}

#[tokio::test]
async fn sessions_stored_without_a_head_still_read_and_append() {
    let (stores, engine) = mem_stores();
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    for n in 0..2 {
        stores.sessions.append_log("s", entry(n)).await.unwrap();
    }
    let before = stores.sessions.load_session("s").await.unwrap().unwrap();
    as_before_heads(&engine, &before).await;
    assert!(raw(&engine, Table::SessionHeads, "s").await.is_none());
    assert_eq!(
        stores.sessions.load_session("s").await.unwrap(),
        Some(before)
    );
    let third = stores.sessions.append_log("s", entry(2)).await.unwrap();
    assert_eq!(third.seq, 2);
    assert_eq!(stores.sessions.verify_log("s").await.unwrap().len, 3);

    // A closed session stored so refuses appends too.
    let closed = stores
        .sessions
        .set_session_state("s", SessionState::Resolved, None)
        .await
        .unwrap();
    as_before_heads(&engine, &closed).await;
    let err = stores.sessions.append_log("s", entry(3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn every_way_of_closing_a_session_closes_its_log() {
    let (stores, _) = mem_stores();
    for id in ["cancelled", "expired", "forked"] {
        stores.sessions.create_session(id, json!({})).await.unwrap();
        stores.sessions.append_log(id, entry(0)).await.unwrap();
    }
    stores
        .sessions
        .set_session_state("cancelled", SessionState::Cancelled, None)
        .await
        .unwrap();
    let mut policy = SessionRetention::idle_for(Duration::ZERO);
    policy.batch = 10;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let swept = stores
        .lifecycle
        .expire_sessions(&policy, Some("cancelled"))
        .await
        .unwrap();
    assert_eq!(swept.affected, 2, "expired and forked: {swept:?}");
    let fork = stores
        .lifecycle
        .fork_session("forked", "fork")
        .await
        .unwrap();
    assert_eq!((fork.state, fork.log_len), (SessionState::Expired, 1));
    for id in ["cancelled", "expired", "fork"] {
        let err = stores.sessions.append_log(id, entry(1)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{id}: {err}");
        assert!(err.to_string().contains("can no longer change"), "{err}");
        let err = stores
            .sessions
            .replace_log(id, vec![entry(1)], None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{id}: {err}");
    }
}

#[tokio::test]
async fn a_damaged_head_is_corrupted() {
    let (stores, engine) = mem_stores();
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    put_raw(
        &engine,
        vec![(Table::SessionHeads, keys::session("s"), vec![0xA2, 7])],
    )
    .await;
    let err = stores.sessions.load_session("s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    let err = stores.sessions.append_log("s", entry(0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    // Deleting the session still works, and takes the head with it.
    assert!(stores.sessions.delete_session("s").await.unwrap());
    assert!(raw(&engine, Table::SessionHeads, "s").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_saves_keep_both() {
    let (stores, _) = mem_stores();
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    let appenders: Vec<_> = (0..8)
        .map(|t| {
            let sessions = Arc::clone(&stores.sessions);
            tokio::spawn(async move {
                for i in 0..25 {
                    sessions.append_log("s", entry(t * 100 + i)).await.unwrap();
                }
            })
        })
        .collect();
    let savers: Vec<_> = (0..4)
        .map(|t| {
            let sessions = Arc::clone(&stores.sessions);
            tokio::spawn(async move {
                for i in 0..10 {
                    sessions
                        .save_session("s", json!({"t": t, "i": i}), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in appenders.into_iter().chain(savers) {
        task.await.unwrap();
    }
    let s = stores.sessions.load_session("s").await.unwrap().unwrap();
    assert_eq!((s.version, s.log_len), (41, 200));
    let log = stores.sessions.read_log("s", None, 1000).await.unwrap();
    assert_eq!(log.len(), 200);
    assert_eq!(s.log_head, Some(log[199].hash));
    assert_eq!(stores.sessions.verify_log("s").await.unwrap().len, 200);
}
