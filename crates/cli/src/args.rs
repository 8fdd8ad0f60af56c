//! The command line, as clap derive types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use stowage_core::{Digest, RunStatus, SessionState, Timestamp};

use crate::parse;

/// Look inside, prove intact, export, import, migrate and prune a stowage store.
///
/// Every command takes a store URL: `memory://`, `file:///abs/dir`,
/// `file:rel/dir`, `sled:///abs/dir`, `rocksdb:///abs/dir`,
/// `redis://host:port/db?prefix=NAME`, `sqlite:///abs/file.db`,
/// `postgres://user@host/db?schema=NAME` (as compiled in).
#[derive(Debug, Parser)]
#[command(name = "stowage", version, propagate_version = true)]
#[command(after_help = "Exit codes: 0 success; 1 an error (one line on stderr: \
`error: <kind>: <message>`); 2 bad usage; 3 `verify` found damage or `migrate` \
found a parity difference.")]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a store holds: runs, sessions, releases, blobs, supersessions.
    #[command(after_help = "Examples:\n  \
stowage inspect file:///var/lib/agent runs --limit 20\n  \
stowage inspect file:///var/lib/agent run 0193c1d2-7a40-7c3e-9a51-3f0e6c7b1a22\n  \
stowage inspect file:///var/lib/agent releases planner --json\n  \
stowage inspect redis://127.0.0.1:6379/0?prefix=prod blobs --after 5e88 --limit 100")]
    Inspect(InspectArgs),
    /// Re-check every hash chain, signature and blob digest; exit 3 on damage.
    #[command(after_help = "Example:\n  stowage verify file:///var/lib/agent\n\n\
Checks every run's and session's hash chain (verify_run, verify_log), every \
listable supersession's signature, and re-hashes every blob. Prints a summary and \
the first problem of each damaged entity; exits with 3 when anything is wrong.")]
    Verify(StoreArg),
    /// Count entities and bytes from the store's indexes (cheap); `--scan` lists them instead.
    #[command(after_help = "Examples:\n  stowage stats file:///var/lib/agent\n  \
stowage stats file:///var/lib/agent --scan --json\n\n\
The default reads counts and sizes from the engine's indexes (Lifecycle::stats): \
cheap enough for a health check. --scan counts by listing every entity and \
reading every session log instead (a full scan), and adds log payload bytes.")]
    Stats(StatsArgs),
    /// Write the whole store to a versioned JSONL file (format: `stowage export --help`).
    #[command(
        after_help = "Example:\n  stowage export file:///var/lib/agent backup.jsonl\n\n\
Use `-` as FILE to write to standard output."
    )]
    Export(ExportArgs),
    /// Load an export file into a store; re-running it finishes an interrupted import.
    #[command(
        after_help = "Example:\n  stowage import sled:///var/lib/agent-copy backup.jsonl\n\n\
Import is idempotent: run it again after a crash and it completes the job, \
duplicating nothing. Ids, timestamps, seqs and hash chains are reproduced exactly; \
anything in the target that contradicts the file stops it with a `conflict` \
error naming the record (exit 1; what came before it was imported)."
    )]
    Import(ImportArgs),
    /// Copy every entity from one store to another, then compare them (parity report).
    #[command(after_help = "Example:\n  \
stowage migrate file:///var/lib/agent 'redis://127.0.0.1:6379/0?prefix=agent'\n\n\
Streaming and resumable: after an interruption, run the same command again. \
Progress bars are drawn on a terminal only (never with --quiet). Exits 3 when the \
parity report finds a difference.")]
    Migrate(MigrateArgs),
    /// Delete whole runs (record, events, keys) selected by a retention policy.
    #[command(after_help = "Examples:\n  \
