//! The five store traits over an [`Interposed`] layer: each method describes
//! its key arguments and forwards to the same method of the wrapped store.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use stowage_core::validate::preview;
use stowage_core::{
    AgentKey, BlobReader, BlobStat, BlobStream, CasStore, ChainReport, Digest, LogEntry, NewEvent,
    NewLogEntry, PutOutcome, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Resolution, Result,
    Run, RunEvent, RunFilter, RunId, RunLedger, RunMetadata, RunStatus, RunSummary, Session,
    SessionState, SessionStore, Supersession, SupersessionCursor, SupersessionStore, Timestamp,
};

use super::Interposed;
use crate::operation::Operation as Op;

/// An identifier, quoted and shortened.
fn id(value: &str) -> String {
    format!("{:?}", preview(value))
}

fn opt_id(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_owned(), id)
}

fn opt_u64(value: Option<u64>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn opt_digest(value: Option<&Digest>) -> String {
    value.map_or_else(|| "none".to_owned(), Digest::short)
}

#[async_trait]
impl CasStore for Interposed {
    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        let args = format!("{} bytes", bytes.len());
        self.run(Op::CasPut, args, self.inner.cas.put(bytes)).await
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        let args = digest.short();
        self.run(Op::CasGet, args, self.inner.cas.get(digest)).await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let args = digest.short();
        self.run(Op::CasContains, args, self.inner.cas.contains(digest))
            .await
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let args = digest.short();
        self.run(Op::CasStat, args, self.inner.cas.stat(digest))
            .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let args = digest.short();
        self.run(Op::CasDelete, args, self.inner.cas.delete(digest))
            .await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let args = format!("after {}, limit {limit}", opt_digest(after));
        self.run(Op::CasList, args, self.inner.cas.list(after, limit))
            .await
    }

    async fn verify(&self, digest: &Digest) -> Result<()> {
        let args = digest.short();
        self.run(Op::CasVerify, args, self.inner.cas.verify(digest))
            .await
    }

    fn max_blob_size(&self) -> u64 {
        self.inner.cas.max_blob_size()
    }

    async fn put_stream(&self, reader: BlobReader) -> Result<Digest> {
        let args = "stream".to_owned();
        self.run(Op::CasPutStream, args, self.inner.cas.put_stream(reader))
            .await
    }

    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        let args = digest.short();
        self.run(Op::CasGetStream, args, self.inner.cas.get_stream(digest))
            .await
    }
}

#[async_trait]
impl RunLedger for Interposed {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        let args = format!(
            "spec {}, agent {}",
            spec_digest.short(),
            id(&metadata.agent_name)
        );
        let call = self.inner.runs.create_run(spec_digest, metadata);
        self.run(Op::RunsCreateRun, args, call).await
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        let args = format!("run {run}, kind {}", id(&event.kind));
        let call = self.inner.runs.append_event(run, event);
        self.run(Op::RunsAppendEvent, args, call).await
    }

    async fn complete_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let args = format!("run {run}");
        let call = self.inner.runs.complete_run(run, summary);
        self.run(Op::RunsCompleteRun, args, call).await
    }

    async fn fail_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let args = format!("run {run}");
        let call = self.inner.runs.fail_run(run, summary);
        self.run(Op::RunsFailRun, args, call).await
    }

    async fn cancel_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let args = format!("run {run}");
        let call = self.inner.runs.cancel_run(run, summary);
        self.run(Op::RunsCancelRun, args, call).await
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        let args = format!("run {run}, status {status}");
        let call = self.inner.runs.finish_run(run, status, summary);
        self.run(Op::RunsFinishRun, args, call).await
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        let args = format!("run {run}");
        self.run(Op::RunsGetRun, args, self.inner.runs.get_run(run))
            .await
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let args = format!("run {run}, after {}, limit {limit}", opt_u64(after_seq));
        let call = self.inner.runs.read_events(run, after_seq, limit);
        self.run(Op::RunsReadEvents, args, call).await
    }

    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let after_text = after.map_or_else(|| "none".to_owned(), |r| r.to_string());
        let args = format!("{filter:?}, after {after_text}, limit {limit}");
        let call = self.inner.runs.list_runs(filter, after, limit);
        self.run(Op::RunsListRuns, args, call).await
    }

    async fn verify_run(&self, run: RunId) -> Result<ChainReport> {
        let args = format!("run {run}");
        self.run(Op::RunsVerifyRun, args, self.inner.runs.verify_run(run))
            .await
    }
}

#[async_trait]
impl ReleaseRegistry for Interposed {
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_next_seq: Option<u64>,
    ) -> Result<ReleaseRecord> {
        let args = format!(
            "name {}, spec {}, expected {}",
            id(name),
            spec_digest.short(),
            opt_u64(expected_next_seq)
        );
        let call = self
            .inner
            .releases
            .promote(name, spec_digest, metadata, expected_next_seq);
        self.run(Op::ReleasesPromote, args, call).await
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        let args = format!("name {}, by {}", id(name), id(promoted_by));
        let call = self.inner.releases.rollback(name, promoted_by);
        self.run(Op::ReleasesRollback, args, call).await
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        let args = format!("name {}, seq {seq}, by {}", id(name), id(promoted_by));
        let call = self.inner.releases.rollback_to(name, seq, promoted_by);
        self.run(Op::ReleasesRollbackTo, args, call).await
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        let args = format!("name {}", id(name));
        self.run(Op::ReleasesCurrent, args, self.inner.releases.current(name))
            .await
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        let args = format!(
            "name {}, before {}, limit {limit}",
            id(name),
            opt_u64(before)
        );
        let call = self.inner.releases.history(name, before, limit);
        self.run(Op::ReleasesHistory, args, call).await
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let args = format!("after {}, limit {limit}", opt_id(after));
        let call = self.inner.releases.list_names(after, limit);
        self.run(Op::ReleasesListNames, args, call).await
    }
}

