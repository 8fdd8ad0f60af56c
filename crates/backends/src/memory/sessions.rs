//! Session records and their hash-chained logs in memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use stowage_core::validate::{self, page_limit};
use stowage_core::{
    Digest, Error, LogEntry, NewLogEntry, Result, Session, SessionState, SessionStore,
};

use super::{page_after, State};

/// One session: its record, its log (index = seq) and the idempotency keys
/// of the current log. `deleted` is set, under the entry's lock, when the
/// session is removed from the map, so that a caller that looked it up just
/// before sees `NotFound` rather than writing into a removed session.
#[derive(Clone)]
struct SessionEntry {
    record: Session,
    log: Vec<LogEntry>,
    keys: HashMap<String, u64>,
    deleted: bool,
}

type Shared = Arc<Mutex<SessionEntry>>;

/// Every session, ascending by id. The map lock is write-locked only to
/// create or delete a session; each session has its own mutex.
#[derive(Default)]
pub(crate) struct Sessions {
    map: RwLock<BTreeMap<String, Shared>>,
}

impl Sessions {
    pub(crate) fn snapshot(&self) -> Self {
        let map = self
            .map
            .read()
            .iter()
            .map(|(id, e)| (id.clone(), Arc::new(Mutex::new(e.lock().clone()))))
            .collect();
        Sessions {
            map: RwLock::new(map),
        }
    }

    pub(crate) fn corrupt_entry(&self, session: &str, seq: u64) -> bool {
        let Some(shared) = self.map.read().get(session).cloned() else {
            return false;
        };
        let mut entry = shared.lock();
        let Some(log_entry) = usize::try_from(seq).ok().and_then(|i| entry.log.get_mut(i)) else {
            return false;
        };
        let mut damaged = log_entry.payload.to_vec();
        match damaged.first_mut() {
            Some(b) => *b ^= 0xFF,
            None => damaged.extend_from_slice(b"tampered"),
        }
        log_entry.payload = Bytes::from(damaged);
        true
    }

    pub(crate) fn replace_entries(&self, session: &str, log: Vec<LogEntry>) -> bool {
        let Some(shared) = self.map.read().get(session).cloned() else {
            return false;
        };
        let mut entry = shared.lock();
        entry.keys = key_index(&log);
        entry.log = log;
        true
    }

    pub(crate) fn set_head(&self, session: &str, head: Option<Digest>) -> bool {
        let Some(shared) = self.map.read().get(session).cloned() else {
            return false;
        };
        shared.lock().record.log_head = head;
        true
    }

    /// Runs `f` on the live entry for `id`, locked, or fails with `NotFound`.
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut SessionEntry) -> Result<T>) -> Result<T> {
        let shared = self.map.read().get(id).cloned();
        let shared = shared.ok_or_else(|| unknown(id))?;
        Self::with_entry(&shared, id, f)
    }

    /// Runs `f` on `shared`, locked, unless it was deleted since it was
    /// looked up.
    fn with_entry<T>(
        shared: &Shared,
        id: &str,
        f: impl FnOnce(&mut SessionEntry) -> Result<T>,
    ) -> Result<T> {
        let mut entry = shared.lock();
        if entry.deleted {
            return Err(unknown(id));
        }
        f(&mut entry)
    }
}

fn unknown(id: &str) -> Error {
    Error::not_found(format!(
        "session {:?} does not exist",
        validate::preview(id)
    ))
}

fn key_index(log: &[LogEntry]) -> HashMap<String, u64> {
    log.iter()
        .filter_map(|e| e.idempotency_key.clone().map(|k| (k, e.seq)))
        .collect()
}

