//! Run rules that every backend must apply the same way: a reused
//! idempotency key with other content, and a repeated run id.

use std::sync::Arc;

use serde_json::json;
use stowage_core::{
    Error, ErrorKind, IdGenerator, NewEvent, RunFilter, RunId, StoreEnv, Timestamp,
};

use crate::harness::Harness;
use crate::util::{event, expect_kind, meta, ok, open, skipped, spec};

/// A reused idempotency key with other content (kind, payload, or a
/// timestamp the caller gave) is `Conflict` naming the key and the run, and
/// stores nothing; the same content returns the original (also when the
/// retry leaves the timestamp to the store, or after the run finished).
pub async fn idempotency_key_other_content_conflict(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let mut e = NewEvent::new("tool_call", json!({"b": 1, "a": [1, 2]}));
    e.idempotency_key = Some("msg-1".into());
    e.timestamp = Some(Timestamp::from_millis(1_000));
    let first = ok(s.runs.append_event(id, e.clone()).await, "first append");

    // The same content: payload keys in another order are the same JSON.
    let mut same = e.clone();
    same.payload = json!({"a": [1, 2], "b": 1});
    let again = ok(s.runs.append_event(id, same).await, "identical retry");
    assert_eq!(again, first, "an identical retry returns the original");

    let mut changed: Vec<(&str, NewEvent)> = Vec::new();
    let mut other = e.clone();
    other.payload = json!({"b": 2, "a": [1, 2]});
    changed.push(("another payload", other));
    let mut other = e.clone();
    other.kind = "other_kind".into();
    changed.push(("another kind", other));
    let mut other = e.clone();
    other.timestamp = Some(Timestamp::from_millis(2_000));
    changed.push(("another timestamp", other));
    for (what, new) in changed {
        let err = expect_kind(
            s.runs.append_event(id, new).await,
            ErrorKind::Conflict,
            &format!("a reused idempotency key with {what}"),
        );
        for needle in ["msg-1", &id.to_string()] {
            assert!(
                err.message().contains(needle),
                "the Conflict for {what} names {needle:?}: {err}"
            );
        }
    }
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        1,
        "nothing stored by the refused retries"
    );

    // A retry that leaves the timestamp to the store matches any stored time.
    let mut untimed = e.clone();
    untimed.timestamp = None;
    assert_eq!(
        ok(
            s.runs.append_event(id, untimed).await,
            "retry without a timestamp"
        ),
        first,
        "a timestamp the retry does not give is not compared"
    );
    // An append that took the store's clock, retried with that very time.
    let mut clocked = NewEvent::new("step", json!({"n": 1}));
    clocked.idempotency_key = Some("msg-2".into());
    let second = ok(s.runs.append_event(id, clocked.clone()).await, "append");
    clocked.timestamp = Some(second.timestamp);
    assert_eq!(
        ok(
            s.runs.append_event(id, clocked).await,
            "retry with the stored time"
        ),
        second,
        "the stored time matches"
    );

    // After the run ended: the same content returns the original, other content is Conflict.
    ok(
        s.runs
            .complete_run(id, stowage_core::RunSummary::new("done"))
            .await,
        "complete_run",
    );
    assert_eq!(
        ok(
            s.runs.append_event(id, e.clone()).await,
            "retry after completion"
        ),
        first
    );
    let mut late = e;
    late.payload = json!({"late": true});
    expect_kind(
        s.runs.append_event(id, late).await,
        ErrorKind::Conflict,
        "a reused key with other content after completion",
    );
    ok(s.runs.verify_run(id).await, "verify_run");
}

/// Hands out the same run id every time.
#[derive(Debug)]
struct RepeatingIds(RunId);

impl IdGenerator for RepeatingIds {
    fn new_run_id(&self, _now: Timestamp) -> RunId {
        self.0
    }
}

/// An id generator that repeats an id: the second `create_run` is
/// `AlreadyExists` naming the id, and the first run is untouched.
pub async fn repeated_run_id_already_exists(h: &dyn Harness) {
    const CHECK: &str = "runs::repeated_run_id_already_exists";
    let repeated = RunId::new_v7(Timestamp::from_millis(1_700_000_000_000), 42);
    let env = StoreEnv::default().with_ids(Arc::new(RepeatingIds(repeated)));
    let s = match h.open_with(env).await {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            skipped(
                CHECK,
                format!("the harness cannot inject an id generator: {e}"),
            );
            return;
        }
        Err(e) => panic!("harness: open_with failed: {e}"),
    };
    let id = ok(
        s.runs.create_run(spec(1), meta("first")).await,
        "first create_run",
    );
    assert_eq!(id, repeated, "the store uses the injected id generator");
    ok(s.runs.append_event(id, event("step", 0)).await, "append");
    for attempt in 0..3 {
        let err: Error = expect_kind(
            s.runs.create_run(spec(2), meta("second")).await,
            ErrorKind::AlreadyExists,
            &format!("create_run #{attempt} with a repeated id"),
        );
        assert!(
            err.message().contains(&id.to_string()),
            "the error names the run id: {err}"
        );
    }
    let run = ok(s.runs.get_run(id).await, "get_run");
    assert_eq!(
        (
            run.metadata.agent_name.as_str(),
            run.spec_digest,
            run.event_count
        ),
        ("first", spec(1), 1),
        "the first run is untouched"
    );
    let listed = ok(
        s.runs.list_runs(&RunFilter::default(), None, 10).await,
        "list_runs",
    );
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![id],
        "one run listed once"
    );
    let by_agent = RunFilter::all().agent("second");
    assert!(
        ok(s.runs.list_runs(&by_agent, None, 10).await, "list_runs").is_empty(),
        "the refused run is not listed"
    );
}
