//! The one-line macro and the runners it expands to.

use std::future::Future;
use std::time::Duration;

/// How long one check may run before it is reported as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Generates one `#[test]` per conformance check (and the model-based test)
/// for a harness factory: a path to an `async fn() -> H` where
/// `H: `[`Harness`](crate::Harness). The factory is called once per test
/// and must return a fresh, isolated store.
///
/// The tests land in a module `conformance`, one submodule per store:
/// `conformance::cas::empty_blob`, `conformance::runs::concurrent_appends`,
/// …, `conformance::model_based`. Invoke it once per module.
///
/// `stowage_conformance::conformance_tests!(my_harness);` — see the
/// [crate docs](crate) for a complete example.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        #[doc(hidden)]
        async fn __stowage_conformance_harness() -> impl $crate::Harness {
            $factory().await
        }

        #[doc(hidden)]
        mod conformance {
            $crate::__conformance_module!(cas;
                put_get_round_trip, empty_blob, binary_content_and_sizes, same_bytes_twice,
                concurrent_identical_puts, missing_blob_not_found, delete_idempotent,
                list_ascending_paginated, stream_round_trip, oversized_blob_rejected,
                digest_parsing_hostile, failing_stream_reader_rejected,
            );
            $crate::__conformance_module!(runs;
                create_get_round_trip, unknown_run_not_found, summary_and_timestamps_stored_exactly,
                append_to_terminal_conflict, second_terminal_transition_conflict,
                list_newest_first_paginated, list_filters, agent_names_isolated,
                hostile_metadata_rejected, hostile_events_rejected, append_read_round_trip,
                read_events_paginated, expected_seq_conflict, idempotency_key_returns_original,
                idempotency_after_completion, tricky_kinds_and_keys_round_trip, runs_isolated,
                concurrent_appends, racing_finish_one_winner, appends_racing_finish,
                racing_compare_and_append, racing_idempotent_appends,
                idempotency_key_other_content_conflict, repeated_run_id_already_exists,
                extreme_timestamps_round_trip, idempotent_retry_with_stale_expected_seq,
                list_in_reverse_creation_order, list_after_deleted_run,
            );
            $crate::__conformance_module!(releases;
                promote_current_round_trip, unknown_name_not_found, rollback_walks_back,
                rollback_to_explicit, history_newest_first_paginated, names_listed_and_isolated,
                compare_and_promote, concurrent_promotes_all_kept, racing_compare_and_promote,
                hostile_input_rejected, rollback_to_edges, rollback_of_first_promote_conflict,
                compare_and_promote_after_rollbacks, racing_rollbacks_walk_back,
            );
            $crate::__conformance_module!(sessions;
                create_load_round_trip, create_duplicate_already_exists, unknown_session_not_found,
                save_versions, state_machine, list_ascending_paginated, delete_removes_log,
                tricky_ids_isolated, hostile_input_rejected, racing_create_one_winner,
                racing_save_one_winner, concurrent_saves_versions, log_append_read_round_trip,
                read_log_paginated, log_idempotency_key_returns_original, log_concurrent_appends,
                log_racing_idempotent_appends, log_hostile_entries_rejected, replace_semantics,
                replace_expected_next_seq, replace_forgets_old_keys, replace_races_appends,
                log_idempotency_key_other_content_conflict, log_closed_session_refuses_appends,
                log_appends_racing_close, log_racing_reused_keys, log_keys_isolated,
                delete_racing_log_appends,
            );
            $crate::__conformance_module!(supersessions;
                put_get_round_trip, put_idempotent_and_append_only, bad_signatures_rejected,
                invalid_records_rejected, cycles_rejected, racing_puts_one_stored,
                racing_identical_puts, racing_cycle_rejected, by_agent_newest_first,
                by_agent_inclusive_range_and_isolation, by_agent_hlc_ordering, resolve_chains,
                binary_targets_isolated, by_agent_pages_one_timestamp, by_agent_pages_with_hlc,
                by_agent_cursor_positions, by_agent_exact_while_agent_writes,
                list_ascending_paginated,
            );
            $crate::__conformance_module!(lifecycle;
                delete_run_removes_everything, delete_running_run_needs_consent,
                prune_runs_by_policy, prune_beside_live_appends, delete_racing_appends,
                listing_beside_deletes, reads_beside_deletes, fork_beside_appends,
                expire_idle_sessions, log_activity_defers_expiry, prune_expired_sessions,
                gc_collects_only_unreferenced, gc_spares_recent_puts, pins, gc_race_keeps_referenced,
                failed_run_calls_reference_nothing, failed_release_calls_reference_nothing,
                fork_session_copies_log, fork_release_copies_history, stats_count_what_is_stored,
                compact_keeps_what_remains, racing_forks_one_winner, gc_keeps_every_release_spec,
            );
            $crate::__conformance_module!(hostile;
                deep_json_rejected, identifier_length_edges, bad_identifiers_everywhere,
                cursor_and_limit_edges, json_edge_values_round_trip, json_size_limit_exact,
            );
            $crate::__conformance_module!(clock; store_times_from_injected_clock);
            $crate::__conformance_module!(integrity;
                tampered_blob_corrupted, tampered_run_event_corrupted, tampered_log_entry_corrupted,
                run_truncation_and_rewrites_corrupted, log_truncation_and_rewrites_corrupted,
                lost_run_head_corrupted, tampered_supersession_corrupted,
                damaged_blob_header_corrupted,
            );
            $crate::__conformance_module!(reopen;
                cas_survives, runs_survive, releases_survive, sessions_survive,
                supersessions_survive, repeated_reopen, lifecycle_survives,
            );
            $crate::__conformance_module!(durability; power_loss_keeps_what_was_acknowledged);
            $crate::__conformance_module!(shared; handles_see_each_other, handles_race);

            #[test]
            fn model_based() {
                $crate::__run_model(super::__stowage_conformance_harness);
            }
        }
    };
}

/// One submodule of tests for the checks of one store module.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_module {
    ($module:ident; $($check:ident),* $(,)?) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    $crate::__run(async {
                        let harness = super::super::__stowage_conformance_harness().await;
                        $crate::$module::$check(&harness).await;
                    });
                }
            )*
        }
    };
}

/// Runs one check on a fresh multi-thread runtime, failing it if it hangs.
#[doc(hidden)]
pub fn __run<F: Future<Output = ()>>(check: F) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime for the check: {e}"),
    };
    runtime.block_on(async {
        if tokio::time::timeout(CHECK_TIMEOUT, check).await.is_err() {
            panic!(
                "the check did not finish within {CHECK_TIMEOUT:?} (a deadlock or a lost wake-up?)"
            );
        }
    });
}
