//! The five store traits over an [`Interposed`] layer. Every method has the
//! same shape: describe the call (operation, entity, args text, seq,
//! idempotency key), then run it through the interceptor with a closure
//! that starts one run of the same method of the wrapped store. Owned
//! arguments go through [`Reuse`] so that a retry can run the call again.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::validate::preview;
use crate::{
    AgentKey, BlobReader, BlobStat, BlobStream, CasStore, ChainReport, Digest, LogEntry, NewEvent,
    NewLogEntry, PutOutcome, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Resolution, Result,
    Run, RunEvent, RunFilter, RunId, RunLedger, RunMetadata, RunStatus, RunSummary, Session,
    SessionState, SessionStore, Supersession, SupersessionStore, Timestamp,
};

use super::{Entity, Interposed, Operation as Op, Reuse};

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
        let call = self.call(Op::CasPut, None, || format!("{} bytes", bytes.len()));
        let mut bytes = Reuse::new(bytes);
        self.run(call, move |last| {
            bytes.take(last).map(|b| self.inner.cas.put(b))
        })
        .await
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        let call = self.call(Op::CasGet, Some(Entity::Blob(*digest)), || digest.short());
        self.run(call, move |_| Some(self.inner.cas.get(digest)))
            .await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let entity = Some(Entity::Blob(*digest));
        let call = self.call(Op::CasContains, entity, || digest.short());
        self.run(call, move |_| Some(self.inner.cas.contains(digest)))
            .await
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let call = self.call(Op::CasStat, Some(Entity::Blob(*digest)), || digest.short());
        self.run(call, move |_| Some(self.inner.cas.stat(digest)))
            .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let call = self.call(Op::CasDelete, Some(Entity::Blob(*digest)), || {
            digest.short()
        });
        self.run(call, move |_| Some(self.inner.cas.delete(digest)))
            .await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let call = self.call(Op::CasList, None, || {
            format!("after {}, limit {limit}", opt_digest(after))
        });
        self.run(call, move |_| Some(self.inner.cas.list(after, limit)))
            .await
    }

    async fn verify(&self, digest: &Digest) -> Result<()> {
        let call = self.call(Op::CasVerify, Some(Entity::Blob(*digest)), || {
            digest.short()
        });
        self.run(call, move |_| Some(self.inner.cas.verify(digest)))
            .await
    }

    fn max_blob_size(&self) -> u64 {
        self.inner.cas.max_blob_size()
    }

    async fn put_stream(&self, reader: BlobReader) -> Result<Digest> {
        // Not repeatable (`Call::repeatable`): the reader is consumed once.
        let call = self.call(Op::CasPutStream, None, || "stream".to_owned());
        let mut reader = Some(reader);
        self.run(call, move |_| {
            reader.take().map(|r| self.inner.cas.put_stream(r))
        })
        .await
    }

    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        let entity = Some(Entity::Blob(*digest));
        let call = self.call(Op::CasGetStream, entity, || digest.short());
        self.run(call, move |_| Some(self.inner.cas.get_stream(digest)))
            .await
    }
}

