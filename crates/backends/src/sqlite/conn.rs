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
/// when the file system does not support WAL; `Unavailable` when the file
/// cannot be opened or stays locked past `busy_timeout`.
pub(super) fn open_writer(
    path: &Path,
    durability: Durability,
    busy_timeout: Duration,
) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open(path, flags, busy_timeout)?;
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
    let deadline = Instant::now() + busy_timeout;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.doing("switching to WAL (PRAGMA journal_mode=WAL)"),
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

fn open(path: &Path, flags: OpenFlags, busy_timeout: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| super::errors::map(e, &format!("opening {}", path.display())))?;
    conn.busy_timeout(busy_timeout)
        .doing("setting busy_timeout")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}
