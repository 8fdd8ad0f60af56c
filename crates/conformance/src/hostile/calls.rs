//! Hostile input in every call that takes it: bad identifiers in every
//! method, cursors that point at nothing, and a `limit` of 0.

use serde_json::json;
use stowage_core::validate::MAX_IDENTIFIER_BYTES;
use stowage_core::{ErrorKind, LogKind, NewEvent, NewLogEntry};

use crate::harness::Harness;
use crate::util::{assert_unchanged, expect_kind, meta, ok, open, rmeta, snapshot, spec};

/// A bad identifier (empty, 257 bytes, a NUL, a newline, an ESC, U+0085)
/// is `InvalidInput` in every method that takes a session id or release
/// name — reads included (`load_session`, `read_log`, `verify_log`,
/// `current`, `history`), mutations (`save_session`, `set_session_state`,
/// `delete_session`, `append_log`, `replace_log`, `rollback`,
/// `rollback_to`), both ends of a fork, and the agent of a `list_runs`
/// filter — and changes nothing.
pub async fn bad_identifiers_everywhere(h: &dyn Harness) {
    use stowage_core::{RunFilter, SessionState};
    let s = open(h).await;
    ok(s.sessions.create_session("s", json!({})).await, "create");
    for n in 0..2 {
        ok(
            s.releases.promote("r", spec(n), rmeta("v"), None).await,
            "promote",
        );
    }
    let before = snapshot(&s, &[], &[]).await;
    let bad_ids = [
        String::new(),
        "x".repeat(MAX_IDENTIFIER_BYTES + 1),
        "a\0b".to_string(),
        "a\nb".to_string(),
        "a\u{1b}b".to_string(),
        "a\u{85}b".to_string(),
    ];
    let invalid = ErrorKind::InvalidInput;
    for bad in &bad_ids {
        let why = |call: &str| format!("{call} with identifier {bad:?}");
        expect_kind(
            s.sessions.load_session(bad).await,
            invalid,
            &why("load_session"),
        );
        expect_kind(
            s.sessions.save_session(bad, json!({}), None).await,
            invalid,
            &why("save_session"),
        );
        expect_kind(
            s.sessions
                .set_session_state(bad, SessionState::Suspended, None)
                .await,
            invalid,
            &why("set_session_state"),
        );
        expect_kind(
            s.sessions.delete_session(bad).await,
            invalid,
            &why("delete_session"),
        );
        let entry = NewLogEntry::new(LogKind::Incoming, "a", "t", "p");
        expect_kind(
            s.sessions.append_log(bad, entry).await,
            invalid,
            &why("append_log"),
        );
        expect_kind(
            s.sessions.read_log(bad, None, 10).await,
            invalid,
            &why("read_log"),
        );
        expect_kind(
            s.sessions.verify_log(bad).await,
            invalid,
            &why("verify_log"),
        );
        expect_kind(
            s.sessions.replace_log(bad, Vec::new(), None).await,
            invalid,
            &why("replace_log"),
        );
        expect_kind(s.releases.current(bad).await, invalid, &why("current"));
        expect_kind(
            s.releases.history(bad, None, 10).await,
            invalid,
            &why("history"),
        );
        expect_kind(
            s.releases.rollback(bad, "ops").await,
            invalid,
            &why("rollback"),
        );
        expect_kind(
            s.releases.rollback_to(bad, 0, "ops").await,
            invalid,
            &why("rollback_to"),
        );
        expect_kind(
            s.lifecycle.fork_session(bad, "copy").await,
            invalid,
            &why("fork_session from"),
        );
        expect_kind(
            s.lifecycle.fork_session("s", bad).await,
            invalid,
            &why("fork_session to"),
        );
        expect_kind(
            s.lifecycle.fork_release("r", bad).await,
            invalid,
            &why("fork_release to"),
        );
        expect_kind(
            s.runs
                .list_runs(&RunFilter::all().agent(bad.as_str()), None, 10)
                .await,
            invalid,
            &why("list_runs agent filter"),
        );
    }
    let after = snapshot(&s, &[], &[]).await;
    assert_unchanged(&before, &after, "calls with bad identifiers");
}

