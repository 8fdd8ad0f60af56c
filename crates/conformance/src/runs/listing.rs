//! `list_runs` order and cursors beyond what the id sort shows: creation
//! order within one millisecond, and a cursor whose run was deleted.

use stowage_core::lifecycle::IfRunning;
use stowage_core::{RunFilter, RunId, RunStatus, RunSummary};

use crate::harness::Harness;
use crate::util::{meta, ok, open, spec};

/// The ids of `list_runs(filter, after, limit)`.
async fn listed(
    s: &stowage_core::Stores,
    filter: &RunFilter,
    after: Option<RunId>,
    limit: usize,
) -> Vec<RunId> {
    ok(s.runs.list_runs(filter, after, limit).await, "list_runs")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// 40 runs created back to back (many in one millisecond) list in exactly the reverse of their creation order: run ids are time-ordered UUID v7s, monotonic within a millisecond.
pub async fn list_in_reverse_creation_order(h: &dyn Harness) {
    let s = open(h).await;
    let mut created = Vec::new();
    for _ in 0..40 {
        let id = ok(
            s.runs.create_run(spec(7), meta("order")).await,
            "create_run",
        );
        assert_eq!(id.as_uuid().get_version_num(), 7, "run ids are UUID v7");
        created.push(id);
    }
    created.reverse();
    assert_eq!(
        listed(&s, &RunFilter::all(), None, 100).await,
        created,
        "list_runs must be newest first: runs created back to back (in one millisecond too) list in reverse creation order"
    );
}

/// An `after` cursor naming a run deleted since is still a position: the next page holds the older runs, with and without filters.
pub async fn list_after_deleted_run(h: &dyn Harness) {
    let s = open(h).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = ok(
            s.runs.create_run(spec(3), meta("cursor")).await,
            "create_run",
        );
        ok(
            s.runs.complete_run(id, RunSummary::new("")).await,
            "complete_run",
        );
        ids.push(id);
    }
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    let cursor = newest_first[2];
    assert!(
        ok(
            s.lifecycle.delete_run(cursor, IfRunning::Keep).await,
            "delete_run"
        ),
        "delete_run of a finished run returns true"
    );
    for filter in [
        RunFilter::all(),
        RunFilter::all().agent("cursor"),
        RunFilter::all().spec(spec(3)),
        RunFilter::all().status(RunStatus::Completed),
    ] {
        assert_eq!(
            listed(&s, &filter, Some(cursor), 10).await,
            newest_first[3..],
            "list_runs({filter:?}) after a deleted run gives the runs older than it"
        );
    }
}
