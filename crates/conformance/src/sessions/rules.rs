//! Session log rules every backend must apply the same way: a reused
//! message id with other content, and appends to a closed session.

use bytes::Bytes;
use serde_json::json;
use stowage_core::{ErrorKind, LogKind, NewLogEntry, SessionState};

use crate::harness::Harness;
use crate::util::{entry, expect_kind, keyed_entry, ok, open, race};

/// A reused idempotency key with other content (kind, sender, message type
/// or payload) is `Conflict` naming the key and the session, and stores
/// nothing; the same content returns the original.
pub async fn log_idempotency_key_other_content_conflict(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let original = keyed_entry("hello", "msg-1");
    let first = ok(s.sessions.append_log("s", original.clone()).await, "append");
    let again = ok(
        s.sessions.append_log("s", original.clone()).await,
        "identical retry",
    );
    assert_eq!(again, first, "an identical retry returns the original");

    let mut changed: Vec<(&str, NewLogEntry)> = Vec::new();
    let mut other = original.clone();
    other.payload = Bytes::from_static(b"hello again");
    changed.push(("another payload", other));
    let mut other = original.clone();
    other.kind = LogKind::Internal;
    changed.push(("another kind", other));
    let mut other = original.clone();
    other.sender = "someone-else".into();
    changed.push(("another sender", other));
    let mut other = original.clone();
    other.message_type = "image".into();
    changed.push(("another message type", other));
    for (what, new) in changed {
        let err = expect_kind(
            s.sessions.append_log("s", new).await,
            ErrorKind::Conflict,
            &format!("a reused message id with {what}"),
        );
        for needle in ["msg-1", "\"s\""] {
            assert!(
                err.message().contains(needle),
                "the Conflict for {what} names {needle:?}: {err}"
            );
        }
    }
    assert_eq!(
        ok(s.sessions.read_log("s", None, 10).await, "read_log").len(),
        1,
        "nothing stored by the refused retries"
    );
    ok(s.sessions.verify_log("s").await, "verify_log");
}

/// A session in a final state (`Resolved`, `Expired`, `Cancelled`) refuses
/// appends and `replace_log` with `Conflict` naming the session and its
/// state, and its log is unchanged; an identical retry of a message already
/// in the log still returns the original, other content under that key is
/// `Conflict`. `Suspended` sessions take appends.
pub async fn log_closed_session_refuses_appends(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("paused", json!({})).await,
        "create",
    );
    ok(
        s.sessions
            .set_session_state("paused", SessionState::Suspended, None)
            .await,
        "suspend",
    );
    ok(
        s.sessions.append_log("paused", entry("still open")).await,
        "append to a suspended session",
    );
    for state in [
        SessionState::Resolved,
        SessionState::Expired,
        SessionState::Cancelled,
    ] {
        let id = format!("closed-{state}");
        ok(s.sessions.create_session(&id, json!({})).await, "create");
        let kept = keyed_entry("before", "msg-1");
        let first = ok(s.sessions.append_log(&id, kept.clone()).await, "append");
        ok(
            s.sessions.set_session_state(&id, state, None).await,
            "close the session",
        );
        let err = expect_kind(
            s.sessions.append_log(&id, entry("after")).await,
            ErrorKind::Conflict,
            &format!("append to a {state} session"),
        );
        for needle in [id.as_str(), &state.to_string()] {
            assert!(
                err.message().contains(needle),
                "the Conflict names {needle:?}: {err}"
            );
        }
        expect_kind(
            s.sessions
                .append_log(&id, keyed_entry("after", "msg-2"))
                .await,
            ErrorKind::Conflict,
            &format!("a keyed append to a {state} session"),
        );
        assert_eq!(
            ok(s.sessions.append_log(&id, kept.clone()).await, "retry"),
            first,
            "an identical retry of a stored message returns the original on a {state} session"
        );
        expect_kind(
            s.sessions
                .append_log(&id, keyed_entry("other", "msg-1"))
                .await,
            ErrorKind::Conflict,
            &format!("a stored key with other content on a {state} session"),
        );
        expect_kind(
            s.sessions
                .replace_log(&id, vec![entry("compacted")], None)
                .await,
            ErrorKind::Conflict,
            &format!("replace_log on a {state} session"),
        );
        let log = ok(s.sessions.read_log(&id, None, 10).await, "read_log");
        assert_eq!(log, vec![first], "a {state} session's log is unchanged");
        ok(s.sessions.verify_log(&id).await, "verify_log");
    }
}