stowage prune-runs file:///var/lib/agent --older-than 30d --keep-newest 10\n  \
stowage prune-runs file:///var/lib/agent --status failed --status cancelled --dry-run\n\n\
A run is deleted when it matches every condition given, is not among the newest \
--keep-newest runs of its agent, and is not running (unless --include-running). \
At least one condition is required. Works in batches of --batch runs, each run \
in a transaction of its own, so it can run beside live traffic.")]
    PruneRuns(PruneRunsArgs),
    /// Move sessions idle for longer than --idle-for to Expired.
    #[command(
        after_help = "Example:\n  stowage expire-sessions file:///var/lib/agent --idle-for 7d\n\n\
Sessions in a final state (resolved, expired, cancelled) are left alone. A \
session's last activity is the later of its last save and its last log entry."
    )]
    ExpireSessions(ExpireSessionsArgs),
    /// Delete sessions (with their logs) idle for longer than --idle-for.
    #[command(
        after_help = "Example:\n  stowage prune-sessions file:///var/lib/agent --idle-for 30d --state expired --state resolved"
    )]
    PruneSessions(PruneSessionsArgs),
    /// Delete blobs nothing references (runs, releases, supersessions, pins).
    #[command(
        after_help = "Example:\n  stowage gc file:///var/lib/agent --grace 48h\n\n\
A blob put, or referenced, within the grace period is never collected: the grace \
period must exceed the longest time a writer holds a digest before referencing it."
    )]
    Gc(GcArgs),
    /// Pin a blob under a label so that gc keeps it.
    #[command(
        after_help = "Example:\n  stowage pin file:///var/lib/agent 962ef399fa404faaf805002e3e52669c8d2177c12c7c7983c3956f5c47d0f721 golden-set"
    )]
    Pin(PinArgs),
    /// Remove a pin; exit 1 (not_found) if there was none.
    #[command(
        after_help = "Example:\n  stowage unpin file:///var/lib/agent 962ef399fa404faaf805002e3e52669c8d2177c12c7c7983c3956f5c47d0f721 golden-set"
    )]
    Unpin(PinArgs),
    /// Show what references a blob.
    #[command(
        after_help = "Example:\n  stowage referrers file:///var/lib/agent 962ef399fa404faaf805002e3e52669c8d2177c12c7c7983c3956f5c47d0f721"
    )]
    Referrers(ReferrersArgs),
    /// Copy a session (record and log, chain rebuilt) to a new id.
    #[command(
        after_help = "Example:\n  stowage fork-session file:///var/lib/agent chat-42 chat-42-replay"
    )]
    ForkSession(ForkArgs),
    /// Copy a release name's whole history to a new name.
    #[command(
        after_help = "Example:\n  stowage fork-release file:///var/lib/agent planner planner-canary"
    )]
    ForkRelease(ForkArgs),
    /// Give the space that deletions freed back to the file system (Lifecycle::compact).
    #[command(after_help = "Examples:\n  stowage compact file:///var/lib/agent\n  \
stowage compact sqlite:///var/lib/agent.db --json\n\n\
The file backend packs its log (live values only, compressed), RocksDB compacts, \
SQLite vacuums; backends that reclaim space on their own (memory, sled, Redis, \
PostgreSQL) do nothing. For a store in the local file system it reports the bytes \
on disk before and after. Runs beside live traffic only where the backend admits \
other openers (SQLite); the file, sled and RocksDB stores admit one process, so \
stop the application first.")]
    Compact(StoreArg),
}

/// A single store URL.
#[derive(Debug, Args)]
pub struct StoreArg {
    /// The store URL.
    pub url: String,
    /// Machine-readable output: one JSON document per line.
    #[arg(long)]
    pub json: bool,
}

/// `stowage inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The store URL.
    pub url: String,
    /// What to show.
    #[command(subcommand)]
    pub what: InspectWhat,
    /// Machine-readable output: one JSON document per line (JSON Lines).
    #[arg(long, global = true)]
    pub json: bool,
    /// Start strictly after this cursor (a run id, session id, seq, release
    /// seq, digest or release name, as the list is ordered).
    #[arg(long, global = true)]
    pub after: Option<String>,
    /// At most this many rows (events or log entries for `run`/`session`).
    #[arg(long, global = true, default_value_t = 50)]
    pub limit: usize,
}

/// What `stowage inspect` shows.
#[derive(Debug, Subcommand)]
pub enum InspectWhat {
    /// Runs, newest first (`--after RUN_ID`).
    Runs,
    /// One run and its events in order (`--after SEQ`).
    Run {
        /// The run id (a UUID v7).
        id: String,
    },
    /// Sessions by id (`--after SESSION_ID`).
    Sessions,
    /// One session and its log in order (`--after SEQ`).
    Session {
        /// The session id.
        id: String,
    },
    /// Release names (`--after NAME`), or one name's history newest first
    /// (`--after SEQ` shows records older than SEQ).
    Releases {
        /// The release name; all names when omitted.
        name: Option<String>,
    },
    /// Blob digests and sizes, ascending (`--after DIGEST`).
    Blobs,
    /// Supersession records: all, ascending by target (`--after DIGEST`),
    /// or one agent's newest first (`--agent KEY`).
    Supersessions {
        /// Only records signed by this agent (64 hex characters).
        #[arg(long)]
        agent: Option<String>,
    },
}

