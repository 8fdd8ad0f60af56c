//! The bundle of store handles a backend opens, and what it can do.

use std::fmt;
use std::sync::Arc;

use crate::cas::CasStore;
use crate::ids::{IdGenerator, RandomIds};
use crate::release::ReleaseRegistry;
use crate::run::RunLedger;
use crate::session::SessionStore;
use crate::supersession::SupersessionStore;
use crate::time::{Clock, SystemClock};

/// What a backend can do. The conformance suite uses it to decide which
/// checks apply; a backend that claims a capability must pass its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The backend's name (`"memory"`, `"file"`, `"redis"`, …).
    pub backend: &'static str,
    /// Acknowledged writes survive the process being killed.
    pub durable: bool,
    /// Several processes may use the same store at once.
    pub shared: bool,
    /// The largest blob [`CasStore::put`] accepts.
    pub max_blob_size: u64,
    /// `put_stream`/`get_stream` never hold a whole blob in memory.
    pub streaming: bool,
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

/// The injectable environment of a store: its clock and its id generator.
#[derive(Debug, Clone)]
pub struct StoreEnv {
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Where new run ids come from.
    pub ids: Arc<dyn IdGenerator>,
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

/// One handle per store trait, all over the same backend, plus its
/// [`Capabilities`]. Cheap to clone.
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
    /// What the backend can do.
    pub capabilities: Capabilities,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}
