//! `replace_log`: atomic compaction, seqs restarting at 0, races with appends.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde_json::json;
use stowage_core::chain::ChainVerifier;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, LogEntry, LogKind, NewLogEntry};

use crate::harness::Harness;
use crate::util::{assert_unchanged, entry, expect_kind, keyed_entry, ok, open, race, snapshot};

fn checkpoint(payload: &str) -> NewLogEntry {
    NewLogEntry::new(
        LogKind::Checkpoint,
        "compactor",
        "summary",
        Bytes::from(payload.to_owned()),
    )
}

/// Fails unless `log` is one unbroken hash chain from seq 0.
#[track_caller]
fn assert_chain(log: &[LogEntry], what: &str) {
    let mut v = ChainVerifier::new(what);
    for e in log {
        if let Err(err) = v.push(e.link()) {
            panic!("{what}: a reader saw a broken chain (a mix of old and new log?): {err}");
        }
    }
}

/// `replace_log` swaps the whole log: new seqs from 0, one chain, appends continue after it.
pub async fn replace_semantics(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    for i in 0..5 {
        ok(
            s.sessions.append_log("s", entry(format!("old {i}"))).await,
            "append",
        );
    }
    let new = ok(
        s.sessions
            .replace_log("s", vec![checkpoint("c0"), checkpoint("c1")], None)
            .await,
        "replace_log",
    );
    assert_eq!(
        new.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![0, 1],
        "new seqs restart at 0"
    );
    assert_eq!(new[0].prev_hash, None, "the new chain starts fresh");
    assert_eq!(
        new[1].prev_hash,
        Some(new[0].hash),
        "the new entries are chained"
    );
    assert_eq!(
        ok(s.sessions.read_log("s", None, MAX_PAGE).await, "read"),
        new,
        "the log is exactly the new entries"
    );
    assert_eq!(
        ok(s.sessions.verify_log("s").await, "verify_log").len,
        2,
        "the replaced log verifies"
    );
    let next = ok(
        s.sessions.append_log("s", entry("after")).await,
        "append after replace",
    );
    assert_eq!(
        (next.seq, next.prev_hash),
        (2, Some(new[1].hash)),
        "appends continue the new chain"
    );
    ok(s.sessions.verify_log("s").await, "verify_log");
    let cleared = ok(
        s.sessions.replace_log("s", Vec::new(), None).await,
        "replace with nothing",
    );
    assert!(cleared.is_empty(), "an empty replacement");
    assert!(
        ok(s.sessions.read_log("s", None, 10).await, "read").is_empty(),
        "the log is empty"
    );
    assert_eq!(
        ok(s.sessions.append_log("s", entry("x")).await, "append").seq,
        0,
        "seqs restart at 0 after an empty replace"
    );
}

