//! `SessionStore` over the seam.
//!
//! Tables: `Sessions` (raw id → record, so they list by id; the record
//! keeps the log's length and head hash, rewritten by every append and
//! `replace_log`), `SessionLog` ((lp(id), seq) → entry) and
//! `SessionIdempotency` ((lp(id), lp(key)) → seq). Every call that changes
//! a session or its log is one write job in the session's scope, so
//! `replace_log` and `delete_session` are seen whole.

use async_trait::async_trait;
use serde_json::Value;

use super::{get_record, scan_records, EngineStore, RawPage};
use crate::encoding::{decode_record, encode_record};
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::validate::{self, page_limit};
use crate::{Error, LogEntry, NewLogEntry, Result, Session, SessionState, SessionStore, Timestamp};

pub(super) fn scope(id: &str) -> Scope {
    Scope::entity(Table::Sessions, keys::session(id))
}

pub(super) fn load(reader: &dyn Reader, id: &str) -> Result<Option<Session>> {
    get_record(
        reader,
        Table::Sessions,
        &keys::session(id),
        "session record",
    )
}

pub(super) fn load_or_not_found(reader: &dyn Reader, id: &str) -> Result<Session> {
    load(reader, id)?.ok_or_else(|| {
        Error::not_found(format!(
            "session {:?} does not exist",
            validate::preview(id)
        ))
    })
}

fn append(txn: &mut dyn Txn, id: &str, new: NewLogEntry, now: Timestamp) -> Result<LogEntry> {
    let mut session = load_or_not_found(txn, id)?;
    if let Some(key) = &new.idempotency_key {
        if let Some(seq) = txn.get(Table::SessionIdempotency, &keys::log_idempotency(id, key))? {
            let seq = keys::decode_u64("log idempotency entry", &seq)?;
            let entry: Option<LogEntry> = get_record(
                txn,
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
    let entry = LogEntry::build(id, session.log_len, session.log_head, new, now)?;
    session.record_append(&entry)?;
    put_entry(txn, &entry)?;
    txn.put(Table::Sessions, keys::session(id), encode_record(&session)?)?;
    Ok(entry)
}

pub(super) fn put_entry(txn: &mut dyn Txn, entry: &LogEntry) -> Result<()> {
    let id = &entry.session_id;
    txn.put(
        Table::SessionLog,
        keys::log_entry(id, entry.seq),
        encode_record(entry)?,
    )?;
    if let Some(key) = &entry.idempotency_key {
        txn.put(
            Table::SessionIdempotency,
            keys::log_idempotency(id, key),
            entry.seq.to_be_bytes().to_vec(),
        )?;
    }
    Ok(())
}

pub(super) fn clear_log(txn: &mut dyn Txn, id: &str) -> Result<()> {
    let (start, end) = keys::whole_log(id);
    txn.delete_range(Table::SessionLog, start, end)?;
    let (start, end) = keys::all_log_idempotency(id);
    txn.delete_range(Table::SessionIdempotency, start, end)
}

impl EngineStore {
    /// Rewrites the record of session `id` as `change` says.
    async fn update_session(
        &self,
        id: &str,
        change: impl FnOnce(&Session, Timestamp) -> Result<Session> + Send + 'static,
    ) -> Result<Session> {
        let id = id.to_owned();
        self.write(scope(&id), move |shared, txn| {
            let updated = change(&load_or_not_found(txn, &id)?, shared.now())?;
            txn.put(
                Table::Sessions,
                keys::session(&id),
                encode_record(&updated)?,
            )?;
            Ok(updated)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for EngineStore {
    async fn create_session(&self, id: &str, data: Value) -> Result<Session> {
        let session = Session::new(id, data, Timestamp::ZERO)?;
        let id = id.to_owned();
        self.write(scope(&id), move |shared, txn| {
            if txn.get(Table::Sessions, &keys::session(&id))?.is_some() {
                return Err(Error::already_exists(format!(
                    "session {:?} already exists",
                    validate::preview(&id)
                )));
            }
            let now = shared.now();
            let session = Session {
                created_at: now,
                updated_at: now,
                ..session
            };
            txn.put(
                Table::Sessions,
                keys::session(&id),
                encode_record(&session)?,
            )?;
            Ok(session)
        })
        .await
    }

    async fn load_session(&self, id: &str) -> Result<Option<Session>> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        self.read(move |_, reader| load(reader, &id)).await
    }

    async fn save_session(
        &self,
        id: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        validate::json("session data", &data)?;
        self.update_session(id, move |s, now| s.saved(data, expected_version, now))
            .await
    }

    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        self.update_session(id, move |s, now| s.with_state(state, expected_version, now))
            .await
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let limit = page_limit(limit);
        let start = keys::sessions_after(after);
        self.read(move |_, reader| {
            scan_records(
                reader,
                Table::Sessions,
                (&start, None),
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
        self.write(scope(&id), move |_, txn| {
            if txn.get(Table::Sessions, &keys::session(&id))?.is_none() {
                return Ok(false);
            }
            txn.delete(Table::Sessions, keys::session(&id))?;
            clear_log(txn, &id)?;
            Ok(true)
        })
        .await
    }

    async fn append_log(&self, id: &str, entry: NewLogEntry) -> Result<LogEntry> {
        validate::identifier("session id", id)?;
        entry.validate()?;
        let id = id.to_owned();
        self.write(scope(&id), move |shared, txn| {
            append(txn, &id, entry, shared.now())
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
        let page = self
            .read(move |_, reader| {
                load_or_not_found(reader, &id)?;
                let Some((start, end)) = keys::log_after(&id, after_seq) else {
                    return Ok(RawPage::default());
                };
                RawPage::scan(reader, Table::SessionLog, (&start, &end), limit)
            })
            .await?;
        page.decode(|bytes| decode_record("session log entry", bytes))
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
        let log = LogEntry::build_log(&id, entries, self.0.now())?;
        self.write(scope(&id), move |_, txn| {
            let mut session = load_or_not_found(txn, &id)?;
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
            clear_log(txn, &id)?;
            for entry in &log {
                put_entry(txn, entry)?;
            }
            session.record_replace(&log);
            txn.put(Table::Sessions, keys::session(&id), encode_record(&session)?)?;
            Ok(log)
        })
        .await
    }
}
