//! Lifecycle (SPEC §10): reclaiming what a store no longer needs, copying
//! what a caller wants to branch, and counting what is there.
//!
//! Append-only means no record is rewritten; it does not mean nothing is
//! ever reclaimed. Retention removes whole runs and whole sessions, never
//! part of a log; blob garbage collection removes blobs nothing references.
//!
//! Every sweep (`prune_runs`, `expire_sessions`, `prune_sessions`,
//! `gc_blobs`) works in bounded batches: one call examines at most
//! `batch` entities, each removed in a transaction of its own, and returns
//! the cursor to continue from, so a sweep can run beside live traffic
//! without holding anything for long. Call it again with the cursor until
//! the cursor is `None`.
//!
//! # Blob references
//!
//! A blob is referenced, and never collected, while any of these exists:
//! - a run whose spec digest it is, or whose summary or one of whose
//!   events declares it ([`RunSummary::with_blobs`](crate::RunSummary::with_blobs),
//!   [`NewEvent::with_blobs`](crate::NewEvent::with_blobs));
//! - a release record (of any name, current or not) whose spec digest it is;
//! - a supersession whose target or replacement it is;
//! - a pin ([`Lifecycle::pin_blob`]), until unpinned.
//!
//! References are recorded in a reference index when the referencing
//! write is made, before it commits; [`Lifecycle::gc_blobs`] drops an index
//! entry only when its referrer is gone and the entry is older than the
//! grace period. `gc_blobs` deletes a blob only when it has no live
//! reference and its last `put` is older than the grace period: a blob a
//! `put` returned, or that a write is referencing, within the grace period
//! is never collected, so the grace period must exceed the longest time a
//! caller holds a digest before referencing it.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    Digest, LogEntry, ReleaseRecord, Result, Run, RunId, RunStatus, Session, SessionState,
    Timestamp,
};

/// The most entities one sweep call examines when a policy does not say.
pub const DEFAULT_BATCH: usize = 256;

/// How many entities one sweep call examines for a policy's `batch`:
/// 0 means [`DEFAULT_BATCH`], and no more than a page
/// ([`MAX_PAGE`](crate::validate::MAX_PAGE)).
pub fn batch_limit(batch: usize) -> usize {
    match batch {
        0 => DEFAULT_BATCH,
        n => n.min(crate::validate::MAX_PAGE),
    }
}

/// `now - span`, saturating at the epoch: the cutoff of a grace period or
/// an idle time.
pub fn cutoff(now: Timestamp, span: Duration) -> Timestamp {
    let span = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
    Timestamp::from_millis(now.as_millis().saturating_sub(span))
}

/// What to do with a run that is still `Running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum IfRunning {
    /// Keep it: `delete_run` fails with `Conflict`, pruning skips it.
    #[default]
    Keep,
    /// Delete it like a finished run.
    Delete,
}

/// Which runs [`Lifecycle::prune_runs`] deletes: those matching every set
/// condition, except the newest `keep_newest_per_agent` of each agent and
/// (unless `running` says otherwise) runs still running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRetention {
    /// Only runs that finished strictly before this time (running runs,
    /// when deleted at all, count as finishing now).
    pub finished_before: Option<Timestamp>,
    /// Only runs in one of these statuses (empty: any status).
    pub statuses: Vec<RunStatus>,
    /// Only runs of this agent.
    pub agent_name: Option<String>,
    /// Never the newest N runs (by creation) of each agent.
    pub keep_newest_per_agent: Option<u64>,
    /// Whether runs still running may be deleted.
    pub running: IfRunning,
    /// The most runs one call examines (0 is [`DEFAULT_BATCH`]).
    pub batch: usize,
}

impl RunRetention {
    /// Every finished run (narrow it with the builder methods).
    pub fn finished() -> RunRetention {
        RunRetention {
            finished_before: None,
            statuses: Vec::new(),
            agent_name: None,
            keep_newest_per_agent: None,
            running: IfRunning::Keep,
            batch: DEFAULT_BATCH,
        }
    }

