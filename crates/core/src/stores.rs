//! The bundle of store handles a backend opens, and what it can do.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::cas::CasStore;
use crate::error::Result;
use crate::ids::{IdGenerator, RandomIds};
use crate::lifecycle::Lifecycle;
use crate::release::ReleaseRegistry;
use crate::run::RunLedger;
use crate::session::SessionStore;
use crate::supersession::SupersessionStore;
use crate::time::{Clock, SystemClock};

/// What a backend can do. The conformance suite uses it to decide which
/// checks apply; a backend that claims a capability must pass its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend's name (`"memory"`, `"file"`, `"redis"`, …).
    pub backend: &'static str,
    /// What an acknowledged write survives ([`DurabilityLevel`]). Use
    /// [`Capabilities::survives_kill`] / [`Capabilities::survives_power_loss`]
    /// or [`DurabilityLevel::satisfies`] rather than matching on it: the
    /// enum may grow.
    pub durability: DurabilityLevel,
    /// Several processes may use the same store at once.
    pub shared: bool,
    /// The largest blob [`CasStore::put`] accepts.
    pub max_blob_size: u64,
    /// `put_stream`/`get_stream` never hold a whole blob in memory.
    pub streaming: bool,
}

impl Capabilities {
    /// The capabilities of a backend named `backend` whose acknowledged
    /// writes survive `durability`, shared between processes or not, taking
    /// blobs up to `max_blob_size` bytes and streaming them (`streaming`
    /// is `true`; clear it for a backend that buffers whole blobs).
    pub fn new(
        backend: &'static str,
        durability: DurabilityLevel,
        shared: bool,
        max_blob_size: u64,
    ) -> Capabilities {
        Capabilities {
            backend,
            durability,
            shared,
            max_blob_size,
            streaming: true,
        }
    }

    /// Acknowledged writes survive `kill -9` of the process (and closing
    /// and reopening the store): every level but [`DurabilityLevel::None`].
    pub fn survives_kill(&self) -> bool {
        self.durability.survives_kill()
    }

    /// The SPEC's `durable` capability: a call that returned `Ok`
    /// survives `kill -9` of the process ([`Capabilities::survives_kill`]).
    ///
    /// ```
    /// use stowage_core::{Capabilities, DurabilityLevel};
    /// let caps = Capabilities::new("file", DurabilityLevel::PowerLoss, false, 1 << 30);
    /// assert!(caps.durable());
    /// assert!(!Capabilities::new("memory", DurabilityLevel::None, false, 1 << 30).durable());
    /// ```
    pub fn durable(&self) -> bool {
        self.survives_kill()
    }

    /// Acknowledged writes survive power loss and kernel crashes
    /// ([`DurabilityLevel::PowerLoss`]).
    pub fn survives_power_loss(&self) -> bool {
        self.durability.survives_power_loss()
    }
}

/// What an acknowledged write survives on a backend, as opened (SPEC §2).
///
/// The levels that can be compared form a ladder: `None` < `ProcessCrash`
/// < `PowerLoss`. `AsConfigured` (a server-side store such as Redis)
/// survives the client process by construction, and beyond that whatever
/// the server is configured for, which the client cannot verify: it
/// satisfies a requirement of `ProcessCrash`, never one of `PowerLoss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DurabilityLevel {
    /// Nothing survives the process (memory).
    None,
    /// Survives `kill -9` of the process, but not power loss or a kernel
    /// crash: the write reached the OS page cache, not the disk (sled
    /// 0.34, whose flush never calls `fsync`; any backend opened with
    /// `durability=buffered`).
    ProcessCrash,
    /// Survives power loss: synced to stable storage (`fsync`) before it
    /// was acknowledged (file, RocksDB by default).
    PowerLoss,
    /// Held by a server and as durable as the server is configured to be
    /// (Redis: `appendonly`/`appendfsync`); survives the client process.
    AsConfigured,
}

impl DurabilityLevel {
    /// Every level, weakest first (the order of the ladder, then
    /// `AsConfigured`).
    pub const ALL: [DurabilityLevel; 4] = [
        DurabilityLevel::None,
        DurabilityLevel::ProcessCrash,
        DurabilityLevel::PowerLoss,
        DurabilityLevel::AsConfigured,
    ];

    /// Acknowledged writes survive `kill -9` of the client process.
    pub fn survives_kill(self) -> bool {
        !matches!(self, DurabilityLevel::None)
    }

