//! Run records: creation, lookup, listing, filters, the state machine.

use serde_json::json;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{
    Digest, ErrorKind, NewEvent, RunFilter, RunId, RunMetadata, RunStatus, RunSummary, Timestamp,
};

use crate::harness::Harness;
use crate::util::{
    assert_unchanged, event, expect_kind, invalid_ids, meta, ok, open, oversized_json,
    oversized_object, oversized_text, snapshot, spec, tricky_ids,
};

/// `create_run` then `get_run` returns the spec, metadata (tags, git sha) as given, `Running`; a run without events verifies.
pub async fn create_get_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let mut metadata = RunMetadata::new("planner");
    metadata.git_sha = Some("0a1b2c3".into());
    metadata.tags = json!({"env": "test", "nested": {"k": [1, 2.5, null, "ü"]}});
    let id = ok(
        s.runs.create_run(spec(1), metadata.clone()).await,
        "create_run",
    );
    assert_eq!(id.as_uuid().get_version_num(), 7, "run ids are UUID v7");
    let run = ok(s.runs.get_run(id).await, "get_run");
    assert_eq!(run.id, id, "run id");
    assert_eq!(run.spec_digest, spec(1), "spec digest round trip");
    assert_eq!(
        run.metadata, metadata,
        "run metadata must round-trip exactly"
    );
    assert_eq!(run.status, RunStatus::Running, "a new run is Running");
    assert_eq!(run.event_count, 0, "a new run has no events");
    assert_eq!(
        ok(
            s.runs.verify_run(id).await,
            "verify_run of a run without events"
        )
        .len,
        0,
        "a run without events verifies, empty"
    );
    assert!(
        run.finished_at.is_none() && run.summary.is_none(),
        "a new run has no end"
    );
    let other = ok(
        s.runs.create_run(spec(1), meta("planner")).await,
        "create_run",
    );
    assert_ne!(other, id, "each run gets a new id");
}

/// Every call on an unknown run is `NotFound` (an append with an expected seq too: `NotFound` before `Conflict`).
pub async fn unknown_run_not_found(h: &dyn Harness) {
    let s = open(h).await;
    ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let ghost = RunId::new_v7(Timestamp::from_millis(1_700_000_000_000), 42);
    let nf = ErrorKind::NotFound;
    expect_kind(s.runs.get_run(ghost).await, nf, "get_run of an unknown run");
    expect_kind(
        s.runs.append_event(ghost, event("k", 0)).await,
        nf,
        "append_event to an unknown run",
    );
    let mut stale = event("k", 0);
    stale.expected_seq = Some(3);
    expect_kind(
        s.runs.append_event(ghost, stale).await,
        nf,
        "append_event with an expected seq to an unknown run (NotFound before Conflict)",
    );
    expect_kind(
        s.runs.read_events(ghost, None, 10).await,
        nf,
        "read_events of an unknown run",
    );
    expect_kind(
        s.runs.complete_run(ghost, RunSummary::new("x")).await,
        nf,
        "complete_run of an unknown run",
    );
    expect_kind(
        s.runs.verify_run(ghost).await,
        nf,
        "verify_run of an unknown run",
    );
}

/// Terminal transitions store the status, the summary exactly and the caller's timestamp.
pub async fn summary_and_timestamps_stored_exactly(h: &dyn Harness) {
    let s = open(h).await;
    let finishers = [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];
    for (i, status) in finishers.into_iter().enumerate() {
        let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
        let mut summary = RunSummary::new(format!("ended {status}\nwith ü and 🚀"));
        summary.output = json!({"score": 0.75, "list": [1, "two"], "i": i});
        summary.finished_at = Some(Timestamp::from_millis(1_234_567_890_123 + i as u64));
        let returned = match status {
            RunStatus::Completed => s.runs.complete_run(id, summary.clone()).await,
            RunStatus::Failed => s.runs.fail_run(id, summary.clone()).await,
            _ => s.runs.cancel_run(id, summary.clone()).await,
        };
        let returned = ok(returned, "finishing a Running run");
        let run = ok(s.runs.get_run(id).await, "get_run");
        assert_eq!(run, returned, "finish returns the stored record");
        assert_eq!(run.status, status, "terminal status stored");
        assert_eq!(
            run.summary.as_ref(),
            Some(&summary),
            "summary stored exactly as given"
        );
        assert_eq!(
            run.finished_at, summary.finished_at,
            "caller's finished_at stored exactly"
        );
    }
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let run = ok(
        s.runs.complete_run(id, RunSummary::new("clock")).await,
        "complete_run",
    );
    assert!(
        run.finished_at.is_some(),
        "finished_at comes from the store clock when not given"
    );
    assert_eq!(
        run.summary.and_then(|x| x.finished_at),
        None,
        "the summary is stored as given"
    );
}

