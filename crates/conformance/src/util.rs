//! Helpers shared by the checks: opening, asserting error kinds, hostile
//! inputs, racing tasks, and state snapshots for "nothing changed".

use std::fmt::{Debug, Write as _};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use stowage_core::validate::{MAX_JSON_BYTES, MAX_PAGE, MAX_TEXT_BYTES};
use stowage_core::{
    AgentKey, Digest, Error, ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, Result,
    RunFilter, RunMetadata, SigningKey, Stores, Supersession, SupersessionDraft, SupersessionKind,
    Timestamp,
};
use tokio::sync::Barrier;

use crate::harness::Harness;

/// Opens a fresh store, failing the check when the harness cannot.
pub(crate) async fn open(h: &dyn Harness) -> Stores {
    match h.open().await {
        Ok(stores) => stores,
        Err(e) => panic!("harness: opening a fresh store failed: {e}"),
    }
}

/// A `Debug` rendering cut to a readable length.
pub(crate) fn short_debug<T: Debug>(value: &T) -> String {
    let mut s = format!("{value:?}");
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Unwraps `Ok`, or fails saying which call and rule broke.
#[track_caller]
pub(crate) fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: expected Ok, got {} error: {e}", e.kind()),
    }
}

/// Expects an error of `kind`, or fails saying which call and rule broke.
#[track_caller]
pub(crate) fn expect_kind<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match result {
        Ok(v) => panic!("{what}: expected {kind}, got Ok({})", short_debug(&v)),
        Err(e) if e.kind() == kind => e,
        Err(e) => panic!("{what}: expected {kind}, got {} error: {e}", e.kind()),
    }
}

/// Identifiers that are valid and must round-trip and stay isolated: path
/// and key separators, glob characters, emoji, right-to-left text, limits.
pub(crate) fn tricky_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "a",
        "a:b",
        "a/b",
        "a/",
        "/a",
        "a:",
        "ab",
        "A",
        "a b",
        " a",
        "a ",
        "{a}",
        "a{b}c",
        "..",
        "../a",
        "a/../b",
        "a\\b",
        "a%2Fb",
        "*",
        "a?[b]",
        "'\"",
        "🚀",
        "a🚀b",
        "שלום עולם",
        "\u{202e}abc",
        "a\u{200b}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    ids.push("x".repeat(256));
    ids.push("🚀".repeat(64));
    ids
}

/// Identifiers that break a rule, with the rule they break.
pub(crate) fn invalid_ids() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        ("x".repeat(257), "257 bytes"),
        ("🚀".repeat(65), "260 bytes of emoji"),
        ("a\0b".to_owned(), "contains \\0"),
        ("\0".to_owned(), "only \\0"),
        ("a\u{7f}".to_owned(), "contains DEL U+007F"),
        ("a\nb".to_owned(), "contains a newline"),
        ("a\tb".to_owned(), "contains a tab"),
        ("\u{1b}[31mred".to_owned(), "contains ESC"),
        ("a\u{85}".to_owned(), "contains the C1 control U+0085"),
    ]
}

/// A JSON value larger than 1 MiB once serialised.
pub(crate) fn oversized_json() -> Value {
    Value::String("x".repeat(MAX_JSON_BYTES + 1))
}

/// A JSON object larger than 1 MiB once serialised.
pub(crate) fn oversized_object() -> Value {
    json!({ "big": "x".repeat(MAX_JSON_BYTES + 1) })
}

/// Free text one byte over the 4 KiB limit.
pub(crate) fn oversized_text() -> String {
    "r".repeat(MAX_TEXT_BYTES + 1)
}

/// Run metadata for `agent`.
pub(crate) fn meta(agent: &str) -> RunMetadata {
    RunMetadata::new(agent)
}

/// A run event of `kind` with a small payload.
pub(crate) fn event(kind: &str, n: u64) -> NewEvent {
    NewEvent::new(kind, json!({ "n": n }))
}

/// An incoming session log entry with `payload`.
pub(crate) fn entry(payload: impl Into<Bytes>) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "user", "text", payload)
}

/// A log entry carrying an idempotency key.
pub(crate) fn keyed_entry(payload: impl Into<Bytes>, key: &str) -> NewLogEntry {
    let mut e = entry(payload);
    e.idempotency_key = Some(key.to_owned());
    e
}

