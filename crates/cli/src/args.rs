//! The command line, as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Look inside, prove intact, export, import and migrate a stowage store.
///
/// Every command takes a store URL: `memory://`, `file:///abs/dir`,
/// `file:rel/dir`, `sled:///abs/dir`, `rocksdb:///abs/dir`,
/// `redis://host:port/db?prefix=NAME`, `sqlite:///abs/file.db` (as
/// compiled in).
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
    /// Count entities and bytes per store by listing them.
    #[command(after_help = "Example:\n  stowage stats file:///var/lib/agent --json")]
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
anything in the target that contradicts the file is reported (exit 3)."
    )]
    Import(ImportArgs),
    /// Copy every entity from one store to another, then compare them (parity report).
    #[command(after_help = "Example:\n  \
stowage migrate file:///var/lib/agent 'redis://127.0.0.1:6379/0?prefix=agent'\n\n\
Streaming and resumable: after an interruption, run the same command again. \
Progress bars are drawn on a terminal only (never with --quiet). Exits 3 when the \
parity report finds a difference.")]
    Migrate(MigrateArgs),
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