/// Appending to a terminal run is `Conflict` and stores nothing.
pub async fn append_to_terminal_conflict(h: &dyn Harness) {
    let s = open(h).await;
    for status in [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
        ok(s.runs.append_event(id, event("step", 0)).await, "append");
        ok(
            s.runs.finish_run(id, status, RunSummary::new("end")).await,
            "finish_run",
        );
        let err = expect_kind(
            s.runs.append_event(id, event("late", 1)).await,
            ErrorKind::Conflict,
            &format!("append_event to a {status} run"),
        );
        assert!(
            err.message().contains(&id.to_string()),
            "error messages name the entity (SPEC §2): {err}"
        );
        let run = ok(s.runs.get_run(id).await, "get_run");
        assert_eq!(run.event_count, 1, "a rejected append stores nothing");
        assert_eq!(
            ok(s.runs.read_events(id, None, 10).await, "read").len(),
            1,
            "events unchanged"
        );
    }
}

/// A second terminal transition is `Conflict` naming the run and leaves the record as the first one set it.
pub async fn second_terminal_transition_conflict(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let first = ok(
        s.runs.fail_run(id, RunSummary::new("first")).await,
        "fail_run",
    );
    for status in [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        let err = expect_kind(
            s.runs
                .finish_run(id, status, RunSummary::new("second"))
                .await,
            ErrorKind::Conflict,
            &format!("a second terminal transition (to {status})"),
        );
        assert!(
            err.message().contains(&id.to_string()),
            "the Conflict message names the run {id}: {err}"
        );
    }
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run"),
        first,
        "terminal runs are immutable"
    );
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let before = snapshot(&s, &[], &[]).await;
    expect_kind(
        s.runs
            .finish_run(id, RunStatus::Running, RunSummary::new("x"))
            .await,
        ErrorKind::InvalidInput,
        "finish_run into Running",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "finish_run into Running",
    );
}

/// `list_runs` is newest first (descending id), `limit` after ordering, exclusive `after`.
pub async fn list_newest_first_paginated(h: &dyn Harness) {
    let s = open(h).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(ok(
            s.runs.create_run(spec(i % 3), meta("a")).await,
            "create_run",
        ));
    }
    ids.sort_by(|a, b| b.cmp(a));
    let all: Vec<RunId> = ok(
        s.runs
            .list_runs(&RunFilter::default(), None, MAX_PAGE)
            .await,
        "list_runs",
    )
    .into_iter()
    .map(|r| r.id)
    .collect();
    assert_eq!(
        all, ids,
        "list_runs must be newest first (descending RunId)"
    );
    let top: Vec<RunId> = ok(
        s.runs.list_runs(&RunFilter::default(), None, 3).await,
        "list_runs",
    )
    .into_iter()
    .map(|r| r.id)
    .collect();
    assert_eq!(
        top,
        ids[..3],
        "limit 3 must give the 3 newest runs, not the 3 oldest"
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ok(
            s.runs.list_runs(&RunFilter::default(), after, 5).await,
            "list_runs page",
        );
        assert!(page.len() <= 5, "page longer than limit");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, ids, "pages joined by the exclusive `after` cursor");
}

