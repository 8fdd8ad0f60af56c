//! Forking a session or a release name.

use serde_json::json;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, SessionState};

use crate::harness::Harness;
use crate::util::{entry, expect_kind, keyed_entry, ok, open, race, rmeta, spec};

/// A forked session has the source's data, state and log (contents,
/// seqs, timestamps, idempotency keys) under its own id, with a chain that
/// verifies; the source is unchanged and the two then diverge.
pub async fn fork_session_copies_log(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions
            .create_session("src", json!({"topic": "x"}))
            .await,
        "create_session",
    );
    for n in 0..5 {
        ok(
            s.sessions
                .append_log("src", keyed_entry(format!("m{n}"), &format!("k{n}")))
                .await,
            "append_log",
        );
    }
    let fork = ok(
        s.lifecycle.fork_session("src", "copy").await,
        "fork_session",
    );
    assert_eq!(
        (fork.id.as_str(), fork.version, fork.log_len),
        ("copy", 1, 5)
    );
    assert_eq!(fork.data, json!({"topic": "x"}));
    assert_eq!(fork.state, SessionState::Open);
    let source_log = ok(
        s.sessions.read_log("src", None, MAX_PAGE).await,
        "read_log src",
    );
    let copy_log = ok(
        s.sessions.read_log("copy", None, MAX_PAGE).await,
        "read_log copy",
    );
    assert_eq!(copy_log.len(), 5);
    for (a, b) in source_log.iter().zip(&copy_log) {
        assert_eq!(
            (a.seq, &a.payload, a.timestamp, &a.idempotency_key),
            (b.seq, &b.payload, b.timestamp, &b.idempotency_key)
        );
        assert_eq!(b.session_id, "copy");
    }
    let report = ok(
        s.sessions.verify_log("copy").await,
        "verify_log of the fork",
    );
    assert_eq!(report.len, 5);
    assert_eq!(report.head, fork.log_head);
    ok(
        s.sessions.verify_log("src").await,
        "verify_log of the source",
    );
    // Idempotency keys came along; the logs diverge from here.
    let retried = ok(
        s.sessions.append_log("copy", keyed_entry("m1", "k1")).await,
        "keyed retry on the fork",
    );
    assert_eq!(retried.seq, 1);
    ok(
        s.sessions
            .append_log("copy", entry("only in the copy"))
            .await,
        "append_log copy",
    );
    assert_eq!(
        ok(s.sessions.read_log("src", None, MAX_PAGE).await, "read_log").len(),
        5
    );

    expect_kind(
        s.lifecycle.fork_session("src", "copy").await,
        ErrorKind::AlreadyExists,
        "fork onto an existing session",
    );
    expect_kind(
        s.lifecycle.fork_session("nope", "other").await,
        ErrorKind::NotFound,
        "fork of a missing session",
    );
    expect_kind(
        s.lifecycle.fork_session("src", "bad\nid").await,
        ErrorKind::InvalidInput,
        "fork to a bad id",
    );
    assert!(
        ok(s.sessions.load_session("other").await, "load_session").is_none(),
        "a failed fork creates nothing"
    );
    // A final state is copied too; an empty log forks to an empty log.
    ok(
        s.sessions.create_session("closed", json!(null)).await,
        "create_session",
    );
    ok(
        s.sessions
            .set_session_state("closed", SessionState::Cancelled, None)
            .await,
        "cancel",
    );
    let fork = ok(
        s.lifecycle.fork_session("closed", "closed-copy").await,
        "fork_session",
    );
    assert_eq!(
        (fork.state, fork.log_len, fork.log_head),
        (SessionState::Cancelled, 0, None)
    );
}

/// A forked release name has the source's whole history (seqs, specs,
/// labels, links) under the new name; the two then move independently.
pub async fn fork_release_copies_history(h: &dyn Harness) {
    let s = open(h).await;
    for n in 1..=3 {
        ok(
            s.releases
                .promote("prod", spec(n), rmeta(&format!("v{n}")), None)
                .await,
            "promote",
        );
    }
    ok(s.releases.rollback("prod", "ops").await, "rollback");
    let current = ok(
        s.lifecycle.fork_release("prod", "canary").await,
        "fork_release",
    );
    let source = ok(s.releases.current("prod").await, "current prod");
    assert_eq!(current.name, "canary");
    assert_eq!(
        (current.seq, current.spec_digest, current.restored),
        (source.seq, source.spec_digest, source.restored)
    );
    let a = ok(
        s.releases.history("prod", None, MAX_PAGE).await,
        "history prod",
    );
    let b = ok(
        s.releases.history("canary", None, MAX_PAGE).await,
        "history canary",
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (
                x.seq,
                x.spec_digest,
                &x.metadata,
                x.previous,
                x.rollback_target
            ),
            (
                y.seq,
                y.spec_digest,
                &y.metadata,
                y.previous,
                y.rollback_target
            )
        );
    }
    ok(
        s.releases
            .promote("canary", spec(9), rmeta("v9"), None)
            .await,
        "promote canary",
    );
    assert_eq!(
        ok(s.releases.current("prod").await, "current prod").spec_digest,
        source.spec_digest
    );
    let rolled = ok(
        s.releases.rollback("canary", "ops").await,
        "rollback canary",
    );
    assert_eq!(
        rolled.spec_digest, source.spec_digest,
        "the fork's links work"
    );
    let names = ok(s.releases.list_names(None, 10).await, "list_names");
    assert_eq!(names, vec!["canary".to_owned(), "prod".to_owned()]);

    expect_kind(
        s.lifecycle.fork_release("prod", "canary").await,
        ErrorKind::AlreadyExists,
        "fork onto a name with history",
    );
    expect_kind(
        s.lifecycle.fork_release("nope", "x").await,
        ErrorKind::NotFound,
        "fork of a missing name",
    );
    expect_kind(
        s.lifecycle.fork_release("prod", "bad\nname").await,
        ErrorKind::InvalidInput,
        "fork to a bad name",
    );
}

