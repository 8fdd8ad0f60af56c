//! Pages of recent session log entries answered from the stores' cache:
//! the same pages the engine gives, and never a stale one after any other
//! mutation of the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::super::heads::Log;
use super::*;
use crate::engine::StoreCache;
use crate::lifecycle::SessionRetention;
use crate::LogEntry;

fn cache(engine: &MemoryEngine) -> &StoreCache {
    engine.cache().expect("the memory engine has a cache")
}

fn cached(engine: &MemoryEngine, id: &str) -> bool {
    cache(engine).events(&Log::session(id), 0, 10).is_some()
}

async fn append(stores: &Stores, id: &str, i: usize) -> LogEntry {
    let entry = NewLogEntry::new(LogKind::Incoming, "u", "t", "x".repeat(i % 53));
    stores.sessions.append_log(id, entry).await.unwrap()
}

async fn session_with(stores: &Stores, id: &str, n: usize) {
    stores.sessions.create_session(id, json!({})).await.unwrap();
    for i in 0..n {
        append(stores, id, i).await;
    }
}

/// The whole log as the engine has it (the cache cleared first).
async fn engine_log(stores: &Stores, engine: &MemoryEngine, id: &str) -> Vec<LogEntry> {
    cache(engine).clear();
    stores.sessions.read_log(id, None, 1000).await.unwrap()
}

#[tokio::test]
async fn cached_pages_are_the_pages_the_engine_gives() {
    let (stores, engine) = mem_stores();
    session_with(&stores, "s", 200).await;
    let cases = [
        (None, 1000),
        (None, 7),
        (Some(0), 50),
        (Some(150), 1000),
        (Some(198), 5),
        (Some(199), 5),
        (Some(5000), 5),
        (Some(u64::MAX), 5),
        (None, 0),
    ];
    let mut pages = Vec::new();
    for (after, limit) in cases {
        if let Some(first) = keys::first_after(after) {
            let hit = cache(&engine).events(&Log::session("s"), first, limit);
            assert!(hit.is_some(), "after {after:?} is cached");
        }
        pages.push(stores.sessions.read_log("s", after, limit).await.unwrap());
    }
    cache(&engine).clear();
    for ((after, limit), page) in cases.into_iter().zip(pages) {
        assert!(!cached(&engine, "s"));
        let from_engine = stores.sessions.read_log("s", after, limit).await.unwrap();
        assert_eq!(page, from_engine, "after {after:?}, limit {limit}");
    }
}

/// Every mutation but an append forgets the session, and what is read
/// next is what the engine holds.
#[tokio::test]
async fn other_mutations_forget_the_session() {
    let (stores, engine) = mem_stores();
    session_with(&stores, "s", 5).await;
    assert!(cached(&engine, "s"));

    stores
        .sessions
        .save_session("s", json!({"saved": 1}), None)
        .await
        .unwrap();
    assert!(!cached(&engine, "s"), "save_session");
    append(&stores, "s", 5).await;

    let replaced = stores
        .sessions
        .replace_log(
            "s",
            vec![NewLogEntry::new(LogKind::Incoming, "a", "t", "new")],
            None,
        )
        .await
        .unwrap();
    assert!(!cached(&engine, "s"), "replace_log");
    let read = stores.sessions.read_log("s", None, 100).await.unwrap();
    assert_eq!(read, replaced, "the replaced log, not the cached one");
    // Appends after a replace cache the new log's tail.
    let next = append(&stores, "s", 1).await;
    assert_eq!(next.seq, 1);
    assert_eq!(next.prev_hash, Some(replaced[0].hash));
    let read = stores.sessions.read_log("s", Some(0), 100).await.unwrap();
    assert_eq!(read, vec![next]);
    assert_eq!(
        stores.sessions.read_log("s", None, 100).await.unwrap(),
        engine_log(&stores, &engine, "s").await
    );

    append(&stores, "s", 2).await;
    stores
        .sessions
        .set_session_state("s", SessionState::Resolved, None)
        .await
        .unwrap();
    assert!(!cached(&engine, "s"), "set_session_state");
    let err = stores
        .sessions
        .append_log("s", entry_of(9))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    assert!(stores.sessions.delete_session("s").await.unwrap());
    assert!(!cached(&engine, "s"), "delete_session");
    let err = stores.sessions.read_log("s", None, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // A session created again under the id starts empty.
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    assert!(stores
        .sessions
        .read_log("s", None, 10)
        .await
        .unwrap()
        .is_empty());
}

fn entry_of(i: usize) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "u", "t", format!("{i}"))
}

