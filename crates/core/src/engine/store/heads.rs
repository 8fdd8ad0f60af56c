//! A bounded cache of committed log heads — of runs and of sessions — so
//! an append does not re-read its log's head from the engine, and of the
//! entries at the end of those logs ([`tails`](super::tails)), so a page
//! of recent events or log entries is read without a trip to the engine.
//!
//! Only for engines whose data no one else writes: such an engine owns
//! one [`StoreCache`] and returns it from `Engine::cache`, so every
//! `Stores` built over the engine shares it. An append takes its log's
//! entry out at the start of its write job (under the owner's scope) and
//! puts the new head back *pending* at the end; only after the engine
//! reported the job applied is the entry confirmed. A job that finds a
//! pending entry treats it as absent and reads the engine, so a write the
//! engine failed to apply after the job returned can never leave a wrong
//! head behind: the cache only ever answers with a head the engine
//! confirmed. The entry an append wrote joins its log's tail when its head
//! is confirmed, and a page is answered only while the tail reaches the
//! confirmed head. Every other mutation of a run or session forgets it
//! inside its job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::run_head::RunHead;
use super::session_head::SessionHead;
use super::tails::Tails;
use crate::RunId;

/// At most this many logs are cached (the cache is cleared when full):
/// about 5 MiB.
const MAX_CACHED_LOGS: usize = 65_536;

/// Whose log a cache entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Log {
    /// A run's events.
    Run(RunId),
    /// A session's log.
    Session(Box<str>),
}

impl Log {
    pub(super) fn session(id: &str) -> Log {
        Log::Session(id.into())
    }
}

/// A cached head: what an append needs of its log's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// A run's.
    Run(RunHead),
    /// A session's.
    Session(SessionHead),
}

impl Head {
    /// The seq the log's next entry gets.
    fn next_seq(&self) -> u64 {
        match self {
            Head::Run(head) => head.count,
            Head::Session(head) => head.len,
        }
    }

    pub(super) fn run(self) -> Option<RunHead> {
        match self {
            Head::Run(head) => Some(head),
            Head::Session(_) => None,
        }
    }

    pub(super) fn session(self) -> Option<SessionHead> {
        match self {
            Head::Session(head) => Some(head),
            Head::Run(_) => None,
        }
    }
}

struct Cached {
    head: Head,
    /// Which job put it; `None` once confirmed.
    pending: Option<u64>,
    /// The encoded entry the pending job appended, for the log's tail.
    appended: Option<Bytes>,
}

#[derive(Default)]
struct Logs {
    heads: HashMap<Log, Cached>,
    tails: Tails,
    /// Set by [`StoreCache::close`]: nothing is cached or answered again.
    closed: bool,
}

impl Logs {
    /// Drops log `id`'s head and tail.
    fn forget(&mut self, id: &Log) {
        self.heads.remove(id);
        self.tails.forget(id);
    }

    /// Drops every head and tail.
    fn forget_all(&mut self) {
        self.heads.clear();
        self.tails.clear();
    }
}

/// What the stores may cache about an engine's data: the heads of
/// recently appended runs and sessions (at most 65 536 of them) and the
/// encoded entries at the end of their logs (at most 16 MiB in all, 4 MiB
/// per log), so that an append does not re-read its log's head and a page
/// of recent events or log entries is read without a trip to the engine.
///
/// An engine keeps one and returns it from
/// [`Engine::cache`](crate::engine::Engine::cache) only if nothing but
/// that engine object writes its data — no other process, no other engine
/// object over the same files. Every `Stores` built over the engine then
/// shares it. Engines shared between writers return `None`.
///
/// A page is answered from the cache only when the log's head is
/// confirmed there (so its owner exists and its last entry is known) and
/// the cached entries reach that head: every entry an append acknowledged
/// is in the page, as it would be from the engine.
#[derive(Default)]
pub struct StoreCache {
    logs: Mutex<Logs>,
    tokens: AtomicU64,
}

impl std::fmt::Debug for StoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCache").finish_non_exhaustive()
    }
}

impl StoreCache {
    /// An empty cache.
    pub fn new() -> StoreCache {
        StoreCache::default()
    }

