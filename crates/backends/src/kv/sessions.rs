//! `SessionStore` over the seam.
//!
//! Tables: `Sessions` (raw id → record, so they list by id; the record
//! keeps the log's length and head hash, rewritten in the batch of every
//! append and `replace_log`), `SessionLog` ((lp(id), seq) → entry) and
//! `SessionIdempotency` ((lp(id), lp(key)) → seq). Every call that changes
//! a session or its log holds the session's stripe and writes one atomic
//! batch, so `replace_log` and `delete_session` are seen whole.

use async_trait::async_trait;
use serde_json::Value;
use stowage_core::encoding::encode_record;
use stowage_core::validate::{self, page_limit};
use stowage_core::{Error, LogEntry, NewLogEntry, Result, Session, SessionState, SessionStore};

use super::keys;
use super::seam::{Batch, Direction, Table};
use super::{Kv, KvStore};

impl Kv {
    fn load_session(&self, id: &str) -> Result<Option<Session>> {
        self.get_record(Table::Sessions, &keys::session(id), "session record")
    }

    fn session_or_not_found(&self, id: &str) -> Result<Session> {
        self.load_session(id)?.ok_or_else(|| {
            Error::not_found(format!(
                "session {:?} does not exist",
                validate::preview(id)
            ))
        })
    }

    fn append_log_locked(&self, id: &str, new: NewLogEntry) -> Result<LogEntry> {
        let mut session = self.session_or_not_found(id)?;
        if let Some(key) = &new.idempotency_key {
            let stored = self
                .engine
                .get(Table::SessionIdempotency, &keys::log_idempotency(id, key))?;
            if let Some(seq) = stored {
                let seq = keys::decode_u64("log idempotency entry", &seq)?;
                let entry: Option<LogEntry> = self.get_record(
                    Table::SessionLog,
                    &keys::log_entry(id, seq),
                    "session log entry",
                )?;
                let entry = entry.ok_or_else(|| {
                    Error::corrupted(format!(
                        "session {:?}: idempotency key names missing entry {seq}",
                        validate::preview(id)
                    ))
                })?;
                return entry.retried(&new);
            }
        }
        session.check_log_open()?;
        let (next, prev_hash) = (session.log_len, session.log_head);
        let entry = LogEntry::build(id, next, prev_hash, new, self.now())?;
        session.record_append(&entry)?;
        let mut batch = Batch::default();
        put_entry(&mut batch, &entry)?;
        // The record's log length and head change with the log, atomically.
        batch.put(Table::Sessions, keys::session(id), encode_record(&session)?);
        self.write(batch)?;
        Ok(entry)
    }

    /// Stores `session` (after `change` produced it from the stored one).
    fn update_session(
        &self,
        id: &str,
        change: impl FnOnce(&Session) -> Result<Session>,
    ) -> Result<Session> {
        let _guard = self.locks.lock(Table::Sessions, id.as_bytes());
        let updated = change(&self.session_or_not_found(id)?)?;
        let mut batch = Batch::default();
        batch.put(Table::Sessions, keys::session(id), encode_record(&updated)?);
        self.write(batch)?;
        Ok(updated)
    }
}

/// Adds an entry and its idempotency key to `batch`.
fn put_entry(batch: &mut Batch, entry: &LogEntry) -> Result<()> {
    let id = &entry.session_id;
    batch.put(
        Table::SessionLog,
        keys::log_entry(id, entry.seq),
        encode_record(entry)?,
    );
    if let Some(key) = &entry.idempotency_key {
        batch.put(
            Table::SessionIdempotency,
            keys::log_idempotency(id, key),
            entry.seq.to_be_bytes().to_vec(),
        );
    }
    Ok(())
}

/// Adds the removal of a session's whole log to `batch`.
fn clear_log(batch: &mut Batch, id: &str) {
    let (start, end) = keys::whole_log(id);
    batch.delete_range(Table::SessionLog, start, end);
    let (start, end) = keys::all_log_idempotency(id);
    batch.delete_range(Table::SessionIdempotency, start, end);
}

