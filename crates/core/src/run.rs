//! Execution runs: a record plus an append-only, hash-chained event log.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::{self, ChainReport};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::time::Timestamp;
use crate::validate;

pub use crate::run_event::{NewEvent, RunEvent};

/// The lifecycle of a run: `Running → Completed | Failed | Cancelled`.
/// Terminal runs are immutable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    /// Accepting events.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with a failure.
    Failed,
    /// Stopped before finishing.
    Cancelled,
}

impl RunStatus {
    /// Whether this status is final.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Who runs what: given at creation, never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunMetadata {
    /// The agent executing the run (an identifier).
    pub agent_name: String,
    /// The source revision, if known (an identifier).
    pub git_sha: Option<String>,
    /// Free-form tags: a JSON object of at most 1 MiB.
    pub tags: Value,
}

impl RunMetadata {
    /// Metadata with no git sha and empty tags.
    pub fn new(agent_name: impl Into<String>) -> Self {
        RunMetadata {
            agent_name: agent_name.into(),
            git_sha: None,
            tags: Value::Object(Default::default()),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("agent name", &self.agent_name)?;
        validate::optional_identifier("git sha", self.git_sha.as_deref())?;
        validate::json_object("run tags", &self.tags)
    }
}

/// How a run ended, stored exactly as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// A human-readable outcome (at most 4 KiB).
    pub message: String,
    /// Structured output (at most 1 MiB of JSON).
    pub output: Value,
    /// When the run ended; the store's clock when `None`.
    pub finished_at: Option<Timestamp>,
    /// Blobs the run produced or used: references that keep them from
    /// garbage collection while the run exists (see
    /// [`lifecycle`](crate::lifecycle)). At most [`MAX_SUMMARY_BLOBS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Digest>,
}

/// The most blob digests a [`RunSummary`] or a
/// [`NewEvent`] may declare.
pub const MAX_SUMMARY_BLOBS: usize = 1024;

/// `InvalidInput` naming `what` for more than [`MAX_SUMMARY_BLOBS`]
/// declared blobs (of a summary or an event).
pub(crate) fn check_declared_blobs(what: &str, blobs: &[Digest]) -> Result<()> {
    if blobs.len() > MAX_SUMMARY_BLOBS {
        return Err(Error::invalid_input(format!(
            "{what}: {} digests, at most {MAX_SUMMARY_BLOBS} allowed",
            blobs.len()
        )));
    }
    Ok(())
}

impl RunSummary {
    /// A summary with a message, `null` output and the store's clock.
    pub fn new(message: impl Into<String>) -> Self {
        RunSummary {
            message: message.into(),
            output: Value::Null,
            finished_at: None,
            blobs: Vec::new(),
        }
    }

    /// This summary, declaring `blobs` as references of the run.
    pub fn with_blobs(mut self, blobs: impl IntoIterator<Item = Digest>) -> Self {
        self.blobs = blobs.into_iter().collect();
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        validate::text("run summary message", &self.message)?;
        check_declared_blobs("run summary blobs", &self.blobs)?;
        validate::json("run summary output", &self.output).map(drop)
    }
}

/// A run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// The run's id (UUID v7).
    pub id: RunId,
    /// The digest of the spec being run.
    pub spec_digest: Digest,
    /// Metadata given at creation.
    pub metadata: RunMetadata,
    /// Current status.
    pub status: RunStatus,
    /// When the run was created (store clock).
    pub created_at: Timestamp,
    /// When the run ended, if it has.
    pub finished_at: Option<Timestamp>,
    /// How it ended, if it has.
    pub summary: Option<RunSummary>,
    /// Number of events appended (the next event's seq).
    pub event_count: u64,
    /// The hash of the last event (`None` before the first). Stored with
    /// the count, atomically with every append, so that `verify_run` sees
    /// a removed tail or a rewritten, re-chained log.
    pub head: Option<Digest>,
}

impl Run {
    /// A new `Running` run with no events.
    pub fn new(id: RunId, spec_digest: Digest, metadata: RunMetadata, now: Timestamp) -> Self {
        Run {
            id,
            spec_digest,
            metadata,
            status: RunStatus::Running,
            created_at: now,
            finished_at: None,
            summary: None,
            event_count: 0,
            head: None,
        }
    }