    /// Only runs finished strictly before `time`.
    pub fn finished_before(mut self, time: Timestamp) -> Self {
        self.finished_before = Some(time);
        self
    }

    /// Only runs in `status` (call again to allow several).
    pub fn status(mut self, status: RunStatus) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only runs of `agent`.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent_name = Some(agent.into());
        self
    }

    /// Keep the newest `n` runs of every agent.
    pub fn keep_newest_per_agent(mut self, n: u64) -> Self {
        self.keep_newest_per_agent = Some(n);
        self
    }

    /// Delete matching runs even while they are running.
    pub fn including_running(mut self) -> Self {
        self.running = IfRunning::Delete;
        self
    }

    /// Examine at most `n` runs per call.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Whether this policy selects `run` at `now`, except for
    /// `keep_newest_per_agent` (which depends on the agent's other runs: a
    /// run is kept while fewer than N runs of its agent are newer). Every
    /// backend and the CLI's `--dry-run` decide with this.
    pub fn selects(&self, run: &Run, now: Timestamp) -> bool {
        if run.status == RunStatus::Running && self.running == IfRunning::Keep {
            return false;
        }
        if !self.statuses.is_empty() && !self.statuses.contains(&run.status) {
            return false;
        }
        if self
            .agent_name
            .as_ref()
            .is_some_and(|agent| *agent != run.metadata.agent_name)
        {
            return false;
        }
        // A running run counts as finishing now.
        self.finished_before
            .is_none_or(|limit| run.finished_at.unwrap_or(now) < limit)
    }
}

/// Which sessions [`Lifecycle::expire_sessions`] moves to `Expired`, or
/// [`Lifecycle::prune_sessions`] deletes with their logs.
///
/// A session's last activity is the later of its `updated_at` and its
/// last log entry's timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionRetention {
    /// Only sessions idle for longer than this.
    pub idle_for: Duration,
    /// `prune_sessions` only: sessions in these states (by default
    /// `Expired` only). `expire_sessions` takes every state that is not
    /// final and ignores this.
    pub states: Vec<SessionState>,
    /// The most sessions one call examines (0 is [`DEFAULT_BATCH`]).
    pub batch: usize,
}

impl SessionRetention {
    /// Sessions idle for longer than `idle_for` (for pruning: expired ones).
    pub fn idle_for(idle_for: Duration) -> SessionRetention {
        SessionRetention {
            idle_for,
            states: vec![SessionState::Expired],
            batch: DEFAULT_BATCH,
        }
    }

    /// Prune sessions in `state` too.
    pub fn state(mut self, state: SessionState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Examine at most `n` sessions per call.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// Whether a session last active at `last_activity` has been idle for
    /// longer than `idle_for` at `now`.
    pub fn is_idle(&self, last_activity: Timestamp, now: Timestamp) -> bool {
        last_activity < cutoff(now, self.idle_for)
    }

    /// Whether `expire_sessions` moves `session` (last active at
    /// `last_activity`) to `Expired` at `now`: idle and not final.
    pub fn expires(&self, session: &Session, last_activity: Timestamp, now: Timestamp) -> bool {
        !session.state.is_final() && self.is_idle(last_activity, now)
    }

    /// Whether `prune_sessions` deletes `session` (last active at
    /// `last_activity`) at `now`: idle and in one of `states`.
    pub fn prunes(&self, session: &Session, last_activity: Timestamp, now: Timestamp) -> bool {
        self.states.contains(&session.state) && self.is_idle(last_activity, now)
    }
}

/// A session's last activity: the later of its `updated_at` and the
/// timestamp of its last log entry (`None`: an empty log).
pub fn last_activity(session: &Session, last_entry: Option<&LogEntry>) -> Timestamp {
    last_entry.map_or(session.updated_at, |e| e.timestamp.max(session.updated_at))
}

/// What [`Lifecycle::gc_blobs`] collects: unreferenced blobs whose last
/// `put` is older than `grace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlobGc {
    /// How long a blob is safe after a `put` returned it, and a reference
    /// after it was recorded.
    pub grace: Duration,
    /// The most blobs one call examines (0 is [`DEFAULT_BATCH`]).
    pub batch: usize,
}

