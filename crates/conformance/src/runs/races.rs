//! Runs under concurrency: many appenders, racing terminal transitions.

use std::collections::BTreeSet;

use serde_json::json;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, NewEvent, RunStatus, RunSummary};

use crate::harness::Harness;
use crate::util::{event, meta, ok, open, race, spec};

/// Tasks and appends per task in the concurrency checks.
const TASKS: usize = 32;
const PER_TASK: usize = 50;

/// 32 tasks × 50 appends to one run: seqs unique and gap-free, nothing lost, the chain verifies.
pub async fn concurrent_appends(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let runs = s.runs.clone();
    let results = race(TASKS, |t| {
        let runs = runs.clone();
        async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                let e = NewEvent::new("step", json!({"task": t, "i": i}));
                seqs.push(runs.append_event(id, e).await.map(|e| e.seq));
            }
            seqs
        }
    })
    .await;
    let mut seen = BTreeSet::new();
    for seq in results.into_iter().flatten() {
        let seq = ok(seq, "concurrent append_event");
        assert!(
            seen.insert(seq),
            "seq {seq} was handed out twice under concurrency"
        );
    }
    let total = (TASKS * PER_TASK) as u64;
    assert_eq!(
        seen,
        (0..total).collect::<BTreeSet<_>>(),
        "seqs must be gap-free under concurrency"
    );
    let events = ok(s.runs.read_events(id, None, MAX_PAGE).await, "read_events");
    assert_eq!(events.len() as u64, total, "no event lost");
    assert!(
        events.iter().map(|e| e.seq).eq(0..total),
        "read_events must return seqs 0..{total} in numeric order (seq keys must sort numerically, e.g. past 255 and 999)"
    );
    let mut payloads = BTreeSet::new();
    for e in &events {
        payloads.insert((e.payload["task"].as_u64(), e.payload["i"].as_u64()));
    }
    assert_eq!(
        payloads.len() as u64,
        total,
        "every appended payload stored exactly once"
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        total,
        "event_count"
    );
    assert_eq!(
        ok(s.runs.verify_run(id).await, "verify_run").len,
        total,
        "chain verifies after concurrent appends"
    );
}

/// 16 tasks racing to finish one run: exactly one `Ok`, the rest `Conflict`; the winner's summary is stored.
pub async fn racing_finish_one_winner(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let runs = s.runs.clone();
    let statuses = [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];
    let results = race(16, |t| {
        let runs = runs.clone();
        let status = statuses[t % 3];
        async move {
            runs.finish_run(id, status, RunSummary::new(format!("task {t}")))
                .await
        }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(run) => winners.push(run),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "losers of a finish race get Conflict, got {e}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 racing terminal transitions must win"
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run"),
        winners[0],
        "the stored record is the winner's"
    );
}

/// Appends racing a terminal transition: every `Ok` append is in the log, the rest `Conflict`.
pub async fn appends_racing_finish(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let runs = s.runs.clone();
    let results = race(17, |t| {
        let runs = runs.clone();
        async move {
            if t == 8 {
                tokio::task::yield_now().await;
                return vec![runs
                    .complete_run(id, RunSummary::new("stop"))
                    .await
                    .map(|_| u64::MAX)];
            }
            let mut out = Vec::new();
            for i in 0..20 {
                out.push(runs.append_event(id, event("k", i)).await.map(|e| e.seq));
            }
            out
        }
    })
    .await;
    let mut appended = BTreeSet::new();
    for r in results.into_iter().flatten() {
        match r {
            Ok(u64::MAX) => {}
            Ok(seq) => assert!(appended.insert(seq), "seq {seq} handed out twice"),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "append after completion: {e}"
            ),
        }
    }
    let run = ok(s.runs.get_run(id).await, "get_run");
    assert_eq!(run.status, RunStatus::Completed, "the run completed");
    assert_eq!(
        run.event_count,
        appended.len() as u64,
        "every acknowledged append, and only those, is stored"
    );
    assert_eq!(
        appended,
        (0..run.event_count).collect(),
        "acknowledged seqs are gap-free"
    );
    ok(s.runs.verify_run(id).await, "verify_run");
}

/// 16 tasks with `expected_seq = 0`: exactly one appends, the rest `Conflict`.
pub async fn racing_compare_and_append(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let runs = s.runs.clone();
    let results = race(16, |t| {
        let runs = runs.clone();
        async move {
            let mut e = event("k", t as u64);
            e.expected_seq = Some(0);
            runs.append_event(id, e).await
        }
    })
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "compare-and-append losers get Conflict: {e}"
            );
        }
    }
    assert_eq!(
        wins, 1,
        "exactly one compare-and-append with expected_seq 0 must win"
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        1,
        "one event stored"
    );
}

/// 16 tasks appending with the same idempotency key: all get the one original event.
pub async fn racing_idempotent_appends(h: &dyn Harness) {
    let s = open(h).await;
    let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let runs = s.runs.clone();
    let results = race(16, |_| {
        let runs = runs.clone();
        async move {
            let mut e = event("k", 0);
            e.idempotency_key = Some("same".into());
            runs.append_event(id, e).await
        }
    })
    .await;
    let events: Vec<_> = results
        .into_iter()
        .map(|r| ok(r, "racing idempotent append"))
        .collect();
    assert!(
        events.iter().all(|e| *e == events[0]),
        "every racing retry returns the same original event"
    );
    assert_eq!(
        ok(s.runs.get_run(id).await, "get_run").event_count,
        1,
        "the event is stored once"
    );
}
