//! Hostile structure at the exact edges of the limits (SPEC §2): JSON nested
//! one level deeper than `MAX_JSON_DEPTH`, and identifiers of exactly
//! `MAX_IDENTIFIER_BYTES` and one byte more in every identifier field, with
//! multi-byte characters at the edge.

use serde_json::{json, Map, Value};
use stowage_core::validate::{MAX_IDENTIFIER_BYTES, MAX_JSON_DEPTH};
use stowage_core::{ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunSummary};

mod calls;
mod json;

pub use calls::*;
pub use json::*;

use crate::harness::Harness;
use crate::util::{assert_unchanged, expect_kind, meta, ok, open, rmeta, snapshot, spec};

/// A JSON object nested `depth` levels of arrays and objects deep,
/// alternating, with an object outermost (so it is valid as run tags).
fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for i in 0..depth {
        let level_from_outside = depth - 1 - i;
        value = if level_from_outside.is_multiple_of(2) {
            let mut map = Map::new();
            map.insert(format!("l{level_from_outside}"), value);
            Value::Object(map)
        } else {
            Value::Array(vec![json!(i), value])
        };
    }
    value
}

/// JSON nested 65 deep (event payload, session data on create and save, run tags, summary output) is `InvalidInput` and changes nothing; 64 deep is stored and read back exactly.
pub async fn deep_json_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    ok(
        s.sessions.create_session("s", json!({})).await,
        "create_session",
    );
    let too_deep = nested(MAX_JSON_DEPTH + 1);
    let before = snapshot(&s, &[], &[]).await;
    let what = format!("JSON nested {} levels deep", MAX_JSON_DEPTH + 1);
    expect_kind(
        s.runs
            .append_event(run, NewEvent::new("k", too_deep.clone()))
            .await,
        ErrorKind::InvalidInput,
        &format!("append_event with a payload of {what}"),
    );
    expect_kind(
        s.sessions.create_session("deep", too_deep.clone()).await,
        ErrorKind::InvalidInput,
        &format!("create_session with data of {what}"),
    );
    expect_kind(
        s.sessions.save_session("s", too_deep.clone(), None).await,
        ErrorKind::InvalidInput,
        &format!("save_session with data of {what}"),
    );
    let mut m = meta("b");
    m.tags = too_deep.clone();
    expect_kind(
        s.runs.create_run(spec(2), m).await,
        ErrorKind::InvalidInput,
        &format!("create_run with tags of {what}"),
    );
    let mut summary = RunSummary::new("done");
    summary.output = too_deep;
    expect_kind(
        s.runs.complete_run(run, summary).await,
        ErrorKind::InvalidInput,
        &format!("complete_run with an output of {what}"),
    );
    assert_unchanged(&before, &snapshot(&s, &[], &[]).await, &what);

    let deepest = nested(MAX_JSON_DEPTH);
    let what = format!("JSON nested exactly {MAX_JSON_DEPTH} levels deep");
    let e = ok(
        s.runs
            .append_event(run, NewEvent::new("k", deepest.clone()))
            .await,
        &format!("append_event with a payload of {what}"),
    );
    let events = ok(s.runs.read_events(run, None, 10).await, "read_events");
    assert!(
        events.len() == 1 && events.first().map(|e| &e.payload) == Some(&deepest),
        "a payload of {what} must read back exactly"
    );
    assert_eq!(e.payload, deepest, "append_event returns the payload given");
    ok(
        s.sessions.create_session("deep", deepest.clone()).await,
        &format!("create_session with data of {what}"),
    );
    let loaded = ok(s.sessions.load_session("deep").await, "load_session");
    assert!(
        loaded.map(|x| x.data) == Some(deepest.clone()),
        "session data of {what} must load back exactly"
    );
    ok(
        s.sessions.save_session("s", deepest.clone(), Some(1)).await,
        &format!("save_session with data of {what}"),
    );
    let loaded = ok(s.sessions.load_session("s").await, "load_session");
    assert!(
        loaded.map(|x| x.data) == Some(deepest.clone()),
        "saved session data of {what} must load back exactly"
    );
    let mut m = meta("b");
    m.tags = deepest.clone();
    let tagged = ok(
        s.runs.create_run(spec(2), m).await,
        &format!("create_run with tags of {what}"),
    );
    let got = ok(s.runs.get_run(tagged).await, "get_run");
    assert_eq!(
        got.metadata.tags, deepest,
        "run tags of {what} must read back exactly"
    );
    let mut summary = RunSummary::new("done");
    summary.output = deepest.clone();
    ok(
        s.runs.complete_run(run, summary).await,
        &format!("complete_run with an output of {what}"),
    );
    let got = ok(s.runs.get_run(run).await, "get_run");
    assert!(
        got.summary.map(|x| x.output) == Some(deepest),
        "a summary output of {what} must read back exactly"
    );
}

