//! Session expiry and pruning.

use serde_json::json;
use stowage_core::lifecycle::SessionRetention;
use stowage_core::{ErrorKind, SessionState, Stores};

use super::{open_timed, sweep_all, HOUR};
use crate::harness::Harness;
use crate::util::{entry, expect_kind, ok};

async fn expire(s: &Stores, policy: &SessionRetention) -> stowage_core::lifecycle::Sweep<String> {
    sweep_all(|after: Option<String>| {
        let (s, policy) = (s.clone(), policy.clone());
        async move { s.lifecycle.expire_sessions(&policy, after.as_deref()).await }
    })
    .await
}

async fn prune(s: &Stores, policy: &SessionRetention) -> stowage_core::lifecycle::Sweep<String> {
    sweep_all(|after: Option<String>| {
        let (s, policy) = (s.clone(), policy.clone());
        async move { s.lifecycle.prune_sessions(&policy, after.as_deref()).await }
    })
    .await
}

async fn state(s: &Stores, id: &str) -> Option<SessionState> {
    ok(s.sessions.load_session(id).await, "load_session").map(|x| x.state)
}

/// Idle sessions that are not final become `Expired` (a new version);
/// final ones and recently active ones are left alone; an expired session
/// takes no appends.
pub async fn expire_idle_sessions(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    for id in ["a", "b", "c", "resolved"] {
        ok(
            s.sessions.create_session(id, json!({"id": id})).await,
            "create_session",
        );
    }
    ok(
        s.sessions.append_log("b", entry("hello")).await,
        "append_log",
    );
    ok(
        s.sessions
            .set_session_state("resolved", SessionState::Resolved, None)
            .await,
        "set_session_state",
    );
    time.tick().await;
    let sweep = expire(&s, &SessionRetention::idle_for(HOUR).batch(1)).await;
    assert_eq!(
        (sweep.examined, sweep.affected),
        (4, 0),
        "nothing is idle for an hour yet"
    );
    let sweep = expire(
        &s,
        &SessionRetention::idle_for(std::time::Duration::ZERO).batch(2),
    )
    .await;
    assert_eq!(sweep.affected, 3, "the three open sessions expire");
    for id in ["a", "b", "c"] {
        let session = ok(s.sessions.load_session(id).await, "load_session");
        let session = session.unwrap_or_else(|| panic!("session {id} vanished on expiry"));
        assert_eq!(session.state, SessionState::Expired, "session {id}");
        assert_eq!(
            session.version, 2,
            "expiry is a new version of session {id}"
        );
    }
    assert_eq!(state(&s, "resolved").await, Some(SessionState::Resolved));
    assert_eq!(
        ok(s.sessions.read_log("b", None, 10).await, "read_log").len(),
        1,
        "expiry keeps the log"
    );
    expect_kind(
        s.sessions.append_log("a", entry("late")).await,
        ErrorKind::Conflict,
        "append_log to an expired session",
    );
}

/// A log append is activity: a session whose log grew recently is not idle.
pub async fn log_activity_defers_expiry(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    ok(
        s.sessions.create_session("busy", json!(null)).await,
        "create_session",
    );
    ok(
        s.sessions.create_session("quiet", json!(null)).await,
        "create_session",
    );
    time.pass(std::time::Duration::from_millis(1_500)).await;
    let started = time.start();
    ok(
        s.sessions.append_log("busy", entry("still here")).await,
        "append_log",
    );
    let idle = std::time::Duration::from_millis(1_000);
    let sweep = expire(&s, &SessionRetention::idle_for(idle)).await;
    if !time.within(started, idle, "log_activity_defers_expiry") {
        return;
    }
    assert_eq!(
        sweep.affected, 1,
        "only the quiet session was idle for a second"
    );
    assert_eq!(state(&s, "busy").await, Some(SessionState::Open));
    assert_eq!(state(&s, "quiet").await, Some(SessionState::Expired));
}

/// `prune_sessions` deletes idle sessions in the policy's states (by
/// default `Expired`) with their logs, and nothing else.
pub async fn prune_expired_sessions(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    for id in ["old", "open", "done"] {
        ok(
            s.sessions.create_session(id, json!(null)).await,
            "create_session",
        );
        ok(s.sessions.append_log(id, entry("one")).await, "append_log");
        ok(s.sessions.append_log(id, entry("two")).await, "append_log");
    }
    ok(
        s.sessions
            .set_session_state("old", SessionState::Expired, None)
            .await,
        "expire",
    );
    ok(
        s.sessions
            .set_session_state("done", SessionState::Resolved, None)
            .await,
        "resolve",
    );
    time.tick().await;
    let sweep = prune(&s, &SessionRetention::idle_for(HOUR)).await;
    assert_eq!(sweep.affected, 0, "nothing idle for an hour");
    let sweep = prune(
        &s,
        &SessionRetention::idle_for(std::time::Duration::ZERO).batch(1),
    )
    .await;
    assert_eq!(
        (sweep.affected, sweep.removed),
        (1, 2),
        "the expired session and its two entries"
    );
    assert_eq!(state(&s, "old").await, None);
    expect_kind(
        s.sessions.read_log("old", None, 10).await,
        ErrorKind::NotFound,
        "the pruned log",
    );
    assert_eq!(state(&s, "open").await, Some(SessionState::Open));
    let policy =
        SessionRetention::idle_for(std::time::Duration::ZERO).state(SessionState::Resolved);
    assert_eq!(
        prune(&s, &policy).await.affected,
        1,
        "resolved sessions when asked"
    );
    assert_eq!(state(&s, "done").await, None);
    // A session created again under a pruned id starts empty.
    ok(
        s.sessions.create_session("old", json!(null)).await,
        "create_session again",
    );
    assert!(ok(s.sessions.read_log("old", None, 10).await, "read_log").is_empty());
    let stats = ok(s.lifecycle.stats().await, "stats");
    assert_eq!(
        (stats.sessions, stats.log_entries),
        (2, 2),
        "no log entry outlives its session"
    );
}
