//! Session records: create, load, save, states, list, delete.

use serde_json::json;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, SessionState};

use crate::harness::Harness;
use crate::util::{
    assert_unchanged, entry, expect_kind, invalid_ids, keyed_entry, ok, open, oversized_json,
    snapshot, tricky_ids,
};

/// `create_session` then `load_session` returns the data, `Open`, version 1.
pub async fn create_load_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let data = json!({"user": "ü🚀", "n": [1, 2.5, null], "nested": {"a": {}}});
    let created = ok(
        s.sessions.create_session("chat-1", data.clone()).await,
        "create_session",
    );
    assert_eq!(
        (created.id.as_str(), created.state, created.version),
        ("chat-1", SessionState::Open, 1),
        "a new session"
    );
    assert_eq!(created.data, data, "data stored exactly");
    assert!(
        created.updated_at >= created.created_at,
        "updated_at is not before created_at"
    );
    let loaded = ok(s.sessions.load_session("chat-1").await, "load_session");
    assert_eq!(loaded, Some(created), "load returns the created session");
    assert_eq!(
        ok(s.sessions.load_session("chat-2").await, "load_session"),
        None,
        "load of an unknown id is None"
    );
}

/// Creating a taken id is `AlreadyExists` naming the id and leaves the original untouched.
pub async fn create_duplicate_already_exists(h: &dyn Harness) {
    let s = open(h).await;
    let original = ok(
        s.sessions.create_session("dup", json!({"v": 1})).await,
        "create_session",
    );
    let kept = ok(
        s.sessions.append_log("dup", entry("kept")).await,
        "append_log",
    );
    // The record keeps the log's length and head.
    let original = {
        let mut original = original;
        original.log_len = 1;
        original.log_head = Some(kept.hash);
        original
    };
    let before = snapshot(&s, &[], &[]).await;
    let err = expect_kind(
        s.sessions.create_session("dup", json!({"v": 2})).await,
        ErrorKind::AlreadyExists,
        "create_session of a taken id",
    );
    assert!(
        err.message().contains("dup"),
        "the AlreadyExists message names the session: {err}"
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a duplicate create_session",
    );
    assert_eq!(
        ok(s.sessions.load_session("dup").await, "load"),
        Some(original),
        "original kept"
    );
}

/// Calls on unknown sessions are `NotFound`, also with an expected version or seq (load is `None`, delete is `false`).
pub async fn unknown_session_not_found(h: &dyn Harness) {
    let s = open(h).await;
    let nf = ErrorKind::NotFound;
    expect_kind(
        s.sessions.save_session("ghost", json!({}), None).await,
        nf,
        "save_session of an unknown id",
    );
    expect_kind(
        s.sessions
            .set_session_state("ghost", SessionState::Resolved, None)
            .await,
        nf,
        "set_session_state of an unknown id",
    );
    expect_kind(
        s.sessions
            .set_session_state("ghost", SessionState::Open, Some(7))
            .await,
        nf,
        "set_session_state with an expected version of an unknown id (NotFound before Conflict)",
    );
    expect_kind(
        s.sessions.save_session("ghost", json!({}), Some(7)).await,
        nf,
        "save_session with an expected version of an unknown id (NotFound before Conflict)",
    );
    expect_kind(
        s.sessions.replace_log("ghost", Vec::new(), Some(3)).await,
        nf,
        "replace_log with an expected next seq of an unknown session (NotFound before Conflict)",
    );
    expect_kind(
        s.sessions.append_log("ghost", entry("x")).await,
        nf,
        "append_log to an unknown session",
    );
    expect_kind(
        s.sessions.read_log("ghost", None, 10).await,
        nf,
        "read_log of an unknown session",
    );
    expect_kind(
        s.sessions
            .replace_log("ghost", vec![entry("x")], None)
            .await,
        nf,
        "replace_log of an unknown session",
    );
    expect_kind(
        s.sessions.verify_log("ghost").await,
        nf,
        "verify_log of an unknown session",
    );
    assert!(
        !ok(s.sessions.delete_session("ghost").await, "delete_session"),
        "deleting an unknown session returns false"
    );
    assert!(
        ok(s.sessions.list_sessions(None, 10).await, "list").is_empty(),
        "calls on unknown sessions create nothing"
    );
}

