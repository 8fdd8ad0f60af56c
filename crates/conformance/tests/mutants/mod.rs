//! Deliberately broken stores: the memory backend behind wrappers that each
//! inject one bug, so the self-test can prove the checks catch it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{Harness, Tamper};
use stowage_core::supersession::sort_newest_first;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{
    AgentKey, Digest, Error, ErrorKind, LogEntry, NewEvent, NewLogEntry, PutOutcome,
    ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Result, Run, RunEvent, RunFilter, RunId,
    RunLedger, RunMetadata, RunStatus, RunSummary, Session, SessionState, SessionStore, StoreEnv,
    Stores, Supersession, SupersessionCursor, SupersessionStore, Timestamp,
};

/// The one bug a mutant store has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bug {
    /// `list_runs` oldest first.
    RunsOldestFirst,
    /// A second terminal transition returns `Ok` instead of `Conflict`.
    FinishSwallowsConflict,
    /// `append_event` reads the count, then compare-and-appends (not atomic).
    RacyAppend,
    /// An oversized event payload is half-stored before being rejected.
    AppendBeforeValidating,
    /// `by_agent` takes the `limit` oldest, then sorts them newest first.
    ByAgentLimitFirst,
    /// `by_agent` pages by the cursor's timestamp alone (skips the rest of
    /// a millisecond).
    ByAgentCursorByTimestamp,
    /// `create_session` sanitises ids instead of rejecting them.
    SessionIdsNotValidated,
    /// `append_log` drops the idempotency key.
    LogKeysIgnored,
    /// `delete_session` always says the session existed.
    DeleteAlwaysTrue,
    /// `rollback` restores the record just before the current one.
    RollbackOneBack,
    /// `tamper` does nothing but says it did.
    TamperDoesNothing,
    /// Claims durability; `reopen` opens an empty store.
    ReopenLosesData,
    /// `append_event` and `promote` drop their expected seq (no compare-and-set).
    CompareAndSetIgnored,
    /// `open_with` ignores the given clock: the store reads the wall clock.
    ClockIgnored,
    /// Session data reads back with every number as an `f64`, as a codec
    /// that knows only JavaScript numbers would return it.
    JsonNumbersThroughF64,
}

/// A memory store with one [`Bug`].
pub(crate) struct MutantHarness {
    backend: MemoryBackend,
    bug: Bug,
}

impl MutantHarness {
    pub(crate) fn new(bug: Bug) -> Self {
        MutantHarness {
            backend: MemoryBackend::new(StoreEnv::default()),
            bug,
        }
    }

    fn wrap(&self, inner: Stores) -> Stores {
        let bug = self.bug;
        let mut s = inner.clone();
        s.runs = Arc::new(Runs {
            inner: inner.runs,
            bug,
        });
        s.sessions = Arc::new(Sessions {
            inner: inner.sessions,
            bug,
        });
        s.releases = Arc::new(Releases {
            inner: inner.releases,
            bug,
        });
        s.supersessions = Arc::new(Supersessions {
            inner: inner.supersessions,
            bug,
        });
        if bug == Bug::ReopenLosesData {
            s.capabilities.durability = stowage_core::DurabilityLevel::ProcessCrash;
        }
        s
    }
}

#[async_trait]
impl Harness for MutantHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(self.wrap(self.backend.stores()))
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        Ok(self.wrap(MemoryBackend::new(StoreEnv::default()).stores()))
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        let env = if self.bug == Bug::ClockIgnored {
            StoreEnv::default()
        } else {
            env
        };
        Ok(self.wrap(MemoryBackend::new(env).stores()))
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        if self.bug == Bug::TamperDoesNothing {
            return Ok(());
        }
        let found = match &target {
            Tamper::Blob(d) => self.backend.corrupt_blob(d),
            Tamper::RunEvent { run, seq } => self.backend.corrupt_run_event(*run, *seq),
            Tamper::LogEntry { session, seq } => self.backend.corrupt_log_entry(session, *seq),
            Tamper::RunEvents { run, events } => {
                self.backend.corrupt_run_events(*run, events.clone())
            }
            Tamper::LogEntries { session, entries } => {
                self.backend.corrupt_log(session, entries.clone())
            }
            Tamper::RunHead { run, head } => self.backend.corrupt_run_head(*run, *head),
            Tamper::LogHead { session, head } => self.backend.corrupt_log_head(session, *head),
            other => return Err(Error::unsupported(format!("cannot inflict {other:?}"))),
        };
        found
            .then_some(())
            .ok_or_else(|| Error::not_found("nothing to tamper with"))
    }
}

struct Runs {
    inner: Arc<dyn RunLedger>,
    bug: Bug,
}

#[async_trait]
impl RunLedger for Runs {
    async fn create_run(&self, spec: Digest, metadata: RunMetadata) -> Result<RunId> {
        self.inner.create_run(spec, metadata).await
    }
    async fn append_event(&self, run: RunId, mut event: NewEvent) -> Result<RunEvent> {
        if self.bug == Bug::RacyAppend && event.expected_seq.is_none() {
            let count = self.inner.get_run(run).await?.event_count;
            tokio::task::yield_now().await;
            event.expected_seq = Some(count);
        }
        if self.bug == Bug::CompareAndSetIgnored {
            event.expected_seq = None;
        }
        if self.bug == Bug::AppendBeforeValidating && event.validate().is_err() {
            self.inner
                .append_event(run, NewEvent::new("partial", Value::Null))
                .await?;
        }
        self.inner.append_event(run, event).await
    }
    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        match self.inner.finish_run(run, status, summary).await {
            Err(e)
                if e.kind() == ErrorKind::Conflict && self.bug == Bug::FinishSwallowsConflict =>
            {
                self.inner.get_run(run).await
            }
            other => other,
        }
    }
    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.inner.get_run(run).await
    }
    async fn read_events(
        &self,
        run: RunId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        self.inner.read_events(run, after, limit).await
    }
    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let mut runs = self.inner.list_runs(filter, after, limit).await?;
        if self.bug == Bug::RunsOldestFirst {
            runs.reverse();
        }
        Ok(runs)
    }
}

