//! `SessionStore` over the seam.
//!
//! Tables: `Sessions` (raw id → record, so they list by id; written only
//! by the calls that change the record), `SessionHeads` (raw id → the
//! log's length, chain head and whether it is closed: the small record
//! every append rewrites, see [`SessionHead`]), `SessionLog` ((lp(id),
//! seq) → entry) and `SessionIdempotency` ((lp(id), lp(key)) → seq).
//! Every call that changes a session or its log is one write job in the
//! session's scope, so `replace_log` and `delete_session` are seen whole.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::heads::{Head, Log};
use super::session_head::SessionHead;
use super::{decode_keyed, get_record, own_entries, EngineStore, Owned, RawPage, Shared};
use crate::encoding::{decode_checked_log_entry, decode_record, encode_record};
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::run::VERIFY_PAGE;
use crate::session::verify_log_pages;
use crate::validate::{self, page_limit};
use crate::{
    ChainReport, Error, LogEntry, NewLogEntry, Result, Session, SessionState, SessionStore,
    Timestamp,
};

pub(super) fn scope(id: &str) -> Scope {
    Scope::entity(Table::Sessions, keys::session(id))
}

pub(super) fn not_found(id: &str) -> Error {
    Error::not_found(format!(
        "session {:?} does not exist",
        validate::preview(id)
    ))
}

/// `session` (a stored record) with its log's length and chain head;
/// `None` when the session was deleted after its record was read (see
/// `runs::with_head`: a record without a head counts only if it is still
/// stored as it was read).
pub(super) fn with_head(reader: &dyn Reader, session: Session) -> Result<Option<Session>> {
    let mut session = session;
    for _ in 0..super::runs::RE_READS {
        if let Some(head) = SessionHead::stored(reader, &session.id)? {
            return Ok(Some(head.apply(session)));
        }
        let head = SessionHead::without_head(reader, &session)?;
        let key = keys::session(&session.id);
        match get_record::<Session>(reader, Table::Sessions, &key, "session record")? {
            None => return Ok(None),
            Some(now) if now == session => return Ok(Some(head.apply(session))),
            Some(now) => session = now,
        }
    }
    Ok(Some(
        SessionHead::without_head(reader, &session)?.apply(session),
    ))
}

/// Session `id` as stored: its record with its head.
pub(super) fn load(reader: &dyn Reader, id: &str) -> Result<Option<Session>> {
    get_record(
        reader,
        Table::Sessions,
        &keys::session(id),
        "session record",
    )?
    .map(|session| with_head(reader, session))
    .transpose()
    .map(Option::flatten)
}

pub(super) fn load_or_not_found(reader: &dyn Reader, id: &str) -> Result<Session> {
    load(reader, id)?.ok_or_else(|| not_found(id))
}

/// Up to `limit` sessions by id from `start`, each with its head.
fn scan(reader: &dyn Reader, start: &[u8], limit: usize) -> Result<Vec<Session>> {
    let records = reader.scan(Table::Sessions, start, None, Direction::Forward, limit)?;
    let mut sessions = Vec::with_capacity(records.len());
    for (key, value) in &records {
        sessions.extend(with_head(
            reader,
            decode_keyed("session record", key, value)?,
        )?);
    }
    Ok(sessions)
}

/// Drops what the stores' cache holds of session `id` (call inside the
/// job of any mutation but an append, under the session's scope).
fn forget_cached(shared: &Shared, id: &str) {
    if let Some(cache) = shared.cache() {
        cache.forget(&Log::session(id));
    }
}

/// Stages `session`'s record and its head: the one way a record is
/// written, so the head's `closed` always follows the record's state (and
/// the cache forgets the session).
pub(super) fn put(shared: &Shared, txn: &mut dyn Txn, session: &Session) -> Result<()> {
    forget_cached(shared, &session.id);
    txn.put(
        Table::Sessions,
        keys::session(&session.id),
        encode_record(session)?,
    )?;
    SessionHead::of(session).put(txn, &session.id)
}