impl BlobGc {
    /// Collects unreferenced blobs last put more than `grace` ago.
    pub fn grace(grace: Duration) -> BlobGc {
        BlobGc {
            grace,
            batch: DEFAULT_BATCH,
        }
    }

    /// Examine at most `n` blobs per call.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }
}

/// What one sweep call did. `next` is the cursor to pass to the next call
/// (`None`: the sweep reached the end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sweep<C> {
    /// Entities examined: every one the page read, damaged ones (left
    /// alone) included.
    pub examined: u64,
    /// Entities deleted (runs, sessions, blobs) or expired (sessions).
    pub affected: u64,
    /// Records removed with them: events of deleted runs, log entries of
    /// deleted sessions, bytes of deleted blobs; 0 for expiry.
    pub removed: u64,
    /// Where to continue.
    pub next: Option<C>,
}

impl<C> Sweep<C> {
    /// A sweep that examined `examined` entities and affected `affected`,
    /// removing `removed` records with them, continuing after `next`.
    pub fn new(examined: u64, affected: u64, removed: u64, next: Option<C>) -> Sweep<C> {
        Sweep {
            examined,
            affected,
            removed,
            next,
        }
    }
}

/// Who references a blob (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Referrer {
    /// A run (its spec digest, or a digest its summary or an event declares).
    Run(RunId),
    /// A release name (the spec digest of one of its records).
    Release(String),
    /// The supersession of this target (its target or replacement).
    Supersession(Digest),
    /// A pin with this label.
    Pin(String),
}

/// Counts and sizes of one store, from the engine's indexes: no record is
/// decoded, so it is cheap enough for a health check (see each backend's
/// docs for its cost).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Runs.
    pub runs: u64,
    /// Run events.
    pub run_events: u64,
    /// Sessions.
    pub sessions: u64,
    /// Session log entries.
    pub log_entries: u64,
    /// Release names.
    pub release_names: u64,
    /// Release records (all names, all history).
    pub release_records: u64,
    /// Supersession records.
    pub supersessions: u64,
    /// Blobs.
    pub blobs: u64,
    /// Bytes of blob content (as stored, with per-chunk checksums).
    pub blob_bytes: u64,
    /// Entries of the blob reference index (pins included).
    pub blob_references: u64,
    /// Bytes of every stored value, all tables.
    pub stored_bytes: u64,
}

