//! The writer thread: it owns the write connection and commits queued
//! write jobs in groups (group commit).
//!
//! Each round drains every queued job, opens one `BEGIN IMMEDIATE`
//! transaction (the database's write lock, so other processes wait),
//! runs each job inside its own `SAVEPOINT` (a job that fails is rolled
//! back to it and gets its error; the others go on), then `COMMIT`s once:
//! one fsync for the whole group under `synchronous=FULL`. Only then does
//! every job get its answer, so an answered write is already durable.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use stowage_core::engine::WriteJob;
use stowage_core::{Error, ErrorKind, Result};

use crate::group_commit::{answer, fail, Outcome, Reply};

use super::errors::{self, SqlResult};
use super::schema;
use super::sql::{exec, SqlConn};

/// The most jobs one group commits (bounds the transaction's size).
const MAX_GROUP: usize = 512;

/// Groups wait (briefly) for callers only once recent groups had at
/// least this many jobs; see [`gather`].
const MIN_GATHER: usize = 8;

/// The longest [`gather`] waits: a fraction of an fsync.
const GATHER_WAIT: Duration = Duration::from_micros(200);

/// One queued write job and where its answer goes.
pub(super) struct Queued {
    pub(super) job: WriteJob,
    pub(super) reply: Reply,
}

/// Starts the writer thread over `conn`. It runs until every
/// [`mpsc::Sender`] of the returned queue is dropped and the queue is
/// drained, then closes the connection.
///
/// # Errors
/// `Internal` when the thread cannot be spawned.
pub(super) fn spawn(conn: Connection) -> Result<(mpsc::Sender<Queued>, JoinHandle<Result<()>>)> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("stowage-sqlite-writer".into())
        .spawn(move || run(conn, rx))
        .map_err(|e| Error::internal("sqlite: spawning the writer thread failed").with_source(e))?;
    Ok((tx, handle))
}

fn run(conn: Connection, rx: mpsc::Receiver<Queued>) -> Result<()> {
    let mut pending: VecDeque<Queued> = VecDeque::new();
    let mut peak = 0;
    loop {
        if pending.is_empty() {
            match rx.recv() {
                Ok(job) => pending.push_back(job),
                Err(mpsc::RecvError) => break,
            }
        }
        gather(&rx, &mut pending, peak);
        peak = (peak - peak / 8).max(pending.len().min(MAX_GROUP));
        commit_group(&conn, &mut pending);
    }
    // Copies the WAL into the database file first (best effort; PASSIVE
    // waits for nobody), so the closed database is whole in its one file
    // even when SQLite's own checkpoint at the last close is skipped
    // (it is, whenever another connection still holds the file).
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
    conn.close()
        .map_err(|(_, e)| errors::map(e, "closing the write connection"))
}

/// Moves the queued jobs into `pending`. When recent groups were large
/// (`peak`, a slowly decaying maximum of group sizes) and fewer than
/// three quarters of that many callers are back yet (they are still being
/// woken by the last group's answers), waits up to [`GATHER_WAIT`] for
/// them, so that groups stay large under load instead of alternating
/// small and large; a lone caller never waits.
fn gather(rx: &mpsc::Receiver<Queued>, pending: &mut VecDeque<Queued>, peak: usize) {
    let drain = |pending: &mut VecDeque<Queued>| {
        while pending.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => break,
            }
        }
    };
    drain(pending);
    let enough = peak - peak / 4;
    if peak < MIN_GATHER || pending.len() >= enough {
        return;
    }
    let deadline = Instant::now() + GATHER_WAIT;
    while pending.len() < enough {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(job) => pending.push_back(job),
            Err(_) => break,
        }
        drain(pending);
    }
}

