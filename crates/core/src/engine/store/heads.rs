//! A bounded cache of committed run heads, so an append does not re-read
//! its run's head from the engine.
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
//! confirmed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::run_head::RunHead;
use crate::RunId;

/// At most this many runs are cached (the cache is cleared when full):
/// about 5 MiB.
const MAX_CACHED_RUNS: usize = 65_536;

struct Cached {
    head: RunHead,
    /// Which job put it; `None` once confirmed.
    pending: Option<u64>,
}

/// What the stores may cache about an engine's data (today: the heads of
/// recently appended runs, at most 65 536 of them).
///
/// An engine keeps one and returns it from
/// [`Engine::cache`](crate::engine::Engine::cache) only if nothing but
/// that engine object writes its data — no other process, no other engine
/// object over the same files. Every `Stores` built over the engine then
/// shares it. Engines shared between writers return `None`.
#[derive(Default)]
pub struct StoreCache {
    heads: Mutex<HashMap<RunId, Cached>>,
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

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, HashMap<RunId, Cached>>> {
        self.heads.lock().ok()
    }

    /// Takes the confirmed head of `id` out (call under the run's scope).
    pub(super) fn take(&self, id: RunId) -> Option<RunHead> {
        let cached = self.lock()?.remove(&id)?;
        cached.pending.is_none().then_some(cached.head)
    }

    /// Puts `head` back unconfirmed; returns the token that confirms it.
    pub(super) fn put_pending(&self, head: RunHead) -> u64 {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(mut heads) = self.lock() {
            if heads.len() >= MAX_CACHED_RUNS {
                heads.clear();
            }
            let entry = Cached {
                head,
                pending: Some(token),
            };
            heads.insert(head.id, entry);
        }
        token
    }

    /// The job that put `token` for `id` was applied (or, `applied` false,
    /// was not): confirm or drop its entry if it is still there.
    pub(super) fn settle(&self, id: RunId, token: u64, applied: bool) {
        let Some(mut heads) = self.lock() else {
            return;
        };
        match heads.get_mut(&id) {
            Some(cached) if cached.pending == Some(token) => {
                if applied {
                    cached.pending = None;
                } else {
                    heads.remove(&id);
                }
            }
            _ => {}
        }
    }

    /// Forgets everything (data was changed behind the stores' back).
    pub(crate) fn clear(&self) {
        if let Some(mut heads) = self.lock() {
            heads.clear();
        }
    }

    /// Forgets `id` (a mutation that changes the head otherwise).
    pub(super) fn forget(&self, id: RunId) {
        if let Some(mut heads) = self.lock() {
            heads.remove(&id);
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
        let token = heads.put_pending(head);
        heads.settle(head.id, token, true);
    }

    #[test]
    fn only_confirmed_heads_are_answered() {
        let heads = StoreCache::new();
        let id = head(1).id;
        let token = heads.put_pending(head(1));
        assert!(heads.take(id).is_none(), "a pending entry is a miss");
        let _newer = heads.put_pending(head(1));
        heads.settle(id, token, true);
        assert!(heads.take(id).is_none(), "a stale token confirms nothing");
        let failed = heads.put_pending(head(1));
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
            assert!(heads.heads.lock().unwrap().len() <= MAX_CACHED_RUNS);
        }
    }
}