    /// The cache's state, unless it was closed (or poisoned).
    fn open(&self) -> Option<std::sync::MutexGuard<'_, Logs>> {
        self.logs.lock().ok().filter(|logs| !logs.closed)
    }

    /// Takes the confirmed head of `id` out (call under the owner's scope).
    pub(super) fn take(&self, id: &Log) -> Option<Head> {
        let cached = self.open()?.heads.remove(id)?;
        cached.pending.is_none().then_some(cached.head)
    }

    /// Puts `head` back unconfirmed as `id`'s, with the encoded entry the
    /// job appended (if it appended one); returns the token that confirms
    /// it.
    pub(super) fn put_pending(&self, id: Log, head: Head, appended: Option<Bytes>) -> u64 {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(mut logs) = self.open() {
            if logs.heads.len() >= MAX_CACHED_LOGS {
                logs.forget_all();
            }
            let entry = Cached {
                head,
                pending: Some(token),
                appended,
            };
            logs.heads.insert(id, entry);
        }
        token
    }

    /// The job that put `token` for `id` was applied (or, `applied` false,
    /// was not): confirm or drop its entry if it is still there. A
    /// confirmed append joins the log's tail.
    pub(super) fn settle(&self, id: &Log, token: u64, applied: bool) {
        let Some(mut logs) = self.open() else {
            return;
        };
        let logs = &mut *logs;
        match logs.heads.get_mut(id) {
            Some(cached) if cached.pending == Some(token) => {
                if !applied {
                    logs.forget(id);
                    return;
                }
                cached.pending = None;
                if let Some(entry) = cached.appended.take() {
                    let seq = cached.head.next_seq().saturating_sub(1);
                    logs.tails.push(id, seq, entry);
                }
            }
            _ => {}
        }
    }

    /// The encoded entries of log `id` from seq `first` on (at most
    /// `limit`), if its head is confirmed and its cached tail holds every
    /// one of them up to the head; an empty page when `first` is past the
    /// log's last entry.
    pub(super) fn events(&self, id: &Log, first: u64, limit: usize) -> Option<Vec<Bytes>> {
        let logs = self.open()?;
        let cached = logs.heads.get(id)?;
        if cached.pending.is_some() {
            return None;
        }
        let end = cached.head.next_seq();
        if first >= end || limit == 0 {
            return Some(Vec::new());
        }
        logs.tails.page(id, first, end, limit)
    }

    /// Forgets everything (data was changed behind the stores' back).
    pub(crate) fn clear(&self) {
        if let Some(mut logs) = self.open() {
            logs.forget_all();
        }
    }

    /// Forgets everything for good: the engine was closed or may be
    /// broken, and a read must reach it to be told so. The stores call
    /// this when a call of theirs finds the engine broken; an engine that
    /// finds itself broken outside any call (in background maintenance)
    /// calls it too.
    pub fn close(&self) {
        if let Ok(mut logs) = self.logs.lock() {
            logs.forget_all();
            logs.closed = true;
        }
    }

    /// Forgets `id` (a mutation that changes the head otherwise).
    pub(super) fn forget(&self, id: &Log) {
        if let Some(mut logs) = self.open() {
            logs.forget(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunStatus, Timestamp};

    fn head(entropy: u128) -> RunHead {
        RunHead {
            id: RunId::new_v7(Timestamp::ZERO, entropy),
            status: RunStatus::Running,
            count: 0,
            hash: None,
        }
    }

    fn put(heads: &StoreCache, head: RunHead) {
        let token = heads.put_pending(Log::Run(head.id), Head::Run(head), None);
        heads.settle(&Log::Run(head.id), token, true);
    }

    #[test]
    fn only_confirmed_heads_are_answered() {
        let heads = StoreCache::new();
        let id = Log::Run(head(1).id);
        let pending = |heads: &StoreCache| heads.put_pending(id.clone(), Head::Run(head(1)), None);
        let token = pending(&heads);
        assert!(heads.take(&id).is_none(), "a pending entry is a miss");
        let _newer = pending(&heads);
        heads.settle(&id, token, true);
        assert!(heads.take(&id).is_none(), "a stale token confirms nothing");
        let failed = pending(&heads);
        heads.settle(&id, failed, false);
        assert!(heads.take(&id).is_none(), "a failed job leaves no entry");
        put(&heads, head(1));
        assert_eq!(heads.take(&id), Some(Head::Run(head(1))));
        assert!(heads.take(&id).is_none(), "taking removes the entry");
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let heads = StoreCache::new();
        for n in 0..MAX_CACHED_LOGS + 10 {
            put(&heads, head(n as u128));
            assert!(heads.logs.lock().unwrap().heads.len() <= MAX_CACHED_LOGS);
        }
    }
}