#[async_trait]
impl SessionStore for KvStore {
    async fn create_session(&self, id: &str, data: Value) -> Result<Session> {
        let id = id.to_owned();
        let session = Session::new(&id, data, stowage_core::Timestamp::ZERO)?;
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Sessions, id.as_bytes());
            if kv
                .engine
                .get(Table::Sessions, &keys::session(&id))?
                .is_some()
            {
                return Err(Error::already_exists(format!(
                    "session {:?} already exists",
                    validate::preview(&id)
                )));
            }
            let now = kv.now();
            let session = Session {
                created_at: now,
                updated_at: now,
                ..session
            };
            let mut batch = Batch::default();
            batch.put(
                Table::Sessions,
                keys::session(&id),
                encode_record(&session)?,
            );
            kv.write(batch)?;
            Ok(session)
        })
        .await
    }

    async fn load_session(&self, id: &str) -> Result<Option<Session>> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        self.blocking(move |kv| kv.load_session(&id)).await
    }

    async fn save_session(
        &self,
        id: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        validate::json("session data", &data)?;
        let id = id.to_owned();
        self.mutate(move |kv| {
            let now = kv.now();
            kv.update_session(&id, |s| s.saved(data, expected_version, now))
        })
        .await
    }

    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        self.mutate(move |kv| {
            let now = kv.now();
            kv.update_session(&id, |s| s.with_state(state, expected_version, now))
        })
        .await
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let limit = page_limit(limit);
        let start = keys::sessions_after(after);
        self.blocking(move |kv| {
            kv.scan_records(
                Table::Sessions,
                &start,
                None,
                Direction::Forward,
                limit,
                "session record",
            )
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Sessions, id.as_bytes());
            if kv
                .engine
                .get(Table::Sessions, &keys::session(&id))?
                .is_none()
            {
                return Ok(false);
            }
            let mut batch = Batch::default();
            batch.delete(Table::Sessions, keys::session(&id));
            clear_log(&mut batch, &id);
            kv.write(batch)?;
            Ok(true)
        })
        .await
    }

    async fn append_log(&self, id: &str, entry: NewLogEntry) -> Result<LogEntry> {
        validate::identifier("session id", id)?;
        entry.validate()?;
        let id = id.to_owned();
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Sessions, id.as_bytes());
            kv.append_log_locked(&id, entry)
        })
        .await
    }

    async fn read_log(
        &self,
        id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        let limit = page_limit(limit);
        let id = id.to_owned();
        self.blocking(move |kv| {
            kv.session_or_not_found(&id)?;
            let Some((start, end)) = keys::log_after(&id, after_seq) else {
                return Ok(Vec::new());
            };
            kv.scan_records(
                Table::SessionLog,
                &start,
                Some(&end),
                Direction::Forward,
                limit,
                "session log entry",
            )
        })
        .await
    }

    async fn replace_log(
        &self,
        id: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        self.mutate(move |kv| {
            let log = LogEntry::build_log(&id, entries, kv.now())?;
            let _guard = kv.locks.lock(Table::Sessions, id.as_bytes());
            let mut session = kv.session_or_not_found(&id)?;
            session.check_log_open()?;
            if let Some(expected) = expected_next_seq {
                let next = session.log_len;
                if expected != next {
                    return Err(Error::conflict(format!(
                        "session {:?}: expected the log to end at seq {expected} but it ends at {next}",
                        validate::preview(&id)
                    )));
                }
            }
            let mut batch = Batch::default();
            clear_log(&mut batch, &id);
            for entry in &log {
                put_entry(&mut batch, entry)?;
            }
            session.record_replace(&log);
            batch.put(Table::Sessions, keys::session(&id), encode_record(&session)?);
            kv.write(batch)?;
            Ok(log)
        })
        .await
    }
}
