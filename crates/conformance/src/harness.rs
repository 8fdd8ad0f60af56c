//! What a backend author provides to run the suite: a [`Harness`].

use async_trait::async_trait;
use stowage_core::{Digest, Error, LogEntry, Result, RunEvent, RunId, StoreEnv, Stores};

/// Damage to inflict on stored data behind the SDK's back, to prove that
/// integrity checks catch it.
///
/// New kinds of damage may be added: a harness answers `Unsupported` for
/// the ones it cannot inflict (the check then prints why and does not apply).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// Replace the whole stored event log of a run with exactly `events`
    /// (as given: the suite drops, renumbers or re-chains them), leaving
    /// the run record (its event count and head hash) as it is.
    RunEvents {
        /// The run.
        run: RunId,
        /// The events to store, in order.
        events: Vec<RunEvent>,
    },
    /// Overwrite the chain head the run record keeps, leaving the events
    /// and the event count as they are.
    RunHead {
        /// The run.
        run: RunId,
        /// The head hash to record.
        head: Option<Digest>,
    },
    /// Replace the whole stored log of a session with exactly `entries`,
    /// leaving the session record (its log length and head hash) as it is.
    LogEntries {
        /// The session id.
        session: String,
        /// The entries to store, in order.
        entries: Vec<LogEntry>,
    },
    /// Overwrite the chain head the session record keeps, leaving the log
    /// and the recorded length as they are.
    LogHead {
        /// The session id.
        session: String,
        /// The head hash to record.
        head: Option<Digest>,
    },
    /// Lose what records the run's event count and chain head beyond the
    /// run record (a head written apart from it, as a lost write would),
    /// leaving the events.
    RunHeadLost {
        /// The run.
        run: RunId,
    },
    /// Edit the reason of the stored supersession of `target`, leaving its
    /// signature.
    Supersession {
        /// The superseded hash.
        target: Digest,
    },
    /// Give the blob's stored size a value its stored chunks cannot hold.
    BlobSize(Digest),
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

    /// Opens a fresh, empty store that takes its clock and run ids from
    /// `env` (for checks that need a misbehaving id generator, say). The
    /// default is `Unsupported`.
    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        let _ = env;
        Err(Error::unsupported(
            "this harness cannot open a store with a given environment",
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

/// Applies `target` through `engine`, for a harness over an engine of the
/// seam ([`stowage_core::engine`]): the one place every such harness
/// inflicts damage, so [`Harness::tamper`] is one line.
///
/// # Errors
/// `NotFound` when the damaged record does not exist; the engine's errors.
pub async fn tamper_engine(
    engine: &dyn stowage_core::engine::Engine,
    target: Tamper,
) -> Result<()> {
    use stowage_core::engine::tamper;
    match target {
        Tamper::Blob(digest) => tamper::blob(engine, digest).await,
        Tamper::RunEvent { run, seq } => tamper::run_event(engine, run, seq).await,
        Tamper::RunEvents { run, events } => tamper::run_events(engine, run, events).await,
        Tamper::RunHead { run, head } => tamper::run_head(engine, run, head).await,
        Tamper::LogEntry { session, seq } => tamper::log_entry(engine, session, seq).await,
        Tamper::LogEntries { session, entries } => {
            tamper::log_entries(engine, session, entries).await
        }
        Tamper::LogHead { session, head } => tamper::log_head(engine, session, head).await,
        Tamper::RunHeadLost { run } => tamper::run_head_lost(engine, run).await,
        Tamper::Supersession { target } => tamper::supersession(engine, target).await,
        Tamper::BlobSize(digest) => tamper::blob_header_size(engine, digest).await,
    }
}
