//! The store environment an import replays through: a clock and an id
//! generator that yield the *source's* timestamps and run ids while a
//! record is being recreated.
//!
//! Stores assign `created_at`, `updated_at`, `finished_at` (when the
//! summary has none) and run ids from their [`StoreEnv`]. The importer
//! opens the target with [`Replay::env`] and pins the values of the record
//! it is about to recreate around each call ([`Replay::pin`]); between
//! pins the clock is the system clock and ids are random. Pins are not
//! scoped per task: one importer at a time may use a `Replay`, and other
//! writers of the same `Stores` handle during an import would see pinned
//! values (the CLI opens a private handle).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use stowage_core::{Clock, IdGenerator, RandomIds, RunId, StoreEnv, SystemClock, Timestamp};

/// A pinnable clock and id generator (see the module docs).
#[derive(Debug, Default)]
pub struct Replay {
    /// The pinned time in ms + 1 (0: not pinned).
    now: AtomicU64,
    next_id: Mutex<Option<RunId>>,
    random: RandomIds,
}

/// Unpins when dropped.
#[derive(Debug)]
pub struct Pin<'a>(&'a Replay);

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        self.0.now.store(0, Ordering::SeqCst);
        *self.0.slot() = None;
    }
}

impl Replay {
    /// A new, unpinned replay environment.
    pub fn new() -> Arc<Replay> {
        Arc::new(Replay::default())
    }

    /// The [`StoreEnv`] to open the target with.
    pub fn env(self: &Arc<Self>) -> StoreEnv {
        StoreEnv::new(
            Arc::clone(self) as Arc<dyn Clock>,
            Arc::clone(self) as Arc<dyn IdGenerator>,
        )
    }

    /// Until the guard drops, "now" is `now` and the next run id is `id`
    /// (once; later ids are random again).
    pub fn pin(&self, now: Timestamp, id: Option<RunId>) -> Pin<'_> {
        // `u64::MAX` ms cannot be pinned (it is the "+1" overflow); no real
        // record has it, and it then simply reads as the system clock.
        self.now
            .store(now.as_millis().saturating_add(1), Ordering::SeqCst);
        *self.slot() = id;
        Pin(self)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<RunId>> {
        self.next_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for Replay {
    fn now(&self) -> Timestamp {
        match self.now.load(Ordering::SeqCst) {
            0 => SystemClock.now(),
            pinned => Timestamp::from_millis(pinned - 1),
        }
    }
}

impl IdGenerator for Replay {
    fn new_run_id(&self, now: Timestamp) -> RunId {
        self.slot()
            .take()
            .unwrap_or_else(|| self.random.new_run_id(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_hold_until_the_guard_drops_and_ids_are_used_once() {
        let replay = Replay::new();
        let id = RunId::new_v7(Timestamp::from_millis(5), 9);
        {
            let _pin = replay.pin(Timestamp::from_millis(5), Some(id));
            assert_eq!(replay.now(), Timestamp::from_millis(5));
            assert_eq!(replay.new_run_id(replay.now()), id);
            assert_ne!(replay.new_run_id(replay.now()), id);
        }
        assert!(replay.now() > Timestamp::from_millis(5));
        let _zero = replay.pin(Timestamp::ZERO, None);
        assert_eq!(replay.now(), Timestamp::ZERO);
    }
}