/// Stages the removal of session `id`: record, head, log and its
/// idempotency keys.
pub(super) fn remove(shared: &Shared, txn: &mut dyn Txn, id: &str) -> Result<()> {
    forget_cached(shared, id);
    txn.delete(Table::Sessions, keys::session(id))?;
    txn.delete(Table::SessionHeads, keys::session(id))?;
    clear_log(txn, id)
}

/// `Conflict` when `head` says session `id`'s log is closed (the record
/// names the final state for the message).
fn check_open(reader: &dyn Reader, id: &str, head: &SessionHead) -> Result<()> {
    if !head.closed {
        return Ok(());
    }
    load_or_not_found(reader, id)?.check_log_open()?;
    Err(Error::corrupted(format!(
        "session {:?}: its head says the log is closed, its record does not",
        validate::preview(id)
    )))
}

/// Appends `new` (validated) to session `id`'s log. Returns the entry
/// and, when the stores keep a cache, the token that confirms the head
/// it put there.
fn append(
    shared: &Shared,
    txn: &mut dyn Txn,
    id: &str,
    new: NewLogEntry,
) -> Result<(LogEntry, Option<u64>)> {
    let cache = shared.cache();
    let log = Log::session(id);
    let head = match cache.and_then(|c| c.take(&log)?.session()) {
        Some(cached) => cached,
        None => SessionHead::load(txn, id)?,
    };
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
            // Nothing is written: the head taken out is still current.
            let token = cache.map(|c| c.put_pending(log, Head::Session(head), None));
            return Ok((entry.retried(&new)?, token));
        }
    }
    check_open(txn, id, &head)?;
    let entry = LogEntry::build(id, head.len, head.hash, new, shared.now())?;
    let value = encode_record(&entry)?;
    // For the log's cached tail, once the engine applied the append.
    let appended = cache.map(|_| Bytes::copy_from_slice(&value));
    put_encoded_entry(txn, &entry, value)?;
    let head = head.after(id, &entry)?;
    head.put(txn, id)?;
    let token = cache.map(|c| c.put_pending(log, Head::Session(head), appended));
    Ok((entry, token))
}

pub(super) fn put_entry(txn: &mut dyn Txn, entry: &LogEntry) -> Result<()> {
    put_encoded_entry(txn, entry, encode_record(entry)?)
}

