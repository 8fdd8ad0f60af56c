//! Run retention: `delete_run` and `prune_runs`.

use std::collections::BTreeSet;

use stowage_core::lifecycle::{IfRunning, RunRetention};
use stowage_core::validate::MAX_PAGE;
use stowage_core::{
    ErrorKind, NewEvent, RunFilter, RunId, RunStatus, RunSummary, Stores, Timestamp,
};

use super::{open_timed, sweep_all, Time};
use crate::harness::Harness;
use crate::util::{event, expect_kind, meta, ok, race, spec};

async fn run_with_events(s: &Stores, time: &Time, agent: &str, spec_n: u64, events: u64) -> RunId {
    // Run ids order runs by creation to the millisecond.
    time.tick().await;
    let id = ok(
        s.runs.create_run(spec(spec_n), meta(agent)).await,
        "create_run",
    );
    for n in 0..events {
        let e = event("step", n).with_idempotency_key(format!("k{n}"));
        ok(s.runs.append_event(id, e).await, "append_event");
    }
    id
}

async fn listed(s: &Stores, filter: &RunFilter) -> BTreeSet<RunId> {
    let runs = ok(s.runs.list_runs(filter, None, MAX_PAGE).await, "list_runs");
    runs.into_iter().map(|r| r.id).collect()
}

fn finished_at(ms: u64) -> RunSummary {
    let mut summary = RunSummary::new("done");
    summary.finished_at = Some(Timestamp::from_millis(ms));
    summary
}

/// `delete_run` removes the record, events, idempotency keys and index
/// entries at once, leaves other runs alone, and is idempotent.
pub async fn delete_run_removes_everything(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let gone = run_with_events(&s, &time, "a", 1, 5).await;
    let kept = run_with_events(&s, &time, "a", 1, 3).await;
    ok(
        s.runs.complete_run(gone, RunSummary::new("ok")).await,
        "complete_run",
    );
    assert!(ok(
        s.lifecycle.delete_run(gone, IfRunning::Keep).await,
        "delete_run"
    ));
    expect_kind(
        s.runs.get_run(gone).await,
        ErrorKind::NotFound,
        "get_run of a deleted run",
    );
    expect_kind(
        s.runs.read_events(gone, None, 10).await,
        ErrorKind::NotFound,
        "read_events of a deleted run",
    );
    expect_kind(
        s.runs.append_event(gone, event("late", 0)).await,
        ErrorKind::NotFound,
        "append_event to a deleted run",
    );
    for filter in [
        RunFilter::all(),
        RunFilter::all().agent("a"),
        RunFilter::all().spec(spec(1)),
    ] {
        assert_eq!(
            listed(&s, &filter).await,
            BTreeSet::from([kept]),
            "list_runs({filter:?}) must forget a deleted run (index entries removed)"
        );
    }
    assert!(
        !ok(
            s.lifecycle.delete_run(gone, IfRunning::Keep).await,
            "delete_run again"
        ),
        "deleting an absent run answers false"
    );
    let events = ok(
        s.runs.read_events(kept, None, 10).await,
        "read_events of the other run",
    );
    assert_eq!(events.len(), 3, "the other run keeps its events");
    // Its idempotency keys still answer the originals.
    let again = ok(
        s.runs
            .append_event(kept, event("step", 0).with_idempotency_key("k0"))
            .await,
        "keyed retry on the other run",
    );
    assert_eq!(again.seq, 0);
}

/// A running run is deleted only when the caller says so.
pub async fn delete_running_run_needs_consent(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let id = run_with_events(&s, &time, "a", 1, 2).await;
    expect_kind(
        s.lifecycle.delete_run(id, IfRunning::Keep).await,
        ErrorKind::Conflict,
        "delete_run of a running run without consent",
    );
    let run = ok(s.runs.get_run(id).await, "get_run after a refused delete");
    assert_eq!(
        (run.status, run.event_count),
        (RunStatus::Running, 2),
        "a refused delete changes nothing"
    );
    assert!(ok(
        s.lifecycle.delete_run(id, IfRunning::Delete).await,
        "delete_run with consent"
    ));
    expect_kind(
        s.runs.get_run(id).await,
        ErrorKind::NotFound,
        "get_run after delete",
    );
}

