//! Runs and their hash-chained event logs in memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use stowage_core::validate::page_limit;
use stowage_core::{
    Digest, Error, NewEvent, Result, Run, RunEvent, RunFilter, RunId, RunLedger, RunMetadata,
    RunStatus, RunSummary,
};

use stowage_core::run::run_id_taken;

use super::{page_after, State};

/// One run: its record, its events (index = seq) and its idempotency keys.
#[derive(Clone)]
struct RunEntry {
    run: Run,
    events: Vec<RunEvent>,
    keys: HashMap<String, u64>,
}

type Shared = Arc<Mutex<RunEntry>>;

/// Every run, newest last. The map lock is write-locked only to insert a
/// run; each run has its own mutex.
#[derive(Default)]
pub(crate) struct Runs {
    map: RwLock<BTreeMap<RunId, Shared>>,
}

impl Runs {
    pub(crate) fn snapshot(&self) -> Self {
        let map = self
            .map
            .read()
            .iter()
            .map(|(id, e)| (*id, Arc::new(Mutex::new(e.lock().clone()))))
            .collect();
        Runs {
            map: RwLock::new(map),
        }
    }

    pub(crate) fn corrupt_event(&self, run: RunId, seq: u64) -> bool {
        let Some(entry) = self.map.read().get(&run).cloned() else {
            return false;
        };
        let mut entry = entry.lock();
        let Some(event) = usize::try_from(seq)
            .ok()
            .and_then(|i| entry.events.get_mut(i))
        else {
            return false;
        };
        event.payload = json!({ "tampered": event.payload.take() });
        true
    }

    pub(crate) fn replace_events(&self, run: RunId, events: Vec<RunEvent>) -> bool {
        let Some(entry) = self.map.read().get(&run).cloned() else {
            return false;
        };
        entry.lock().events = events;
        true
    }

    pub(crate) fn set_head(&self, run: RunId, head: Option<Digest>) -> bool {
        let Some(entry) = self.map.read().get(&run).cloned() else {
            return false;
        };
        entry.lock().run.head = head;
        true
    }

    fn get(&self, run: RunId) -> Result<Shared> {
        self.map
            .read()
            .get(&run)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("run {run} does not exist")))
    }
}

/// The [`RunLedger`] of a memory backend.
pub(crate) struct MemoryRuns(pub(crate) Arc<State>);

#[async_trait]
impl RunLedger for MemoryRuns {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        metadata.validate()?;
        let _w = self.0.writing();
        let now = self.0.now();
        let id = self.0.env.ids.new_run_id(now);
        let entry = RunEntry {
            run: Run::new(id, spec_digest, metadata, now),
            events: Vec::new(),
            keys: HashMap::new(),
        };
        let mut map = self.0.runs.map.write();
        if map.contains_key(&id) {
            return Err(run_id_taken(id));
        }
        map.insert(id, Arc::new(Mutex::new(entry)));
        Ok(id)
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        event.validate()?;
        let _w = self.0.writing();
        let shared = self.0.runs.get(run)?;
        let mut entry = shared.lock();
        // Idempotency first: a retry after the run ended still gets the original.
        if let Some(key) = &event.idempotency_key {
            if let Some(original) = entry
                .keys
                .get(key)
                .and_then(|&seq| usize::try_from(seq).ok())
                .and_then(|i| entry.events.get(i))
            {
                return original.clone().retried(&event);
            }
        }
        entry.run.check_running()?;
        let next_seq = entry.run.event_count;
        let built = RunEvent::build(run, next_seq, entry.run.head, event, self.0.now())?;
        entry.run.record_append(&built)?;
        if let Some(key) = &built.idempotency_key {
            entry.keys.insert(key.clone(), built.seq);
        }
        entry.events.push(built.clone());
        Ok(built)
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        let _w = self.0.writing();
        let shared = self.0.runs.get(run)?;
        let mut entry = shared.lock();
        let finished = entry.run.finish(status, summary, self.0.now())?;
        entry.run = finished.clone();
        Ok(finished)
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        let shared = self.0.runs.get(run)?;
        let run = shared.lock().run.clone();
        Ok(run)
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let shared = self.0.runs.get(run)?;
        let entry = shared.lock();
        Ok(page_after(&entry.events, after_seq, limit))
    }

    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let limit = page_limit(limit);
        let upper = after.map_or(Bound::Unbounded, Bound::Excluded);
        let map = self.0.runs.map.read();
        let mut out = Vec::new();
        for shared in map.range((Bound::Unbounded, upper)).rev().map(|(_, e)| e) {
            if out.len() >= limit {
                break;
            }
            let entry = shared.lock();
            if filter.matches(&entry.run) {
                out.push(entry.run.clone());
            }
        }
        Ok(out)
    }
}
