//! [`FakeStores`]: deterministic in-memory stores with snapshot and fork.

use std::sync::Arc;

use stowage_backends::memory::MemoryBackend;
use stowage_core::{Digest, RunId, StoreEnv, Stores};

use crate::clock::FakeClock;
use crate::ids::SequentialIds;

/// In-memory stores for tests: the memory backend of `stowage-backends`
/// (which passes the whole conformance suite) driven by a [`FakeClock`] and
/// [`SequentialIds`], so timestamps and run ids are the same in every run.
///
/// - [`FakeStores::stores`] hands out the store handles;
/// - [`FakeStores::clock`] moves time;
/// - [`FakeStores::snapshot`] freezes the whole state (and the clock and id
///   counter) to [fork](Snapshot::fork) from later;
/// - [`FakeStores::fork`] copies everything into independent stores now.
///
/// Cloning gives another handle to the same state, clock and ids.
///
/// ```
/// use stowage_core::{Digest, RunMetadata};
/// use stowage_fakes::{FakeClock, FakeStores};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let fakes = FakeStores::new();
/// let runs = fakes.stores().runs;
/// let run = runs.create_run(Digest::of(b"spec"), RunMetadata::new("planner")).await.unwrap();
/// assert_eq!(runs.get_run(run).await.unwrap().created_at, FakeClock::DEFAULT_START);
///
/// let before = fakes.snapshot();
/// fakes.clock().advance_ms(60_000);
/// runs.create_run(Digest::of(b"spec"), RunMetadata::new("planner")).await.unwrap();
///
/// let replay = before.fork(); // the state as it was: one run
/// let listed = replay.stores().runs.list_runs(&Default::default(), None, 10).await.unwrap();
/// assert_eq!(listed.len(), 1);
/// assert_eq!(replay.clock().peek(), FakeClock::DEFAULT_START);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct FakeStores {
    backend: MemoryBackend,
    clock: FakeClock,
    ids: SequentialIds,
}

impl FakeStores {
    /// Empty stores with a frozen [`FakeClock::new`] (at
    /// [`FakeClock::DEFAULT_START`]) and a fresh [`SequentialIds`].
    pub fn new() -> Self {
        Self::with(FakeClock::new(), SequentialIds::new())
    }

    /// Empty stores reading time from `clock` and run ids from `ids`
    /// (the stores share them with the caller's clones).
    pub fn with(clock: FakeClock, ids: SequentialIds) -> Self {
        let backend = MemoryBackend::new(env(&clock, &ids));
        FakeStores {
            backend,
            clock,
            ids,
        }
    }

    /// One handle per store trait, all over this fake's state (cheap; every
    /// call returns handles to the same state).
    pub fn stores(&self) -> Stores {
        self.backend.stores()
    }

    /// The clock the stores read; move it to move their "now".
    pub fn clock(&self) -> &FakeClock {
        &self.clock
    }

    /// The run id generator the stores use.
    pub fn ids(&self) -> &SequentialIds {
        &self.ids
    }

    /// The memory backend underneath, for its integrity-testing hooks.
    pub fn backend(&self) -> &MemoryBackend {
        &self.backend
    }

    /// A frozen, consistent copy of the whole state, the clock's time and
    /// the id counter (taken while holding off writers, so it never holds
    /// half of an operation). Later changes here do not affect it.
    pub fn snapshot(&self) -> Snapshot {
        let clock = self.clock.fork();
        let ids = self.ids.fork();
        let backend = self.backend.fork_with(env(&clock, &ids));
        // An id issued while the engine was being copied may be in the
        // copy: the fork's counter starts past it, never reissuing it.
        ids.catch_up(&self.ids);
        Snapshot {
            inner: FakeStores {
                backend,
                clock,
                ids,
            },
        }
    }

    /// Independent stores with a copy of the whole state, their own copy of
    /// the clock and their own id generator continuing from this one's
    /// counter (so both issue the same next ids, each in its own world).
    /// Same as `self.snapshot().fork()`.
    pub fn fork(&self) -> FakeStores {
        self.snapshot().inner
    }

    /// Damages a stored blob behind the SDK's back (see
    /// [`MemoryBackend::corrupt_blob`]): `get` and `verify` then report
    /// `Corrupted`. Returns false if the blob is absent.
    pub fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.backend.corrupt_blob(digest)
    }

    /// Changes the payload of event `seq` of `run`, leaving its hash, so
    /// `verify_run` reports `Corrupted`. Returns false if there is no such
    /// event.
    pub fn corrupt_run_event(&self, run: RunId, seq: u64) -> bool {
        self.backend.corrupt_run_event(run, seq)
    }

    /// Changes the payload of log entry `seq` of `session`, leaving its
    /// hash, so `verify_log` reports `Corrupted`. Returns false if there is
    /// no such entry.
    pub fn corrupt_log_entry(&self, session: &str, seq: u64) -> bool {
        self.backend.corrupt_log_entry(session, seq)
    }
}

impl Default for FakeStores {
    /// Same as [`FakeStores::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// A frozen copy of a [`FakeStores`]' whole state, from
/// [`FakeStores::snapshot`]. It never changes; fork from it as often as
/// you like.
#[derive(Debug)]
pub struct Snapshot {
    inner: FakeStores,
}

impl Snapshot {
    /// Independent stores holding the snapshot's state, with a clock at the
    /// snapshot's time and an id generator at its counter. Every fork from
    /// one snapshot starts identical and then evolves on its own.
    pub fn fork(&self) -> FakeStores {
        self.inner.fork()
    }

    /// The clock's time when the snapshot was taken.
    pub fn time(&self) -> stowage_core::Timestamp {
        self.inner.clock.peek()
    }
}

fn env(clock: &FakeClock, ids: &SequentialIds) -> StoreEnv {
    StoreEnv::new(Arc::new(clock.clone()), Arc::new(ids.clone()))
}
