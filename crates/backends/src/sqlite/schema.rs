//! The schema: one `(key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT
//! ROWID` table per [`Table`], named [`Table::name`], and the
//! `stowage_schema` table whose `version` row says which layout the file
//! holds. A file written by a newer stowage (a higher version) is refused
//! rather than misread.

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use stowage_core::engine::Table;
use stowage_core::{Error, Result};

use super::errors::SqlResult;

/// The layout this build writes and reads. 2: sessions keep a head
/// (`session_heads`) that appends rewrite instead of the session record;
/// a version-1 file is upgraded at open (its sessions read their records
/// until written again), and a build that knows only version 1 then
/// refuses the file instead of appending beside the heads it ignores.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Creates the schema in a fresh file, checks it in an existing one, and
/// adds the tables of [`Table::ALL`] that are missing, all in one write
/// transaction (so concurrent openers in several processes agree).
///
/// # Errors
/// `Unsupported` for a newer schema version; `Corrupted` for a damaged
/// version row or a file that is not a SQLite database; `Unavailable` when
/// another process holds the write lock past the busy timeout.
pub(super) fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .doing("opening the schema transaction (BEGIN IMMEDIATE)")?;
    let result = ensure_in_txn(conn);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = conn
        .execute_batch(end)
        .doing("ending the schema transaction");
    result.and(ended)
}

fn ensure_in_txn(conn: &Connection) -> Result<()> {
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'stowage_schema'",
            [],
            |row| row.get(0),
        )
        .doing("reading the schema")?;
    if exists == 0 {
        conn.execute_batch(
            "CREATE TABLE stowage_schema (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)",
        )
        .doing("creating the schema table")?;
        conn.execute(
            "INSERT INTO stowage_schema (name, value) VALUES ('version', ?1)",
            [SCHEMA_VERSION],
        )
        .doing("writing the schema version")?;
    } else {
        let version = read_version(conn)?;
        check_version(version)?;
        if version < SCHEMA_VERSION {
            conn.execute(
                "UPDATE stowage_schema SET value = ?1 WHERE name = 'version'",
                [SCHEMA_VERSION],
            )
            .doing("upgrading the schema version")?;
        }
    }
    for table in Table::ALL {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) \
             WITHOUT ROWID",
            table.name()
        ))
        .doing("creating the tables")?;
    }
    Ok(())
}

/// Refuses to go on in a transaction over a file whose layout changed
/// since this engine opened it: another process, of a newer build, may
/// have upgraded it while this one ran. Every read and write transaction
/// checks first (one cached one-row query), so an older build never
/// writes its layout into, or misreads, an upgraded file.
///
/// # Errors
/// As [`check_version`]; `Corrupted` for a damaged version row.
pub(super) fn check_current(conn: &Connection) -> Result<()> {
    let version = read_version(conn)?;
    check_version(version)?;
    if version < SCHEMA_VERSION {
        return Err(Error::corrupted(format!(
            "sqlite: the database's schema version went back to {version} while this \
             process had it open at {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

/// The `version` row, which must be an integer.
fn read_version(conn: &Connection) -> Result<i64> {
    let mut stmt = conn
        .prepare_cached("SELECT value FROM stowage_schema WHERE name = 'version'")
        .doing("reading the schema version")?;
    let mut rows = stmt.query([]).doing("reading the schema version")?;
    let row = rows.next().doing("reading the schema version")?;
    let Some(row) = row else {
        return Err(Error::corrupted(
            "sqlite: the stowage_schema table has no version row; the file was damaged or \
             written by something else",
        ));
    };
    match row.get_ref(0).doing("reading the schema version")? {
        ValueRef::Integer(v) => Ok(v),
        other => Err(Error::corrupted(format!(
            "sqlite: the schema version row holds {:?}, not an integer",
            other.data_type()
        ))),
    }
}

/// Refuses a version this build cannot read.
pub(super) fn check_version(version: i64) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::unsupported(format!(
            "sqlite: the database has schema version {version}, written by a newer stowage; \
             this build reads schema version {SCHEMA_VERSION} at most: upgrade stowage to open it"
        )));
    }
    if version < 1 {
        return Err(Error::corrupted(format!(
            "sqlite: the database has schema version {version}, which no stowage ever wrote"
        )));
    }
    Ok(())
}