#[async_trait]
impl SessionStore for Interposed {
    async fn create_session(&self, sid: &str, data: Value) -> Result<Session> {
        let args = format!("session {}", id(sid));
        let call = self.inner.sessions.create_session(sid, data);
        self.run(Op::SessionsCreateSession, args, call).await
    }

    async fn load_session(&self, sid: &str) -> Result<Option<Session>> {
        let args = format!("session {}", id(sid));
        let call = self.inner.sessions.load_session(sid);
        self.run(Op::SessionsLoadSession, args, call).await
    }

    async fn save_session(
        &self,
        sid: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        let args = format!(
            "session {}, expected version {}",
            id(sid),
            opt_u64(expected_version)
        );
        let call = self
            .inner
            .sessions
            .save_session(sid, data, expected_version);
        self.run(Op::SessionsSaveSession, args, call).await
    }

    async fn set_session_state(
        &self,
        sid: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        let args = format!(
            "session {}, state {state}, expected version {}",
            id(sid),
            opt_u64(expected_version)
        );
        let call = self
            .inner
            .sessions
            .set_session_state(sid, state, expected_version);
        self.run(Op::SessionsSetSessionState, args, call).await
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let args = format!("after {}, limit {limit}", opt_id(after));
        let call = self.inner.sessions.list_sessions(after, limit);
        self.run(Op::SessionsListSessions, args, call).await
    }

    async fn delete_session(&self, sid: &str) -> Result<bool> {
        let args = format!("session {}", id(sid));
        let call = self.inner.sessions.delete_session(sid);
        self.run(Op::SessionsDeleteSession, args, call).await
    }

    async fn append_log(&self, sid: &str, entry: NewLogEntry) -> Result<LogEntry> {
        let args = format!(
            "session {}, {} bytes, key {}",
            id(sid),
            entry.payload.len(),
            opt_id(entry.idempotency_key.as_deref())
        );
        let call = self.inner.sessions.append_log(sid, entry);
        self.run(Op::SessionsAppendLog, args, call).await
    }

    async fn read_log(
        &self,
        sid: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        let args = format!(
            "session {}, after {}, limit {limit}",
            id(sid),
            opt_u64(after_seq)
        );
        let call = self.inner.sessions.read_log(sid, after_seq, limit);
        self.run(Op::SessionsReadLog, args, call).await
    }

    async fn replace_log(
        &self,
        sid: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        let args = format!(
            "session {}, {} entries, expected {}",
            id(sid),
            entries.len(),
            opt_u64(expected_next_seq)
        );
        let call = self
            .inner
            .sessions
            .replace_log(sid, entries, expected_next_seq);
        self.run(Op::SessionsReplaceLog, args, call).await
    }

    async fn verify_log(&self, sid: &str) -> Result<ChainReport> {
        let args = format!("session {}", id(sid));
        let call = self.inner.sessions.verify_log(sid);
        self.run(Op::SessionsVerifyLog, args, call).await
    }
}

#[async_trait]
impl SupersessionStore for Interposed {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        let args = format!(
            "target {}, replacement {}",
            record.target.short(),
            opt_digest(record.replacement.as_ref())
        );
        let call = self.inner.supersessions.put(record);
        self.run(Op::SupersessionsPut, args, call).await
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        let args = format!("target {}", target.short());
        let call = self.inner.supersessions.get(target);
        self.run(Op::SupersessionsGet, args, call).await
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        let args = format!("target {}", target.short());
        let call = self.inner.supersessions.is_superseded(target);
        self.run(Op::SupersessionsIsSuperseded, args, call).await
    }

    async fn by_agent(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<SupersessionCursor>,
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let agent_text = agent.to_string();
        let to_text = to.map_or_else(|| "none".to_owned(), |t| t.to_string());
        let after_text = after.map_or_else(
            || "none".to_owned(),
            |c| format!("{}@{}", c.target.short(), c.timestamp),
        );
        let args = format!(
            "agent {}, from {from}, to {to_text}, after {after_text}, limit {limit}",
            agent_text.get(..12).unwrap_or(&agent_text)
        );
        let call = self
            .inner
            .supersessions
            .by_agent(agent, from, to, after, limit);
        self.run(Op::SupersessionsByAgent, args, call).await
    }

    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let args = format!("after {}, limit {limit}", opt_digest(after.as_ref()));
        let call = self.inner.supersessions.list(after, limit);
        self.run(Op::SupersessionsList, args, call).await
    }

    async fn resolve(&self, hash: &Digest) -> Result<Resolution> {
        let args = format!("hash {}", hash.short());
        let call = self.inner.supersessions.resolve(hash);
        self.run(Op::SupersessionsResolve, args, call).await
    }
}
