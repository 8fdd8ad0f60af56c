//! The run-head cache: the committed record and chain head of recently
//! appended runs, so an append does not re-read and decode the run record
//! and the previous event.
//!
//! The engines admit a single opener, so this process is the only writer.
//! `runs` inserts an entry only under the run's stripe and only after the
//! batch that produced it was written (or when nothing was written), and
//! takes the entry out at the start of every mutation of the run, so a
//! failed or refused mutation leaves the run uncached and the next one
//! reloads from the engine. Removing entries is always safe.

use std::collections::HashMap;

use parking_lot::Mutex;
use stowage_core::{Run, RunId};

/// How many runs [`RunHeads`] remembers before it forgets them all.
const MAX_CACHED_RUNS: usize = 4096;

/// How many bytes of encoded run records [`RunHeads`] holds before it
/// forgets them all.
const MAX_CACHED_BYTES: usize = 32 << 20;

/// Runs whose encoded record is larger than this are never cached.
const MAX_CACHED_RECORD: usize = 256 << 10;

/// A run's committed record (which carries its chain head) and the size of
/// its encoded record.
pub(crate) struct Head {
    pub(crate) run: Run,
    pub(crate) size: usize,
}

/// The cached heads and the sum of their sizes.
#[derive(Default)]
struct Heads {
    map: HashMap<RunId, Head>,
    size: usize,
}

/// The committed record and chain head of recently appended runs, bounded
/// by count and by bytes. Entries are inserted only under the run's stripe
/// after a successful write; removing one (any time) only costs a reload.
#[derive(Default)]
pub(crate) struct RunHeads(Mutex<Heads>);

impl RunHeads {
    /// Takes the entry of `id` out of the cache. Call under its stripe.
    pub(crate) fn take(&self, id: RunId) -> Option<Head> {
        let mut heads = self.0.lock();
        let head = heads.map.remove(&id)?;
        heads.size = heads.size.saturating_sub(head.size);
        Some(head)
    }

    /// Remembers the committed state of a run. Call under its stripe, only
    /// after the batch that produced it was written (or when nothing was).
    pub(crate) fn put(&self, head: Head) {
        if head.size > MAX_CACHED_RECORD {
            return;
        }
        let mut heads = self.0.lock();
        if heads.map.len() >= MAX_CACHED_RUNS
            || heads.size.saturating_add(head.size) > MAX_CACHED_BYTES
        {
            heads.map.clear();
            heads.size = 0;
        }
        heads.size = heads.size.saturating_add(head.size);
        if let Some(old) = heads.map.insert(head.run.id, head) {
            heads.size = heads.size.saturating_sub(old.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use stowage_core::{Digest, RunMetadata, Timestamp};

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

    #[test]
    fn the_head_cache_stays_within_its_bounds() {
        let heads = RunHeads::default();
        heads.put(head(1, MAX_CACHED_RECORD + 1));
        assert!(heads.take(head(1, 0).run.id).is_none());

        for n in 0..MAX_CACHED_RUNS + 10 {
            heads.put(head(n as u128, 1));
            let cached = heads.0.lock();
            assert!(cached.map.len() <= MAX_CACHED_RUNS);
            assert_eq!(cached.size, cached.map.len());
        }
        heads.put(head(u128::MAX, MAX_CACHED_RECORD));
        for n in 0..(MAX_CACHED_BYTES / MAX_CACHED_RECORD) + 2 {
            heads.put(head(n as u128, MAX_CACHED_RECORD));
            let cached = heads.0.lock();
            assert!(cached.size <= MAX_CACHED_BYTES);
            let sum: usize = cached.map.values().map(|h| h.size).sum();
            assert_eq!(cached.size, sum);
        }
        let last = (MAX_CACHED_BYTES / MAX_CACHED_RECORD) + 1;
        let taken = heads.take(head(last as u128, 0).run.id);
        assert_eq!(taken.map(|h| h.size), Some(MAX_CACHED_RECORD));
        let cached = heads.0.lock();
        let sum: usize = cached.map.values().map(|h| h.size).sum();
        assert_eq!(cached.size, sum);
    }
}