/// The [`SessionStore`] of a memory backend.
pub(crate) struct MemorySessions(pub(crate) Arc<State>);

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create_session(&self, id: &str, data: Value) -> Result<Session> {
        let session = Session::new(id, data, self.0.now())?;
        let _w = self.0.writing();
        let mut map = self.0.sessions.map.write();
        if map.contains_key(id) {
            return Err(Error::already_exists(format!(
                "session {:?} already exists",
                validate::preview(id)
            )));
        }
        let entry = SessionEntry {
            record: session.clone(),
            log: Vec::new(),
            keys: HashMap::new(),
            deleted: false,
        };
        map.insert(id.to_owned(), Arc::new(Mutex::new(entry)));
        Ok(session)
    }

    async fn load_session(&self, id: &str) -> Result<Option<Session>> {
        validate::identifier("session id", id)?;
        match self.0.sessions.with(id, |e| Ok(e.record.clone())) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == stowage_core::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save_session(
        &self,
        id: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        validate::json("session data", &data)?;
        let _w = self.0.writing();
        self.0.sessions.with(id, |e| {
            e.record = e.record.saved(data, expected_version, self.0.now())?;
            Ok(e.record.clone())
        })
    }

    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        let _w = self.0.writing();
        self.0.sessions.with(id, |e| {
            e.record = e.record.with_state(state, expected_version, self.0.now())?;
            Ok(e.record.clone())
        })
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let map = self.0.sessions.map.read();
        Ok(map
            .range::<str, _>((lower, Bound::Unbounded))
            .take(page_limit(limit))
            .map(|(_, e)| e.lock().record.clone())
            .collect())
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        validate::identifier("session id", id)?;
        let _w = self.0.writing();
        let mut map = self.0.sessions.map.write();
        let Some(shared) = map.remove(id) else {
            return Ok(false);
        };
        let mut entry = shared.lock();
        entry.deleted = true;
        entry.log = Vec::new();
        entry.keys = HashMap::new();
        Ok(true)
    }

    async fn append_log(&self, id: &str, entry: NewLogEntry) -> Result<LogEntry> {
        validate::identifier("session id", id)?;
        entry.validate()?;
        let _w = self.0.writing();
        self.0.sessions.with(id, |e| {
            if let Some(key) = &entry.idempotency_key {
                if let Some(original) = e
                    .keys
                    .get(key)
                    .and_then(|&seq| usize::try_from(seq).ok())
                    .and_then(|i| e.log.get(i))
                {
                    return original.clone().retried(&entry);
                }
            }
            e.record.check_log_open()?;
            let (next_seq, prev) = (e.record.log_len, e.record.log_head);
            let built = LogEntry::build(id, next_seq, prev, entry, self.0.now())?;
            e.record.record_append(&built)?;
            if let Some(key) = &built.idempotency_key {
                e.keys.insert(key.clone(), built.seq);
            }
            e.log.push(built.clone());
            Ok(built)
        })
    }

    async fn read_log(
        &self,
        id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        self.0
            .sessions
            .with(id, |e| Ok(page_after(&e.log, after_seq, limit)))
    }

    async fn replace_log(
        &self,
        id: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        // Hash the new log before taking any lock.
        let log = LogEntry::build_log(id, entries, self.0.now())?;
        let keys = key_index(&log);
        let out = log.clone();
        let _w = self.0.writing();
        self.0.sessions.with(id, |e| {
            e.record.check_log_open()?;
            let len = e.record.log_len;
            if let Some(expected) = expected_next_seq {
                if expected != len {
                    return Err(Error::conflict(format!(
                        "session {:?}: expected the log to have {expected} entries but it has {len}",
                        validate::preview(id)
                    )));
                }
            }
            e.record.record_replace(&log);
            e.log = log;
            e.keys = keys;
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::{ErrorKind, StoreEnv};

    #[tokio::test]
    async fn a_writer_holding_a_deleted_session_sees_not_found() {
        let store = MemorySessions(Arc::new(State::empty(StoreEnv::default())));
        store.create_session("s", Value::Null).await.unwrap();
        // A writer looked the session up just before it was deleted...
        let stale = store.0.sessions.map.read().get("s").cloned().unwrap();
        assert!(store.delete_session("s").await.unwrap());
        // ...and must not write into the removed session.
        let err = Sessions::with_entry(&stale, "s", |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        store.create_session("s", Value::Null).await.unwrap();
        let entry = NewLogEntry::new(stowage_core::LogKind::Internal, "a", "t", "x");
        assert_eq!(store.append_log("s", entry).await.unwrap().seq, 0);
        assert!(stale.lock().log.is_empty());
    }
}
