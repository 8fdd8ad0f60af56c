//! Session records under concurrency: racing creates and saves.

use serde_json::json;
use stowage_core::ErrorKind;

use crate::harness::Harness;
use crate::util::{ok, open, race};

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
