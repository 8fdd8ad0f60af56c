//! Session records plus an append-only, hash-chained message log per session.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::{self, ChainReport};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::run::VERIFY_PAGE;
use crate::time::Timestamp;
use crate::validate;

pub use crate::log_entry::{LogEntry, LogKind, NewLogEntry};

/// The lifecycle of a session. `Open` and `Suspended` may move anywhere;
/// `Resolved`, `Expired` and `Cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    /// Active.
    Open,
    /// Paused; may reopen.
    Suspended,
    /// Finished successfully (final).
    Resolved,
    /// Timed out (final).
    Expired,
    /// Abandoned (final).
    Cancelled,
}

impl SessionState {
    /// Whether the state is final.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SessionState::Resolved | SessionState::Expired | SessionState::Cancelled
        )
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A session record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The session id (an identifier).
    pub id: String,
    /// Application data: at most 1 MiB of JSON.
    pub data: Value,
    /// Lifecycle state.
    pub state: SessionState,
    /// 1 at creation, +1 on every save or state change.
    pub version: u64,
    /// When created (store clock).
    pub created_at: Timestamp,
    /// When last saved (store clock).
    pub updated_at: Timestamp,
    /// How many entries the log holds (the next entry's seq). Kept with
    /// [`Session::log_head`] atomically with every append and
    /// `replace_log`, so that `verify_log` sees a removed tail or a
    /// rewritten, re-chained log. Appends do not change `version`.
    pub log_len: u64,
    /// The hash of the log's last entry (`None` while the log is empty).
    pub log_head: Option<Digest>,
}

impl Session {
    /// A new `Open` session at version 1.
    ///
    /// # Errors
    /// `InvalidInput` for a bad id or data.
    pub fn new(id: &str, data: Value, now: Timestamp) -> Result<Session> {
        validate::identifier("session id", id)?;
        validate::json("session data", &data)?;
        Ok(Session {
            id: id.to_owned(),
            data,
            state: SessionState::Open,
            version: 1,
            created_at: now,
            updated_at: now,
            log_len: 0,
            log_head: None,
        })
    }

    /// Checks that the log may change: a session in a final state
    /// (`Resolved`, `Expired`, `Cancelled`) takes no appends and no
    /// `replace_log`.
    ///
    /// # Errors
    /// `Conflict` naming the session and its state.
    pub fn check_log_open(&self) -> Result<()> {
        if self.state.is_final() {
            return Err(Error::conflict(format!(
                "session {:?} is {}; its log can no longer change",
                validate::preview(&self.id),
                self.state
            )));
        }
        Ok(())
    }

    /// Records `entry` (built for this session at seq `log_len`) as the new
    /// end of the log: the length and head a store writes atomically with
    /// the entry.
    ///
    /// # Errors
    /// `Conflict` when the log has reached the largest seq.
    pub fn record_append(&mut self, entry: &LogEntry) -> Result<()> {
        self.log_len = len_after(&self.id, entry)?;
        self.log_head = Some(entry.hash);
        Ok(())
    }

    /// Records `log` (from [`LogEntry::build_log`]) as the whole log, as
    /// `replace_log` stores it.
    pub fn record_replace(&mut self, log: &[LogEntry]) {
        self.log_len = log.len() as u64;
        self.log_head = log.last().map(|e| e.hash);
    }

    /// The session after saving `data` (checked against `expected_version`).
    ///
    /// # Errors
    /// `InvalidInput` for bad data; `Conflict` on a version mismatch.
    pub fn saved(
        &self,
        data: Value,
        expected_version: Option<u64>,
        now: Timestamp,
    ) -> Result<Session> {
        validate::json("session data", &data)?;
        self.check_version(expected_version)?;
        Ok(Session {
            data,
            version: self.next_version()?,
            updated_at: now,
            ..self.clone()
        })
    }

    /// The session after moving to `state`.
    ///
    /// # Errors
    /// `Conflict` on a version mismatch or when the current state is final
    /// (moving to the same final state again is also a `Conflict`).
    pub fn with_state(
        &self,
        state: SessionState,
        expected_version: Option<u64>,
        now: Timestamp,
    ) -> Result<Session> {
        self.check_version(expected_version)?;
        if self.state.is_final() {
            return Err(Error::conflict(format!(
                "session {:?} is {}; its state can no longer change",
                validate::preview(&self.id),
                self.state
            )));
        }
        Ok(Session {
            state,
            version: self.next_version()?,
            updated_at: now,
            ..self.clone()
        })
    }

    fn next_version(&self) -> Result<u64> {
        self.version.checked_add(1).ok_or_else(|| {
            Error::conflict(format!(
                "session {:?} has reached the largest version",
                validate::preview(&self.id)
            ))
        })
    }

    fn check_version(&self, expected: Option<u64>) -> Result<()> {
        match expected {
            Some(v) if v != self.version => Err(Error::conflict(format!(
                "session {:?} is at version {}, not the expected {v}",
                validate::preview(&self.id),
                self.version
            ))),
            _ => Ok(()),
        }
    }
}

