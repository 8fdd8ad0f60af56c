//! A bounded cache of committed run records, so an append does not re-read
//! and decode the run record (whose tags may be large).
//!
//! Only for engines whose data no one else writes: such an engine owns
//! one [`StoreCache`] and returns it from `Engine::cache`, so every
//! `Stores` built over the engine shares it. An append takes its run's entry out at the start of its write
//! job (under the run's scope) and puts the new record back *pending* at
//! the end; only after the engine reported the job applied is the entry
//! confirmed. A job that finds a pending entry treats it as absent and
//! reads the engine, so a write the engine failed to apply after the job
//! returned can never leave a wrong head behind: the cache only ever
//! answers with a record the engine confirmed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{Run, RunId};

/// At most this many runs are cached (the cache is cleared when full).
const MAX_CACHED_RUNS: usize = 4096;

/// At most this many bytes of encoded records are cached.
const MAX_CACHED_BYTES: usize = 32 << 20;

/// A record larger than this is never cached.
const MAX_CACHED_RECORD: usize = 256 << 10;

/// A run's committed record and its encoded size.
pub(super) struct Head {
    pub(super) run: Run,
    pub(super) size: usize,
}

struct Cached {
    head: Head,
    /// Which job put it; `None` once confirmed.
    pending: Option<u64>,
}

#[derive(Default)]
struct Heads {
    map: HashMap<RunId, Cached>,
    size: usize,
}

impl Heads {
    fn remove(&mut self, id: RunId) -> Option<Cached> {
        let cached = self.map.remove(&id)?;
        self.size = self.size.saturating_sub(cached.head.size);
        Some(cached)
    }
}

/// What the stores may cache about an engine's data (today: the records
/// of recently appended runs, bounded to 4 096 runs and 32 MiB).
///
/// An engine keeps one and returns it from
/// [`Engine::cache`](crate::engine::Engine::cache) only if nothing but
/// that engine object writes its data — no other process, no other engine
/// object over the same files. Every `Stores` built over the engine then
/// shares it. Engines shared between writers return `None`.
#[derive(Default)]
pub struct StoreCache {
    heads: Mutex<Heads>,
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

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Heads>> {
        self.heads.lock().ok()
    }

    /// Takes the confirmed record of `id` out (call under the run's scope).
    pub(super) fn take(&self, id: RunId) -> Option<Head> {
        let cached = self.lock()?.remove(id)?;
        cached.pending.is_none().then_some(cached.head)
    }

    /// Puts `head` back unconfirmed; returns the token that confirms it.
    pub(super) fn put_pending(&self, head: Head) -> u64 {
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        if head.size > MAX_CACHED_RECORD {
            return token;
        }
        let Some(mut heads) = self.lock() else {
            return token;
        };
        if heads.map.len() >= MAX_CACHED_RUNS
            || heads.size.saturating_add(head.size) > MAX_CACHED_BYTES
        {
            heads.map.clear();
            heads.size = 0;
        }
        heads.size = heads.size.saturating_add(head.size);
        let id = head.run.id;
        let entry = Cached {
            head,
            pending: Some(token),
        };
        if let Some(old) = heads.map.insert(id, entry) {
            heads.size = heads.size.saturating_sub(old.head.size);
        }
        token
    }

    /// The job that put `token` for `id` was applied (or, `applied` false,
    /// was not): confirm or drop its entry if it is still there.
    pub(super) fn settle(&self, id: RunId, token: u64, applied: bool) {
        let Some(mut heads) = self.lock() else {
            return;
        };
        let ours = heads
            .map
            .get(&id)
            .is_some_and(|cached| cached.pending == Some(token));
        if !ours {
            return;
        }
        if applied {
            if let Some(cached) = heads.map.get_mut(&id) {
                cached.pending = None;
            }
        } else {
            heads.remove(id);
        }
    }

    /// Forgets `id` (a mutation that changes the record otherwise).
    pub(super) fn forget(&self, id: RunId) {
        if let Some(mut heads) = self.lock() {
            heads.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Digest, RunMetadata, Timestamp};

    use super::*;

    fn head(entropy: u128, size: usize) -> Head {
        let id = RunId::new_v7(Timestamp::ZERO, entropy);
        let run = Run::new(
            id,
            Digest::of(b"spec"),
            RunMetadata::new("agent"),
            Timestamp::ZERO,
        );
        Head { run, size }
    }

    fn put(heads: &StoreCache, head: Head) {
        let id = head.run.id;
        let token = heads.put_pending(head);
        heads.settle(id, token, true);
    }

    #[test]
    fn only_confirmed_records_are_answered() {
        let heads = StoreCache::new();
        let id = head(1, 1).run.id;
        let token = heads.put_pending(head(1, 1));
        assert!(heads.take(id).is_none(), "a pending entry is a miss");
        let token2 = heads.put_pending(head(1, 1));
        heads.settle(id, token, true);
        assert!(heads.take(id).is_none(), "a stale token confirms nothing");
        let _ = token2;
        let token3 = heads.put_pending(head(1, 1));
        heads.settle(id, token3, false);
        assert!(heads.take(id).is_none(), "a failed job leaves no entry");
        put(&heads, head(1, 1));
        assert!(heads.take(id).is_some());
        assert!(heads.take(id).is_none(), "taking removes the entry");
    }

    #[test]
    fn the_head_cache_stays_within_its_bounds() {
        let heads = StoreCache::new();
        put(&heads, head(1, MAX_CACHED_RECORD + 1));
        assert!(heads.take(head(1, 0).run.id).is_none());

        let sizes = |heads: &StoreCache| {
            let cached = heads.heads.lock().unwrap();
            let sum: usize = cached.map.values().map(|c| c.head.size).sum();
            (cached.map.len(), cached.size, sum)
        };
        for n in 0..MAX_CACHED_RUNS + 10 {
            put(&heads, head(n as u128, 1));
            let (len, size, sum) = sizes(&heads);
            assert!(len <= MAX_CACHED_RUNS);
            assert_eq!((size, sum), (len, len));
        }
        for n in 0..(MAX_CACHED_BYTES / MAX_CACHED_RECORD) + 2 {
            put(&heads, head(n as u128, MAX_CACHED_RECORD));
            let (_, size, sum) = sizes(&heads);
            assert!(size <= MAX_CACHED_BYTES);
            assert_eq!(size, sum);
        }
    }
}