struct Sessions {
    inner: Arc<dyn SessionStore>,
    bug: Bug,
}

#[async_trait]
impl SessionStore for Sessions {
    async fn create_session(&self, id: &str, data: Value) -> Result<Session> {
        if self.bug == Bug::SessionIdsNotValidated {
            let mut clean: String = id
                .chars()
                .map(|c| if c.is_control() { '_' } else { c })
                .collect();
            while clean.len() > 256 {
                clean.pop();
            }
            if clean.is_empty() {
                clean.push('_');
            }
            return self.inner.create_session(&clean, data).await;
        }
        self.inner.create_session(id, data).await
    }
    async fn load_session(&self, id: &str) -> Result<Option<Session>> {
        let mut session = self.inner.load_session(id).await?;
        if self.bug == Bug::JsonNumbersThroughF64 {
            if let Some(s) = session.as_mut() {
                numbers_as_f64(&mut s.data);
            }
        }
        Ok(session)
    }
    async fn save_session(&self, id: &str, data: Value, expected: Option<u64>) -> Result<Session> {
        self.inner.save_session(id, data, expected).await
    }
    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        expected: Option<u64>,
    ) -> Result<Session> {
        self.inner.set_session_state(id, state, expected).await
    }
    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        self.inner.list_sessions(after, limit).await
    }
    async fn delete_session(&self, id: &str) -> Result<bool> {
        let existed = self.inner.delete_session(id).await?;
        Ok(existed || self.bug == Bug::DeleteAlwaysTrue)
    }
    async fn append_log(&self, id: &str, mut entry: NewLogEntry) -> Result<LogEntry> {
        if self.bug == Bug::LogKeysIgnored {
            entry.idempotency_key = None;
        }
        self.inner.append_log(id, entry).await
    }
    async fn read_log(&self, id: &str, after: Option<u64>, limit: usize) -> Result<Vec<LogEntry>> {
        self.inner.read_log(id, after, limit).await
    }
    async fn replace_log(
        &self,
        id: &str,
        entries: Vec<NewLogEntry>,
        expected: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        self.inner.replace_log(id, entries, expected).await
    }
}

/// Turns every number in `value` into the nearest `f64`.
fn numbers_as_f64(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(numbers_as_f64),
        Value::Object(map) => map.values_mut().for_each(numbers_as_f64),
        _ => {}
    }
}

struct Releases {
    inner: Arc<dyn ReleaseRegistry>,
    bug: Bug,
}

#[async_trait]
impl ReleaseRegistry for Releases {
    async fn promote(
        &self,
        name: &str,
        spec: Digest,
        meta: ReleaseMetadata,
        expected: Option<u64>,
    ) -> Result<ReleaseRecord> {
        let expected = expected.filter(|_| self.bug != Bug::CompareAndSetIgnored);
        self.inner.promote(name, spec, meta, expected).await
    }
    async fn rollback(&self, name: &str, by: &str) -> Result<ReleaseRecord> {
        if self.bug == Bug::RollbackOneBack {
            let current = self.inner.current(name).await?;
            let back = current
                .seq
                .checked_sub(1)
                .ok_or_else(|| Error::conflict("nothing earlier"))?;
            return self.inner.rollback_to(name, back, by).await;
        }
        self.inner.rollback(name, by).await
    }
    async fn rollback_to(&self, name: &str, seq: u64, by: &str) -> Result<ReleaseRecord> {
        self.inner.rollback_to(name, seq, by).await
    }
    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        self.inner.current(name).await
    }
    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        self.inner.history(name, before, limit).await
    }
    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.inner.list_names(after, limit).await
    }
}

struct Supersessions {
    inner: Arc<dyn SupersessionStore>,
    bug: Bug,
}

#[async_trait]
impl SupersessionStore for Supersessions {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        self.inner.put(record).await
    }
    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        self.inner.get(target).await
    }
    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        self.inner.is_superseded(target).await
    }
    async fn by_agent(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<SupersessionCursor>,
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        if self.bug == Bug::ByAgentCursorByTimestamp {
            let to = match after {
                Some(c) if c.timestamp == Timestamp::ZERO => return Ok(Vec::new()),
                Some(c) => Some(Timestamp::from_millis(c.timestamp.as_millis() - 1)),
                None => to,
            };
            return self.inner.by_agent(agent, from, to, None, limit).await;
        }
        if self.bug != Bug::ByAgentLimitFirst {
            return self.inner.by_agent(agent, from, to, after, limit).await;
        }
        let mut all = self.inner.by_agent(agent, from, to, None, MAX_PAGE).await?;
        all.reverse();
        all.truncate(limit);
        sort_newest_first(&mut all);
        Ok(all)
    }
    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        self.inner.list(after, limit).await
    }
}