/// `prune_runs` deletes what the policy selects — by finish time, status
/// and agent, keeping the newest N per agent and running runs — across
/// batches of any size.
pub async fn prune_runs_by_policy(h: &dyn Harness) {
    // One store (a harness may hand out the same one again): each round
    // uses agents of its own.
    let (s, time) = open_timed(h).await;
    for batch in [1, 2, 1000] {
        let (agent_a, agent_b) = (format!("a{batch}"), format!("b{batch}"));
        let of = |agent: &str| RunFilter::all().agent(agent);
        // Agent a: runs finished at 1 000, 2 000, 3 000 ms, then one running.
        let mut a = Vec::new();
        for ms in [1_000, 2_000, 3_000] {
            let id = run_with_events(&s, &time, &agent_a, 1, 2).await;
            ok(
                s.runs.complete_run(id, finished_at(ms)).await,
                "complete_run",
            );
            a.push(id);
        }
        let a_running = run_with_events(&s, &time, &agent_a, 1, 1).await;
        // Agent b: one failed long ago, one completed long ago.
        let b_failed = run_with_events(&s, &time, &agent_b, 2, 1).await;
        ok(
            s.runs.fail_run(b_failed, finished_at(500)).await,
            "fail_run",
        );
        let b_done = run_with_events(&s, &time, &agent_b, 2, 1).await;
        ok(
            s.runs.complete_run(b_done, finished_at(500)).await,
            "complete_run",
        );

        // Failed runs only.
        let policy = RunRetention::finished()
            .status(RunStatus::Failed)
            .batch(batch);
        let sweep = sweep_all(|after| {
            let (s, policy) = (s.clone(), policy.clone());
            async move { s.lifecycle.prune_runs(&policy, after).await }
        })
        .await;
        assert_eq!(
            (sweep.affected, sweep.removed),
            (1, 1),
            "batch {batch}: one failed run with one event"
        );
        expect_kind(
            s.runs.get_run(b_failed).await,
            ErrorKind::NotFound,
            "the pruned failed run",
        );

        // Finished before 2 500 ms, keeping the newest run of each agent:
        // a's runs at 1 000 and 2 000 are not its newest (the running one
        // is), b's completed run is b's newest.
        let policy = RunRetention::finished()
            .finished_before(Timestamp::from_millis(2_500))
            .keep_newest_per_agent(1)
            .batch(batch);
        let sweep = sweep_all(|after| {
            let (s, policy) = (s.clone(), policy.clone());
            async move { s.lifecycle.prune_runs(&policy, after).await }
        })
        .await;
        assert_eq!(sweep.affected, 2, "batch {batch}: a's two old runs pruned");
        assert_eq!(sweep.removed, 4, "batch {batch}: their four events counted");
        assert_eq!(
            listed(&s, &of(&agent_a)).await,
            BTreeSet::from([a[2], a_running]),
            "batch {batch}"
        );
        assert_eq!(
            listed(&s, &of(&agent_b)).await,
            BTreeSet::from([b_done]),
            "batch {batch}"
        );

        // Everything of agent a, running runs included.
        let policy = RunRetention::finished()
            .agent(agent_a.clone())
            .including_running()
            .batch(batch);
        let sweep = sweep_all(|after| {
            let (s, policy) = (s.clone(), policy.clone());
            async move { s.lifecycle.prune_runs(&policy, after).await }
        })
        .await;
        assert_eq!(
            sweep.affected, 2,
            "batch {batch}: a's last two runs, one running"
        );
        assert!(listed(&s, &of(&agent_a)).await.is_empty());
        assert_eq!(listed(&s, &of(&agent_b)).await, BTreeSet::from([b_done]));
    }
    expect_kind(
        s.lifecycle
            .prune_runs(&RunRetention::finished().agent("bad\nname"), None)
            .await,
        ErrorKind::InvalidInput,
        "prune_runs with an invalid agent name",
    );
}

