//! A bounded cache of committed run heads, so an append does not re-read
//! its run's head from the engine, and of the events at the end of their
//! logs ([`tails`](super::tails)), so a page of recent events is read
//! without a trip to the engine.
//!
//! Only for engines whose data no one else writes: such an engine owns
//! one [`StoreCache`] and returns it from `Engine::cache`, so every
//! `Stores` built over the engine shares it. An append takes its run's
//! entry out at the start of its write job (under the run's scope) and
//! puts the new head back *pending* at the end; only after the engine
//! reported the job applied is the entry confirmed. A job that finds a
//! pending entry treats it as absent and reads the engine, so a write the
//! engine failed to apply after the job returned can never leave a wrong
//! head behind: the cache only ever answers with a head the engine
//! confirmed. The event an append wrote joins its run's tail when its head
//! is confirmed, and a page is answered only while the tail reaches the
//! confirmed head.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::run_head::RunHead;
use super::tails::Tails;
use crate::RunId;

/// At most this many runs are cached (the cache is cleared when full):
/// about 5 MiB.
const MAX_CACHED_RUNS: usize = 65_536;

struct Cached {
    head: RunHead,
    /// Which job put it; `None` once confirmed.
    pending: Option<u64>,
    /// The encoded event the pending job appended, for the run's tail.
    appended: Option<Bytes>,
}

#[derive(Default)]
struct Runs {
    heads: HashMap<RunId, Cached>,
    tails: Tails,
    /// Set by [`StoreCache::close`]: nothing is cached or answered again.
    closed: bool,
}

impl Runs {
    /// Drops run `id`'s head and tail.
    fn forget(&mut self, id: RunId) {
        self.heads.remove(&id);
        self.tails.forget(id);
    }

    /// Drops every head and tail.
    fn forget_all(&mut self) {
        self.heads.clear();
        self.tails.clear();
    }
}

/// What the stores may cache about an engine's data: the heads of
/// recently appended runs (at most 65 536 of them) and the encoded events
/// at the end of their logs (at most 16 MiB in all, 4 MiB per run), so
/// that an append does not re-read its run's head and a page of recent
/// events is read without a trip to the engine.
///
/// An engine keeps one and returns it from
/// [`Engine::cache`](crate::engine::Engine::cache) only if nothing but
/// that engine object writes its data — no other process, no other engine
/// object over the same files. Every `Stores` built over the engine then
/// shares it. Engines shared between writers return `None`.
///
/// A page is answered from the cache only when the run's head is
/// confirmed there (so the run exists and its last event is known) and
/// the cached events reach that head: every event an append acknowledged
/// is in the page, as it would be from the engine.
#[derive(Default)]
pub struct StoreCache {
    runs: Mutex<Runs>,
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
    fn open(&self) -> Option<std::sync::MutexGuard<'_, Runs>> {
        self.runs.lock().ok().filter(|runs| !runs.closed)
    }

    /// Takes the confirmed head of `id` out (call under the run's scope).
    pub(super) fn take(&self, id: RunId) -> Option<RunHead> {
        let cached = self.open()?.heads.remove(&id)?;
        cached.pending.is_none().then_some(cached.head)
    }

    /// Puts `head` back unconfirmed, with the encoded event the job
    /// appended (if it appended one); returns the token that confirms it.
    pub(super) fn put_pending(&self, head: RunHead, appended: Option<Bytes>) -> u64 {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(mut runs) = self.open() {
            if runs.heads.len() >= MAX_CACHED_RUNS {
                runs.forget_all();
            }
            let entry = Cached {
                head,
                pending: Some(token),
                appended,
            };
            runs.heads.insert(head.id, entry);
        }
        token
    }

    /// The job that put `token` for `id` was applied (or, `applied` false,
    /// was not): confirm or drop its entry if it is still there. A
    /// confirmed append joins the run's tail.
    pub(super) fn settle(&self, id: RunId, token: u64, applied: bool) {
        let Some(mut runs) = self.open() else {
            return;
        };
        let runs = &mut *runs;
        match runs.heads.get_mut(&id) {
            Some(cached) if cached.pending == Some(token) => {
                if !applied {
                    runs.forget(id);
                    return;
                }
                cached.pending = None;
                if let Some(event) = cached.appended.take() {
                    let seq = cached.head.count.saturating_sub(1);
                    runs.tails.push(id, seq, event);
                }
            }
            _ => {}
        }
    }

    /// The encoded events of run `id` from seq `first` on (at most
    /// `limit`), if the run's head is confirmed and its cached tail holds
    /// every one of them up to the head; an empty page when `first` is
    /// past the run's last event.
    pub(super) fn events(&self, id: RunId, first: u64, limit: usize) -> Option<Vec<Bytes>> {
        let runs = self.open()?;
        let cached = runs.heads.get(&id)?;
        if cached.pending.is_some() {
            return None;
        }
        let end = cached.head.count;
        if first >= end || limit == 0 {
            return Some(Vec::new());
        }
        runs.tails.page(id, first, end, limit)
    }

    /// Forgets everything (data was changed behind the stores' back).
    pub(crate) fn clear(&self) {
        if let Some(mut runs) = self.open() {
            runs.forget_all();
        }
    }

    /// Forgets everything for good: the engine was closed or may be
    /// broken, and a read must reach it to be told so.
    pub(super) fn close(&self) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.forget_all();
            runs.closed = true;
        }
    }

    /// Forgets `id` (a mutation that changes the head otherwise).
    pub(super) fn forget(&self, id: RunId) {
        if let Some(mut runs) = self.open() {
            runs.forget(id);
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
        let token = heads.put_pending(head, None);
        heads.settle(head.id, token, true);
    }

    #[test]
    fn only_confirmed_heads_are_answered() {
        let heads = StoreCache::new();
        let id = head(1).id;
        let token = heads.put_pending(head(1), None);
        assert!(heads.take(id).is_none(), "a pending entry is a miss");
        let _newer = heads.put_pending(head(1), None);
        heads.settle(id, token, true);
        assert!(heads.take(id).is_none(), "a stale token confirms nothing");
        let failed = heads.put_pending(head(1), None);
        heads.settle(id, failed, false);
        assert!(heads.take(id).is_none(), "a failed job leaves no entry");
        put(&heads, head(1));
        assert_eq!(heads.take(id), Some(head(1)));
        assert!(heads.take(id).is_none(), "taking removes the entry");
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let heads = StoreCache::new();
        for n in 0..MAX_CACHED_RUNS + 10 {
            put(&heads, head(n as u128));
            assert!(heads.runs.lock().unwrap().heads.len() <= MAX_CACHED_RUNS);
        }
    }
}