/// Identifiers of exactly 256 bytes (ASCII, 64 × 4-byte emoji, 128 × 2-byte) are accepted and round-trip in every identifier field; 257 bytes (also with a multi-byte character at the edge) are `InvalidInput` and change nothing.
pub async fn identifier_length_edges(h: &dyn Harness) {
    let max = MAX_IDENTIFIER_BYTES;
    let fits = [
        "x".repeat(max),
        "🚀".repeat(max / 4),
        "é".repeat(max / 2),
        format!("a{}", "€".repeat((max - 1) / 3)),
    ];
    let too_long = [
        "x".repeat(max + 1),
        format!("{}x", "🚀".repeat(max / 4)),
        format!("x{}", "🚀".repeat(max / 4)),
        format!("{}x", "é".repeat(max / 2)),
    ];
    for id in &fits {
        assert_eq!(id.len(), max, "test data: {id:?} must be {max} bytes");
    }
    for id in &too_long {
        assert_eq!(
            id.len(),
            max + 1,
            "test data: {id:?} must be {max} + 1 bytes"
        );
    }

    let s = open(h).await;
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    ok(
        s.sessions.create_session("s", json!({})).await,
        "create_session",
    );
    for n in 0..2 {
        ok(
            s.releases.promote("r", spec(n), rmeta("v"), None).await,
            "promote",
        );
    }
    let before = snapshot(&s, &[], &[]).await;
    for (i, bad) in too_long.iter().enumerate() {
        let why = |field: &str| format!("{field} of 257 bytes (case {i})");
        let invalid = ErrorKind::InvalidInput;
        expect_kind(
            s.runs.create_run(spec(1), meta(bad)).await,
            invalid,
            &why("agent name"),
        );
        let mut m = meta("a");
        m.git_sha = Some(bad.clone());
        expect_kind(
            s.runs.create_run(spec(1), m).await,
            invalid,
            &why("git sha"),
        );
        expect_kind(
            s.runs.append_event(run, NewEvent::new(bad, json!(1))).await,
            invalid,
            &why("event kind"),
        );
        let mut e = NewEvent::new("k", json!(1));
        e.idempotency_key = Some(bad.clone());
        expect_kind(
            s.runs.append_event(run, e).await,
            invalid,
            &why("event idempotency key"),
        );
        expect_kind(
            s.sessions.create_session(bad, json!({})).await,
            invalid,
            &why("session id"),
        );
        for (field, entry) in log_entries(bad) {
            expect_kind(
                s.sessions.append_log("s", entry.clone()).await,
                invalid,
                &why(&format!("append_log {field}")),
            );
            expect_kind(
                s.sessions.replace_log("s", vec![entry], None).await,
                invalid,
                &why(&format!("replace_log {field}")),
            );
        }
        expect_kind(
            s.releases.promote(bad, spec(1), rmeta("v"), None).await,
            invalid,
            &why("release name"),
        );
        expect_kind(
            s.releases
                .promote("r", spec(1), ReleaseMetadata::new("v", bad.clone()), None)
                .await,
            invalid,
            &why("promote promoted_by"),
        );
        expect_kind(
            s.releases.rollback("r", bad).await,
            invalid,
            &why("rollback actor"),
        );
        expect_kind(
            s.releases.rollback_to("r", 0, bad).await,
            invalid,
            &why("rollback_to actor"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "identifiers of 257 bytes",
    );

    for (i, id) in fits.iter().enumerate() {
        let what = |field: &str| format!("{field} of exactly 256 bytes (case {i})");
        let mut m = meta(id);
        m.git_sha = Some(id.clone());
        let r = ok(s.runs.create_run(spec(1), m).await, &what("agent name"));
        let got = ok(s.runs.get_run(r).await, "get_run");
        assert_eq!(&got.metadata.agent_name, id, "{}", what("agent name"));
        assert_eq!(
            got.metadata.git_sha.as_ref(),
            Some(id),
            "{}",
            what("git sha")
        );
        let mut e = NewEvent::new(id.clone(), json!(1));
        e.idempotency_key = Some(id.clone());
        let first = ok(s.runs.append_event(r, e.clone()).await, &what("event kind"));
        let again = ok(s.runs.append_event(r, e).await, "retried append_event");
        assert_eq!(first, again, "{}", what("event idempotency key"));
        let events = ok(s.runs.read_events(r, None, 10).await, "read_events");
        assert_eq!(events, vec![first.clone()], "{}", what("event"));
        assert_eq!(&first.kind, id, "{}", what("event kind"));
        assert_eq!(first.idempotency_key.as_ref(), Some(id), "{}", what("key"));

        ok(
            s.sessions.create_session(id, json!({ "i": i })).await,
            &what("session id"),
        );
        let loaded = ok(s.sessions.load_session(id).await, "load_session");
        assert_eq!(loaded.map(|x| x.id).as_ref(), Some(id), "{}", what("id"));
        let mut entry = NewLogEntry::new(LogKind::Incoming, id.clone(), id.clone(), "p");
        entry.idempotency_key = Some(id.clone());
        let first = ok(s.sessions.append_log(id, entry.clone()).await, &what("log"));
        let again = ok(s.sessions.append_log(id, entry).await, "retried append_log");
        assert_eq!(first, again, "{}", what("log idempotency key"));
        let log = ok(s.sessions.read_log(id, None, 10).await, "read_log");
        assert_eq!(log, vec![first.clone()], "{}", what("log entry"));
        assert_eq!(&first.sender, id, "{}", what("log sender"));
        assert_eq!(&first.message_type, id, "{}", what("log message type"));

        for n in 0..2 {
            let m = ReleaseMetadata::new("v", id.clone());
            ok(
                s.releases.promote(id, spec(n), m, None).await,
                &what("release"),
            );
        }
        let back = ok(s.releases.rollback(id, id).await, &what("rollback actor"));
        assert_eq!(&back.metadata.promoted_by, id, "{}", what("rollback actor"));
        let to = ok(
            s.releases.rollback_to(id, 1, id).await,
            &what("rollback_to"),
        );
        assert_eq!(
            &to.metadata.promoted_by,
            id,
            "{}",
            what("rollback_to actor")
        );
        let current = ok(s.releases.current(id).await, "current");
        assert_eq!((&current.name, current.seq), (id, 3), "{}", what("name"));
    }
}

/// Log entries with `bad` in one identifier field each.
fn log_entries(bad: &str) -> Vec<(&'static str, NewLogEntry)> {
    let good = || NewLogEntry::new(LogKind::Incoming, "user", "text", "p");
    let mut sender = good();
    sender.sender = bad.to_owned();
    let mut message_type = good();
    message_type.message_type = bad.to_owned();
    let mut key = good();
    key.idempotency_key = Some(bad.to_owned());
    vec![
        ("sender", sender),
        ("message type", message_type),
        ("idempotency key", key),
    ]
}
