//! What a backend author provides to run the suite: a [`Harness`].

use async_trait::async_trait;
use stowage_core::{Digest, Error, Result, RunId, Stores};

/// Damage to inflict on stored data behind the SDK's back, to prove that
/// integrity checks catch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// Change the stored bytes of a blob (keep its length when possible).
    Blob(Digest),
    /// Change the payload of one stored run event, leaving its hash as is.
    RunEvent {
        /// The run.
        run: RunId,
        /// The event's seq.
        seq: u64,
    },
    /// Change the payload of one stored session log entry, leaving its hash.
    LogEntry {
        /// The session id.
        session: String,
        /// The entry's seq.
        seq: u64,
    },
}

/// One isolated store under test. The suite's factory creates a fresh
/// harness per check (a temp dir, a unique Redis key prefix, …).
///
/// Only [`Harness::open`] is required. Durable backends implement
/// [`Harness::reopen`]; shared backends implement [`Harness::open_another`];
/// backends that can reach their stored bytes implement [`Harness::tamper`].
/// A check whose hook returns `Unsupported` prints the reason and does not
/// apply — unless the backend's capabilities claim it (a backend whose
/// durability level survives `kill -9` must support `reopen`).
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// Opens the store under test. Called once per harness.
    async fn open(&self) -> Result<Stores>;

    /// Closes `stores` (drop every handle) and opens the same store again.
    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        Err(Error::unsupported("this harness cannot reopen its store"))
    }

    /// Simulates power loss under `stores` and opens the store again:
    /// everything not yet on stable storage is lost and the handles are
    /// dropped without a clean close. Backends whose harness can simulate
    /// it (the file engine on its simulated disk) implement it so that the
    /// suite can check a [`DurabilityLevel::PowerLoss`] claim; the default
    /// is `Unsupported`.
    ///
    /// [`DurabilityLevel::PowerLoss`]: stowage_core::DurabilityLevel::PowerLoss
    async fn lose_power(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        Err(Error::unsupported(
            "this harness cannot simulate power loss",
        ))
    }

    /// Opens a second, independent handle onto the same store, as another
    /// process would (a new connection, not a clone of `stores`). Shared
    /// backends (`Capabilities::shared`) implement it so that the suite can
    /// race two handles; the default is `Unsupported`.
    async fn open_another(&self, stores: &Stores) -> Result<Stores> {
        let _ = stores;
        Err(Error::unsupported(
            "this harness cannot open a second handle onto its store",
        ))
    }

    /// Damages stored data as described by `target`.
    async fn tamper(&self, stores: &Stores, target: Tamper) -> Result<()> {
        let _ = (stores, target);
        Err(Error::unsupported(
            "this harness cannot tamper with stored data",
        ))
    }
}