    /// Acknowledged writes survive power loss.
    pub fn survives_power_loss(self) -> bool {
        matches!(self, DurabilityLevel::PowerLoss)
    }

    /// Whether a store offering `self` meets a requirement of `required`
    /// (see the type docs for `AsConfigured`).
    pub fn satisfies(self, required: DurabilityLevel) -> bool {
        match required {
            DurabilityLevel::None => true,
            DurabilityLevel::ProcessCrash => self.survives_kill(),
            DurabilityLevel::PowerLoss => self.survives_power_loss(),
            DurabilityLevel::AsConfigured => self == DurabilityLevel::AsConfigured,
        }
    }

    /// The level's name in URLs and messages: `none`, `process_crash`,
    /// `power_loss`, `as_configured`.
    pub fn name(self) -> &'static str {
        match self {
            DurabilityLevel::None => "none",
            DurabilityLevel::ProcessCrash => "process_crash",
            DurabilityLevel::PowerLoss => "power_loss",
            DurabilityLevel::AsConfigured => "as_configured",
        }
    }

    /// The level named `name` (as [`DurabilityLevel::name`] spells it).
    pub fn from_name(name: &str) -> Option<DurabilityLevel> {
        DurabilityLevel::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl fmt::Display for DurabilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a durable backend syncs to stable storage before acknowledging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync (or equivalent) before every acknowledgement: survives power loss.
    #[default]
    Sync,
    /// Acknowledge once the write reached the OS: survives `kill -9` of the
    /// process but **not** power loss or a kernel crash.
    Buffered,
}

impl Durability {
    /// The level an engine that honours this mode reaches: `PowerLoss`
    /// for `Sync`, `ProcessCrash` for `Buffered`.
    pub fn level(self) -> DurabilityLevel {
        match self {
            Durability::Sync => DurabilityLevel::PowerLoss,
            Durability::Buffered => DurabilityLevel::ProcessCrash,
        }
    }
}

/// The injectable environment of a store: its clock and its id generator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreEnv {
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Where new run ids come from.
    pub ids: Arc<dyn IdGenerator>,
}

impl StoreEnv {
    /// An environment taking "now" from `clock` and run ids from `ids`.
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn IdGenerator>) -> Self {
        StoreEnv { clock, ids }
    }

    /// This environment with `clock` instead.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// This environment with `ids` instead.
    pub fn with_ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = ids;
        self
    }
}

impl Default for StoreEnv {
    /// The system clock and random UUID v7 ids.
    fn default() -> Self {
        StoreEnv {
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds::default()),
        }
    }
}

/// What a backend runs when its [`Stores`] are closed: flush what it
/// buffers and release what it holds (lock files, engines, connections).
///
/// Backends attach one with [`Stores::with_closer`]; wrappers that build a
/// new bundle over another keep its closer with [`Stores::closing`].
#[async_trait]
pub trait Close: Send + Sync + 'static {
    /// Flushes and releases the backend. Afterwards every call through any
    /// handle of these stores fails with a clear error; closing again is
    /// `Ok(())`.
    ///
    /// # Errors
    /// The backend's error when the final flush failed (say, a failed
    /// fsync); the resources are released all the same.
    async fn close(&self) -> Result<()>;
}

/// One handle per store trait, all over the same backend, plus its
/// [`Capabilities`]. Cheap to clone; clones share the backend.
///
/// Build one with [`Stores::new`] (and [`Stores::with_closer`] when the
/// backend has something to release). Finish with [`Stores::close`] to
/// flush and release the backend deterministically; see there for what
/// dropping the last handle does instead.
#[derive(Clone)]
pub struct Stores {
    /// Content-addressed blobs.
    pub cas: Arc<dyn CasStore>,
    /// Runs and their event logs.
    pub runs: Arc<dyn RunLedger>,
    /// Release pointers.
    pub releases: Arc<dyn ReleaseRegistry>,
    /// Sessions and their logs.
    pub sessions: Arc<dyn SessionStore>,
    /// Supersession records.
    pub supersessions: Arc<dyn SupersessionStore>,
    /// Retention, garbage collection, fork and statistics across the
    /// stores above.
    pub lifecycle: Arc<dyn Lifecycle>,
    /// What the backend can do.
    pub capabilities: Capabilities,
    /// Run by [`Stores::close`]; `None`: nothing to release.
    closer: Option<Arc<dyn Close>>,
}