/// Session records and their logs. Per session, every call is atomic and
/// linearizable; appends get unique, gap-free seqs under any concurrency.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stowage_core::{LogKind, NewLogEntry, SessionStore};
/// async fn demo(s: &dyn SessionStore) -> stowage_core::Result<()> {
///     s.create_session("chat-1", serde_json::json!({})).await?;
///     let e = s.append_log("chat-1", NewLogEntry::new(LogKind::Incoming, "user", "text", "hi")).await?;
///     assert_eq!(e.seq, 0);
///     assert_eq!(s.read_log("chat-1", None, 10).await?.len(), 1);
///     Ok(())
/// }
/// # });
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates an `Open` session at version 1.
    ///
    /// # Errors
    /// `AlreadyExists` if the id is taken; `InvalidInput`.
    async fn create_session(&self, id: &str, data: Value) -> Result<Session>;

    /// The session, or `None`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad id.
    async fn load_session(&self, id: &str) -> Result<Option<Session>>;

    /// Replaces the data, incrementing the version; with `expected_version`
    /// it is a compare-and-set.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` on a version mismatch; `InvalidInput`.
    async fn save_session(
        &self,
        id: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session>;

    /// Moves the session to `state`, incrementing the version.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` on a version mismatch or from a final state.
    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session>;

    /// Sessions with id strictly after `after`, ascending by UTF-8 bytes, at
    /// most `limit` (clamped to [`MAX_PAGE`](crate::validate::MAX_PAGE)).
    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>>;

    /// Removes the record and its log together. Idempotent: returns whether
    /// the session existed.
    async fn delete_session(&self, id: &str) -> Result<bool>;

    /// Appends with the next seq, extending the hash chain, and records the
    /// new length and head in the session record in the same atomic step.
    /// An entry whose idempotency key is already in the log with the same
    /// content ([`LogEntry::same_content`]) is not stored again: the
    /// original entry comes back — also when the session has since reached
    /// a final state. The same key with other content is `Conflict`.
    ///
    /// # Errors
    /// `NotFound` for an unknown session; `Conflict` when the session is in
    /// a final state (`Resolved`, `Expired`, `Cancelled`) or the key was
    /// used with other content; `InvalidInput`.
    async fn append_log(&self, id: &str, entry: NewLogEntry) -> Result<LogEntry>;

    /// Entries with seq strictly greater than `after_seq`, ascending, at
    /// most `limit` (clamped to [`MAX_PAGE`](crate::validate::MAX_PAGE)).
    ///
    /// # Errors
    /// `NotFound` for an unknown session.
    async fn read_log(
        &self,
        id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>>;

    /// Atomically replaces the whole log; seqs restart at 0. With
    /// `expected_next_seq` (the current log length) it is a
    /// compare-and-replace. Readers see the old log or the new one, never a
    /// mix; a racing append lands wholly before (and is replaced) or after.
    ///
    /// Idempotency keys are those of the entries in the current log: keys
    /// of replaced entries are forgotten with them (carry a message id into
    /// a new entry's `idempotency_key` to keep deduplicating it). The
    /// session record's log length and head are reset with the log.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` on a mismatch or when the session is in a
    /// final state (a closed session's log is final; delete the session to
    /// reclaim it); `InvalidInput`.
    async fn replace_log(
        &self,
        id: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>>;

    /// Re-walks the log's hash chain up to the length recorded in the
    /// session record when the walk started, and checks that it ends at the
    /// recorded head. The default pages through [`SessionStore::read_log`];
    /// a `replace_log` racing the walk can join pages of the old log to the
    /// new one, so a break is re-checked with a fresh walk and reported only
    /// if it persists.
    ///
    /// # Errors
    /// `NotFound`; `Corrupted` naming the first broken link, or saying that
    /// entries were removed or the log was rewritten.
    async fn verify_log(&self, id: &str) -> Result<ChainReport> {
        verify_log_pages(self, id, |after| self.read_log(id, after, VERIFY_PAGE)).await
    }
}

/// [`SessionStore::verify_log`] over the pages `page(after)` returns
/// (`read_log`'s, or a store's own read that bypasses a cache).
pub(crate) async fn verify_log_pages<S, F, Fut>(
    store: &S,
    id: &str,
    mut page: F,
) -> Result<ChainReport>
where
    S: SessionStore + ?Sized,
    F: FnMut(Option<u64>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<LogEntry>>>,
{
    let mut walks = 1;
    loop {
        match walk_log(store, id, &mut page).await {
            Err(e) if e.kind() == ErrorKind::Corrupted && walks < VERIFY_WALKS => walks += 1,
            outcome => return outcome,
        }
    }
}

/// The log length of session `id` once `entry` is its last entry.
///
/// # Errors
/// `Conflict` when the log has reached the largest seq.
pub(crate) fn len_after(id: &str, entry: &LogEntry) -> Result<u64> {
    entry.seq.checked_add(1).ok_or_else(|| {
        Error::conflict(format!(
            "session {:?} has reached the largest log seq",
            validate::preview(id)
        ))
    })
}

/// How many times `verify_log` walks a log before believing a broken link.
const VERIFY_WALKS: u32 = 4;

async fn walk_log<S, F, Fut>(store: &S, id: &str, page: &mut F) -> Result<ChainReport>
where
    S: SessionStore + ?Sized,
    F: FnMut(Option<u64>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<LogEntry>>>,
{
    let name = format!("session {:?}", validate::preview(id));
    let record = store
        .load_session(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("{name} does not exist")))?;
    let end_now = || async {
        let now = store.load_session(id).await?;
        // Deleted meanwhile: no end matches, so nothing past it counts.
        Ok(now.map_or((u64::MAX, None), |s| (s.log_len, s.log_head)))
    };
    chain::walk(
        name,
        (record.log_len, record.log_head),
        LogEntry::link,
        page,
        end_now,
    )
    .await
}
