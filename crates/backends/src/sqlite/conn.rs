//! Opening connections: flags and pragmas.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use stowage_core::{Durability, Error, Result};

use super::errors::SqlResult;

/// Prepared statements kept per connection: 14 tables × 8 statements.
const STATEMENT_CACHE: usize = 128;

/// Opens the write connection: creates the file, switches it to WAL and
/// sets `synchronous` for `durability`.
///
/// # Errors
/// `Corrupted` for a file that is not a SQLite database; `Unsupported`
/// when the file system does not support WAL, or when the file or its
/// directory is not writable (a read-only medium, missing permission):
/// SQLite would open such a file read-only and fail every write later;
/// `Corrupted` for a SQLite database of another application (checked
/// before the switch to WAL, which would change its header);
/// `Unavailable` when the file cannot be opened for a reason that may pass
/// or stays locked past `busy_timeout`.
pub(super) fn open_writer(
    path: &Path,
    durability: Durability,
    busy_timeout: Duration,
) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open(path, flags, busy_timeout)?;
    // SQLite falls back to read-only when the file cannot be opened for
    // writing (read-only mount, no write permission) and says so only here.
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .doing("checking write access")?
    {
        return Err(not_writable(path, "SQLite could open it only read-only"));
    }
    // Before anything is written (the journal mode is stored in the file):
    // a foreign database is left exactly as it was. `schema::ensure`
    // checks again inside its write transaction, race-free.
    if let Some(foreign) =
        while_busy(busy_timeout, || super::schema::foreign(&conn)).doing("reading the schema")?
    {
        return Err(foreign);
    }
    let mode = switch_to_wal(&conn, busy_timeout)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::unsupported(format!(
            "sqlite: {} cannot use write-ahead logging (journal_mode stays {mode}); \
             the file system may not support the shared memory WAL needs",
            path.display()
        )));
    }
    let synchronous = match durability {
        Durability::Buffered => "NORMAL",
        _ => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=OFF; \
         PRAGMA journal_size_limit=67108864; PRAGMA cache_size=-16384;"
    ))
    .doing("setting pragmas")?;
    Ok(conn)
}

/// `PRAGMA journal_mode=WAL`, retried while the database is busy: while
/// other processes are creating a fresh file, SQLite can answer the mode
/// change `SQLITE_BUSY` without waiting in the busy handler, so this waits
/// up to `busy_timeout` itself. Returns the journal mode now in force.
fn switch_to_wal(conn: &Connection, busy_timeout: Duration) -> Result<String> {
    while_busy(busy_timeout, || {
        conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
    })
    .doing("switching to WAL (PRAGMA journal_mode=WAL)")
}

/// `f`, retried for up to `busy_timeout` while it fails `SQLITE_BUSY` or
/// `SQLITE_LOCKED`.
fn while_busy<T>(
    busy_timeout: Duration,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let deadline = Instant::now() + busy_timeout;
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Opens a read-only connection (after the writer made the file WAL).
///
/// # Errors
/// As [`open_writer`].
pub(super) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open(path, flags, busy_timeout)?;
    conn.execute_batch("PRAGMA cache_size=-16384;")
        .doing("setting pragmas")?;
    Ok(conn)
}

/// The `Unsupported` error for a database that cannot be written: no
/// retry will help, and the sqlite backend has no read-only mode.
fn not_writable(path: &Path, why: &str) -> Error {
    Error::unsupported(format!(
        "sqlite: {} cannot be opened for writing ({why}): the file system is read-only or \
         the file or its directory is not writable; the sqlite backend has no read-only \
         mode: make it writable, or copy the file to writable storage to inspect it",
        path.display()
    ))
}

/// `err`, from creating the database's parent directory, as `Unsupported`
/// when the file system is read-only or denies the permission (no retry
/// helps), as opening the file itself would be.
pub(super) fn parent_failure(path: &Path, err: Error) -> Error {
    let why = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .filter(|io| denies_writing(io))
        .map(|io| format!("creating its directory failed: {io}"));
    match why {
        Some(why) => not_writable(path, &why).with_source(err),
        None => err,
    }
}

/// Whether the file system holding the database file at `path` has
/// turned read-only (asked after a write failed): it no longer opens the
/// file for writing, with EROFS.
pub(super) fn medium_is_read_only(path: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
}

/// Whether `io` says the medium or a permission refuses writing (no retry
/// helps).
fn denies_writing(io: &std::io::Error) -> bool {
    use std::io::ErrorKind as Io;
    matches!(io.kind(), Io::ReadOnlyFilesystem | Io::PermissionDenied)
}

/// A `SQLITE_CANTOPEN` at open says only that `open(2)` failed: asks the
/// OS why (opening the file as SQLite does, read-write, created if
/// missing, as SQLite would have) so a read-only medium or a missing
/// permission is `Unsupported` and a directory in the way `InvalidInput`
/// (both permanent), and only other causes (too many open files, say)
/// stay `Unavailable`.
fn open_failure(path: &Path, flags: OpenFlags, err: rusqlite::Error) -> Error {
    let cannot_open = err.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen);
    let err = super::errors::map(err, &format!("opening {}", path.display()));
    if !cannot_open || !flags.contains(OpenFlags::SQLITE_OPEN_READ_WRITE) {
        return err;
    }
    let probe = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    use std::io::ErrorKind as Io;
    match probe {
        Err(io) if denies_writing(&io) => not_writable(path, &io.to_string()).with_source(err),
        Err(io) if matches!(io.kind(), Io::IsADirectory | Io::NotADirectory) => {
            Error::invalid_input(format!(
                "sqlite: {} cannot be the database file: {io}",
                path.display()
            ))
            .with_source(err)
        }
        _ => err,
    }
}

fn open(path: &Path, flags: OpenFlags, busy_timeout: Duration) -> Result<Connection> {
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| open_failure(path, flags, e))?;
    conn.busy_timeout(busy_timeout)
        .doing("setting busy_timeout")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}