#[async_trait]
impl RunLedger for Interposed {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        let call = self.call(Op::RunsCreateRun, None, || {
            format!(
                "spec {}, agent {}",
                spec_digest.short(),
                id(&metadata.agent_name)
            )
        });
        let mut metadata = Reuse::new(metadata);
        self.run(call, move |last| {
            (metadata.take(last)).map(|m| self.inner.runs.create_run(spec_digest, m))
        })
        .await
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        let call = self
            .call(Op::RunsAppendEvent, Some(Entity::Run(run)), || {
                format!("run {run}, kind {}", id(&event.kind))
            })
            .seq(event.expected_seq)
            .keyed(event.idempotency_key.is_some());
        let mut event = Reuse::new(event);
        self.run(call, move |last| {
            (event.take(last)).map(|e| self.inner.runs.append_event(run, e))
        })
        .await
    }

    async fn complete_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsCompleteRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.complete_run(run, s))
        })
        .await
    }

    async fn fail_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsFailRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.fail_run(run, s))
        })
        .await
    }

    async fn cancel_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsCancelRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.cancel_run(run, s))
        })
        .await
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsFinishRun, Some(Entity::Run(run)), || {
            format!("run {run}, status {status}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.finish_run(run, status, s))
        })
        .await
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        let call = self.call(Op::RunsGetRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        self.run(call, move |_| Some(self.inner.runs.get_run(run)))
            .await
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let call = self.call(Op::RunsReadEvents, Some(Entity::Run(run)), || {
            format!("run {run}, after {}, limit {limit}", opt_u64(after_seq))
        });
        self.run(call, move |_| {
            Some(self.inner.runs.read_events(run, after_seq, limit))
        })
        .await
    }

    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let call = self.call(Op::RunsListRuns, None, || {
            let after_text = after.map_or_else(|| "none".to_owned(), |r| r.to_string());
            format!("{filter:?}, after {after_text}, limit {limit}")
        });
        self.run(call, move |_| {
            Some(self.inner.runs.list_runs(filter, after, limit))
        })
        .await
    }

    async fn verify_run(&self, run: RunId) -> Result<ChainReport> {
        let call = self.call(Op::RunsVerifyRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        self.run(call, move |_| Some(self.inner.runs.verify_run(run)))
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
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self
            .call(Op::ReleasesPromote, entity, || {
                format!(
                    "name {}, spec {}, expected {}",
                    id(name),
                    spec_digest.short(),
                    opt_u64(expected_next_seq)
                )
            })
            .seq(expected_next_seq);
        let mut metadata = Reuse::new(metadata);
        self.run(call, move |last| {
            (metadata.take(last))
                .map(|m| (self.inner.releases).promote(name, spec_digest, m, expected_next_seq))
        })
        .await
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self.call(Op::ReleasesRollback, entity, || {
            format!("name {}, by {}", id(name), id(promoted_by))
        });
        self.run(call, move |_| {
            Some(self.inner.releases.rollback(name, promoted_by))
        })
        .await
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self
            .call(Op::ReleasesRollbackTo, entity, || {
                format!("name {}, seq {seq}, by {}", id(name), id(promoted_by))
            })
            .seq(Some(seq));
        self.run(call, move |_| {
            Some(self.inner.releases.rollback_to(name, seq, promoted_by))
        })
        .await
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self.call(Op::ReleasesCurrent, entity, || format!("name {}", id(name)));
        self.run(call, move |_| Some(self.inner.releases.current(name)))
            .await
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self.call(Op::ReleasesHistory, entity, || {
            format!(
                "name {}, before {}, limit {limit}",
                id(name),
                opt_u64(before)
            )
        });
        self.run(call, move |_| {
            Some(self.inner.releases.history(name, before, limit))
        })
        .await
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let call = self.call(Op::ReleasesListNames, None, || {
            format!("after {}, limit {limit}", opt_id(after))
        });
        self.run(call, move |_| {
            Some(self.inner.releases.list_names(after, limit))
        })
        .await
    }
}