impl Stores {
    /// A bundle of the five store handles and the lifecycle handle over
    /// one backend, with nothing to release on [`Stores::close`] (add that
    /// with [`Stores::with_closer`]).
    pub fn new(
        cas: Arc<dyn CasStore>,
        runs: Arc<dyn RunLedger>,
        releases: Arc<dyn ReleaseRegistry>,
        sessions: Arc<dyn SessionStore>,
        supersessions: Arc<dyn SupersessionStore>,
        lifecycle: Arc<dyn Lifecycle>,
        capabilities: Capabilities,
    ) -> Stores {
        Stores {
            cas,
            runs,
            releases,
            sessions,
            supersessions,
            lifecycle,
            capabilities,
            closer: None,
        }
    }

    /// These stores, with `closer` run by [`Stores::close`].
    #[must_use]
    pub fn with_closer(mut self, closer: Arc<dyn Close>) -> Stores {
        self.closer = Some(closer);
        self
    }

    /// These stores, closing what `inner` closes: for a wrapper (fault
    /// injection, tracing, recording) that builds its own bundle over
    /// `inner`'s handles, so that closing the wrapper closes the backend.
    #[must_use]
    pub fn closing(mut self, inner: &Stores) -> Stores {
        self.closer = inner.closer.clone();
        self
    }

    /// Flushes the backend and releases what it holds, returning the error
    /// a final flush met instead of swallowing it:
    ///
    /// - file: writes out buffered log frames, checkpoints when anything
    ///   was written since the last checkpoint (so the next open replays
    ///   nothing), fsyncs every segment (also under
    ///   `durability=buffered`), and releases the lock file, all on a
    ///   blocking thread;
    /// - RocksDB and sled: flush, then close the database (releasing its
    ///   lock);
    /// - Redis: drops the connections;
    /// - memory: marks it closed (its data goes with its last handle).
    ///
    /// Once it returns, the same store may be opened again at once, in this
    /// process or another. (Embedded backends lock with `flock`: a child
    /// process being spawned by another thread at that moment inherits the
    /// lock file's descriptor until it execs, so a reopen racing a spawn
    /// can see `Unavailable` for that instant.) On every backend, calls through
    /// handles kept from these stores (clones of this bundle or of its
    /// `Arc`s) then fail with
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) saying the store
    /// was closed; calls still running when `close` starts finish first.
    /// Closing a clone closes the backend for every clone; closing again
    /// is `Ok(())`.
    ///
    /// Without `close`, dropping the last handle releases the backend too,
    /// but only best effort and synchronously inside `Drop`: the file
    /// backend then writes out buffered frames and checkpoints (blocking
    /// I/O, run inside `block_in_place` on a multi-threaded tokio runtime),
    /// and sled flushes; errors there are lost. Acknowledged writes are
    /// durable either way (unless `durability=buffered`).
    ///
    /// # Errors
    /// The backend's error when the final flush or checkpoint failed (the
    /// backend is released all the same), or when the store was already
    /// unusable (a file store poisoned by a failed fsync).
    pub async fn close(self) -> Result<()> {
        match &self.closer {
            Some(closer) => closer.close().await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::DurabilityLevel::{self, AsConfigured, None, PowerLoss, ProcessCrash};

    #[test]
    fn levels_satisfy_the_ladder_and_as_configured_never_promises_power_loss() {
        let yes = [
            (None, None),
            (ProcessCrash, None),
            (ProcessCrash, ProcessCrash),
            (PowerLoss, ProcessCrash),
            (PowerLoss, PowerLoss),
            (AsConfigured, ProcessCrash),
            (AsConfigured, AsConfigured),
        ];
        for offered in DurabilityLevel::ALL {
            for required in DurabilityLevel::ALL {
                assert_eq!(
                    offered.satisfies(required),
                    required == None || yes.contains(&(offered, required)),
                    "{offered} satisfies {required}"
                );
            }
            assert_eq!(DurabilityLevel::from_name(offered.name()), Some(offered));
        }
        assert!(!None.survives_kill() && !ProcessCrash.survives_power_loss());
        assert!(AsConfigured.survives_kill() && !AsConfigured.survives_power_loss());
        assert_eq!(DurabilityLevel::from_name("fsync"), Option::None);
    }
}
