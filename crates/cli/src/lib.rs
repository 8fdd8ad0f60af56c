//! # stowage-cli
//!
//! The `stowage` command: look inside any stowage store, prove it intact,
//! export it to a versioned JSONL file, import such a file into any
//! backend, migrate between backends with a parity report, and reclaim
//! space (run retention, session expiry, blob pins and garbage
//! collection) or fork sessions and releases over `stores.lifecycle`.
//!
//! [`run`] is the whole command as a function (the binary is one line
//! around it), so tests can drive it without a process. The export format
//! is documented in [`format`](mod@format); the replaying importer in
//! [`import`](mod@import).
//!
//! Backends are the features of `stowage-backends`, forwarded: `memory`
//! and `file` by default, `sled`, `redis`, `rocksdb`, `sqlite` and
//! `postgres` on request.
//!
//! Exit codes: 0 success; 1 an error, printed as one line
//! `error: <kind>: <message>` (this includes an import that finds the
//! target contradicting the file: `conflict`); 2 bad usage (clap); 3
//! `verify` found damage or `migrate`'s parity report found a difference
//! (a `verify` that could not check everything — a timeout, say — and
//! found no damage is 1; damage found is 3 either way).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use stowage_backends::StoreOptions;
use stowage_core::{Error, Result, Stores};

pub mod args;
mod compact;
pub mod export;
pub mod format;
pub mod import;
mod inspect;
mod lifecycle;
pub mod migrate;
mod parity;
mod parse;
mod progress;
pub mod replay;
pub mod stats;
pub mod supersessions;
mod table;
mod verify;

use args::{Cli, Command};

/// Exit code for an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for bad usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when damage or a difference was found.
pub const EXIT_PROBLEMS: u8 = 3;

/// How a command that ran to the end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything is fine.
    Clean,
    /// The command finished and found damage or differences (already
    /// printed).
    Problems,
}

/// Runs the `stowage` command with `args` (the first is the program name)
/// and returns its exit code. Never panics on user input or stored data:
/// errors are printed as one line on stderr.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&Error::from(e).context("starting the async runtime"));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(EXIT_PROBLEMS),
        Err(e) => {
            report(&e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Prints `err` as the one line `error: <kind>: <message>[: <source>]`.
fn report(err: &Error) {
    eprintln!("error: {}", one_line(err));
}

/// `<kind>: <message>[: <source>]` on one line.
pub fn one_line(err: &Error) -> String {
    let mut line = format!("{}: {}", err.kind(), err.message());
    if let Some(source) = std::error::Error::source(err) {
        line.push_str(&format!(": {source}"));
    }
    table::printable(&line)
}

tokio::task_local! {
    /// The stores the running command opened; [`dispatch`] closes them.
    static OPENED: std::cell::RefCell<Vec<Stores>>;
}

/// Has `stores` closed when the running command ends, so a
/// `durability=buffered` store is flushed and synced before the command
/// reports success, and a failed final flush is an error, not lost in
/// `Drop`.
pub(crate) fn close_at_end(stores: &Stores) {
    let _ = OPENED.try_with(|opened| opened.borrow_mut().push(stores.clone()));
}

/// Runs `command`, then closes every store it opened. A command that
/// succeeded fails if a close does.
async fn dispatch(command: Command) -> Result<Outcome> {
    OPENED
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let outcome = run_command(command).await;
            let opened = OPENED.with(|opened| std::mem::take(&mut *opened.borrow_mut()));
            let mut closed = Ok(());
            for stores in opened {
                let result = stores.close().await;
                closed = closed.and(result);
            }
            let outcome = outcome?;
            closed.map_err(|e| e.context("closing the store"))?;
            Ok(outcome)
        })
        .await
}

async fn run_command(command: Command) -> Result<Outcome> {
    match command {
        Command::Inspect(a) => inspect::run(a).await,
        Command::Verify(a) => verify::run(a).await,
        Command::Stats(a) => stats::run(a).await,
        Command::Export(a) => export::run(a).await,
        Command::Import(a) => import::run(a).await,
        Command::Migrate(a) => migrate::run(a).await,
        Command::PruneRuns(a) => lifecycle::prune_runs(a).await,
        Command::ExpireSessions(a) => lifecycle::expire_sessions(a).await,
        Command::PruneSessions(a) => lifecycle::prune_sessions(a).await,
        Command::Gc(a) => lifecycle::gc(a).await,
        Command::Pin(a) => lifecycle::pin(a).await,
        Command::Unpin(a) => lifecycle::unpin(a).await,
        Command::Referrers(a) => lifecycle::referrers(a).await,
        Command::ForkSession(a) => lifecycle::fork_session(a).await,
        Command::ForkRelease(a) => lifecycle::fork_release(a).await,
        Command::Compact(a) => compact::run(a).await,
    }
}

/// Opens the existing store at `url` for a command that changes it, with
/// the system clock and random ids, naming the URL in errors. Every
/// command but `import` (and `migrate`'s target) works on a store that
/// exists: a mistyped path, or a directory that holds something else, must
/// not become a new, empty store that `verify` calls healthy.
///
/// # Errors
/// `NotFound` when `url` names a local store (file, sled, RocksDB,
/// SQLite) that does not exist: a missing path, or one without the
/// engine's files; as `stowage_backends::open`.
pub async fn open(url: &str) -> Result<Stores> {
    open_as(url, false).await
}

