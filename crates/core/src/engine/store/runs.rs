//! `RunLedger` over the seam.
//!
//! Tables: `Runs` (run id → record, written at create and finish),
//! `RunHeads` (run id → status, event count and chain head: the small
//! record an append reads and rewrites, see `run_head`), `RunEvents`
//! ((run id, seq) → event), `RunIdempotency` ((run id, key) → seq), and the
//! indexes `RunsBySpec` / `RunsByAgent`. A run read back is its record with
//! its head's count and chain head. Every mutation of a run is one write
//! job in the run's scope.

use async_trait::async_trait;
use bytes::Bytes;

use super::heads::{Head, Log};
use super::lifecycle::confirm_refs;
use super::run_head::RunHead;
use super::{decode_keyed, get_record, own_entries, EngineStore, Owned, RawPage, Shared};
use crate::encoding::{decode_checked_event, decode_event, encode_event, encode_record};
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::lifecycle::Referrer;
use crate::run::{run_id_taken, verify_events, VERIFY_PAGE};
use crate::run_event::CheckedEvent;
use crate::validate::{self, page_limit};
use crate::{
    ChainReport, Digest, Error, ErrorKind, NewEvent, Result, Run, RunEvent, RunFilter, RunId,
    RunLedger, RunMetadata, RunStatus, RunSummary,
};

/// How many index entries `list_runs` reads per scan while filtering.
const LIST_PAGE: usize = 256;

pub(super) fn scope(id: RunId) -> Scope {
    Scope::entity(Table::Runs, keys::run(id))
}

fn missing(id: RunId) -> Error {
    Error::not_found(format!("run {id} does not exist"))
}

/// The run record as stored (its count and chain head as of the last
/// create or finish).
pub(super) fn load_record(reader: &dyn Reader, id: RunId) -> Result<Run> {
    get_record(reader, Table::Runs, &keys::run(id), "run record")?.ok_or_else(|| missing(id))
}

/// The run: its record with its head.
pub(super) fn load_run(reader: &dyn Reader, id: RunId) -> Result<Run> {
    with_head(reader, load_record(reader, id)?)?.ok_or_else(|| missing(id))
}

/// How often a record read without a head is read again before its
/// record's own count is taken (see [`with_head`]).
pub(super) const RE_READS: usize = 4;

/// `run` (a stored record) with its stored head; `None` when the run was
/// deleted after its record was read.
///
/// An engine without snapshot reads can show a record, then (a delete
/// having committed in between) no head and no events: a run that never
/// was. So a record found without a head (a run not yet appended to, or
/// written before heads were kept apart) counts only if it is still
/// stored as it was read; a changed one is read again.
pub(super) fn with_head(reader: &dyn Reader, run: Run) -> Result<Option<Run>> {
    let mut run = run;
    for _ in 0..RE_READS {
        if let Some(bytes) = reader.get(Table::RunHeads, &keys::run(run.id))? {
            return Ok(Some(RunHead::decode(run.id, &bytes)?.apply(run)));
        }
        let head = RunHead::without_head(reader, &run)?;
        match get_record::<Run>(reader, Table::Runs, &keys::run(run.id), "run record")? {
            None => return Ok(None),
            Some(now) if now == run => return Ok(Some(head.apply(run))),
            Some(now) => run = now,
        }
    }
    Ok(Some(RunHead::without_head(reader, &run)?.apply(run)))
}

/// The run that index entry `(table, key)` names, or `None` when the run
/// and the entry are both gone: deleted after the entry was read, which
/// an engine without snapshot reads lets a job see (entry and run go in
/// one write, so one missing without the other is damage).
///
/// # Errors
/// `Corrupted` when the entry is still there but the run is not.
pub(super) fn indexed_run(
    reader: &dyn Reader,
    table: Table,
    key: &[u8],
    id: RunId,
) -> Result<Option<Run>> {
    match find_run(reader, id)? {
        None if reader.get(table, key)?.is_some() => Err(Error::corrupted(format!(
            "run index names missing run {id}"
        ))),
        run => Ok(run),
    }
}

