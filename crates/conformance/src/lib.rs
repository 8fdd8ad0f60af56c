//! # stowage-conformance
//!
//! The suite every stowage backend must pass (SPEC §8): one `pub async fn`
//! per behaviour, grouped by store, plus [`conformance_tests!`], which turns
//! a harness factory into the whole list of `#[test]`s in one line.
//!
//! ## Use it against your own backend
//!
//! Implement [`Harness`] (only [`Harness::open`] is required; see below),
//! write an `async fn` that returns a fresh, isolated harness (a temp dir, a
//! unique key prefix, …), and in an integration test
//! (`tests/conformance.rs`) add one line:
//!
//! ```no_run
//! use stowage_conformance::Harness;
//! use stowage_core::{Result, Stores};
//!
//! struct MyHarness;
//!
//! #[async_trait::async_trait]
//! impl Harness for MyHarness {
//!     async fn open(&self) -> Result<Stores> {
//!         stowage_backends::open("memory://").await // a fresh, isolated store
//!     }
//! }
//!
//! async fn my_harness() -> MyHarness {
//!     MyHarness
//! }
//!
//! stowage_conformance::conformance_tests!(my_harness);
//! # fn main() {}
//! ```
//!
//! That generates **149 tests** — the 148 checks listed below and
//! `conformance::model_based` — named `conformance::<store>::<check>`
//! (e.g. `conformance::runs::concurrent_appends`). Every path inside the
//! macro goes through `$crate::`, so the test crate needs no dependency but
//! this one (and whatever your harness uses). Each check builds its own
//! multi-thread tokio runtime, opens its own store, and fails (panics) with
//! a message naming the call and the rule that broke. A hung check fails
//! after 5 minutes.
//!
//! Checks can also be called one by one, e.g. from a custom test:
//! `stowage_conformance::runs::concurrent_appends(&harness).await`.
//!
//! ## Which checks apply
//!
//! [`Capabilities`](stowage_core::Capabilities) and the harness's optional
//! hooks decide. A check that does not apply prints `skipped: <check>:
//! <why>` (run with `--nocapture` to see it) and returns; none passes
//! silently.
//!
//! | capability / hook | checks | when it does not apply |
//! |---|---|---|
//! | [`Capabilities::durability`](stowage_core::Capabilities::durability) survives kill (`process_crash`, `power_loss`, `as_configured`) + [`Harness::reopen`] | [`reopen`] | level `none` → skipped; surviving kill but `reopen` unsupported → **fails** |
//! | durability `power_loss` + [`Harness::lose_power`] | [`durability`] | a weaker level, or the harness cannot simulate power loss → skipped |
//! | `shared` + [`Harness::open_another`] | [`shared`] | not shared, or the harness has no second handle → skipped |
//! | [`Harness::tamper`] | [`integrity`] | `tamper` returns `Unsupported` for the damage a check needs → skipped |
//! | [`Harness::open_with`] | [`runs::repeated_run_id_already_exists`] | `open_with` returns `Unsupported` → skipped |
//! | [`Harness::open_with`] | [`clock::store_times_from_injected_clock`] | `open_with` returns `Unsupported` → the store is taken to be on the system clock, and times are checked against wall-clock readings around each call |
//! | `max_blob_size` | [`cas::oversized_blob_rejected`] | over 256 MiB (too big to allocate) → skipped; the exactly-max part only up to 8 MiB |
//! | `max_blob_size` | [`cas::stream_round_trip`] | below a 2.2 MiB blob → skipped |
//!
//! ## The model-based test
//!
//! `conformance::model_based` runs 24 random sequences of up to 40
//! operations over all five stores (blob put/get/delete; run create,
//! append with idempotency keys and compare-and-append (`expected_seq`),
//! finish; promote with compare-and-promote (an expected current seq),
//! rollback, rollback_to; session create, save with expected version,
//! state, delete; log append with keys, replace with expected seq;
//! supersession put with replacements), each on a fresh harness, and
//! compares every outcome (value or error kind) and then everything a
//! reader can observe (listings, histories, logs, `by_agent`, `resolve`,
//! chains) with a plain sequential `BTreeMap` reference model. Small index
//! spaces make collisions (same id, key, target) frequent. On durable
//! backends the sequences also close and reopen the store at random points,
//! and the final state is compared again after one more reopen. A failure
//! is shrunk by proptest and printed as the minimal operation sequence.
//!
//! ## The checks
//!
//! **[`cas`]** (12 checks)
//!
//! - [`put_get_round_trip`](cas::put_get_round_trip): `put` returns the SHA-256; `get`, `contains`, `stat` and `verify` agree.
//! - [`empty_blob`](cas::empty_blob): The empty blob is valid and has the well-known SHA-256.
//! - [`binary_content_and_sizes`](cas::binary_content_and_sizes): Every byte value round-trips, and sizes are reported exactly.
//! - [`same_bytes_twice`](cas::same_bytes_twice): Storing the same bytes twice stores them once.
//! - [`concurrent_identical_puts`](cas::concurrent_identical_puts): 32 concurrent puts of the same bytes all succeed with one digest, stored once.
//! - [`missing_blob_not_found`](cas::missing_blob_not_found): Missing blobs: `get` (naming the digest), `stat`, `verify`, `get_stream` are `NotFound`; `contains` is false.
//! - [`delete_idempotent`](cas::delete_idempotent): `delete` is idempotent: true, then false; the blob is gone; it can be put again.
//! - [`list_ascending_paginated`](cas::list_ascending_paginated): `list` is ascending by digest; `limit` applies after ordering; `after` is exclusive.
//! - [`stream_round_trip`](cas::stream_round_trip): `put_stream`/`get_stream` round-trip a blob of several chunks.
//! - [`oversized_blob_rejected`](cas::oversized_blob_rejected): A blob of `max_blob_size + 1` bytes is `InvalidInput` (put and put_stream) and stores nothing.
//! - [`digest_parsing_hostile`](cas::digest_parsing_hostile): Digests of the wrong length or not hex are `InvalidInput`; parsing is case-insensitive and display is 64 lower-case hex.
//! - [`failing_stream_reader_rejected`](cas::failing_stream_reader_rejected): A `put_stream` reader that fails (at once, or after 1.5 MiB) is `InvalidInput` and stores nothing.
//!
//! **[`runs`]** (28 checks)
//!
//! - [`append_read_round_trip`](runs::append_read_round_trip): Appends get seqs 0, 1, 2, … chained by `prev_hash`; reads return exactly what was stored.
//! - [`read_events_paginated`](runs::read_events_paginated): `read_events(after_seq, limit)` is ascending, exclusive, `limit` after ordering.
//! - [`expected_seq_conflict`](runs::expected_seq_conflict): `expected_seq` makes a compare-and-append: a mismatch is `Conflict` and stores nothing.
//! - [`idempotency_key_returns_original`](runs::idempotency_key_returns_original): A retried append with the same idempotency key returns the original event and stores nothing twice.
//! - [`idempotency_after_completion`](runs::idempotency_after_completion): A retry after the run completed returns the original event; a new key is `Conflict`.
//! - [`tricky_kinds_and_keys_round_trip`](runs::tricky_kinds_and_keys_round_trip): Event kinds and idempotency keys with tricky characters round-trip and do not collide.
//! - [`runs_isolated`](runs::runs_isolated): Events and idempotency keys of one run never show up in another; seqs are per run.
//! - [`concurrent_appends`](runs::concurrent_appends): 32 tasks × 50 appends to one run: seqs unique and gap-free, nothing lost, the chain verifies.
//! - [`racing_finish_one_winner`](runs::racing_finish_one_winner): 16 tasks racing to finish one run: exactly one `Ok`, the rest `Conflict`; the winner's summary is stored.
//! - [`appends_racing_finish`](runs::appends_racing_finish): Appends racing a terminal transition: every `Ok` append is in the log, the rest `Conflict`.
//! - [`racing_compare_and_append`](runs::racing_compare_and_append): 16 tasks with `expected_seq = 0`: exactly one appends, the rest `Conflict`.
//! - [`racing_idempotent_appends`](runs::racing_idempotent_appends): 16 tasks appending with the same idempotency key: all get the one original event.
//! - [`idempotency_key_other_content_conflict`](runs::idempotency_key_other_content_conflict): A reused idempotency key with other content (kind, payload, a given timestamp) is `Conflict` naming the key and the run; the same content (payload keys in any order, no timestamp) returns the original, also after the run ended.
//! - [`repeated_run_id_already_exists`](runs::repeated_run_id_already_exists): An id generator that repeats an id (through [`Harness::open_with`]): the second `create_run` is `AlreadyExists` naming the id; the first run is untouched and listed once.
//! - [`extreme_timestamps_round_trip`](runs::extreme_timestamps_round_trip): Timestamps at the edges of `u64` milliseconds (0, 2^53 + 1, `u64::MAX`) round-trip exactly in events, summaries and session log entries, and the chain verifies.
//! - [`idempotent_retry_with_stale_expected_seq`](runs::idempotent_retry_with_stale_expected_seq): A retry of a compare-and-append (same idempotency key and content) returns the original event although its expected seq is now stale; a new key with that stale seq is `Conflict`.
//! - [`list_in_reverse_creation_order`](runs::list_in_reverse_creation_order): 40 runs created back to back (many in one millisecond) list in exactly the reverse of their creation order: run ids are time-ordered UUID v7s, monotonic within a millisecond.
//! - [`list_after_deleted_run`](runs::list_after_deleted_run): An `after` cursor naming a run deleted since is still a position: the next page holds the older runs, with and without filters.
//! - [`create_get_round_trip`](runs::create_get_round_trip): `create_run` then `get_run` returns the spec, metadata (tags, git sha) as given, `Running`; a run without events verifies.
//! - [`unknown_run_not_found`](runs::unknown_run_not_found): Every call on an unknown run is `NotFound` (an append with an expected seq too: `NotFound` before `Conflict`).
//! - [`summary_and_timestamps_stored_exactly`](runs::summary_and_timestamps_stored_exactly): Terminal transitions store the status, the summary exactly and the caller's timestamp.
//! - [`append_to_terminal_conflict`](runs::append_to_terminal_conflict): Appending to a terminal run is `Conflict` and stores nothing.
//! - [`second_terminal_transition_conflict`](runs::second_terminal_transition_conflict): A second terminal transition is `Conflict` naming the run and leaves the record as the first one set it.
//! - [`list_newest_first_paginated`](runs::list_newest_first_paginated): `list_runs` is newest first (descending id), `limit` after ordering, exclusive `after`.
//! - [`list_filters`](runs::list_filters): Filters by spec digest, agent name and status, alone and combined; an invalid agent name is `InvalidInput`.
//! - [`agent_names_isolated`](runs::agent_names_isolated): Agent names that look alike (`a`, `a:b`, `a/b`, prefixes, tricky characters) filter apart and round-trip.
//! - [`hostile_metadata_rejected`](runs::hostile_metadata_rejected): Invalid metadata (agent, git sha, tags not an object, tags over 1 MiB) is `InvalidInput` and creates nothing.
//! - [`hostile_events_rejected`](runs::hostile_events_rejected): Invalid events (kind, idempotency key, payload over 1 MiB) and summaries are `InvalidInput` and change nothing.
//!
//! **[`releases`]** (14 checks)
//!
//! - [`promote_current_round_trip`](releases::promote_current_round_trip): `promote` appends a record that becomes current; metadata round-trips; seqs are gap-free with `previous` links.
//! - [`unknown_name_not_found`](releases::unknown_name_not_found): Unknown names: `current`, `rollback`, `rollback_to` are `NotFound`; `history` is empty.
//! - [`rollback_walks_back`](releases::rollback_walks_back): A, B, C → rollback → B → rollback → A → rollback → `Conflict`; each rollback is a new record.
//! - [`rollback_to_explicit`](releases::rollback_to_explicit): `rollback_to(seq)` restores an explicit record; a later promote then rollback returns to it.
//! - [`history_newest_first_paginated`](releases::history_newest_first_paginated): `history(before, limit)` is newest first, exclusive, and `limit` takes the newest.
//! - [`names_listed_and_isolated`](releases::names_listed_and_isolated): `list_names` is ascending by bytes with `after`/`limit`; tricky names round-trip and stay isolated.
//! - [`compare_and_promote`](releases::compare_and_promote): An expected current seq makes a compare-and-promote; a mismatch (or any expectation on a name never promoted) is `Conflict` and changes nothing.
//! - [`concurrent_promotes_all_kept`](releases::concurrent_promotes_all_kept): 32 tasks × 5 promotes to one name: all 160 kept, seqs gap-free, `previous` links intact.
//! - [`racing_compare_and_promote`](releases::racing_compare_and_promote): 16 tasks racing a compare-and-promote with the same expected seq: exactly one wins.
//! - [`hostile_input_rejected`](releases::hostile_input_rejected): Invalid names, actors, labels and notes are `InvalidInput` and change nothing.
//! - [`rollback_to_edges`](releases::rollback_to_edges): `rollback_to` the current seq appends a record restoring it (and a rollback from there walks back from it); `rollback_to` a rollback record restores that record's spec and names its seq; `rollback_to` the first record leaves nothing earlier (`Conflict`, nothing changed); history and `current` after each step are every record as returned.
//! - [`rollback_of_first_promote_conflict`](releases::rollback_of_first_promote_conflict): A rollback right after a single promote is `Conflict` and changes nothing (no seq is used up: the next promote gets seq 1); `rollback_to(0)` there restores the record itself, and a rollback after it is `Conflict` again.
//! - [`compare_and_promote_after_rollbacks`](releases::compare_and_promote_after_rollbacks): Compare-and-promote over rollback records: the expected seq is the current record's — the rollback record's own seq, not the seq it restored (that is `Conflict` and changes nothing); a rollback after such a promote restores the rollback record (naming its seq), and after a `rollback_to` the expected seq is the `rollback_to` record's.
//! - [`racing_rollbacks_walk_back`](releases::racing_rollbacks_walk_back): 8 tasks racing `rollback` on a history of 6 promotes: each successful rollback walks one step further back (the 5 winners restore seqs 4, 3, 2, 1, 0 in record order, each with that record's spec), the rest `Conflict`; the history stays gap-free.
//!
//! **[`sessions`]** (28 checks)
//!
//! - [`log_append_read_round_trip`](sessions::log_append_read_round_trip): Appends get seqs 0, 1, 2, … chained by `prev_hash`; every field round-trips.
//! - [`read_log_paginated`](sessions::read_log_paginated): `read_log(after_seq, limit)` is ascending, exclusive, `limit` after ordering.
//! - [`log_idempotency_key_returns_original`](sessions::log_idempotency_key_returns_original): An entry whose idempotency key is already in the log is not stored again: the original comes back.
//! - [`log_concurrent_appends`](sessions::log_concurrent_appends): 32 tasks × 50 appends to one log: seqs unique and gap-free, nothing lost, the chain verifies.
//! - [`log_racing_idempotent_appends`](sessions::log_racing_idempotent_appends): 16 tasks appending the same message id: one entry stored, all get it back.
//! - [`log_hostile_entries_rejected`](sessions::log_hostile_entries_rejected): Invalid senders, message types, keys and payloads over 1 MiB are `InvalidInput` and change nothing.
//! - [`create_load_round_trip`](sessions::create_load_round_trip): `create_session` then `load_session` returns the data, `Open`, version 1.
//! - [`create_duplicate_already_exists`](sessions::create_duplicate_already_exists): Creating a taken id is `AlreadyExists` naming the id and leaves the original untouched.
//! - [`unknown_session_not_found`](sessions::unknown_session_not_found): Calls on unknown sessions are `NotFound`, also with an expected version or seq (load is `None`, delete is `false`).
//! - [`save_versions`](sessions::save_versions): `save_session` increments the version; `expected_version` mismatches are `Conflict` and change nothing.
//! - [`state_machine`](sessions::state_machine): States: `Open`/`Suspended` move anywhere; from a final state every change is `Conflict`.
//! - [`list_ascending_paginated`](sessions::list_ascending_paginated): `list_sessions` is ascending by id bytes with exclusive `after` and `limit` after ordering.
//! - [`delete_removes_log`](sessions::delete_removes_log): `delete_session` removes the record and its log (with the log's idempotency keys) together, idempotently; a re-created session starts empty.
//! - [`tricky_ids_isolated`](sessions::tricky_ids_isolated): Tricky ids round-trip and their records and logs stay isolated from look-alikes.
//! - [`hostile_input_rejected`](sessions::hostile_input_rejected): Invalid ids and data over 1 MiB are `InvalidInput` and change nothing.
//! - [`racing_create_one_winner`](sessions::racing_create_one_winner): 16 tasks racing `create_session` for one id: one wins, the rest `AlreadyExists`.
//! - [`racing_save_one_winner`](sessions::racing_save_one_winner): 16 tasks racing `save_session` with the same expected version: one wins, the rest `Conflict`.
//! - [`concurrent_saves_versions`](sessions::concurrent_saves_versions): 32 concurrent unconditional saves: all succeed, each version handed out once.
//! - [`replace_semantics`](sessions::replace_semantics): `replace_log` swaps the whole log: new seqs from 0, one chain, appends continue after it.
//! - [`replace_expected_next_seq`](sessions::replace_expected_next_seq): `expected_next_seq` makes a compare-and-replace: a mismatch is `Conflict` and changes nothing.
//! - [`replace_forgets_old_keys`](sessions::replace_forgets_old_keys): After `replace_log` the old idempotency keys are gone; the new entries' keys are honoured.
//! - [`log_idempotency_key_other_content_conflict`](sessions::log_idempotency_key_other_content_conflict): A reused message id with other content (kind, sender, message type, payload) is `Conflict` naming the key and the session; the same content returns the original.
//! - [`log_closed_session_refuses_appends`](sessions::log_closed_session_refuses_appends): `Resolved`, `Expired`, `Cancelled` sessions refuse appends and `replace_log` with `Conflict` naming the session and its state; an identical retry of a stored message returns the original; `Suspended` takes appends.
//! - [`log_appends_racing_close`](sessions::log_appends_racing_close): 160 appends racing a close: exactly the acknowledged ones are in the log, the rest `Conflict`, nothing lands after it.
//! - [`log_racing_reused_keys`](sessions::log_racing_reused_keys): 16 tasks appending one message id with 16 payloads: one stored and returned to its task, the rest `Conflict`.
//! - [`replace_races_appends`](sessions::replace_races_appends): Appends and readers racing a `replace_log`: readers see one unbroken chain; each append lands wholly before (and is replaced) or wholly after it.
//! - [`log_keys_isolated`](sessions::log_keys_isolated): Idempotency keys are scoped to their session: sessions and keys whose concatenations look alike (`a` + `b:c` and `a:b` + `c`, `/`, no separator) never see each other's keys.
//! - [`delete_racing_log_appends`](sessions::delete_racing_log_appends): `delete_session` racing 12 keyed appends to the same session (5 rounds): each append lands before the delete or is `NotFound`; afterwards nothing of the log is left — a re-created session has an empty log, takes the old keys as new, and `stats` counts no orphan entries.
//!
//! **[`supersessions`]** (18 checks)
//!
//! - [`put_get_round_trip`](supersessions::put_get_round_trip): `put` stores a signed record: `get` returns it exactly, `is_superseded` is true; other targets are untouched.
//! - [`put_idempotent_and_append_only`](supersessions::put_idempotent_and_append_only): Putting the identical record again is a no-op (`AlreadyPresent`); a different record for the target is `Conflict` naming the target.
//! - [`bad_signatures_rejected`](supersessions::bad_signatures_rejected): Forged, tampered, truncated or foreign signatures are `InvalidInput` and store nothing.
//! - [`invalid_records_rejected`](supersessions::invalid_records_rejected): `target == replacement` and reasons over 4 KiB are `InvalidInput` and store nothing; 4 KiB exactly is fine.
//! - [`cycles_rejected`](supersessions::cycles_rejected): A replacement chain leading back to its target is `Conflict` (A→B then B→A; A→B→C then C→A).
//! - [`racing_puts_one_stored`](supersessions::racing_puts_one_stored): 16 tasks putting different records for one target: exactly one `Stored`, the rest `Conflict`.
//! - [`racing_identical_puts`](supersessions::racing_identical_puts): 16 tasks putting the identical record: one `Stored`, the rest `AlreadyPresent`.
//! - [`racing_cycle_rejected`](supersessions::racing_cycle_rejected): A→B racing B→A (20 rounds): never both stored, so no cycle ever gets in.
//! - [`by_agent_newest_first`](supersessions::by_agent_newest_first): `by_agent` is newest first by (hlc, timestamp, target); `limit` takes the N newest; equal timestamps are both kept.
//! - [`by_agent_inclusive_range_and_isolation`](supersessions::by_agent_inclusive_range_and_isolation): `by_agent(from, to)` is an inclusive range; records of other agents never show up.
//! - [`by_agent_hlc_ordering`](supersessions::by_agent_hlc_ordering): With hybrid logical clocks, `by_agent` orders by (physical, logical, node) before the timestamp.
//! - [`resolve_chains`](supersessions::resolve_chains): `resolve` follows replacements: `Current` at the chain's end, `Withdrawn` where a record has no replacement, with hop counts.
//! - [`binary_targets_isolated`](supersessions::binary_targets_isolated): Targets made of separator-like bytes (`0x00`, `:`, `/`, `0xff`) round-trip and never collide: keys are not parsed by searching for a separator.
//! - [`by_agent_pages_one_timestamp`](supersessions::by_agent_pages_one_timestamp): More records at one timestamp than `limit` page exactly with the `after` cursor.
//! - [`by_agent_pages_with_hlc`](supersessions::by_agent_pages_with_hlc): Records with hybrid logical clocks page in hlc order, whatever their timestamps.
//! - [`by_agent_cursor_positions`](supersessions::by_agent_cursor_positions): A cursor is a position: one from another agent's record pages this agent's older records; one newer than the window changes nothing; one older than it gives an empty page; it survives JSON.
//! - [`by_agent_exact_while_agent_writes`](supersessions::by_agent_exact_while_agent_writes): `by_agent` over a fixed window while the same agent keeps adding newer records returns each record of the window exactly once (whole, by `limit`, and paged).
//! - [`list_ascending_paginated`](supersessions::list_ascending_paginated): `list` returns every supersession of every agent ascending by target, paged exactly by the `after` target.
//!
//! **[`lifecycle`]** (22 checks)
//!
//! - [`delete_run_removes_everything`](lifecycle::delete_run_removes_everything): `delete_run` removes the record, events, idempotency keys and index entries at once, leaves other runs alone, and is idempotent.
//! - [`delete_running_run_needs_consent`](lifecycle::delete_running_run_needs_consent): A running run is deleted only when the caller says so.
//! - [`prune_runs_by_policy`](lifecycle::prune_runs_by_policy): `prune_runs` deletes what the policy selects — by finish time, status and agent, keeping the newest N per agent and running runs — across batches of any size.
//! - [`prune_beside_live_appends`](lifecycle::prune_beside_live_appends): Pruning finished runs beside 8 live appenders: every append succeeds, gap-free, and no live run is touched.
//! - [`delete_racing_appends`](lifecycle::delete_racing_appends): `delete_run` racing appends to the same run: afterwards the run is gone whole (no events without a record), and every append either landed before the delete or failed `NotFound`.
//! - [`listing_beside_deletes`](lifecycle::listing_beside_deletes): Listing and sweeping runs while others are deleted: a run deleted between a read of its index entry and of its record is simply not listed — never reported as damage (`Corrupted`) or `NotFound`.
//! - [`reads_beside_deletes`](lifecycle::reads_beside_deletes): Reads of runs and sessions (`get_run`, `read_events`, `load_session`, `read_log`, `fork_session`) racing their deletes: each sees the whole entity or `NotFound`, never a record whose head, events or log the delete already took.
//! - [`fork_beside_appends`](lifecycle::fork_beside_appends): Forking a session while others append to it: every fork succeeds with a prefix of the source's log (whole entries, a chain that verifies), never `Corrupted` for entries appended while it copied.
//! - [`expire_idle_sessions`](lifecycle::expire_idle_sessions): Idle sessions that are not final become `Expired` (a new version); final ones and recently active ones are left alone; an expired session takes no appends.
//! - [`log_activity_defers_expiry`](lifecycle::log_activity_defers_expiry): A log append is activity: a session whose log grew recently is not idle.
//! - [`prune_expired_sessions`](lifecycle::prune_expired_sessions): `prune_sessions` deletes idle sessions in the policy's states (by default `Expired`) with their logs, and nothing else.
//! - [`gc_collects_only_unreferenced`](lifecycle::gc_collects_only_unreferenced): GC deletes exactly the unreferenced blobs older than the grace period: run specs, summary blobs, release specs, supersession digests and pins are references; deleting a run or unpinning drops its references.
//! - [`gc_spares_recent_puts`](lifecycle::gc_spares_recent_puts): A `put` of an existing blob restarts its grace period: the digest a put returned is never collected within the grace period.
//! - [`pins`](lifecycle::pins): Pins: pinning an absent blob protects it once put; labels are identifiers; unpinning twice answers false.
//! - [`gc_race_keeps_referenced`](lifecycle::gc_race_keeps_referenced): Puts and references racing GC loops (grace 0): a blob referenced before it was put (a pin, a run spec, a release) is never collected, nor is one whose reference was acknowledged while it still existed; unreferenced blobs are all collected in the end.
//! - [`failed_release_calls_reference_nothing`](lifecycle::failed_release_calls_reference_nothing): A release or supersession call that fails references nothing: the spec of a lost compare-and-promote, the replacement of a supersession refused as a conflict and the specs of a fork into a name with a history get no new referrer and are collected.
//! - [`failed_run_calls_reference_nothing`](lifecycle::failed_run_calls_reference_nothing): A run call that fails references nothing: blobs declared by a lost compare-and-append, a reused idempotency key, an append to a finished run or a second terminal transition get no referrer and are collected; the successful calls' blobs (an acknowledged idempotent retry's included) keep the run as their one referrer.
//! - [`fork_session_copies_log`](lifecycle::fork_session_copies_log): A forked session has the source's data, state and log (contents, seqs, timestamps, idempotency keys) under its own id, with a chain that verifies; the source is unchanged and the two then diverge.
//! - [`fork_release_copies_history`](lifecycle::fork_release_copies_history): A forked release name has the source's whole history (seqs, specs, labels, links) under the new name; the two then move independently.
//! - [`stats_count_what_is_stored`](lifecycle::stats_count_what_is_stored): `stats` counts what is stored, exactly, and follows deletions.
//! - [`compact_keeps_what_remains`](lifecycle::compact_keeps_what_remains): `compact` after deletions keeps every remaining record readable and changes no count.
//! - [`racing_forks_one_winner`](lifecycle::racing_forks_one_winner): 12 tasks racing `fork_session` from two sources to one new id, then 8 racing `fork_release` to one new name: exactly one fork wins each race, the rest `AlreadyExists`; the winner is a whole copy of one source (its whole log, a chain that verifies).
//! - [`gc_keeps_every_release_spec`](lifecycle::gc_keeps_every_release_spec): Every release record's spec is a reference, not only the current one's: after promotes of A, B, C and a rollback, GC (grace 0) keeps A, B and C — any of them can be restored by `rollback_to` — and collects only the loose blob.
//!
//! **[`hostile`]** (6 checks)
//!
//! - [`deep_json_rejected`](hostile::deep_json_rejected): JSON nested 65 deep (event payload, session data on create and save, run tags, summary output) is `InvalidInput` and changes nothing; 64 deep is stored and read back exactly.
//! - [`identifier_length_edges`](hostile::identifier_length_edges): Identifiers of exactly 256 bytes (ASCII, 64 × 4-byte emoji, 128 × 2-byte) are accepted and round-trip in every identifier field; 257 bytes (also with a multi-byte character at the edge) are `InvalidInput` and change nothing.
//! - [`bad_identifiers_everywhere`](hostile::bad_identifiers_everywhere): A bad identifier (empty, 257 bytes, a NUL, a newline, an ESC, U+0085) is `InvalidInput` in every method that takes a session id or release name — reads, mutations, both ends of a fork, a `list_runs` agent filter — and changes nothing.
//! - [`cursor_and_limit_edges`](hostile::cursor_and_limit_edges): Cursors that point at nothing are exclusive positions (`read_events`/`read_log` after 100 or `u64::MAX`, `history` before 0 or `u64::MAX`, list calls after keys never stored), and a `limit` of 0 is an empty page everywhere.
//! - [`json_edge_values_round_trip`](hostile::json_edge_values_round_trip): Every JSON field reads back exactly (equal and serialised alike) for values a codec can lose — `u64::MAX`, `i64::MIN`, 2^53 + 1, `1e308`, `f64::MAX`, `5e-324`, `-0.0`, `0.1`, `1.0`, NUL and other control characters and escapes in strings and keys, U+2028, U+10FFFF, empty containers, edge numbers 63 levels deep — in event payloads (also an idempotent retry with the same value), run tags, summary outputs and session data (create, save, load, list); every chain verifies; on durable backends again after a reopen.
//! - [`json_size_limit_exact`](hostile::json_size_limit_exact): A JSON value of exactly 1 MiB once serialised canonically (escapes counted as written: NULs take 6 bytes) is accepted in every JSON field and reads back exactly; one byte more is `InvalidInput` in each and changes nothing.
//!
//! **[`clock`]** (1 check)
//!
//! - [`store_times_from_injected_clock`](clock::store_times_from_injected_clock): With a clock the check sets (through [`Harness::open_with`]), every timestamp the store assigns is the clock's reading during the call — run `created_at` and `finished_at` (all three terminal transitions), events and log entries without a timestamp (also from `replace_log`), release records from promote, `rollback` and `rollback_to`, session `created_at`/`updated_at` on create and save (a state change leaves `updated_at` as it was or sets it to the clock), a fork's `created_at` — and reads return those times exactly; caller timestamps are kept. Without `open_with`, the same times are checked against wall-clock readings around each call.
//!
//! **[`integrity`]** (8 checks)
//!
//! - [`tampered_blob_corrupted`](integrity::tampered_blob_corrupted): A damaged blob: `get`, `verify` and `get_stream` report `Corrupted`; other blobs are fine; delete + put repairs it.
//! - [`tampered_run_event_corrupted`](integrity::tampered_run_event_corrupted): A damaged run event: `verify_run` is `Corrupted`; other runs still verify; `read_events` gives `Corrupted` or the events as written, never the edit.
//! - [`tampered_log_entry_corrupted`](integrity::tampered_log_entry_corrupted): A damaged session log entry: `verify_log` is `Corrupted`; other logs still verify; `read_log` gives `Corrupted` or the entries as written.
//! - [`run_truncation_and_rewrites_corrupted`](integrity::run_truncation_and_rewrites_corrupted): A dropped tail, a dropped middle re-chained over, an edited event re-chained over, a damaged head in the record: `verify_run` is `Corrupted` for each (`Tamper::RunEvents`, `Tamper::RunHead`).
//! - [`log_truncation_and_rewrites_corrupted`](integrity::log_truncation_and_rewrites_corrupted): The same for session logs, also after `replace_log`; the session record keeps the log's length and head (`Tamper::LogEntries`, `Tamper::LogHead`).
//! - [`lost_run_head_corrupted`](integrity::lost_run_head_corrupted): A run whose head record (event count and chain head) was lost: `verify_run`, `get_run` and (after a reopen, on durable backends, since a store may keep heads in memory) `append_event` report `Corrupted` — an append never reuses a stored seq; other runs are fine (`Tamper::RunHeadLost`).
//! - [`tampered_supersession_corrupted`](integrity::tampered_supersession_corrupted): A supersession edited in storage (its signature no longer matches): `get`, `resolve` and `by_agent` report `Corrupted`, never follow it; other records are fine (`Tamper::Supersession`).
//! - [`damaged_blob_header_corrupted`](integrity::damaged_blob_header_corrupted): A blob header whose size its chunks cannot hold: `get`, `stat`, `verify` and `get_stream` report `Corrupted` (never a panic, never wrong bytes); other blobs are fine (`Tamper::BlobSize`).
//!
//! **[`reopen`]** (7 checks)
//!
//! - [`cas_survives`](reopen::cas_survives): Blobs (including the empty one) survive reopen; deleted blobs stay deleted.
//! - [`runs_survive`](reopen::runs_survive): Runs, events, summaries survive; seqs continue gap-free; idempotency keys and terminal states hold.
//! - [`releases_survive`](reopen::releases_survive): Release histories survive; seqs and rollbacks continue from where they were.
//! - [`sessions_survive`](reopen::sessions_survive): Session records and logs survive; seqs, chains and idempotency keys continue; deletes and replacements hold.
//! - [`supersessions_survive`](reopen::supersessions_survive): Supersessions survive; identical puts stay no-ops; cycles are still refused.
//! - [`repeated_reopen`](reopen::repeated_reopen): Writes made between repeated reopens all survive, in order.
//! - [`lifecycle_survives`](reopen::lifecycle_survives): Lifecycle effects survive reopen: a deleted run stays deleted, an expired session stays expired, pins and references still protect their blobs from GC, and a fork is a session like any other.
//!
//! **[`durability`]** (1 check)
//!
//! - [`power_loss_keeps_what_was_acknowledged`](durability::power_loss_keeps_what_was_acknowledged): A backend claiming `PowerLoss` keeps every acknowledged write across a simulated power loss, and the store takes writes afterwards.
//!
//! **[`shared`]** (2 checks)
//!
//! - [`handles_see_each_other`](shared::handles_see_each_other): Writes through one handle are visible through another, in every store.
//! - [`handles_race`](shared::handles_race): Two handles racing: appends stay gap-free, one terminal transition and one create win.
//!
//! ## SPEC rules → checks
//!
//! Every rule of SPEC §2–9 and the checks that cover it. "model" is the
//! model-based test.
//!
//! | SPEC | rule | checks |
//! |---|---|---|
//! | §2 | traits object-safe, `Send + Sync` | by construction: every check drives `Arc<dyn …>` handles from [`Stores`](stowage_core::Stores), many from spawned tasks |
//! | §2 | errors: one `Error`, the right `ErrorKind` | every check asserts kinds (`NotFound`, `AlreadyExists`, `Conflict`, `InvalidInput`, `Corrupted`) |
//! | §2 | messages name the entity and the rule | [`runs::append_to_terminal_conflict`], [`runs::second_terminal_transition_conflict`], [`sessions::create_duplicate_already_exists`], [`cas::missing_blob_not_found`], [`supersessions::put_idempotent_and_append_only`], and the key-reuse and closed-session checks; every failure prints the backend's message |
//! | §2 | never panic on bad input or stored data | bad input: every hostile-input check, including [`hostile::deep_json_rejected`] (65 levels of nesting), [`hostile::identifier_length_edges`] and [`cas::failing_stream_reader_rejected`]. Stored data: the payload flips, dropped tails, dropped middles and re-chained rewrites of [`integrity`]; damaged record bytes (undecodable CBOR) are not tampered with, so this half is only partly shown |
//! | §2 | identifiers 1–256 bytes, no control characters | [`runs::hostile_metadata_rejected`], [`runs::hostile_events_rejected`], [`releases::hostile_input_rejected`], [`sessions::hostile_input_rejected`], [`sessions::log_hostile_entries_rejected`] (empty, 257 bytes, 260 bytes of emoji, `\0`, `\u{7f}`, `\n`, `\t`, ESC, U+0085); [`hostile::identifier_length_edges`] (every identifier field: 256 bytes of ASCII and 64 × 4-byte emoji accepted and round-trip, 257 bytes and 256 bytes + 1 rejected); [`hostile::bad_identifiers_everywhere`] (every method taking a session id or release name, reads included) |
//! | §2 | `:` `/` `{` `}` `..` spaces emoji RTL round-trip, no collisions or traversal | [`runs::agent_names_isolated`], [`runs::tricky_kinds_and_keys_round_trip`], [`releases::names_listed_and_isolated`], [`sessions::tricky_ids_isolated`], [`sessions::list_ascending_paginated`], [`supersessions::binary_targets_isolated`], [`sessions::log_keys_isolated`] (idempotency keys of look-alike sessions), model |
//! | §2 | JSON ≤ 1 MiB and ≤ 64 levels deep, text ≤ 4 KiB, blobs ≤ `max_blob_size` | [`hostile::deep_json_rejected`] (event payload, session data on create and save, run tags, summary output: 65 levels `InvalidInput`, 64 levels stored and read back), [`hostile::json_size_limit_exact`] (exactly 1 MiB of canonical JSON accepted in every JSON field, one byte more rejected), [`runs::hostile_metadata_rejected`], [`runs::hostile_events_rejected`], [`sessions::hostile_input_rejected`], [`releases::hostile_input_rejected`], [`supersessions::invalid_records_rejected`], [`cas::oversized_blob_rejected`] |
//! | §2 | invalid input changes nothing | the same checks compare a snapshot of all five stores before and after; [`lifecycle::failed_run_calls_reference_nothing`], [`lifecycle::failed_release_calls_reference_nothing`] (a call that fails leaves no blob reference) |
//! | §2 | atomic, linearizable per entity under concurrency | [`runs::concurrent_appends`], [`runs::racing_finish_one_winner`], [`runs::appends_racing_finish`], [`runs::racing_compare_and_append`], [`releases::concurrent_promotes_all_kept`], [`releases::racing_compare_and_promote`], [`sessions::racing_create_one_winner`], [`sessions::racing_save_one_winner`], [`sessions::concurrent_saves_versions`], [`sessions::log_concurrent_appends`], [`sessions::replace_races_appends`], [`supersessions::racing_puts_one_stored`], [`supersessions::racing_cycle_rejected`], [`cas::concurrent_identical_puts`], [`releases::racing_rollbacks_walk_back`], [`sessions::delete_racing_log_appends`], [`lifecycle::racing_forks_one_winner`] |
//! | §2 | … also across processes (shared backends) | [`shared::handles_see_each_other`], [`shared::handles_race`] |
//! | §2 | durability: acknowledged writes survive | [`reopen`], model (reopens mid-sequence); clean close and reopen only: `kill -9` and power loss need the backend's own crash tests |
//! | §2 | ordering documented and deterministic; `limit` after ordering; exclusive `after` | [`cas::list_ascending_paginated`], [`runs::list_newest_first_paginated`], [`runs::read_events_paginated`], [`releases::history_newest_first_paginated`], [`releases::names_listed_and_isolated`], [`sessions::list_ascending_paginated`], [`sessions::read_log_paginated`], [`supersessions::by_agent_pages_one_timestamp`], [`supersessions::by_agent_pages_with_hlc`], [`supersessions::by_agent_cursor_positions`], [`supersessions::by_agent_exact_while_agent_writes`] (the `after` cursor stays exact while the agent writes), [`supersessions::list_ascending_paginated`], [`runs::list_in_reverse_creation_order`], [`runs::list_after_deleted_run`] (a cursor whose run was deleted is still a position) |
//! | §2 | seqs `u64` from 0, no gaps, sort numerically | the append/pagination checks above; [`runs::concurrent_appends`] and [`sessions::log_concurrent_appends`] read 1600 entries back in numeric order (crossing 255 and 999); model. This catches keys built from unpadded decimals or little-endian bytes, not fixed-width `{:08}` decimal keys, which sort correctly up to 10^8 entries |
//! | §2 | JSON values read back exactly (large integers, `-0.0`, escapes, NUL, empty containers) | [`hostile::json_edge_values_round_trip`], [`hostile::deep_json_rejected`] |
//! | §2 | timestamps read back exactly | [`clock::store_times_from_injected_clock`], [`runs::summary_and_timestamps_stored_exactly`], [`runs::append_read_round_trip`], [`runs::extreme_timestamps_round_trip`], [`sessions::log_append_read_round_trip`], [`supersessions::put_get_round_trip`] |
//! | §2 | injectable clock | [`clock::store_times_from_injected_clock`] (every store-assigned time is the injected clock's, through [`Harness::open_with`]; without it, within wall-clock readings around each call); `stowage-fakes` tests its own clock |
//! | §2 | idempotency keys return the original, store once; the same key with other content is `Conflict` naming the key | [`runs::idempotency_key_other_content_conflict`], [`sessions::log_idempotency_key_other_content_conflict`], [`sessions::log_racing_reused_keys`], [`runs::idempotency_key_returns_original`], [`runs::idempotency_after_completion`], [`runs::racing_idempotent_appends`], [`sessions::log_idempotency_key_returns_original`], [`sessions::log_racing_idempotent_appends`], [`reopen::runs_survive`], [`reopen::sessions_survive`], [`runs::idempotent_retry_with_stale_expected_seq`] (a retried compare-and-append is a retry, not a stale expectation), [`sessions::log_keys_isolated`], [`sessions::delete_removes_log`] (a deleted log's keys are gone), model |
//! | §3 | `put` returns the SHA-256; `Digest` display/parse/short/serde | [`cas::put_get_round_trip`], [`cas::digest_parsing_hostile`] |
//! | §3 | same bytes twice or concurrently stored once; empty blob valid | [`cas::same_bytes_twice`], [`cas::concurrent_identical_puts`], [`cas::empty_blob`] |
//! | §3 | `get` `NotFound`; damaged bytes `Corrupted`, never wrong data; `verify` re-hashes | [`cas::missing_blob_not_found`], [`integrity::tampered_blob_corrupted`] (damaged bytes). "`verify` re-hashes" is **not** shown: `Tamper::Blob` leaves any stored checksum stale, so a `verify` that only checks a CRC passes too, [`integrity::damaged_blob_header_corrupted`] (a damaged size) |
//! | §3 | `contains`, `stat`, idempotent `delete`, `list` ascending | [`cas::put_get_round_trip`], [`cas::binary_content_and_sizes`], [`cas::delete_idempotent`], [`cas::list_ascending_paginated`] |
//! | §3 | streaming put/get | [`cas::stream_round_trip`] (chunking), [`cas::oversized_blob_rejected`] (streamed oversize), [`cas::failing_stream_reader_rejected`] (a reader failing mid-way stores nothing). "Never holds a whole large blob in memory" is not observable through a [`Harness`]: the backend's own tests must show it |
//! | §4 | `create_run`, UUID v7, metadata (tags a JSON object); a repeated id is `AlreadyExists` | [`runs::create_get_round_trip`], [`runs::hostile_metadata_rejected`], [`runs::repeated_run_id_already_exists`] |
//! | §4 | `append_event` gap-free seqs, also concurrently; `Conflict` when not `Running`; expected next seq | [`runs::append_read_round_trip`], [`runs::concurrent_appends`], [`runs::append_to_terminal_conflict`], [`runs::expected_seq_conflict`], [`runs::racing_compare_and_append`] |
//! | §4 | hash chain; `verify_run` reports the first broken link, a removed tail or middle (the record keeps count and head) | [`runs::append_read_round_trip`], [`integrity::tampered_run_event_corrupted`], [`integrity::run_truncation_and_rewrites_corrupted`], [`integrity::lost_run_head_corrupted`] (a lost head is never a shorter log) |
//! | §4 | terminal transitions only from `Running`; one winner; summary and timestamps as given | [`runs::second_terminal_transition_conflict`], [`runs::racing_finish_one_winner`], [`runs::summary_and_timestamps_stored_exactly`] |
//! | §4 | `get_run`, `read_events` ascending, `list_runs` filters newest first | [`runs::unknown_run_not_found`], [`runs::read_events_paginated`], [`runs::list_newest_first_paginated`] (descending id), [`runs::list_in_reverse_creation_order`] (exactly the reverse of creation order, also within one millisecond), [`runs::list_after_deleted_run`], [`runs::list_filters`], [`runs::runs_isolated`], model |
//! | §5 | `promote` appends, gap-free seq per name, compare-and-promote | [`releases::promote_current_round_trip`], [`releases::compare_and_promote`], [`releases::compare_and_promote_after_rollbacks`], [`releases::racing_compare_and_promote`] |
//! | §5 | rollback walks back A,B,C → B → A → `Conflict`; own `created_at` and actor; names the restored seq | [`releases::rollback_walks_back`], [`releases::rollback_of_first_promote_conflict`], [`releases::rollback_to_edges`], [`clock::store_times_from_injected_clock`] (a rollback's `created_at` is the clock's at the rollback), model |
//! | §5 | `rollback_to` | [`releases::rollback_to_explicit`], [`releases::rollback_to_edges`] (the current seq, a rollback record, the first record, and rollbacks after each), model |
//! | §5 | `current`, `history(before, limit)` newest first, `list_names` | [`releases::unknown_name_not_found`], [`releases::history_newest_first_paginated`], [`releases::names_listed_and_isolated`] |
//! | §5 | history never rewritten; concurrent promotes all kept | [`releases::rollback_walks_back`], [`releases::concurrent_promotes_all_kept`] |
//! | §6 | create (`AlreadyExists`), load, save with expected version, list ascending, delete with log | [`sessions::create_load_round_trip`], [`sessions::create_duplicate_already_exists`], [`sessions::save_versions`], [`sessions::list_ascending_paginated`], [`sessions::delete_removes_log`], [`sessions::unknown_session_not_found`], [`sessions::delete_racing_log_appends`] (a delete racing appends leaves no orphan entry or key) |
//! | §6 | states; final states | [`sessions::state_machine`], model |
//! | §6 | a final session refuses appends (and `replace_log`) with `Conflict` | [`sessions::log_closed_session_refuses_appends`], [`sessions::log_appends_racing_close`], model |
//! | §6 | log: gap-free seqs under concurrency, hash chain, idempotent message ids | [`sessions::log_append_read_round_trip`], [`sessions::log_concurrent_appends`], [`sessions::log_idempotency_key_returns_original`], [`sessions::log_racing_idempotent_appends`] |
//! | §6 | `read_log` ascending; `verify_log` | [`sessions::read_log_paginated`], [`integrity::tampered_log_entry_corrupted`], [`integrity::log_truncation_and_rewrites_corrupted`] (a `verify_log` racing `replace_log` is not checked) |
//! | §6 | `replace_log`: atomic, seqs restart at 0, expected next seq, racing appends wholly before or after | [`sessions::replace_semantics`], [`sessions::replace_expected_next_seq`], [`sessions::replace_forgets_old_keys`], [`sessions::replace_races_appends`], model |
//! | §7 | `sign`/`verify`; bad signature, `target == replacement`, long reason → `InvalidInput` | [`supersessions::bad_signatures_rejected`], [`supersessions::invalid_records_rejected`] |
//! | §7 | append-only: different record `Conflict`, identical no-op | [`supersessions::put_idempotent_and_append_only`], [`supersessions::racing_puts_one_stored`], [`supersessions::racing_identical_puts`], model |
//! | §7 | a replacement chain back to its target is `Conflict` | [`supersessions::cycles_rejected`], [`supersessions::racing_cycle_rejected`], model |
//! | §7 | `get`, `is_superseded` | [`supersessions::put_get_round_trip`], [`integrity::tampered_supersession_corrupted`] (an edited record is `Corrupted`, never followed) |
//! | §7 | `by_agent`: inclusive range, newest first by (hlc, timestamp, target), N newest, equal timestamps kept, no separator parsing | [`supersessions::by_agent_newest_first`], [`supersessions::by_agent_inclusive_range_and_isolation`], [`supersessions::by_agent_hlc_ordering`], [`supersessions::binary_targets_isolated`], model |
//! | §7 | `by_agent` `after` cursor: exclusive, exact while the agent keeps writing, a position (another agent's record, outside the window) | [`supersessions::by_agent_pages_one_timestamp`], [`supersessions::by_agent_pages_with_hlc`], [`supersessions::by_agent_cursor_positions`], [`supersessions::by_agent_exact_while_agent_writes`] |
//! | §7 | `list`: every supersession ascending by target, exclusive `after` | [`supersessions::list_ascending_paginated`] |
//! | §7 | `resolve` follows replacements (`Current`/`Withdrawn`, hops); a cycle or an over-long chain is reported | [`supersessions::resolve_chains`], model. A chain over `MAX_RESOLVE_HOPS` (1024) is **not checked** here: it needs 1025 signed puts, and each `put` verifies an Ed25519 signature, which takes ~15 ms in an unoptimised build (16 s on the memory backend); the algorithm is core's, written once, and `crates/backends/tests/memory_backend` checks it on the memory backend (1024 hops resolve, 1025 are `Conflict`) |
//! | §7 | `Hlc` orders by (physical, logical, node) | [`supersessions::by_agent_hlc_ordering`] |
//! | §8 | one `pub async fn` per behaviour, a one-line `$crate::` macro, capabilities decide, model-based test | this crate; its own tests prove the checks fail against injected bugs (`tests/suite_catches_bugs.rs`: each of 15 injected bugs fails at least one check or the model test; `tests/shared_handles.rs`) |
//! | §9 | fakes pass the whole suite | `crates/fakes/tests/conformance.rs` runs [`conformance_tests!`] against them (directly and through the fault injector) |
//! | §9 | controllable clock, deterministic ids, fault injection, recorder, snapshot/fork | not observable through a [`Harness`]: `stowage-fakes`' own tests |

pub mod cas;
pub mod clock;
pub mod durability;
pub mod harness;
pub mod hostile;
pub mod integrity;
pub mod lifecycle;
mod macros;
mod model;
pub mod releases;
pub mod reopen;
pub mod runs;
pub mod sessions;
pub mod shared;
pub mod supersessions;
mod util;

pub use harness::{tamper_engine, Harness, Tamper};
#[doc(hidden)]
pub use macros::__run;
#[doc(hidden)]
pub use model::{__run_model, __run_model_seeded, DEFAULT_MODEL_SEED};