/// Forking a session while others append to it: every fork succeeds with
/// a prefix of the source's log (whole entries, a chain that verifies),
/// never `Corrupted` for entries appended while it copied.
pub async fn fork_beside_appends(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("src", json!(null)).await,
        "create_session",
    );
    let stores = s.clone();
    let forks = race(4, move |t| {
        let s = stores.clone();
        async move {
            let mut forks = Vec::new();
            for n in 0..30 {
                if t == 0 {
                    let fork = s.lifecycle.fork_session("src", &format!("fork-{n}")).await;
                    forks.push(fork.map(|f| (f.id, f.log_len)));
                } else {
                    let appended = s
                        .sessions
                        .append_log("src", entry(format!("{t}/{n}")))
                        .await;
                    ok(appended, "append_log beside a fork");
                }
                tokio::task::yield_now().await;
            }
            forks
        }
    })
    .await;
    let source = ok(
        s.sessions.read_log("src", None, MAX_PAGE).await,
        "read_log src",
    );
    for fork in forks.into_iter().flatten() {
        let (id, len) = ok(fork, "fork_session beside appends");
        let report = ok(s.sessions.verify_log(&id).await, "verify_log of a fork");
        assert_eq!(report.len, len, "{id}: the fork holds what it says");
        let copy = ok(s.sessions.read_log(&id, None, MAX_PAGE).await, "read_log");
        let payloads = |log: &[stowage_core::LogEntry]| -> Vec<Vec<u8>> {
            log.iter().map(|e| e.payload.to_vec()).collect()
        };
        let prefix = source.get(..copy.len()).unwrap_or(&source);
        assert_eq!(
            payloads(&copy),
            payloads(prefix),
            "{id}: a prefix of the source"
        );
    }
}

/// 12 tasks racing `fork_session` from two sources to one new id, then 8 racing `fork_release` to one new name: exactly one fork wins each race, the rest `AlreadyExists`; the winner is a whole copy of one source (its whole log, a chain that verifies).
pub async fn racing_forks_one_winner(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.sessions.create_session("src", json!({"one": 1})).await,
        "create",
    );
    for p in ["a", "b", "c"] {
        ok(s.sessions.append_log("src", entry(p)).await, "append_log");
    }
    ok(
        s.sessions.create_session("src2", json!({"two": 2})).await,
        "create",
    );
    ok(
        s.sessions.append_log("src2", entry("z")).await,
        "append_log",
    );
    let lifecycle = s.lifecycle.clone();
    let results = race(12, |t| {
        let lifecycle = lifecycle.clone();
        let from = if t % 2 == 0 { "src" } else { "src2" };
        async move { lifecycle.fork_session(from, "dst").await }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(session) => winners.push(session),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "racing fork_session losers get AlreadyExists: {e}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racing fork_session must win");
    let fork = ok(s.sessions.load_session("dst").await, "load")
        .unwrap_or_else(|| panic!("the winning fork is not stored"));
    let source = if fork.data == json!({"one": 1}) {
        "src"
    } else {
        "src2"
    };
    let copied = ok(s.sessions.read_log("dst", None, MAX_PAGE).await, "read_log");
    let original = ok(
        s.sessions.read_log(source, None, MAX_PAGE).await,
        "read_log",
    );
    assert_eq!(
        copied
            .iter()
            .map(|e| (e.seq, &e.payload, e.timestamp))
            .collect::<Vec<_>>(),
        original
            .iter()
            .map(|e| (e.seq, &e.payload, e.timestamp))
            .collect::<Vec<_>>(),
        "the fork holds the whole log of the one source whose data it has ({source})"
    );
    assert_eq!(fork.log_len, copied.len() as u64, "the fork's log_len");
    ok(s.sessions.verify_log("dst").await, "verify_log of the fork");

    ok(
        s.releases.promote("ra", spec(1), rmeta("v1"), None).await,
        "promote",
    );
    ok(
        s.releases.promote("ra", spec(2), rmeta("v2"), None).await,
        "promote",
    );
    let results = race(8, |_| {
        let lifecycle = lifecycle.clone();
        async move { lifecycle.fork_release("ra", "rdst").await }
    })
    .await;
    let mut wins = 0;
    for r in results {
        match r {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::AlreadyExists,
                "racing fork_release losers get AlreadyExists: {e}"
            ),
        }
    }
    assert_eq!(wins, 1, "exactly one racing fork_release must win");
    assert_eq!(
        ok(s.releases.history("rdst", None, MAX_PAGE).await, "history")
            .iter()
            .map(|r| (r.seq, r.spec_digest))
            .collect::<Vec<_>>(),
        [(1, spec(2)), (0, spec(1))],
        "the forked name holds the source's history once"
    );
}