/// Run `id`, or `None` when it does not exist.
pub(super) fn find_run(reader: &dyn Reader, id: RunId) -> Result<Option<Run>> {
    match load_run(reader, id) {
        Ok(run) => Ok(Some(run)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn load_event(reader: &dyn Reader, id: RunId, seq: u64) -> Result<RunEvent> {
    reader
        .get(Table::RunEvents, &keys::run_event(id, seq))?
        .map(|bytes| decode_event("run event", &bytes))
        .transpose()?
        .ok_or_else(|| Error::corrupted(format!("run {id}: event {seq} is missing from the log")))
}

impl Shared {
    /// The run's head: from the cache (taking the entry out) or the engine.
    fn load_head(&self, txn: &dyn Txn, id: RunId) -> Result<RunHead> {
        if let Some(cached) = self.cache().and_then(|c| c.take(&Log::Run(id))?.run()) {
            return Ok(cached);
        }
        RunHead::load(txn, id)
    }

    /// Appends `checked` to run `id`, or returns the original event of a
    /// retried idempotency key (writing nothing). A new event records the
    /// run's references to `refs` (the blobs it declares) with it.
    /// Returns the event and, when it wrote, the cache token to settle.
    fn append(
        &self,
        txn: &mut dyn Txn,
        id: RunId,
        checked: CheckedEvent,
        refs: &[Digest],
    ) -> Result<(RunEvent, Option<u64>)> {
        let head = self.load_head(txn, id)?;
        let new = &checked.new;
        if let Some(key) = &new.idempotency_key {
            if let Some(seq) = txn.get(Table::RunIdempotency, &keys::run_idempotency(id, key))? {
                let seq = keys::decode_u64("run idempotency entry", &seq)?;
                let event = load_event(txn, id, seq)?.retried(new)?;
                // An acknowledged retry references what it declares, like
                // the original; nothing else is written, so the head taken
                // out is still current.
                confirm_refs(txn, &Referrer::Run(id), refs, self.now())?;
                let token = self
                    .cache()
                    .map(|c| c.put_pending(Log::Run(id), Head::Run(head), None));
                return Ok((event, token));
            }
        }
        head.check_running()?;
        let event = RunEvent::build_checked(id, head.count, head.hash, checked, self.now())?;
        let head = head.after(&event)?;
        let value = encode_event(&event)?;
        // For the run's cached tail, once the engine applied the append.
        let appended = self.cache().map(|_| Bytes::copy_from_slice(&value));
        txn.put(Table::RunEvents, keys::run_event(id, event.seq), value)?;
        if let Some(key) = &event.idempotency_key {
            txn.put(
                Table::RunIdempotency,
                keys::run_idempotency(id, key),
                event.seq.to_be_bytes().to_vec(),
            )?;
        }
        head.put(txn)?;
        confirm_refs(txn, &Referrer::Run(id), refs, self.now())?;
        let token = self
            .cache()
            .map(|c| c.put_pending(Log::Run(id), Head::Run(head), appended));
        Ok((event, token))
    }

    /// Runs matching `filter`, newest first, strictly before `after`.
    fn list_runs(
        reader: &dyn Reader,
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
                    reader.scan(table, &start, Some(&end), Direction::Reverse, LIST_PAGE)?
                }
                None => {
                    let (start, end) = keys::runs_before(cursor);
                    reader.scan(table, &start, end.as_deref(), Direction::Reverse, LIST_PAGE)?
                }
            };
            let exhausted = page.len() < LIST_PAGE;
            for (key, value) in &page {
                let run: Run = match &prefix {
                    Some(_) => {
                        let id = keys::run_id_suffix(key)?;
                        cursor = Some(id);
                        match indexed_run(reader, table, key, id)? {
                            Some(run) => run,
                            None => continue,
                        }
                    }
                    None => {
                        let run: Run = decode_keyed("run record", key, value)?;
                        cursor = Some(run.id);
                        match with_head(reader, run)? {
                            Some(run) => run,
                            None => continue,
                        }
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

impl EngineStore {
    /// A page of run `run`'s events read from the engine.
    async fn engine_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let page = self
            .read(move |_, reader| {
                // Existence first, so an unknown run is NotFound, not empty
                // (without decoding the record: its tags may be large).
                if reader.get(Table::Runs, &keys::run(run))?.is_none() {
                    return Err(missing(run));
                }
                let Some((start, end)) = keys::run_events_after(run, after_seq) else {
                    return Ok(RawPage::default());
                };
                let page = RawPage::scan(reader, Table::RunEvents, (&start, &end), limit)?;
                // A page cut short may be a delete that committed while it
                // was read (an engine without snapshot reads shows that):
                // a run still there after it was there throughout (run ids
                // are never reused), one gone is NotFound, never a log
                // that lost its tail.
                if page.len() < limit && reader.get(Table::Runs, &keys::run(run))?.is_none() {
                    return Err(missing(run));
                }
                Ok(page)
            })
            .await?;
        let events = page
            .decode_entries(
                |bytes| decode_event("run event", bytes),
                |bytes| decode_checked_event("run event", bytes),
            )
            .await?;
        own_entries(&format!("run {run}"), events, after_seq, |e| {
            (e.run_id == run, e.seq)
        })
    }
}

#[async_trait]
impl RunLedger for EngineStore {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        metadata.validate()?;
        let now = self.0.now();
        let id = self.0.env.ids.new_run_id(now);
        let call = self
            .reference_call([spec_digest], Referrer::Run(id))
            .await?;
        let mut metadata = Owned::new(metadata);
        let created = self
            .write(scope(id), move |shared, txn| {
                if txn.get(Table::Runs, &keys::run(id))?.is_some() {
                    return Err(run_id_taken(id));
                }
                // A head without a record is damage. Reading it also tells an
                // optimistic engine that the head is this entity's to watch
                // (the Redis engine then answers the first append from memory).
                if txn.get(Table::RunHeads, &keys::run(id))?.is_some() {
                    return Err(Error::corrupted(format!(
                        "run {id}: a head is stored but no run record"
                    )));
                }
                let run = Run::new(id, spec_digest, metadata.take(shared)?, now);
                txn.put(Table::Runs, keys::run(id), encode_record(&run)?)?;
                RunHead::of(&run).put(txn)?;
                txn.put(
                    Table::RunsBySpec,
                    keys::run_by_spec(&spec_digest, id),
                    Vec::new(),
                )?;
                txn.put(
                    Table::RunsByAgent,
                    keys::run_by_agent(&run.metadata.agent_name, id),
                    Vec::new(),
                )?;
                confirm_refs(txn, &Referrer::Run(id), &[spec_digest], now)?;
                Ok(id)
            })
            .await;
        self.settle_call(call, created).await
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        let event = event.checked()?;
        // No write when the event declares no blob.
        let call = self
            .reference_call(event.new.blobs.iter().copied(), Referrer::Run(run))
            .await?;
        let refs = call.digests();
        let mut event = Owned::new(event);
        let applied = self
            .write_applied(scope(run), move |shared, txn| {
                shared.append(txn, run, event.take(shared)?, &refs)
            })
            .await;
        let appended = self.settle(&Log::Run(run), applied).await;
        self.settle_call(call, appended).await
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        summary.validate()?;
        let declared = if status.is_terminal() {
            summary.blobs.clone()
        } else {
            Vec::new()
        };
        let call = self.reference_call(declared, Referrer::Run(run)).await?;
        let refs = call.digests();
        let log = Log::Run(run);
        let mut summary = Owned::new(summary);
        let applied = self
            .write_applied(scope(run), move |shared, txn| {
                let finished =
                    load_run(txn, run)?.finish(status, summary.take(shared)?, shared.now())?;
                txn.put(Table::Runs, keys::run(run), encode_record(&finished)?)?;
                confirm_refs(txn, &Referrer::Run(run), &refs, shared.now())?;
                let head = RunHead::of(&finished);
                head.put(txn)?;
                // The finished head replaces the cached one, pending until
                // applied, and keeps the run's cached tail readable (a
                // just-finished run is often read back at once).
                let token = shared
                    .cache()
                    .map(|c| c.put_pending(Log::Run(run), Head::Run(head), None));
                Ok((finished, token))
            })
            .await;
        let finished = self.settle(&log, applied).await;
        self.settle_call(call, finished).await
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.read(move |_, reader| load_run(reader, run)).await
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let limit = page_limit(limit);
        let decode = |bytes: &[u8]| decode_event("run event", bytes);
        let log = Log::Run(run);
        if let Some(page) = self.cached_page(&log, after_seq, limit, decode).await {
            return page;
        }
        self.engine_events(run, after_seq, limit).await
    }

    /// Reads from the engine, never from the stores' cache: verification
    /// exists to catch edits made behind the stores' back.
    async fn verify_run(&self, run: RunId) -> Result<ChainReport> {
        verify_events(self, run, |after| {
            self.engine_events(run, after, VERIFY_PAGE)
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
            validate::identifier("agent name", agent)?;
        }
        let limit = page_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = filter.clone();
        self.read(move |_, reader| Shared::list_runs(reader, &filter, after, limit))
            .await
    }
}