/// Retention, expiry, garbage collection, fork and statistics over one
/// store (`stores.lifecycle`). See the [module docs](self) for batching
/// and blob references.
///
/// ```
/// # use stowage_core::lifecycle::{Lifecycle, RunRetention};
/// async fn nightly(lifecycle: &dyn Lifecycle) -> stowage_core::Result<u64> {
///     let mut deleted = 0;
///     let mut after = None;
///     loop {
///         let sweep = lifecycle
///             .prune_runs(&RunRetention::finished().keep_newest_per_agent(10), after)
///             .await?;
///         deleted += sweep.affected;
///         match sweep.next {
///             Some(next) => after = Some(next),
///             None => return Ok(deleted),
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Deletes run `run` — its record, events, idempotency keys and index
    /// entries — in one transaction. `Ok(false)` if it does not exist.
    ///
    /// # Errors
    /// `Conflict` when the run is running and `if_running` is `Keep`.
    async fn delete_run(&self, run: RunId, if_running: IfRunning) -> Result<bool>;

    /// Examines up to `policy.batch` runs, oldest first, strictly after
    /// `after`, and deletes those the policy selects (each as
    /// `delete_run`, re-checked inside its transaction). `removed` counts
    /// their events.
    ///
    /// # Errors
    /// `InvalidInput` for an invalid agent name.
    async fn prune_runs(&self, policy: &RunRetention, after: Option<RunId>)
        -> Result<Sweep<RunId>>;

    /// Moves sessions idle for longer than `policy.idle_for` and not in a
    /// final state to `Expired` (a new version), up to `policy.batch`
    /// examined, in id order strictly after `after`.
    ///
    /// # Errors
    /// The engine's.
    async fn expire_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>>;

    /// Deletes sessions in one of `policy.states` idle for longer than
    /// `policy.idle_for`, with their logs, up to `policy.batch` examined.
    /// `removed` counts their log entries.
    ///
    /// # Errors
    /// The engine's.
    async fn prune_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>>;

    /// Pins `digest` under `label` (an identifier): the blob is referenced
    /// until unpinned. Pinning an absent blob is allowed (it protects a
    /// blob about to be put); pinning twice is a no-op.
    ///
    /// # Errors
    /// `InvalidInput` for a bad label.
    async fn pin_blob(&self, digest: &Digest, label: &str) -> Result<()>;

    /// Removes the pin; `Ok(false)` if there was none.
    ///
    /// # Errors
    /// `InvalidInput` for a bad label.
    async fn unpin_blob(&self, digest: &Digest, label: &str) -> Result<bool>;

    /// What references `digest` (live references and entries `gc_blobs`
    /// has not yet found stale), in index order: runs, then releases,
    /// supersessions and pins; each referrer once. The list is complete
    /// however many referrers there are (a spec blob shared by every run
    /// of an agent version still lists its pins); it is read page after
    /// page, so under concurrent writes a reference recorded or dropped
    /// meanwhile may or may not be listed.
    ///
    /// # Errors
    /// `Corrupted` for a damaged index entry; the engine's.
    async fn blob_referrers(&self, digest: &Digest) -> Result<Vec<Referrer>>;

    /// Examines up to `policy.batch` blobs in digest order strictly after
    /// `after` and deletes the unreferenced ones last put before the grace
    /// period (each in a transaction of its own). `removed` counts bytes.
    ///
    /// # Errors
    /// The engine's.
    async fn gc_blobs(&self, policy: &BlobGc, after: Option<&Digest>) -> Result<Sweep<Digest>>;

    /// Copies session `from` — record and log, its hash chain verified and
    /// rebuilt for the new id — to a new session `to` (version 1, created
    /// now, same state, data and entry contents and timestamps).
    ///
    /// # Errors
    /// `NotFound` for a missing `from`; `AlreadyExists` when `to` exists;
    /// `InvalidInput` for a bad id; `Corrupted` when `from`'s chain does not
    /// verify (nothing is written).
    async fn fork_session(&self, from: &str, to: &str) -> Result<Session>;

    /// Copies the whole history of release `from` to a new name `to`
    /// (same seqs, specs, metadata and links); returns the copy's current
    /// record.
    ///
    /// # Errors
    /// `NotFound` for a missing `from`; `AlreadyExists` when `to` has
    /// history; `InvalidInput` for a bad name.
    async fn fork_release(&self, from: &str, to: &str) -> Result<ReleaseRecord>;

    /// Counts and sizes of the store.
    ///
    /// # Errors
    /// The engine's.
    async fn stats(&self) -> Result<StoreStats>;

    /// Returns the space deletions freed to the file system where the
    /// backend holds on to it, beside live traffic: the file engine packs
    /// its log (live values only, compressed) and repacks packs that are
    /// at most half live, RocksDB compacts every
    /// column family, SQLite vacuums; backends that reuse or release space
    /// on their own (memory, sled, Redis, PostgreSQL's autovacuum) do
    /// nothing. See `docs/lifecycle.md` for when each backend reclaims
    /// space without being asked.
    ///
    /// # Errors
    /// The backend's (I/O, `StorageFull` while rewriting).
    async fn compact(&self) -> Result<()>;
}