/// [`put_entry`] of an entry already encoded as `value`.
fn put_encoded_entry(txn: &mut dyn Txn, entry: &LogEntry, value: Vec<u8>) -> Result<()> {
    let id = &entry.session_id;
    txn.put(Table::SessionLog, keys::log_entry(id, entry.seq), value)?;
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
        mut change: impl FnMut(&Shared, &Session) -> Result<Session> + Send + 'static,
    ) -> Result<Session> {
        let id = id.to_owned();
        self.write(scope(&id), move |shared, txn| {
            let updated = change(shared, &load_or_not_found(txn, &id)?)?;
            put(shared, txn, &updated)?;
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
        let mut session = Owned::new(session);
        self.write(scope(&id), move |shared, txn| {
            if txn.get(Table::Sessions, &keys::session(&id))?.is_some() {
                return Err(Error::already_exists(format!(
                    "session {:?} already exists",
                    validate::preview(&id)
                )));
            }
            // As for runs: a head without a record is damage, and reading
            // it lets an optimistic engine answer the first append.
            if SessionHead::stored(txn, &id)?.is_some() {
                return Err(Error::corrupted(format!(
                    "session {:?}: a head is stored but no session record",
                    validate::preview(&id)
                )));
            }
            let now = shared.now();
            let session = Session {
                created_at: now,
                updated_at: now,
                ..session.take(shared)?
            };
            put(shared, txn, &session)?;
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
        let mut data = Owned::new(data);
        self.update_session(id, move |shared, s| {
            s.saved(data.take(shared)?, expected_version, shared.now())
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
        self.update_session(id, move |shared, s| {
            s.with_state(state, expected_version, shared.now())
        })
        .await
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let limit = page_limit(limit);
        let start = keys::sessions_after(after);
        self.read(move |_, reader| scan(reader, &start, limit))
            .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        self.write(scope(&id), move |shared, txn| {
            if txn.get(Table::Sessions, &keys::session(&id))?.is_none() {
                return Ok(false);
            }
            remove(shared, txn, &id)?;
            Ok(true)
        })
        .await
    }

    async fn append_log(&self, id: &str, entry: NewLogEntry) -> Result<LogEntry> {
        validate::identifier("session id", id)?;
        entry.validate()?;
        let log = Log::session(id);
        let id = id.to_owned();
        let mut entry = Owned::new(entry);
        let applied = self
            .write_applied(scope(&id), move |shared, txn| {
                append(shared, txn, &id, entry.take(shared)?)
            })
            .await;
        self.settle(&log, applied).await
    }

    async fn read_log(
        &self,
        id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        let limit = page_limit(limit);
        let decode = |bytes: &[u8]| decode_record("session log entry", bytes);
        let log = Log::session(id);
        if let Some(page) = self.cached_page(&log, after_seq, limit, decode).await {
            return page;
        }
        self.engine_log(id, after_seq, limit).await
    }

    /// Reads from the engine, never from the stores' cache: verification
    /// exists to catch edits made behind the stores' back.
    async fn verify_log(&self, id: &str) -> Result<ChainReport> {
        validate::identifier("session id", id)?;
        verify_log_pages(self, id, |after| self.engine_log(id, after, VERIFY_PAGE)).await
    }

    async fn replace_log(
        &self,
        id: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        let id = id.to_owned();
        let mut log = Owned::new(LogEntry::build_log(&id, entries, self.0.now())?);
        self.write(scope(&id), move |shared, txn| {
            let log = log.take(shared)?;
            forget_cached(shared, &id);
            let head = SessionHead::load(txn, &id)?;
            check_open(txn, &id, &head)?;
            if let Some(expected) = expected_next_seq {
                if expected != head.len {
                    return Err(Error::conflict(format!(
                        "session {:?}: expected the log to end at seq {expected} but it ends at {}",
                        validate::preview(&id),
                        head.len
                    )));
                }
            }
            clear_log(txn, &id)?;
            for entry in &log {
                put_entry(txn, entry)?;
            }
            SessionHead {
                len: log.len() as u64,
                hash: log.last().map(|e| e.hash),
                ..head
            }
            .put(txn, &id)?;
            Ok(log)
        })
        .await
    }
}

impl EngineStore {
    /// A page of session `id`'s log read from the engine.
    async fn engine_log(
        &self,
        id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        let owner = id.to_owned();
        let page = self
            .read(move |_, reader| {
                let id = &owner;
                // The head says whether the session exists, without
                // decoding its data.
                SessionHead::load(reader, id)?;
                let Some((start, end)) = keys::log_after(id, after_seq) else {
                    return Ok(RawPage::default());
                };
                let page = RawPage::scan(reader, Table::SessionLog, (&start, &end), limit)?;
                // A page cut short by a delete that committed while it was
                // read is NotFound, not a log that lost its tail (as for
                // run events).
                if page.len() < limit && load(reader, id)?.is_none() {
                    return Err(not_found(id));
                }
                Ok(page)
            })
            .await?;
        let entries = page
            .decode_entries(
                |bytes| decode_record("session log entry", bytes),
                |bytes| decode_checked_log_entry("session log entry", bytes),
            )
            .await?;
        let log = format!("session {:?}", validate::preview(id));
        own_entries(&log, entries, after_seq, |e| (e.session_id == id, e.seq))
    }
}