/// `expected_next_seq` makes a compare-and-replace: a mismatch is `Conflict` and changes nothing.
pub async fn replace_expected_next_seq(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    for i in 0..3 {
        ok(
            s.sessions.append_log("s", entry(format!("{i}"))).await,
            "append",
        );
    }
    let before = snapshot(&s, &[], &[]).await;
    for wrong in [0, 2, 4] {
        expect_kind(
            s.sessions
                .replace_log("s", vec![checkpoint("c")], Some(wrong))
                .await,
            ErrorKind::Conflict,
            &format!("replace_log with expected_next_seq {wrong} when the log has 3 entries"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a mismatched compare-and-replace",
    );
    let new = ok(
        s.sessions
            .replace_log("s", vec![checkpoint("c")], Some(3))
            .await,
        "replace with the right expected_next_seq",
    );
    assert_eq!(new.len(), 1, "replaced");
    ok(
        s.sessions
            .replace_log("s", vec![checkpoint("d")], Some(1))
            .await,
        "expected_next_seq counts the new log",
    );
}

/// After `replace_log` the old idempotency keys are gone; the new entries' keys are honoured.
pub async fn replace_forgets_old_keys(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    ok(
        s.sessions
            .append_log("s", keyed_entry("old", "m-old"))
            .await,
        "append",
    );
    let mut kept = checkpoint("summary");
    kept.idempotency_key = Some("m-new".into());
    let new = ok(
        s.sessions.replace_log("s", vec![kept.clone()], None).await,
        "replace_log",
    );
    let again = ok(
        s.sessions.append_log("s", kept).await,
        "append a key of the new log",
    );
    assert_eq!(again, new[0], "a key in the new log returns its entry");
    let reborn = ok(
        s.sessions
            .append_log("s", keyed_entry("old again", "m-old"))
            .await,
        "append an old key",
    );
    assert_eq!(
        (reborn.seq, reborn.payload.as_ref()),
        (1, &b"old again"[..]),
        "a key from the replaced log is gone: the entry is stored anew"
    );
    assert_eq!(
        ok(s.sessions.read_log("s", None, 10).await, "read").len(),
        2,
        "log length"
    );
}

/// Appends and readers racing a `replace_log`: readers see one unbroken chain;
/// each append lands wholly before (and is replaced) or wholly after it.
pub async fn replace_races_appends(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(ok(
            s.sessions.append_log("s", entry(format!("old {i}"))).await,
            "append",
        ));
    }
    let sessions = s.sessions.clone();
    enum Out {
        Appended(Vec<LogEntry>),
        Replaced(Vec<LogEntry>),
        Read,
    }
    let results = race(12, |t| {
        let sessions = sessions.clone();
        async move {
            match t {
                0 => {
                    tokio::task::yield_now().await;
                    let entries = vec![
                        checkpoint("new 0"),
                        checkpoint("new 1"),
                        checkpoint("new 2"),
                    ];
                    Out::Replaced(
                        sessions
                            .replace_log("s", entries, None)
                            .await
                            .expect("replace_log racing appends"),
                    )
                }
                1 | 2 => {
                    for _ in 0..30 {
                        let log = sessions
                            .read_log("s", None, MAX_PAGE)
                            .await
                            .expect("read_log racing replace");
                        assert_chain(&log, "read_log racing replace_log");
                        tokio::task::yield_now().await;
                    }
                    Out::Read
                }
                _ => {
                    let mut mine = Vec::new();
                    for i in 0..10 {
                        let e = entry(format!("append {t}/{i}"));
                        mine.push(
                            sessions
                                .append_log("s", e)
                                .await
                                .expect("append_log racing replace"),
                        );
                    }
                    Out::Appended(mine)
                }
            }
        }
    })
    .await;
    let mut appended = Vec::new();
    let mut replaced = Vec::new();
    for r in results {
        match r {
            Out::Appended(v) => appended.extend(v),
            Out::Replaced(v) => replaced = v,
            Out::Read => {}
        }
    }
    let log = ok(
        s.sessions.read_log("s", None, MAX_PAGE).await,
        "final read_log",
    );
    assert_chain(&log, "final log");
    ok(
        s.sessions.verify_log("s").await,
        "verify_log after racing replace",
    );
    assert!(
        log.len() >= 3 && log[..3] == replaced[..],
        "the final log starts with the replacement entries"
    );
    let by_payload: BTreeMap<Bytes, &LogEntry> =
        log.iter().map(|e| (e.payload.clone(), e)).collect();
    assert_eq!(by_payload.len(), log.len(), "no entry stored twice");
    let mut old_hashes: HashSet<_> = old.iter().map(|e| e.hash).collect();
    let mut lost = Vec::new();
    let mut kept = 0;
    for a in &appended {
        match by_payload.get(&a.payload) {
            Some(stored) => {
                assert_eq!(
                    *stored, a,
                    "an append that landed after the replace is stored exactly as acknowledged"
                );
                kept += 1;
            }
            None => {
                old_hashes.insert(a.hash);
                lost.push(a);
            }
        }
    }
    assert_eq!(
        log.len(),
        3 + kept,
        "after the replacement, the log holds only acknowledged appends"
    );
    let mut lost_seqs: Vec<u64> = lost.iter().map(|a| a.seq).collect();
    lost_seqs.sort_unstable();
    assert_eq!(
        lost_seqs,
        (5..5 + lost.len() as u64).collect::<Vec<_>>(),
        "replaced appends had extended the old log"
    );
    for a in lost {
        assert!(
            a.prev_hash.is_some_and(|p| old_hashes.contains(&p)),
            "append seq {} was neither kept nor part of the old chain: it did not land wholly before or after the replace",
            a.seq
        );
    }
}
