//! `SessionStore` over an interposed layer, in the shape described in [`super`].

use async_trait::async_trait;
use serde_json::Value;

use crate::{ChainReport, LogEntry, NewLogEntry, Result, Session, SessionState, SessionStore};

use super::{id, opt_id, opt_u64};
use crate::layer::{Entity, Interposed, Operation as Op, Reuse};

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