/// 16 tasks appending 10 entries each while another task resolves the
/// session: every append that returned `Ok` is in the log, every other one
/// is `Conflict`, nothing lands after the close (the log is the same a while
/// later), and the chain verifies.
pub async fn log_appends_racing_close(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let sessions = s.sessions.clone();
    let results = race(17, |t| {
        let sessions = sessions.clone();
        async move {
            if t == 16 {
                tokio::task::yield_now().await;
                let closed = sessions
                    .set_session_state("s", SessionState::Resolved, None)
                    .await;
                return vec![closed.map(|_| None)];
            }
            let mut out = Vec::new();
            for i in 0..10 {
                let payload = format!("task {t} entry {i}");
                let appended = sessions.append_log("s", entry(payload)).await;
                out.push(appended.map(|e| Some(e.seq)));
            }
            out
        }
    })
    .await;
    let mut stored = Vec::new();
    let mut refused = 0;
    for result in results.into_iter().flatten() {
        match result {
            Ok(Some(seq)) => stored.push(seq),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => refused += 1,
            Err(e) => panic!("an append racing a close failed with {e}"),
        }
    }
    stored.sort_unstable();
    let log = ok(s.sessions.read_log("s", None, 1000).await, "read_log");
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        stored,
        "exactly the acknowledged appends are in the log ({refused} refused)"
    );
    assert_eq!(stored.len() + refused, 160, "every append answered");
    let session = ok(s.sessions.load_session("s").await, "load_session");
    assert_eq!(
        session.map(|s| (s.state, s.log_len)),
        Some((SessionState::Resolved, log.len() as u64)),
        "the record is closed and keeps the log's length"
    );
    expect_kind(
        s.sessions.append_log("s", entry("after the race")).await,
        ErrorKind::Conflict,
        "an append after the close",
    );
    assert_eq!(
        ok(s.sessions.read_log("s", None, 1000).await, "read_log"),
        log,
        "nothing lands after the close"
    );
    ok(s.sessions.verify_log("s").await, "verify_log");
}

/// 16 tasks appending the same message id with 16 different payloads:
/// exactly one entry is stored; the task that stored it gets it, every
/// other task gets `Conflict`.
pub async fn log_racing_reused_keys(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    let sessions = s.sessions.clone();
    let results = race(16, |t| {
        let sessions = sessions.clone();
        async move {
            let payload = format!("version {t}");
            let appended = sessions
                .append_log("s", keyed_entry(payload.clone(), "msg"))
                .await;
            (payload, appended)
        }
    })
    .await;
    let log = ok(s.sessions.read_log("s", None, 100).await, "read_log");
    assert_eq!(log.len(), 1, "one entry stored for one message id");
    let mut winners = 0;
    for (payload, result) in results {
        match result {
            Ok(e) => {
                assert_eq!(e, log[0], "the winner gets the stored entry");
                assert_eq!(e.payload.as_ref(), payload.as_bytes());
                winners += 1;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "a loser: {e}"),
        }
    }
    assert_eq!(winners, 1, "exactly one content wins the key");
}

/// Idempotency keys are scoped to their session: sessions and keys whose concatenations look alike (`a` + `b:c` and `a:b` + `c`, `/`, no separator) never see each other's keys.
pub async fn log_keys_isolated(h: &dyn Harness) {
    let s = open(h).await;
    let pairs = [
        ("a", "b:c"),
        ("a:b", "c"),
        ("a/b", "c"),
        ("a", "b/c"),
        ("ab", "c"),
        ("a", "bc"),
    ];
    for (id, _) in pairs {
        if ok(s.sessions.load_session(id).await, "load").is_none() {
            ok(s.sessions.create_session(id, json!({})).await, "create");
        }
    }
    for (i, (id, key)) in pairs.iter().enumerate() {
        let payload = format!("{id}|{key}");
        let got = ok(
            s.sessions
                .append_log(id, keyed_entry(payload.clone(), key))
                .await,
            &format!("append to {id:?} with key {key:?}"),
        );
        assert_eq!(
            got.payload.as_ref(),
            payload.as_bytes(),
            "append #{i} to {id:?} with key {key:?} got another session's or key's entry back"
        );
    }
    for (id, n) in [("a", 3), ("a:b", 1), ("a/b", 1), ("ab", 1)] {
        assert_eq!(
            ok(s.sessions.read_log(id, None, 10).await, "read_log").len(),
            n,
            "log of {id:?} holds its own keyed entries"
        );
    }
}