    /// Records `event` (built for this run at seq `event_count`) as the
    /// new end of the chain: the count and head a store writes atomically
    /// with the event.
    ///
    /// # Errors
    /// `Conflict` when the run has reached the largest seq.
    pub fn record_append(&mut self, event: &RunEvent) -> Result<()> {
        self.event_count = count_after(self.id, event)?;
        self.head = Some(event.hash);
        Ok(())
    }

    /// Checks that events may still be appended.
    ///
    /// # Errors
    /// `Conflict` when the run is terminal.
    pub fn check_running(&self) -> Result<()> {
        check_appendable(self.id, self.status)
    }

    /// The run after a terminal transition to `status`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad summary or a non-terminal `status`;
    /// `Conflict` when the run already ended.
    pub fn finish(&self, status: RunStatus, summary: RunSummary, now: Timestamp) -> Result<Run> {
        if !status.is_terminal() {
            return Err(Error::invalid_input(
                "a run can only finish into a terminal status",
            ));
        }
        summary.validate()?;
        if self.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is already {}; it cannot become {status}",
                self.id, self.status
            )));
        }
        let mut run = self.clone();
        run.status = status;
        run.finished_at = Some(summary.finished_at.unwrap_or(now));
        run.summary = Some(summary);
        Ok(run)
    }
}

/// Checks that a run in `status` still takes events.
///
/// # Errors
/// `Conflict` when `status` is terminal.
pub(crate) fn check_appendable(id: RunId, status: RunStatus) -> Result<()> {
    if status.is_terminal() {
        return Err(Error::conflict(format!(
            "run {id} is {status}; events can no longer be appended"
        )));
    }
    Ok(())
}

/// The event count of run `id` once `event` is appended.
///
/// # Errors
/// `Conflict` when the run has reached the largest seq.
pub(crate) fn count_after(id: RunId, event: &RunEvent) -> Result<u64> {
    event
        .seq
        .checked_add(1)
        .ok_or_else(|| Error::conflict(format!("run {id} has reached the largest event seq")))
}

/// The error for a run id the id generator handed out twice: every backend
/// reports it as `AlreadyExists` and stores nothing.
pub fn run_id_taken(id: RunId) -> Error {
    Error::already_exists(format!(
        "run {id} already exists (the id generator repeated an id); nothing was created"
    ))
}

/// Which runs [`RunLedger::list_runs`] returns; unset fields match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs of this spec.
    pub spec_digest: Option<Digest>,
    /// Only runs of this agent.
    pub agent_name: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
}

impl RunFilter {
    /// A filter that matches every run.
    pub fn all() -> Self {
        RunFilter::default()
    }

    /// Only runs of `spec`.
    pub fn spec(mut self, spec: Digest) -> Self {
        self.spec_digest = Some(spec);
        self
    }

    /// Only runs of `agent`.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.agent_name = Some(agent.into());
        self
    }

    /// Only runs in `status`.
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Whether `run` matches.
    pub fn matches(&self, run: &Run) -> bool {
        self.spec_digest.is_none_or(|d| d == run.spec_digest)
            && self
                .agent_name
                .as_deref()
                .is_none_or(|a| a == run.metadata.agent_name)
            && self.status.is_none_or(|s| s == run.status)
    }
}

/// Execution runs and their event logs.
///
/// Per run, every call is atomic and linearizable: concurrent appenders get
/// unique, gap-free seqs; of racing terminal transitions exactly one wins.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stowage_core::{Digest, NewEvent, RunLedger, RunMetadata, RunSummary};
/// async fn demo(runs: &dyn RunLedger) -> stowage_core::Result<()> {
///     let run = runs.create_run(Digest::of(b"spec"), RunMetadata::new("planner")).await?;
///     let e = runs.append_event(run, NewEvent::new("step", serde_json::json!({"n": 1}))).await?;
///     assert_eq!(e.seq, 0);
///     runs.complete_run(run, RunSummary::new("done")).await?;
///     runs.verify_run(run).await?;
///     Ok(())
/// }
/// # });
/// ```
#[async_trait]
pub trait RunLedger: Send + Sync {
    /// Creates a `Running` run with a new UUID v7 id.
    ///
    /// # Errors
    /// `InvalidInput` for bad metadata; `AlreadyExists` ([`run_id_taken`])
    /// when the id generator returns an id that is already taken (nothing
    /// is created).
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId>;