/// Filters by spec digest, agent name and status, alone and combined.
pub async fn list_filters(h: &dyn Harness) {
    let s = open(h).await;
    let a1 = ok(s.runs.create_run(spec(1), meta("alpha")).await, "create");
    let a2 = ok(s.runs.create_run(spec(2), meta("alpha")).await, "create");
    let b1 = ok(s.runs.create_run(spec(1), meta("beta")).await, "create");
    ok(
        s.runs.complete_run(a2, RunSummary::new("done")).await,
        "complete",
    );
    let ids = |runs: Vec<stowage_core::Run>| {
        let mut v: Vec<RunId> = runs.into_iter().map(|r| r.id).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<RunId>| {
        v.sort();
        v
    };
    let by_spec = RunFilter::all().spec(spec(1));
    let by_agent = RunFilter::all().agent("alpha");
    let by_status = RunFilter::all().status(RunStatus::Running);
    let combined = RunFilter::all()
        .spec(spec(1))
        .agent("alpha")
        .status(RunStatus::Running);
    let none = RunFilter::all().spec(Digest::of(b"nope"));
    for (filter, expected) in [
        (by_spec, sorted(vec![a1, b1])),
        (by_agent, sorted(vec![a1, a2])),
        (by_status, sorted(vec![a1, b1])),
        (combined, vec![a1]),
        (none, vec![]),
    ] {
        let got = ids(ok(
            s.runs.list_runs(&filter, None, MAX_PAGE).await,
            "list_runs",
        ));
        assert_eq!(got, expected, "list_runs with filter {filter:?}");
    }
    // Pagination within a filter: one run per page, newest first.
    let filter = RunFilter::all().agent("alpha");
    let first = ok(s.runs.list_runs(&filter, None, 1).await, "list_runs page");
    let second = ok(
        s.runs
            .list_runs(&filter, first.last().map(|r| r.id), 1)
            .await,
        "list_runs page",
    );
    let paged: Vec<RunId> = first.iter().chain(&second).map(|r| r.id).collect();
    assert_eq!(
        paged,
        vec![a1.max(a2), a1.min(a2)],
        "filtered pages are newest first and joined by the `after` cursor"
    );
    // A malformed filter is bad input, not a filter that matches nothing.
    for (bad, why) in invalid_ids() {
        expect_kind(
            s.runs
                .list_runs(&RunFilter::all().agent(bad), None, 10)
                .await,
            ErrorKind::InvalidInput,
            &format!("list_runs filtered by an invalid agent name ({why})"),
        );
    }
}

/// Agent names that look alike (`a`, `a:b`, `a/b`, prefixes, tricky characters) filter apart and round-trip.
pub async fn agent_names_isolated(h: &dyn Harness) {
    let s = open(h).await;
    let names = tricky_ids();
    let mut created = Vec::new();
    for name in &names {
        let id = ok(
            s.runs.create_run(spec(1), meta(name)).await,
            &format!("create_run for agent {name:?}"),
        );
        created.push((name.clone(), id));
    }
    for (name, id) in &created {
        let filter = RunFilter::all().agent(name.clone());
        let got: Vec<RunId> = ok(s.runs.list_runs(&filter, None, MAX_PAGE).await, "list_runs")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            got,
            vec![*id],
            "agent filter {name:?} must match only its own run"
        );
        let run = ok(s.runs.get_run(*id).await, "get_run");
        assert_eq!(&run.metadata.agent_name, name, "agent name must round-trip");
    }
}

/// Invalid metadata (agent, git sha, tags not an object, tags over 1 MiB) is `InvalidInput` and creates nothing.
pub async fn hostile_metadata_rejected(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.runs.create_run(spec(1), meta("existing")).await,
        "create_run",
    );
    let before = snapshot(&s, &[], &[]).await;
    let mut cases: Vec<(RunMetadata, String)> = Vec::new();
    for (bad, why) in invalid_ids() {
        cases.push((meta(&bad), format!("agent name {why}")));
        let mut m = meta("a");
        m.git_sha = Some(bad);
        cases.push((m, format!("git sha {why}")));
    }
    for (tags, why) in [
        (json!([1, 2]), "an array"),
        (json!("s"), "a string"),
        (json!(null), "null"),
        (json!(3), "a number"),
        (oversized_object(), "over 1 MiB"),
    ] {
        let mut m = meta("a");
        m.tags = tags;
        cases.push((m, format!("tags {why}")));
    }
    for (m, why) in cases {
        expect_kind(
            s.runs.create_run(spec(1), m).await,
            ErrorKind::InvalidInput,
            &format!("create_run with {why}"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "create_run with hostile metadata",
    );
}

/// Invalid events (kind, idempotency key, payload over 1 MiB) and summaries are `InvalidInput` and change nothing.
pub async fn hostile_events_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    ok(s.runs.append_event(id, event("ok", 0)).await, "append");
    let before = snapshot(&s, &[], &[]).await;
    for (bad, why) in invalid_ids() {
        expect_kind(
            s.runs.append_event(id, event(&bad, 1)).await,
            ErrorKind::InvalidInput,
            &format!("event kind {why}"),
        );
        let mut e = event("k", 1);
        e.idempotency_key = Some(bad);
        expect_kind(
            s.runs.append_event(id, e).await,
            ErrorKind::InvalidInput,
            &format!("idempotency key {why}"),
        );
    }
    let big = NewEvent::new("k", oversized_json());
    expect_kind(
        s.runs.append_event(id, big).await,
        ErrorKind::InvalidInput,
        "event payload over 1 MiB",
    );
    let long = RunSummary::new(oversized_text());
    expect_kind(
        s.runs.complete_run(id, long).await,
        ErrorKind::InvalidInput,
        "summary message over 4 KiB",
    );
    let mut big_out = RunSummary::new("x");
    big_out.output = oversized_json();
    expect_kind(
        s.runs.fail_run(id, big_out).await,
        ErrorKind::InvalidInput,
        "summary output over 1 MiB",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "hostile events and summaries",
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").status,
        RunStatus::Running,
        "still Running"
    );
}
