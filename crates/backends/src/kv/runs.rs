//! `RunLedger` over the seam.
//!
//! Tables: `Runs` (run id → record, whose `event_count` is the next seq),
//! `RunEvents` ((run id, seq) → event), `RunIdempotency` ((run id, key) →
//! seq), and the indexes `RunsBySpec` / `RunsByAgent`. Every mutation of a
//! run holds the run's stripe and writes one atomic batch.

use async_trait::async_trait;
use stowage_core::encoding::encode_record;
use stowage_core::validate::{self, page_limit};
use stowage_core::{
    Digest, Error, NewEvent, Result, Run, RunEvent, RunFilter, RunId, RunLedger, RunMetadata,
    RunStatus, RunSummary,
};

use super::keys;
use super::seam::{Batch, Direction, Table};
use super::{Kv, KvStore};

/// How many index entries `list_runs` reads per scan while filtering.
const LIST_PAGE: usize = 256;

impl Kv {
    fn load_run(&self, id: RunId) -> Result<Run> {
        self.get_record(Table::Runs, &keys::run(id), "run record")?
            .ok_or_else(|| Error::not_found(format!("run {id} does not exist")))
    }

    fn load_event(&self, id: RunId, seq: u64) -> Result<RunEvent> {
        self.get_record(Table::RunEvents, &keys::run_event(id, seq), "run event")?
            .ok_or_else(|| {
                Error::corrupted(format!("run {id}: event {seq} is missing from the log"))
            })
    }

    fn append_locked(&self, id: RunId, new: NewEvent) -> Result<RunEvent> {
        let mut run = self.load_run(id)?;
        if let Some(key) = &new.idempotency_key {
            let stored = self
                .engine
                .get(Table::RunIdempotency, &keys::run_idempotency(id, key))?;
            if let Some(seq) = stored {
                let seq = keys::decode_u64("run idempotency entry", &seq)?;
                return self.load_event(id, seq);
            }
        }
        run.check_running()?;
        let prev_hash = match run.event_count.checked_sub(1) {
            None => None,
            Some(last) => Some(self.load_event(id, last)?.hash),
        };
        let event = RunEvent::build(id, run.event_count, prev_hash, new, self.now())?;
        run.event_count = run.event_count.checked_add(1).ok_or_else(|| {
            Error::conflict(format!("run {id} has reached the largest event seq"))
        })?;
        let mut batch = Batch::default();
        batch.put(
            Table::RunEvents,
            keys::run_event(id, event.seq),
            encode_record(&event)?,
        );
        if let Some(key) = &event.idempotency_key {
            batch.put(
                Table::RunIdempotency,
                keys::run_idempotency(id, key),
                event.seq.to_be_bytes().to_vec(),
            );
        }
        batch.put(Table::Runs, keys::run(id), encode_record(&run)?);
        self.engine.write(batch)?;
        Ok(event)
    }

    /// Runs matching `filter`, newest first, strictly before `after`.
    fn list_runs_blocking(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let mut out = Vec::new();
        // Pick the narrowest index; the filter is re-checked on every record.
        let (table, prefix) = match (&filter.spec_digest, &filter.agent_name) {
            (Some(spec), _) => (Table::RunsBySpec, Some(keys::spec_prefix(spec))),
            (None, Some(agent)) => (Table::RunsByAgent, Some(keys::agent_prefix(agent))),
            (None, None) => (Table::Runs, None),
        };
        let mut cursor = after;
        while out.len() < limit {
            let page = match &prefix {
                Some(prefix) => {
                    let (start, end) = keys::index_before(prefix, cursor);
                    self.engine
                        .scan(table, &start, Some(&end), Direction::Reverse, LIST_PAGE)?
                }
                None => {
                    let (start, end) = keys::runs_before(cursor);
                    self.engine.scan(
                        table,
                        &start,
                        end.as_deref(),
                        Direction::Reverse,
                        LIST_PAGE,
                    )?
                }
            };
            let exhausted = page.len() < LIST_PAGE;
            for (key, value) in &page {
                let run: Run = match &prefix {
                    Some(_) => {
                        let id = keys::run_id_suffix(key)?;
                        cursor = Some(id);
                        self.load_run(id).map_err(|e| {
                            if e.kind() == stowage_core::ErrorKind::NotFound {
                                Error::corrupted(format!("run index names missing run {id}"))
                            } else {
                                e
                            }
                        })?
                    }
                    None => {
                        let run: Run = stowage_core::encoding::decode_record("run record", value)?;
                        cursor = Some(run.id);
                        run
                    }
                };
                if filter.matches(&run) {
                    out.push(run);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl RunLedger for KvStore {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        metadata.validate()?;
        self.blocking(move |kv| {
            let now = kv.now();
            let id = kv.env.ids.new_run_id(now);
            let _guard = kv.locks.lock(Table::Runs, &keys::run(id));
            if kv.engine.get(Table::Runs, &keys::run(id))?.is_some() {
                return Err(Error::already_exists(format!(
                    "run {id} already exists (the id generator repeated an id)"
                )));
            }
            let run = Run::new(id, spec_digest, metadata, now);
            let mut batch = Batch::default();
            batch.put(Table::Runs, keys::run(id), encode_record(&run)?);
            batch.put(
                Table::RunsBySpec,
                keys::run_by_spec(&spec_digest, id),
                Vec::new(),
            );
            batch.put(
                Table::RunsByAgent,
                keys::run_by_agent(&run.metadata.agent_name, id),
                Vec::new(),
            );
            kv.engine.write(batch)?;
            Ok(id)
        })
        .await
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        event.validate()?;
        self.blocking(move |kv| {
            let _guard = kv.locks.lock(Table::Runs, &keys::run(run));
            kv.append_locked(run, event)
        })
        .await
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        self.blocking(move |kv| {
            let _guard = kv.locks.lock(Table::Runs, &keys::run(run));
            let current = kv.load_run(run)?;
            let finished = current.finish(status, summary, kv.now())?;
            let mut batch = Batch::default();
            batch.put(Table::Runs, keys::run(run), encode_record(&finished)?);
            kv.engine.write(batch)?;
            Ok(finished)
        })
        .await
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.blocking(move |kv| kv.load_run(run)).await
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let limit = page_limit(limit);
        self.blocking(move |kv| {
            // Existence first, so an unknown run is NotFound, not empty.
            kv.load_run(run)?;
            let Some((start, end)) = keys::run_events_after(run, after_seq) else {
                return Ok(Vec::new());
            };
            kv.scan_records(
                Table::RunEvents,
                &start,
                Some(&end),
                Direction::Forward,
                limit,
                "run event",
            )
        })
        .await
    }

    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        if let Some(agent) = &filter.agent_name {
            if validate::identifier("agent name", agent).is_err() {
                // No run can have an invalid agent name.
                return Ok(Vec::new());
            }
        }
        let limit = page_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = filter.clone();
        self.blocking(move |kv| kv.list_runs_blocking(&filter, after, limit))
            .await
    }
}