/// `stowage stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The store URL.
    pub url: String,
    /// Count by listing every entity (a full scan) instead of reading the
    /// indexes.
    #[arg(long)]
    pub scan: bool,
    /// Machine-readable output: one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `stowage export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store URL.
    pub url: String,
    /// The file to write (`-` for standard output).
    pub file: PathBuf,
    /// Export even when the backend cannot enumerate supersessions; the
    /// file's header then says they were skipped.
    #[arg(long)]
    pub skip_supersessions: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `stowage import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The target store URL.
    pub url: String,
    /// The export file (`-` for standard input).
    pub file: PathBuf,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `stowage migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The source store URL.
    pub from: String,
    /// The target store URL.
    pub to: String,
    /// Migrate even when the source cannot enumerate supersessions (they
    /// are then neither copied nor compared, and the report says so).
    #[arg(long)]
    pub skip_supersessions: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the parity report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `stowage prune-runs`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("policy").required(true).multiple(true)
    .args(["finished_before", "older_than", "status", "agent", "keep_newest"])))]
pub struct PruneRunsArgs {
    /// The store URL.
    pub url: String,
    /// Only runs that finished strictly before this time (RFC 3339, e.g.
    /// 2026-11-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse::rfc3339, conflicts_with = "older_than")]
    pub finished_before: Option<Timestamp>,
    /// Only runs that finished more than this long ago (e.g. 30d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub older_than: Option<Duration>,
    /// Only runs in this status (repeat for several): running, completed,
    /// failed, cancelled.
    #[arg(long, value_name = "STATUS", value_parser = parse::run_status)]
    pub status: Vec<RunStatus>,
    /// Only runs of this agent.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Never delete the newest N runs (by creation) of each agent.
    #[arg(long, value_name = "N")]
    pub keep_newest: Option<u64>,
    /// Delete matching runs even while they are running.
    #[arg(long)]
    pub include_running: bool,
    /// Batch size, progress and output.
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Delete nothing: list the runs the policy selects now (same rules,
    /// by listing).
    #[arg(long)]
    pub dry_run: bool,
}

/// Options every sweep takes.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The most entities one batch examines (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = stowage_core::lifecycle::DEFAULT_BATCH,
        value_parser = parse::batch)]
    pub batch: usize,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Machine-readable output: one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `stowage expire-sessions`.
#[derive(Debug, Args)]
pub struct ExpireSessionsArgs {
    /// The store URL.
    pub url: String,
    /// Only sessions idle for longer than this (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub idle_for: Duration,
    /// Batch size, progress and output.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// `stowage prune-sessions`.
#[derive(Debug, Args)]
pub struct PruneSessionsArgs {
    /// The store URL.
    pub url: String,
    /// Only sessions idle for longer than this (e.g. 30d).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub idle_for: Duration,
    /// Only sessions in this state (repeat for several; default: expired):
    /// open, suspended, resolved, expired, cancelled.
    #[arg(long, value_name = "STATE", value_parser = parse::session_state)]
    pub state: Vec<SessionState>,
    /// Batch size, progress and output.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// `stowage gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The store URL.
    pub url: String,
    /// Keep blobs put or referenced within this period.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse::duration)]
    pub grace: Duration,
    /// Batch size, progress and output.
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// `stowage pin` and `stowage unpin`.
#[derive(Debug, Args)]
pub struct PinArgs {
    /// The store URL.
    pub url: String,
    /// The blob's digest (64 hex characters).
    #[arg(value_parser = parse::digest)]
    pub digest: Digest,
    /// The pin's label (an identifier).
    pub label: String,
}

/// `stowage referrers`.
#[derive(Debug, Args)]
pub struct ReferrersArgs {
    /// The store URL.
    pub url: String,
    /// The blob's digest (64 hex characters).
    #[arg(value_parser = parse::digest)]
    pub digest: Digest,
    /// Machine-readable output: one JSON document per referrer.
    #[arg(long)]
    pub json: bool,
}

/// `stowage fork-session` and `stowage fork-release`.
#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The store URL.
    pub url: String,
    /// The session id or release name to copy.
    pub from: String,
    /// The new session id or release name.
    pub to: String,
    /// Machine-readable output: the new record as one JSON document.
    #[arg(long)]
    pub json: bool,
}