/// `save_session` increments the version; `expected_version` mismatches are `Conflict` and change nothing.
pub async fn save_versions(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("s", json!(0)).await,
        "create_session",
    );
    let v2 = ok(
        s.sessions.save_session("s", json!({"step": 1}), None).await,
        "save",
    );
    assert_eq!(
        (v2.version, v2.data.clone()),
        (2, json!({"step": 1})),
        "save increments the version"
    );
    let v3 = ok(
        s.sessions
            .save_session("s", json!({"step": 2}), Some(2))
            .await,
        "save with the right version",
    );
    assert_eq!(v3.version, 3, "compare-and-set save increments the version");
    assert!(v3.updated_at >= v2.updated_at, "updated_at moves forward");
    let before = snapshot(&s, &[], &[]).await;
    for wrong in [1, 2, 4, u64::MAX] {
        expect_kind(
            s.sessions
                .save_session("s", json!("lost"), Some(wrong))
                .await,
            ErrorKind::Conflict,
            &format!("save with expected_version {wrong} at version 3"),
        );
        expect_kind(
            s.sessions
                .set_session_state("s", SessionState::Suspended, Some(wrong))
                .await,
            ErrorKind::Conflict,
            &format!("set_state with expected_version {wrong}"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a version-mismatched save",
    );
    assert_eq!(
        ok(s.sessions.load_session("s").await, "load"),
        Some(v3),
        "load returns the last save"
    );
}

/// States: `Open`/`Suspended` move anywhere; from a final state every change is `Conflict`.
pub async fn state_machine(h: &dyn Harness) {
    let s = open(h).await;
    let finals = [
        SessionState::Resolved,
        SessionState::Expired,
        SessionState::Cancelled,
    ];
    for (i, fin) in finals.into_iter().enumerate() {
        let id = format!("s{i}");
        ok(
            s.sessions.create_session(&id, json!({"keep": i})).await,
            "create",
        );
        let sus = ok(
            s.sessions
                .set_session_state(&id, SessionState::Suspended, Some(1))
                .await,
            "Open → Suspended",
        );
        assert_eq!(
            (sus.state, sus.version),
            (SessionState::Suspended, 2),
            "state change increments the version"
        );
        ok(
            s.sessions
                .set_session_state(&id, SessionState::Open, None)
                .await,
            "Suspended → Open",
        );
        let done = ok(
            s.sessions.set_session_state(&id, fin, None).await,
            &format!("Open → {fin}"),
        );
        assert_eq!(
            (done.state, done.version, done.data.clone()),
            (fin, 4, json!({"keep": i})),
            "final state stored"
        );
        for next in [SessionState::Open, SessionState::Suspended, fin] {
            expect_kind(
                s.sessions.set_session_state(&id, next, None).await,
                ErrorKind::Conflict,
                &format!("{fin} → {next}"),
            );
        }
        assert_eq!(
            ok(s.sessions.load_session(&id).await, "load"),
            Some(done),
            "final sessions keep their state"
        );
    }
}

/// `list_sessions` is ascending by id bytes with exclusive `after` and `limit` after ordering.
pub async fn list_ascending_paginated(h: &dyn Harness) {
    let s = open(h).await;
    let mut ids = tricky_ids();
    for id in &ids {
        ok(
            s.sessions.create_session(id, json!(id)).await,
            &format!("create {id:?}"),
        );
    }
    ids.sort();
    let listed: Vec<String> = ok(s.sessions.list_sessions(None, MAX_PAGE).await, "list")
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(listed, ids, "sessions ascending by id bytes");
    let first: Vec<String> = ok(s.sessions.list_sessions(None, 3).await, "list")
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(first, ids[..3], "limit after ordering");
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ok(
            s.sessions.list_sessions(after.as_deref(), 4).await,
            "list page",
        );
        assert!(page.len() <= 4, "page longer than limit");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.into_iter().map(|x| x.id));
    }
    assert_eq!(paged, ids, "pages joined by the exclusive `after` cursor");
    let cursor = "a0"; // not a stored id: still splits the order
    let expected: Vec<&String> = ids.iter().filter(|id| id.as_str() > cursor).collect();
    let got: Vec<String> = ok(
        s.sessions.list_sessions(Some(cursor), MAX_PAGE).await,
        "list",
    )
    .into_iter()
    .map(|x| x.id)
    .collect();
    assert_eq!(
        got.iter().collect::<Vec<_>>(),
        expected,
        "after a cursor that is not a stored id"
    );
}