/// Runs up to [`MAX_GROUP`] jobs from the front of `pending` in one
/// transaction and answers them. Jobs not started (the transaction was
/// lost midway) stay in `pending` for the next group.
fn commit_group(conn: &Connection, pending: &mut VecDeque<Queued>) {
    let begun = exec(conn, "BEGIN IMMEDIATE")
        .doing("starting a write transaction (BEGIN IMMEDIATE)")
        .and_then(|()| {
            schema::check_current(conn).inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            })
        });
    if let Err(e) = begun {
        // Nothing ran: every queued job gets the error (`Unavailable` for a
        // lock held past busy_timeout_ms, `Unsupported` for a file another
        // process upgraded; nothing was applied).
        fail(pending.drain(..).map(|q| q.reply), &e);
        return;
    }
    let mut outcomes = Vec::with_capacity(pending.len().min(MAX_GROUP));
    while outcomes.len() < MAX_GROUP {
        let Some(Queued { job, reply }) = pending.pop_front() else {
            break;
        };
        let cause = match run_job(conn, job).map_err(|e| on_read_only_medium(conn, e)) {
            Ok(()) => {
                outcomes.push(Outcome::Staged(reply));
                None
            }
            Err(e) => {
                let kind = e.kind();
                outcomes.push(Outcome::Failed(reply, e));
                Some(kind)
            }
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an
            // I/O error): the jobs staged so far are lost too. They get
            // the failing job's kind when it was a full disk or a medium
            // turned read-only (that is why nothing was applied),
            // `Unavailable` otherwise.
            let kind = match cause {
                Some(kind @ (ErrorKind::StorageFull | ErrorKind::Unsupported)) => kind,
                _ => ErrorKind::Unavailable,
            };
            let lost = Error::new(
                kind,
                "sqlite: the write transaction was rolled back by SQLite (a write grouped \
                 with this one failed); nothing was applied",
            );
            answer(outcomes, Err(lost));
            return;
        }
    }
    let committed = exec(conn, "COMMIT").map_err(|e| {
        let err = if errors::is_io(&e) {
            let read_only = refused_by_read_only_medium(conn, &e);
            commit_io_failure(e, read_only)
        } else {
            errors::map(e, "COMMIT")
        };
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        err
    });
    answer(outcomes, committed);
}

/// What a write refused because the medium turned read-only is told.
const READ_ONLY_MEDIUM: &str = "the file system turned read-only: nothing was applied; writes \
                                work again once the database is on writable storage";

/// Whether `err` is a write SQLite could not make (`SQLITE_IOERR_WRITE`)
/// because the file system holding `conn`'s database has turned
/// read-only (asked only then).
fn refused_by_read_only_medium(conn: &Connection, err: &rusqlite::Error) -> bool {
    errors::is_refused_write(err)
        && conn
            .path()
            .is_some_and(|p| super::conn::medium_is_read_only(std::path::Path::new(p)))
}

/// A job's error `e`, unless it is a write SQLite could not make (it
/// spills pages to the WAL in the middle of a large transaction) because
/// the medium turned read-only: then `Unsupported` (nothing was applied,
/// and no retry helps), not the `Unavailable` of an I/O error.
fn on_read_only_medium(conn: &Connection, e: Error) -> Error {
    let refused = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<rusqlite::Error>())
        .is_some_and(|s| refused_by_read_only_medium(conn, s));
    if !refused {
        return e;
    }
    Error::new(
        ErrorKind::Unsupported,
        format!("{} ({READ_ONLY_MEDIUM})", e.message()),
    )
    .with_source(e)
}

/// An I/O error at `COMMIT`: in general the commit may have reached the
/// disk, so the writes may or may not have been applied
/// (`OutcomeUnknown`). A write SQLite could not make (`read_only`: it was
/// refused, and the file system has turned read-only) never wrote the
/// transaction's commit frame to the WAL, so nothing was applied, and no
/// retry helps until the medium is writable again (`Unsupported`).
fn commit_io_failure(e: rusqlite::Error, read_only: bool) -> Error {
    if read_only {
        return errors::map_as(
            e,
            ErrorKind::Unsupported,
            &format!("COMMIT ({READ_ONLY_MEDIUM})"),
        );
    }
    errors::map_as(
        e,
        ErrorKind::OutcomeUnknown,
        "COMMIT (the writes may or may not have been applied)",
    )
}

/// Runs one job inside its own savepoint: released if the job returns
/// `Ok`, rolled back to if it fails (or panics).
fn run_job(conn: &Connection, mut job: WriteJob) -> Result<()> {
    exec(conn, "SAVEPOINT job").doing("SAVEPOINT")?;
    let mut txn = SqlConn(conn);
    let result = catch_unwind(AssertUnwindSafe(|| job(&mut txn))).unwrap_or_else(|_| {
        Err(Error::internal(
            "sqlite: the write job panicked; its writes were rolled back",
        ))
    });
    let result = result.and_then(|()| exec(conn, "RELEASE job").doing("RELEASE"));
    if result.is_err() && !conn.is_autocommit() {
        // Undo the job's writes and drop its savepoint; if even that fails
        // the whole transaction goes, which the caller notices.
        if conn.execute_batch("ROLLBACK TO job; RELEASE job").is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_write_error() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_WRITE),
            None,
        )
    }

    /// A `COMMIT` whose write a read-only medium refused applied nothing
    /// and is not retryable: `Unsupported`, not `OutcomeUnknown` (which a
    /// medium turned read-only once answered to every write, forever).
    #[test]
    fn a_commit_refused_by_a_read_only_medium_is_unsupported() {
        let e = commit_io_failure(io_write_error(), true);
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.message().contains("nothing was applied"), "{e}");
        let e = commit_io_failure(io_write_error(), false);
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db.sqlite");
        std::fs::write(&file, b"").unwrap();
        assert!(!super::super::conn::medium_is_read_only(&file));
    }
}