/// Release metadata with `label`.
pub(crate) fn rmeta(label: &str) -> ReleaseMetadata {
    ReleaseMetadata::new(label, "ci")
}

/// A spec digest named `n`.
pub(crate) fn spec(n: u64) -> Digest {
    Digest::of(format!("spec-{n}").as_bytes())
}

/// An assertion hash named `n`.
pub(crate) fn assertion(n: u64) -> Digest {
    Digest::of(format!("assertion-{n}").as_bytes())
}

/// A deterministic agent signing key.
pub(crate) fn signer(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n.wrapping_add(1); 32])
}

/// A signed supersession of `target` at `ms`.
pub(crate) fn superseding(
    key: &SigningKey,
    target: Digest,
    replacement: Option<Digest>,
    ms: u64,
) -> Supersession {
    Supersession::sign(key, draft(target, replacement, ms))
}

/// An unsigned draft of a supersession of `target` at `ms`.
pub(crate) fn draft(target: Digest, replacement: Option<Digest>, ms: u64) -> SupersessionDraft {
    let kind = if replacement.is_some() {
        SupersessionKind::Correction
    } else {
        SupersessionKind::Invalidate
    };
    let reason = format!("reason at {ms}");
    SupersessionDraft::new(
        target,
        replacement,
        kind,
        reason,
        Timestamp::from_millis(ms),
    )
}

/// Runs `n` copies of `task(i)` on the runtime at once (released together by
/// a barrier) and returns their outputs in task order. A panic in any task
/// fails the check.
pub(crate) async fn race<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let fut = task(i);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for handle in handles {
        match handle.await {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a racing task was cancelled: {e}"),
        }
    }
    out
}

/// Everything a reader can observe in the five stores, rendered as text, so
/// that "an invalid call changed nothing" is one comparison. Supersessions
/// have no listing, so they are observed through `agents` and `targets`.
pub(crate) async fn snapshot(s: &Stores, agents: &[AgentKey], targets: &[Digest]) -> String {
    let mut out = String::new();
    let blobs = ok(s.cas.list(None, MAX_PAGE).await, "snapshot: cas.list");
    let _ = writeln!(out, "blobs {blobs:?}");
    let runs = ok(
        s.runs
            .list_runs(&RunFilter::default(), None, MAX_PAGE)
            .await,
        "snapshot: list_runs",
    );
    for run in runs {
        let events = ok(
            s.runs.read_events(run.id, None, MAX_PAGE).await,
            "snapshot: read_events",
        );
        let _ = writeln!(out, "run {run:?} events {events:?}");
    }
    let names = ok(
        s.releases.list_names(None, MAX_PAGE).await,
        "snapshot: list_names",
    );
    for name in names {
        let history = ok(
            s.releases.history(&name, None, MAX_PAGE).await,
            "snapshot: history",
        );
        let _ = writeln!(out, "release {name:?} {history:?}");
    }
    let sessions = ok(
        s.sessions.list_sessions(None, MAX_PAGE).await,
        "snapshot: list_sessions",
    );
    for session in sessions {
        let log = ok(
            s.sessions.read_log(&session.id, None, MAX_PAGE).await,
            "snapshot: read_log",
        );
        let _ = writeln!(out, "session {session:?} log {log:?}");
    }
    for agent in agents {
        let records = ok(
            s.supersessions
                .by_agent(agent, Timestamp::ZERO, None, None, MAX_PAGE)
                .await,
            "snapshot: by_agent",
        );
        let _ = writeln!(out, "agent {agent} {records:?}");
    }
    for target in targets {
        let record = ok(s.supersessions.get(target).await, "snapshot: get");
        let _ = writeln!(out, "target {target} {record:?}");
    }
    out
}

/// Fails unless `after` equals `before`, naming the call that changed state
/// and the first line that differs.
#[track_caller]
pub(crate) fn assert_unchanged(before: &str, after: &str, what: &str) {
    if before == after {
        return;
    }
    let mut b = before.lines();
    let mut a = after.lines();
    loop {
        match (b.next(), a.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => panic!(
                "{what} was rejected but changed stored state (SPEC §2: invalid input changes nothing):\nbefore: {}\nafter:  {}",
                short_debug(&x),
                short_debug(&y)
            ),
        }
    }
}

/// Prints why a check does not apply to this backend.
pub(crate) fn skipped(check: &str, why: impl std::fmt::Display) {
    println!("skipped: {check}: {why}");
}