#[tokio::test]
async fn expired_and_pruned_sessions_are_read_from_the_engine() {
    let (stores, engine) = mem_stores();
    session_with(&stores, "a", 3).await;
    session_with(&stores, "b", 3).await;
    tokio::time::sleep(Duration::from_millis(2)).await;
    let policy = SessionRetention::idle_for(Duration::ZERO);
    let swept = stores
        .lifecycle
        .expire_sessions(&policy, None)
        .await
        .unwrap();
    assert_eq!(swept.affected, 2);
    for id in ["a", "b"] {
        assert!(!cached(&engine, id), "expired {id}");
        let err = stores
            .sessions
            .append_log(id, entry_of(3))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            stores.sessions.read_log(id, None, 10).await.unwrap().len(),
            3
        );
    }
    // Reads put nothing in the cache; prune the sessions (idle since
    // they expired) and read again.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let swept = stores
        .lifecycle
        .prune_sessions(&policy, None)
        .await
        .unwrap();
    assert_eq!(swept.affected, 2);
    for id in ["a", "b"] {
        let err = stores.sessions.read_log(id, None, 10).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "pruned {id}");
    }
}

/// Appenders and readers race on one session: every read sees every
/// entry acknowledged before it started, as one gap-free, linked chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_readers_see_every_acknowledged_entry() {
    let (stores, _) = mem_stores();
    session_with(&stores, "s", 0).await;
    let acked = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..8)
        .map(|t| {
            let (stores, acked) = (stores.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                for i in 0..100 {
                    let entry = append(&stores, "s", t * 1000 + i).await;
                    acked.fetch_max(entry.seq + 1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (stores, acked) = (stores.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                let page = 1 + r * 37;
                for _ in 0..200 {
                    let floor = acked.load(Ordering::SeqCst);
                    let mut entries: Vec<LogEntry> = Vec::new();
                    loop {
                        let after = entries.last().map(|e| e.seq);
                        let got = stores.sessions.read_log("s", after, page).await.unwrap();
                        if got.is_empty() {
                            break;
                        }
                        entries.extend(got);
                    }
                    assert!(entries.len() as u64 >= floor, "a read missed an entry");
                    for (n, pair) in entries.windows(2).enumerate() {
                        assert_eq!((pair[0].seq, pair[1].seq), (n as u64, n as u64 + 1));
                        assert_eq!(pair[1].prev_hash, Some(pair[0].hash));
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in appenders.into_iter().chain(readers) {
        task.await.unwrap();
    }
    assert_eq!(stores.sessions.verify_log("s").await.unwrap().len, 800);
}

/// Damage written behind the stores' back while they cache the log's
/// tail: `verify_log` reads the engine and reports it.
#[tokio::test]
async fn verification_reads_the_engine_not_the_cache() {
    let (stores, engine) = mem_stores();
    session_with(&stores, "s", 5).await;
    let mut damaged = stores.sessions.read_log("s", Some(1), 1).await.unwrap()[0].clone();
    damaged.payload = Bytes::from_static(b"edited");
    let value = crate::encoding::encode_record(&damaged).unwrap();
    put_raw(
        &engine,
        vec![(Table::SessionLog, keys::log_entry("s", 2), value)],
    )
    .await;
    assert!(cached(&engine, "s"), "still cached");
    let err = stores.sessions.verify_log("s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
}