/// Opens the existing store at `url` for a command that only reads it
/// (`inspect`, `verify`, `stats`, `referrers`, `export`, `migrate`'s
/// source, every `--dry-run`). A `file:` store is opened with
/// `mode=read_only`, so the command writes nothing there — no lock file,
/// no recovery cut, no checkpoint at close — unless the URL asks for
/// `salvage=true`, which repairs and so writes. Other backends have no
/// read-only open and are opened as by [`open`].
///
/// # Errors
/// As [`open`].
pub async fn open_read_only(url: &str) -> Result<Stores> {
    open_as(url, true).await
}

async fn open_as(url: &str, read_only: bool) -> Result<Stores> {
    let shown = stowage_backends::shown_url(url);
    let opening = |e: Error| e.context(format!("opening {shown}"));
    let mut options = StoreOptions::parse(url).map_err(opening)?;
    if let Some(path) = options_path(&options).filter(|p| !holds_a_store(&options, p)) {
        return Err(Error::not_found(format!(
            "opening {shown}: there is no store at {} (stowage import creates one)",
            path.display()
        )));
    }
    if read_only {
        open_file_read_only(&mut options);
    }
    let stores = options.open().await.map_err(opening)?;
    close_at_end(&stores);
    Ok(stores)
}

/// Whether `path`, the local data of `options`, holds the files of a
/// store of its backend (the engine would create a new store anywhere else).
fn holds_a_store(options: &StoreOptions, path: &std::path::Path) -> bool {
    let has = |name: &str| path.join(name).exists();
    let has_ending = |endings: &[&str]| {
        std::fs::read_dir(path).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                endings.iter().any(|end| name.ends_with(end))
            })
        })
    };
    match options {
        #[cfg(feature = "file")]
        StoreOptions::File(_) => path.is_dir() && has_ending(&[".wal", ".ckp", ".pack"]),
        #[cfg(feature = "sled")]
        StoreOptions::Sled(_) => path.is_dir() && (has("conf") || has("db")),
        #[cfg(feature = "rocksdb")]
        StoreOptions::RocksDb(_) => path.is_dir() && has("CURRENT"),
        #[cfg(feature = "sqlite")]
        StoreOptions::Sqlite(_) => {
            std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
        }
        _ => {
            let _ = (has, has_ending);
            path.exists()
        }
    }
}

/// Makes `options` open a `file:` store with `mode=read_only`, unless
/// they ask for `salvage=true`; other backends have no read-only open.
fn open_file_read_only(options: &mut StoreOptions) {
    #[cfg(feature = "file")]
    if let StoreOptions::File(o) = options {
        o.read_only = !o.salvage;
    }
    let _ = options;
}

/// Where a store that lives in the local file system keeps its data.
pub(crate) fn local_path(url: &str) -> Option<std::path::PathBuf> {
    options_path(&StoreOptions::parse(url).ok()?)
}

/// [`local_path`] of parsed options.
fn options_path(options: &StoreOptions) -> Option<std::path::PathBuf> {
    match options {
        #[cfg(feature = "file")]
        StoreOptions::File(o) => Some(o.dir.clone()),
        #[cfg(feature = "sled")]
        StoreOptions::Sled(o) => Some(o.dir.clone()),
        #[cfg(feature = "rocksdb")]
        StoreOptions::RocksDb(o) => Some(o.dir.clone()),
        #[cfg(feature = "sqlite")]
        StoreOptions::Sqlite(o) => Some(o.path.clone()),
        _ => None,
    }
}

/// Writes `value` as one JSON line to stdout.
fn json_line<T: serde::Serialize>(out: &mut impl Write, value: &T) -> Result<()> {
    let line = serde_json::to_string(value)
        .map_err(|e| Error::internal(format!("encoding JSON output: {e}")))?;
    writeln!(out, "{line}").map_err(stdout_failed)
}

/// The error for a failed write to stdout.
fn stdout_failed(e: std::io::Error) -> Error {
    Error::from(e).context("writing to standard output")
}

#[cfg(all(test, feature = "file"))]
mod tests {
    use super::*;

    #[test]
    fn read_only_url_replaces_the_mode_and_keeps_the_rest() {
        let read_only = |url: &str| {
            let mut options = StoreOptions::parse(url).unwrap();
            open_file_read_only(&mut options);
            options
        };
        let StoreOptions::File(o) = read_only("file:///s") else {
            panic!("a file store")
        };
        assert!(o.read_only);
        let StoreOptions::File(o) = read_only("file:///s?mode=read_write&segment_size=8192") else {
            panic!("a file store")
        };
        assert!(o.read_only && o.segment_size == 8192);
        let StoreOptions::File(o) = read_only("file:///s?salvage=true") else {
            panic!("a file store")
        };
        assert!(!o.read_only);
        assert!(matches!(read_only("memory://"), StoreOptions::Memory));
    }
}