/// `delete_session` removes the record and its log (with the log's idempotency keys) together, idempotently; a re-created session starts empty.
pub async fn delete_removes_log(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.sessions.create_session("d", json!(1)).await, "create");
    ok(s.sessions.create_session("d2", json!(2)).await, "create");
    for i in 0..3 {
        ok(
            s.sessions
                .append_log("d", keyed_entry(format!("m{i}"), &format!("k{i}")))
                .await,
            "append_log",
        );
    }
    ok(
        s.sessions.append_log("d2", entry("other")).await,
        "append_log",
    );
    assert!(
        ok(s.sessions.delete_session("d").await, "delete"),
        "first delete returns true"
    );
    assert!(
        !ok(s.sessions.delete_session("d").await, "delete"),
        "second delete returns false"
    );
    assert_eq!(
        ok(s.sessions.load_session("d").await, "load"),
        None,
        "record gone"
    );
    expect_kind(
        s.sessions.read_log("d", None, 10).await,
        ErrorKind::NotFound,
        "read_log after delete",
    );
    let again = ok(s.sessions.create_session("d", json!(3)).await, "re-create");
    assert_eq!(again.version, 1, "a re-created session starts at version 1");
    assert!(
        ok(s.sessions.read_log("d", None, 10).await, "read_log").is_empty(),
        "the old log is gone with the record"
    );
    assert_eq!(
        ok(s.sessions.append_log("d", entry("new")).await, "append").seq,
        0,
        "seqs restart at 0"
    );
    let fresh = ok(
        s.sessions.append_log("d", keyed_entry("fresh", "k1")).await,
        "append with a key of the deleted log",
    );
    assert_eq!(
        (fresh.seq, fresh.payload.as_ref()),
        (1, &b"fresh"[..]),
        "the deleted log's idempotency keys are gone with it"
    );
    ok(s.sessions.verify_log("d").await, "verify_log");
    assert_eq!(
        ok(s.sessions.read_log("d2", None, 10).await, "read_log").len(),
        1,
        "other sessions untouched"
    );
}

/// Tricky ids round-trip and their records and logs stay isolated from look-alikes.
pub async fn tricky_ids_isolated(h: &dyn Harness) {
    let s = open(h).await;
    let ids = tricky_ids();
    for (i, id) in ids.iter().enumerate() {
        ok(
            s.sessions.create_session(id, json!({"i": i})).await,
            &format!("create {id:?}"),
        );
        for j in 0..=i % 3 {
            ok(
                s.sessions.append_log(id, entry(format!("{id}#{j}"))).await,
                "append_log",
            );
        }
    }
    for (i, id) in ids.iter().enumerate() {
        let loaded = ok(s.sessions.load_session(id).await, "load")
            .unwrap_or_else(|| panic!("session {id:?} lost"));
        assert_eq!(
            (&loaded.id, &loaded.data),
            (id, &json!({"i": i})),
            "session {id:?} round trip"
        );
        let log = ok(s.sessions.read_log(id, None, MAX_PAGE).await, "read_log");
        assert_eq!(
            log.len(),
            i % 3 + 1,
            "log of {id:?} holds only its own entries"
        );
        for (j, e) in log.iter().enumerate() {
            assert_eq!(
                (&e.session_id, e.payload.as_ref()),
                (id, format!("{id}#{j}").as_bytes()),
                "entry of {id:?}"
            );
        }
        ok(s.sessions.verify_log(id).await, "verify_log");
    }
    assert!(
        ok(s.sessions.delete_session(&ids[0]).await, "delete"),
        "delete"
    );
    for id in &ids[1..] {
        assert!(
            ok(s.sessions.load_session(id).await, "load").is_some(),
            "deleting {:?} removed look-alike {id:?}",
            ids[0]
        );
    }
}

/// Invalid ids and data over 1 MiB are `InvalidInput` and change nothing.
pub async fn hostile_input_rejected(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("s", json!({"v": 1})).await,
        "create",
    );
    let before = snapshot(&s, &[], &[]).await;
    let bad = ErrorKind::InvalidInput;
    for (id, why) in invalid_ids() {
        expect_kind(
            s.sessions.create_session(&id, json!({})).await,
            bad,
            &format!("create_session with an id {why}"),
        );
        expect_kind(
            s.sessions.load_session(&id).await,
            bad,
            &format!("load_session with an id {why}"),
        );
    }
    expect_kind(
        s.sessions.create_session("big", oversized_json()).await,
        bad,
        "create_session with data over 1 MiB",
    );
    expect_kind(
        s.sessions.save_session("s", oversized_json(), None).await,
        bad,
        "save_session with data over 1 MiB",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "hostile session input",
    );
}