/// Cursors that point at nothing are exclusive positions, and a `limit`
/// of 0 is an empty page: `read_events`/`read_log` after seq 100 or
/// `u64::MAX` are empty; `history` before 0 is empty and before
/// `u64::MAX` is the whole history, newest first; `list_names`,
/// `list_sessions`, `list_runs` and `cas.list` after a key that was never
/// stored continue from where it would sort; `limit` 0 gives an empty
/// page everywhere.
pub async fn cursor_and_limit_edges(h: &dyn Harness) {
    use stowage_core::{Digest, RunFilter, RunId, Timestamp};
    let s = open(h).await;
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    for i in 0..3 {
        ok(
            s.runs.append_event(run, NewEvent::new("k", json!(i))).await,
            "append",
        );
    }
    for id in ["b", "d"] {
        ok(s.sessions.create_session(id, json!({})).await, "create");
        ok(
            s.sessions
                .append_log(id, NewLogEntry::new(LogKind::Incoming, "a", "t", "p"))
                .await,
            "append_log",
        );
    }
    for (name, n) in [("b", 0), ("d", 0), ("d", 1), ("d", 2)] {
        ok(
            s.releases.promote(name, spec(n), rmeta("v"), None).await,
            "promote",
        );
    }
    let blob = ok(s.cas.put(bytes::Bytes::from_static(b"x")).await, "put");

    for after in [100, u64::MAX] {
        let events = ok(
            s.runs.read_events(run, Some(after), 10).await,
            "read_events",
        );
        assert!(events.is_empty(), "read_events after {after}: {events:?}");
        let log = ok(s.sessions.read_log("b", Some(after), 10).await, "read_log");
        assert!(log.is_empty(), "read_log after {after}: {log:?}");
    }
    let none = ok(s.releases.history("d", Some(0), 10).await, "history");
    assert!(none.is_empty(), "history before 0: {none:?}");
    let all = ok(s.releases.history("d", Some(u64::MAX), 10).await, "history");
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        [2, 1, 0],
        "history before u64::MAX is all of it, newest first"
    );

    let names = ok(s.releases.list_names(Some("c"), 10).await, "list_names");
    assert_eq!(names, ["d"], "list_names after a name never promoted");
    let sessions = ok(
        s.sessions.list_sessions(Some("c"), 10).await,
        "list_sessions",
    );
    let ids: Vec<&str> = sessions.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["d"], "list_sessions after an id never created");
    // Newest first: a cursor older than every run lists nothing, a newer
    // one lists them all.
    let oldest = RunId::new_v7(Timestamp::from_millis(1), 1);
    let newest = RunId::new_v7(Timestamp::from_millis(u64::MAX >> 17), 1);
    let listed = ok(
        s.runs.list_runs(&RunFilter::all(), Some(oldest), 10).await,
        "list_runs",
    );
    assert!(
        listed.is_empty(),
        "list_runs after an id older than every run"
    );
    let listed = ok(
        s.runs.list_runs(&RunFilter::all(), Some(newest), 10).await,
        "list_runs",
    );
    assert_eq!(
        listed.len(),
        1,
        "list_runs after an id newer than every run"
    );
    let zero = Digest::from_array([0; 32]);
    let top = Digest::from_array([0xff; 32]);
    assert_eq!(ok(s.cas.list(Some(&zero), 10).await, "cas.list"), [blob]);
    assert!(ok(s.cas.list(Some(&top), 10).await, "cas.list").is_empty());

    let zero_pages = [
        ok(s.runs.read_events(run, None, 0).await, "read_events").len(),
        ok(
            s.runs.list_runs(&RunFilter::all(), None, 0).await,
            "list_runs",
        )
        .len(),
        ok(s.sessions.read_log("b", None, 0).await, "read_log").len(),
        ok(s.sessions.list_sessions(None, 0).await, "list_sessions").len(),
        ok(s.releases.history("d", None, 0).await, "history").len(),
        ok(s.releases.list_names(None, 0).await, "list_names").len(),
        ok(s.cas.list(None, 0).await, "cas.list").len(),
    ];
    assert_eq!(zero_pages, [0; 7], "limit 0 is an empty page");
}