/// Pruning finished runs beside 8 live appenders: every append succeeds,
/// gap-free, and no live run is touched.
pub async fn prune_beside_live_appends(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    for _ in 0..20 {
        let id = run_with_events(&s, &time, "old", 1, 3).await;
        ok(
            s.runs.complete_run(id, RunSummary::new("old")).await,
            "complete_run",
        );
    }
    let live: Vec<RunId> = {
        let mut live = Vec::new();
        for _ in 0..8 {
            live.push(ok(
                s.runs.create_run(spec(2), meta("live")).await,
                "create_run",
            ));
        }
        live
    };
    let pruner = {
        let s = s.clone();
        tokio::spawn(async move {
            let policy = RunRetention::finished().batch(3);
            sweep_all(|after| {
                let (s, policy) = (s.clone(), policy.clone());
                async move { s.lifecycle.prune_runs(&policy, after).await }
            })
            .await
        })
    };
    let runs = s.runs.clone();
    let live_ids = live.clone();
    race(8, move |t| {
        let (runs, id) = (runs.clone(), live_ids[t]);
        async move {
            for n in 0..30 {
                let e = ok(
                    runs.append_event(id, NewEvent::new("step", serde_json::json!(n)))
                        .await,
                    "live append",
                );
                assert_eq!(e.seq, n, "live appends stay gap-free while pruning");
            }
        }
    })
    .await;
    let pruned = match pruner.await {
        Ok(sweep) => sweep,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    assert_eq!(pruned.affected, 20, "every finished run pruned");
    assert_eq!(
        listed(&s, &RunFilter::all()).await,
        live.iter().copied().collect()
    );
    for id in live {
        assert_eq!(ok(s.runs.get_run(id).await, "live run").event_count, 30);
    }
}

/// `delete_run` racing appends to the same run: afterwards the run is gone
/// whole (no events without a record), and every append either landed
/// before the delete or failed `NotFound`.
pub async fn delete_racing_appends(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let id = run_with_events(&s, &time, "a", 1, 1).await;
    let lifecycle = s.lifecycle.clone();
    let runs = s.runs.clone();
    let results = race(9, move |t| {
        let (runs, lifecycle) = (runs.clone(), lifecycle.clone());
        async move {
            if t == 0 {
                tokio::task::yield_now().await;
                return vec![lifecycle.delete_run(id, IfRunning::Delete).await.map(|_| 0)];
            }
            let mut out = Vec::new();
            for n in 0..20 {
                out.push(runs.append_event(id, event("step", n)).await.map(|e| e.seq));
            }
            out
        }
    })
    .await;
    for result in results.into_iter().flatten() {
        if let Err(e) = result {
            assert_eq!(
                e.kind(),
                ErrorKind::NotFound,
                "an append racing delete_run: {e}"
            );
        }
    }
    expect_kind(
        s.runs.get_run(id).await,
        ErrorKind::NotFound,
        "the deleted run",
    );
    expect_kind(
        s.runs.read_events(id, None, 10).await,
        ErrorKind::NotFound,
        "its events",
    );
    assert!(
        listed(&s, &RunFilter::all()).await.is_empty(),
        "no index entry left"
    );
    let stats = ok(s.lifecycle.stats().await, "stats");
    assert_eq!(
        (stats.runs, stats.run_events),
        (0, 0),
        "no event outlives its run"
    );
}

/// Listing and sweeping runs while others are deleted: a run deleted
/// between a read of its index entry and of its record is simply not
/// listed — never reported as damage (`Corrupted`) or `NotFound`.
pub async fn listing_beside_deletes(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(run_with_events(&s, &time, "a", 1, 2).await);
    }
    for id in &ids {
        ok(
            s.runs.complete_run(*id, RunSummary::new("done")).await,
            "complete_run",
        );
    }
    let ids = std::sync::Arc::new(ids);
    let stores = s.clone();
    let failures = race(6, move |t| {
        let (s, ids) = (stores.clone(), std::sync::Arc::clone(&ids));
        async move {
            let mut failures = Vec::new();
            if t < 2 {
                // Two deleters, each its half of the runs.
                for id in ids.iter().skip(t).step_by(2) {
                    if let Err(e) = s.lifecycle.delete_run(*id, IfRunning::Delete).await {
                        failures.push(format!("delete_run: {e}"));
                    }
                    tokio::task::yield_now().await;
                }
                return failures;
            }
            let by_agent = RunFilter::all().agent("a");
            let by_spec = RunFilter::all().spec(spec(1));
            for round in 0..40 {
                let filter = if round % 2 == 0 { &by_agent } else { &by_spec };
                if let Err(e) = s.runs.list_runs(filter, None, MAX_PAGE).await {
                    failures.push(format!("list_runs({filter:?}): {e}"));
                }
                if t == 5 {
                    let policy = RunRetention::finished()
                        .agent("a")
                        .keep_newest_per_agent(100);
                    if let Err(e) = s.lifecycle.prune_runs(&policy, None).await {
                        failures.push(format!("prune_runs keeping all: {e}"));
                    }
                }
                tokio::task::yield_now().await;
            }
            failures
        }
    })
    .await;
    let failures: Vec<String> = failures.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "reads beside delete_run failed: {failures:?}"
    );
    assert!(
        listed(&s, &RunFilter::all()).await.is_empty(),
        "every run deleted"
    );
}
