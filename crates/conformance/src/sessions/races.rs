//! Session records under concurrency: racing creates, saves and deletes.

use serde_json::json;
use stowage_core::ErrorKind;

use crate::harness::Harness;
use crate::util::{keyed_entry, ok, open, race};

/// 16 tasks racing `create_session` for one id: one wins, the rest `AlreadyExists`.
pub async fn racing_create_one_winner(h: &dyn Harness) {
    let s = open(h).await;
    let sessions = s.sessions.clone();
    let results = race(16, |t| {
        let sessions = sessions.clone();
        async move {
            sessions
                .create_session("contested", json!({"winner": t}))
                .await
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(x) => winners.push(x),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "create_session losers get AlreadyExists: {e}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing create_session must win"
    );
    assert_eq!(
        ok(s.sessions.load_session("contested").await, "load"),
        winners.pop(),
        "the winner is stored"
    );
}

/// 16 tasks racing `save_session` with the same expected version: one wins, the rest `Conflict`.
pub async fn racing_save_one_winner(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!(0)).await, "create");
    let sessions = s.sessions.clone();
    let results = race(16, |t| {
        let sessions = sessions.clone();
        async move {
            sessions
                .save_session("s", json!({"winner": t}), Some(1))
                .await
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(x) => winners.push(x),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "compare-and-set losers get Conflict: {e}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one compare-and-set save must win"
    );
    let stored = ok(s.sessions.load_session("s").await, "load");
    assert_eq!(
        stored.as_ref().map(|x| x.version),
        Some(2),
        "version 2 after one save"
    );
    assert_eq!(stored, winners.pop(), "the winner's data is stored");
}

/// 32 concurrent unconditional saves: all succeed, each version handed out once.
pub async fn concurrent_saves_versions(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!(0)).await, "create");
    let sessions = s.sessions.clone();
    let results = race(32, |t| {
        let sessions = sessions.clone();
        async move { sessions.save_session("s", json!(t), None).await }
    })
    .await;
    let mut versions: Vec<u64> = results
        .into_iter()
        .map(|r| ok(r, "concurrent save").version)
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..34).collect::<Vec<_>>(),
        "every save gets its own version"
    );
    let last = ok(s.sessions.load_session("s").await, "load");
    assert_eq!(last.map(|x| x.version), Some(33), "final version");
}

/// `delete_session` racing 12 keyed appends to the same session (5 rounds): each append lands before the delete or is `NotFound`; afterwards nothing of the log is left — a re-created session has an empty log, takes the old keys as new, and `stats` counts no orphan entries.
pub async fn delete_racing_log_appends(h: &dyn Harness) {
    let s = open(h).await;
    const APPENDS: usize = 12;
    for round in 0..5 {
        let id = format!("del{round}");
        ok(s.sessions.create_session(&id, json!({})).await, "create");
        let sessions = s.sessions.clone();
        let results = race(APPENDS + 1, |t| {
            let sessions = sessions.clone();
            let id = id.clone();
            async move {
                if t == APPENDS {
                    sessions.delete_session(&id).await
                } else {
                    sessions
                        .append_log(&id, keyed_entry(vec![t as u8], &format!("k{t}")))
                        .await
                        .map(|_| false)
                }
            }
        })
        .await;
        for (t, r) in results.into_iter().enumerate() {
            match r {
                Ok(deleted) if t == APPENDS => {
                    assert!(deleted, "delete_session of an existing session returns true")
                }
                Ok(_) => {}
                Err(e) => assert!(
                    t != APPENDS && e.kind() == ErrorKind::NotFound,
                    "an append racing delete_session lands before it or is NotFound; call {t}: {} error: {e}",
                    e.kind()
                ),
            }
        }
        assert_eq!(
            ok(s.sessions.load_session(&id).await, "load"),
            None,
            "the deleted session is gone"
        );
        ok(s.sessions.create_session(&id, json!({})).await, "re-create");
        assert!(
            ok(s.sessions.read_log(&id, None, 100).await, "read_log").is_empty(),
            "a re-created session has an empty log: no racing append outlived the delete"
        );
        let fresh = ok(
            s.sessions
                .append_log(&id, keyed_entry(vec![99u8], "k0"))
                .await,
            "append with a key of the deleted log",
        );
        assert_eq!(
            (fresh.seq, fresh.payload.as_ref()),
            (0, &[99u8][..]),
            "the deleted log's idempotency keys are gone"
        );
        ok(s.sessions.verify_log(&id).await, "verify_log");
    }
    let stats = ok(s.lifecycle.stats().await, "stats");
    assert_eq!(
        (stats.sessions, stats.log_entries),
        (5, 5),
        "stats count 5 sessions of one entry each, no orphan entries: {stats:?}"
    );
}