#[async_trait]
impl SessionStore for Interposed {
    async fn create_session(&self, sid: &str, data: Value) -> Result<Session> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsCreateSession, entity, || {
            format!("session {}", id(sid))
        });
        let mut data = Reuse::new(data);
        self.run(call, move |last| {
            (data.take(last)).map(|d| self.inner.sessions.create_session(sid, d))
        })
        .await
    }

    async fn load_session(&self, sid: &str) -> Result<Option<Session>> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsLoadSession, entity, || {
            format!("session {}", id(sid))
        });
        self.run(call, move |_| Some(self.inner.sessions.load_session(sid)))
            .await
    }

    async fn save_session(
        &self,
        sid: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsSaveSession, entity, || {
            format!(
                "session {}, expected version {}",
                id(sid),
                opt_u64(expected_version)
            )
        });
        let mut data = Reuse::new(data);
        self.run(call, move |last| {
            (data.take(last)).map(|d| (self.inner.sessions).save_session(sid, d, expected_version))
        })
        .await
    }

    async fn set_session_state(
        &self,
        sid: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsSetSessionState, entity, || {
            format!(
                "session {}, state {state}, expected version {}",
                id(sid),
                opt_u64(expected_version)
            )
        });
        self.run(call, move |_| {
            Some((self.inner.sessions).set_session_state(sid, state, expected_version))
        })
        .await
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let call = self.call(Op::SessionsListSessions, None, || {
            format!("after {}, limit {limit}", opt_id(after))
        });
        self.run(call, move |_| {
            Some(self.inner.sessions.list_sessions(after, limit))
        })
        .await
    }

    async fn delete_session(&self, sid: &str) -> Result<bool> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsDeleteSession, entity, || {
            format!("session {}", id(sid))
        });
        self.run(call, move |_| Some(self.inner.sessions.delete_session(sid)))
            .await
    }

    async fn append_log(&self, sid: &str, entry: NewLogEntry) -> Result<LogEntry> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self
            .call(Op::SessionsAppendLog, entity, || {
                format!(
                    "session {}, {} bytes, key {}",
                    id(sid),
                    entry.payload.len(),
                    opt_id(entry.idempotency_key.as_deref())
                )
            })
            .keyed(entry.idempotency_key.is_some());
        let mut entry = Reuse::new(entry);
        self.run(call, move |last| {
            (entry.take(last)).map(|e| self.inner.sessions.append_log(sid, e))
        })
        .await
    }

    async fn read_log(
        &self,
        sid: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsReadLog, entity, || {
            format!(
                "session {}, after {}, limit {limit}",
                id(sid),
                opt_u64(after_seq)
            )
        });
        self.run(call, move |_| {
            Some(self.inner.sessions.read_log(sid, after_seq, limit))
        })
        .await
    }

    async fn replace_log(
        &self,
        sid: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self
            .call(Op::SessionsReplaceLog, entity, || {
                format!(
                    "session {}, {} entries, expected {}",
                    id(sid),
                    entries.len(),
                    opt_u64(expected_next_seq)
                )
            })
            .seq(expected_next_seq);
        let mut entries = Reuse::new(entries);
        self.run(call, move |last| {
            (entries.take(last))
                .map(|e| (self.inner.sessions).replace_log(sid, e, expected_next_seq))
        })
        .await
    }

    async fn verify_log(&self, sid: &str) -> Result<ChainReport> {
        let entity = Some(Entity::Session(sid.to_owned()));
        let call = self.call(Op::SessionsVerifyLog, entity, || {
            format!("session {}", id(sid))
        });
        self.run(call, move |_| Some(self.inner.sessions.verify_log(sid)))
            .await
    }
}

#[async_trait]
impl SupersessionStore for Interposed {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        let entity = Some(Entity::Assertion(record.target));
        let call = self.call(Op::SupersessionsPut, entity, || {
            format!(
                "target {}, replacement {}",
                record.target.short(),
                opt_digest(record.replacement.as_ref())
            )
        });
        let mut record = Reuse::new(record);
        self.run(call, move |last| {
            (record.take(last)).map(|r| self.inner.supersessions.put(r))
        })
        .await
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        let entity = Some(Entity::Assertion(*target));
        let call = self.call(Op::SupersessionsGet, entity, || {
            format!("target {}", target.short())
        });
        self.run(call, move |_| Some(self.inner.supersessions.get(target)))
            .await
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        let entity = Some(Entity::Assertion(*target));
        let call = self.call(Op::SupersessionsIsSuperseded, entity, || {
            format!("target {}", target.short())
        });
        self.run(call, move |_| {
            Some(self.inner.supersessions.is_superseded(target))
        })
        .await
    }

    async fn by_agent(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let call = self.call(
            Op::SupersessionsByAgent,
            Some(Entity::Agent(*agent)),
            || {
                let agent_text = agent.to_string();
                let to_text = to.map_or_else(|| "none".to_owned(), |t| t.to_string());
                format!(
                    "agent {}, from {from}, to {to_text}, limit {limit}",
                    agent_text.get(..12).unwrap_or(&agent_text)
                )
            },
        );
        self.run(call, move |_| {
            Some(self.inner.supersessions.by_agent(agent, from, to, limit))
        })
        .await
    }

    async fn resolve(&self, hash: &Digest) -> Result<Resolution> {
        let entity = Some(Entity::Assertion(*hash));
        let call = self.call(Op::SupersessionsResolve, entity, || {
            format!("hash {}", hash.short())
        });
        self.run(call, move |_| Some(self.inner.supersessions.resolve(hash)))
            .await
    }
}
