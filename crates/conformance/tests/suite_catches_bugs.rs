//! The suite's own test: every check here must FAIL against a memory store
//! with one injected bug (see `mutants`), proving the checks can fail. The
//! unmodified memory backend passes the whole suite
//! (`crates/backends/tests/memory_conformance.rs`).

mod mutants;

use std::panic::{catch_unwind, AssertUnwindSafe};

use mutants::{Bug, MutantHarness};
use stowage_conformance as suite;

/// Runs `check` against a store with `bug` and fails unless the check fails.
macro_rules! catches {
    ($name:ident, $bug:expr, $($check:ident)::+) => {
        #[test]
        fn $name() {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                suite::__run(async {
                    let harness = MutantHarness::new($bug);
                    suite::$($check)::+(&harness).await;
                })
            }));
            assert!(
                outcome.is_err(),
                "{} passed against a store with bug {:?}",
                stringify!($($check)::+),
                $bug
            );
        }
    };
}

catches!(
    oldest_first_listing,
    Bug::RunsOldestFirst,
    runs::list_newest_first_paginated
);
catches!(
    swallowed_finish_conflict_raced,
    Bug::FinishSwallowsConflict,
    runs::racing_finish_one_winner
);
catches!(
    swallowed_finish_conflict,
    Bug::FinishSwallowsConflict,
    runs::second_terminal_transition_conflict
);
catches!(racy_append, Bug::RacyAppend, runs::concurrent_appends);
catches!(
    partial_write_on_invalid_input,
    Bug::AppendBeforeValidating,
    runs::hostile_events_rejected
);
catches!(
    partial_write_on_deep_json,
    Bug::AppendBeforeValidating,
    hostile::deep_json_rejected
);
catches!(
    truncated_session_ids_at_edge,
    Bug::SessionIdsNotValidated,
    hostile::identifier_length_edges
);
catches!(
    by_agent_limit_before_order,
    Bug::ByAgentLimitFirst,
    supersessions::by_agent_newest_first
);
catches!(
    by_agent_cursor_by_timestamp,
    Bug::ByAgentCursorByTimestamp,
    supersessions::by_agent_pages_one_timestamp
);
catches!(
    unvalidated_session_ids,
    Bug::SessionIdsNotValidated,
    sessions::hostile_input_rejected
);
catches!(
    ignored_log_keys,
    Bug::LogKeysIgnored,
    sessions::log_idempotency_key_returns_original
);
catches!(
    rollback_one_back,
    Bug::RollbackOneBack,
    releases::rollback_walks_back
);
catches!(
    rollback_one_back_after_rollback_to,
    Bug::RollbackOneBack,
    releases::rollback_to_edges
);
catches!(
    compare_and_promote_ignored_after_rollbacks,
    Bug::CompareAndSetIgnored,
    releases::compare_and_promote_after_rollbacks
);
catches!(
    clock_ignored,
    Bug::ClockIgnored,
    clock::store_times_from_injected_clock
);
catches!(
    json_numbers_through_f64,
    Bug::JsonNumbersThroughF64,
    hostile::json_edge_values_round_trip
);
catches!(
    tamper_not_detected,
    Bug::TamperDoesNothing,
    integrity::tampered_blob_corrupted
);
catches!(
    reopen_loses_data,
    Bug::ReopenLosesData,
    reopen::runs_survive
);

/// Runs the model-based test against `bug` with the default seed and a few
/// fixed others (each run is deterministic) and fails unless one catches it.
fn model_catches(bug: Bug) {
    let seeds = [suite::DEFAULT_MODEL_SEED, 1, 2, 3, 4, 5];
    let caught = seeds.into_iter().any(|seed| {
        catch_unwind(|| suite::__run_model_seeded(|| async move { MutantHarness::new(bug) }, seed))
            .is_err()
    });
    assert!(
        caught,
        "the model-based test passed against a store with bug {bug:?}"
    );
}

/// The model-based test finds a wrong `delete_session` result.
#[test]
fn model_catches_wrong_delete_result() {
    model_catches(Bug::DeleteAlwaysTrue);
}

/// The model-based test finds ignored log idempotency keys.
#[test]
fn model_catches_ignored_log_keys() {
    model_catches(Bug::LogKeysIgnored);
}

/// The model-based test finds a rollback that walks back the wrong way.
#[test]
fn model_catches_wrong_rollback() {
    model_catches(Bug::RollbackOneBack);
}

/// The model-based test finds data lost on reopen (durable backends).
#[test]
fn model_catches_data_lost_on_reopen() {
    model_catches(Bug::ReopenLosesData);
}

/// The model-based test finds compare-and-append and compare-and-promote
/// that ignore their expected seq.
#[test]
fn model_catches_ignored_compare_and_set() {
    model_catches(Bug::CompareAndSetIgnored);
}
