//! `RunLedger` over the seam.
//!
//! Tables: `Runs` (run id → record, whose `event_count` is the next seq),
//! `RunEvents` ((run id, seq) → event), `RunIdempotency` ((run id, key) →
//! seq), and the indexes `RunsBySpec` / `RunsByAgent`. Every mutation of a
//! run holds the run's stripe and writes one atomic batch.
//!
//! Appends keep a bounded in-memory cache of each run's committed record and
//! chain head (`kv::heads`), so an append does not re-read and decode the
//! run record and the previous event. The engines admit a single opener, so
//! this process is the only writer: an entry is inserted only under the
//! run's stripe, only after its batch was written successfully, and taken
//! out (dropped) at the start of every mutation, so a failed or refused
//! mutation leaves the run uncached and the next one reloads from the engine.

use async_trait::async_trait;
use stowage_core::encoding::{decode_event, encode_event, encode_record};
use stowage_core::run::run_id_taken;
use stowage_core::validate::{self, page_limit};
use stowage_core::{
    Digest, Error, NewEvent, Result, Run, RunEvent, RunFilter, RunId, RunLedger, RunMetadata,
    RunStatus, RunSummary,
};

use super::heads::Head;
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
        self.engine
            .get(Table::RunEvents, &keys::run_event(id, seq))?
            .map(|bytes| decode_event("run event", &bytes))
            .transpose()?
            .ok_or_else(|| {
                Error::corrupted(format!("run {id}: event {seq} is missing from the log"))
            })
    }

    /// The run record and its chain head: from the cache (taking the entry
    /// out) or from the engine.
    fn load_head(&self, id: RunId) -> Result<Head> {
        if let Some(cached) = self.run_heads.take(id) {
            return Ok(cached);
        }
        let bytes = self
            .engine
            .get(Table::Runs, &keys::run(id))?
            .ok_or_else(|| Error::not_found(format!("run {id} does not exist")))?;
        let run: Run = stowage_core::encoding::decode_record("run record", &bytes)?;
        Ok(Head {
            run,
            size: bytes.len(),
        })
    }

    fn append_locked(&self, id: RunId, new: NewEvent) -> Result<RunEvent> {
        let head = self.load_head(id)?;
        if let Some(key) = &new.idempotency_key {
            let stored = self
                .engine
                .get(Table::RunIdempotency, &keys::run_idempotency(id, key))?;
            if let Some(seq) = stored {
                let seq = keys::decode_u64("run idempotency entry", &seq)?;
                let event = self.load_event(id, seq)?;
                // Nothing was written: the state taken out is still current.
                self.run_heads.put(head);
                return event.retried(&new);
            }
        }
        let Head { mut run, .. } = head;
        run.check_running()?;
        // The record keeps the chain head with the count.
        let event = RunEvent::build(id, run.event_count, run.head, new, self.now())?;
        run.record_append(&event)?;
        let mut batch = Batch::default();
        batch.put(
            Table::RunEvents,
            keys::run_event(id, event.seq),
            encode_event(&event)?,
        );
        if let Some(key) = &event.idempotency_key {
            batch.put(
                Table::RunIdempotency,
                keys::run_idempotency(id, key),
                event.seq.to_be_bytes().to_vec(),
            );
        }
        let record = encode_record(&run)?;
        let size = record.len();
        batch.put(Table::Runs, keys::run(id), record);
        self.write(batch)?;
        self.run_heads.put(Head { run, size });
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
        self.mutate(move |kv| {
            let now = kv.now();
            let id = kv.env.ids.new_run_id(now);
            let _guard = kv.locks.lock(Table::Runs, &keys::run(id));
            if kv.engine.get(Table::Runs, &keys::run(id))?.is_some() {
                return Err(run_id_taken(id));
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
            kv.write(batch)?;
            Ok(id)
        })
        .await
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        event.validate()?;
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Runs, &keys::run(run));
            kv.append_locked(run, event)
        })
        .await
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Runs, &keys::run(run));
            // Finished runs take no appends; keep them out of the cache.
            drop(kv.run_heads.take(run));
            let current = kv.load_run(run)?;
            let finished = current.finish(status, summary, kv.now())?;
            let mut batch = Batch::default();
            batch.put(Table::Runs, keys::run(run), encode_record(&finished)?);
            kv.write(batch)?;
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
            // Existence first, so an unknown run is NotFound, not empty
            // (without decoding the record: its tags may be large).
            if kv.engine.get(Table::Runs, &keys::run(run))?.is_none() {
                return Err(Error::not_found(format!("run {run} does not exist")));
            }
            let Some((start, end)) = keys::run_events_after(run, after_seq) else {
                return Ok(Vec::new());
            };
            kv.engine
                .scan(
                    Table::RunEvents,
                    &start,
                    Some(&end),
                    Direction::Forward,
                    limit,
                )?
                .iter()
                .map(|(_, bytes)| decode_event("run event", bytes))
                .collect()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;

    use serde_json::json;
    use stowage_core::{ErrorKind, Stores};

    use super::super::seam::OrderedKv;
    use super::super::testing::{reads_from_inner, test_stores, MemKv};
    use super::*;

    /// Fails the next write: 1 = without applying it, 2 = after applying it
    /// (an ambiguous outcome, as when a sync fails after the data was written).
    #[derive(Default)]
    struct FlakyKv {
        inner: MemKv,
        fail_next: AtomicU8,
    }

    impl OrderedKv for FlakyKv {
        reads_from_inner!();

        fn write(&self, batch: Batch) -> Result<()> {
            match self.fail_next.swap(0, Ordering::SeqCst) {
                1 => Err(Error::internal("injected write failure")),
                2 => {
                    self.inner.write(batch)?;
                    Err(Error::internal("injected failure after the write"))
                }
                _ => self.inner.write(batch),
            }
        }
    }

    fn flaky_stores() -> (Stores, Arc<FlakyKv>) {
        test_stores(FlakyKv::default())
    }

    #[tokio::test]
    async fn failed_appends_leave_no_cached_head_behind() {
        let (stores, engine) = flaky_stores();
        let run = stores
            .runs
            .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
            .await
            .unwrap();
        let step = |i: u64| NewEvent::new("step", json!({ "i": i }));
        let first = stores.runs.append_event(run, step(0)).await.unwrap();
        assert_eq!(first.seq, 0);

        // A write that fails without applying: the next append reuses seq 1.
        engine.fail_next.store(1, Ordering::SeqCst);
        assert!(stores.runs.append_event(run, step(1)).await.is_err());
        let second = stores.runs.append_event(run, step(1)).await.unwrap();
        assert_eq!((second.seq, second.prev_hash), (1, Some(first.hash)));

        // A write that applied but reported failure: the next append sees it.
        engine.fail_next.store(2, Ordering::SeqCst);
        assert!(stores.runs.append_event(run, step(2)).await.is_err());
        let fourth = stores.runs.append_event(run, step(3)).await.unwrap();
        assert_eq!(fourth.seq, 3);
        let events = stores.runs.read_events(run, None, 10).await.unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(fourth.prev_hash, events.get(2).map(|e| e.hash));
        assert_eq!(stores.runs.verify_run(run).await.unwrap().len, 4);
        assert_eq!(stores.runs.get_run(run).await.unwrap().event_count, 4);

        // A finished run takes no more appends, cached or not.
        stores
            .runs
            .complete_run(run, RunSummary::new("done"))
            .await
            .unwrap();
        let err = stores.runs.append_event(run, step(4)).await.unwrap_err();
        assert_ne!(err.kind(), ErrorKind::Internal);
        assert_eq!(stores.runs.get_run(run).await.unwrap().event_count, 4);
    }

    #[tokio::test]
    async fn idempotent_retries_keep_the_head() {
        let (stores, _) = flaky_stores();
        let run = stores
            .runs
            .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
            .await
            .unwrap();
        let keyed = || {
            let mut event = NewEvent::new("step", json!({}));
            event.idempotency_key = Some("k".into());
            event
        };
        let a = stores.runs.append_event(run, keyed()).await.unwrap();
        let again = stores.runs.append_event(run, keyed()).await.unwrap();
        assert_eq!(a, again);
        let next = stores
            .runs
            .append_event(run, NewEvent::new("step", json!({})))
            .await
            .unwrap();
        assert_eq!((next.seq, next.prev_hash), (1, Some(a.hash)));
    }
}