    /// Appends an event with the next seq, extending the hash chain.
    ///
    /// If `idempotency_key` was already used in this run with the same
    /// content ([`RunEvent::same_content`]), the original event comes back
    /// and nothing is stored (even if the run has since ended); with other
    /// content it is `Conflict` naming the key and the run.
    ///
    /// # Errors
    /// `NotFound` for an unknown run; `Conflict` when the run is not
    /// `Running`, `expected_seq` is not the next seq, or the idempotency key
    /// was used with other content; `InvalidInput` for bad fields.
    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent>;

    /// `Running → Completed`. See [`RunLedger::finish_run`].
    async fn complete_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        self.finish_run(run, RunStatus::Completed, summary).await
    }

    /// `Running → Failed`. See [`RunLedger::finish_run`].
    async fn fail_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        self.finish_run(run, RunStatus::Failed, summary).await
    }

    /// `Running → Cancelled`. See [`RunLedger::finish_run`].
    async fn cancel_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        self.finish_run(run, RunStatus::Cancelled, summary).await
    }

    /// Moves a `Running` run into terminal `status`, storing the summary as
    /// given. Of racing callers exactly one wins.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` when the run already ended; `InvalidInput` for
    /// a bad summary or a non-terminal status.
    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run>;

    /// The run record.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_run(&self, run: RunId) -> Result<Run>;

    /// Events with seq strictly greater than `after_seq` (all when `None`),
    /// ascending by seq, at most `limit` (clamped to
    /// [`MAX_PAGE`](crate::validate::MAX_PAGE)).
    ///
    /// # Errors
    /// `NotFound` for an unknown run.
    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>>;

    /// Runs matching `filter`, newest first (descending [`RunId`]), strictly
    /// after the cursor `after` in that order, at most `limit` (clamped to
    /// [`MAX_PAGE`](crate::validate::MAX_PAGE)). Ids are strictly increasing
    /// per process (see [`RandomIds`](crate::RandomIds)), so within one
    /// process this is creation order.
    ///
    /// # Errors
    /// `InvalidInput` when the filter names an invalid agent name.
    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>>;

    /// Re-walks the run's hash chain up to the event count recorded when the
    /// walk started, and checks that it ends at the head hash the record
    /// keeps. The default pages through [`RunLedger::read_events`].
    ///
    /// # Errors
    /// `NotFound`; `Corrupted` naming the first broken link, or saying that
    /// entries were removed or the chain was rewritten.
    async fn verify_run(&self, run: RunId) -> Result<ChainReport> {
        verify_events(self, run, |after| self.read_events(run, after, VERIFY_PAGE)).await
    }
}

/// Re-walks run `run`'s chain (its record read from `store`) through
/// `page(after)` (pages of events in seq order after `after`) up to its
/// event count, checks that it ends at its head hash and that no event
/// sits past it unless the record read again shows a concurrent append:
/// [`RunLedger::verify_run`] over any reader.
pub(crate) async fn verify_events<S, F, Fut>(store: &S, run: RunId, page: F) -> Result<ChainReport>
where
    S: RunLedger + ?Sized,
    F: FnMut(Option<u64>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<RunEvent>>>,
{
    let record = store.get_run(run).await?;
    let end_now = || async {
        let now = store.get_run(run).await?;
        Ok((now.event_count, now.head))
    };
    chain::walk(
        format!("run {run}"),
        (record.event_count, record.head),
        RunEvent::link,
        page,
        end_now,
    )
    .await
}

/// Page size used when re-walking a chain.
pub(crate) const VERIFY_PAGE: usize = 1000;
