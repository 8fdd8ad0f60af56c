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
/// version row, a file that is not a SQLite database, or a SQLite
/// database of another application (see [`foreign`]); `Unavailable` when
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
    let exists = has_stowage_schema(conn).doing("reading the schema")?;
    if !exists {
        // Inside the write transaction: another process cannot add its
        // tables between this check and the creation below, and of two
        // processes creating a fresh file the second sees the first's
        // stowage_schema.
        if let Some(foreign) = foreign(conn).doing("reading the schema")? {
            return Err(foreign);
        }
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

fn has_stowage_schema(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'stowage_schema'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The error for a SQLite database of another application: no
/// `stowage_schema` table, yet tables (or views, indexes, triggers) of its
/// own. Stowage creates its tables only in a database with no schema
/// objects at all; adopting someone else's file would mix stowage's
/// tables into it, and a table of theirs named like one of stowage's
/// (`runs`, `sessions`, `meta`, …) would fail every later operation.
/// `Ok(None)` for a stowage database or an empty one.
///
/// `Corrupted`, as for any file that is not a stowage SQLite database (one
/// that is not SQLite at all is `SQLITE_NOTADB`, `Corrupted` too): the
/// file's contents are not what a stowage store holds, and no retry or
/// option changes that.
pub(super) fn foreign(conn: &Connection) -> rusqlite::Result<Option<Error>> {
    // One statement, so one snapshot: outside a transaction, two would
    // let another process's schema commit fall between them (its tables
    // seen, but not yet its stowage_schema).
    let mut stmt = conn.prepare(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         ORDER BY type = 'table' DESC, name",
    )?;
    let objects: Vec<(String, String)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if objects
        .iter()
        .any(|(kind, name)| kind == "table" && name == "stowage_schema")
    {
        return Ok(None);
    }
    let objects: Vec<String> = objects
        .into_iter()
        .map(|(kind, name)| format!("{kind} {name}"))
        .collect();
    if objects.is_empty() {
        return Ok(None);
    }
    const SHOWN: usize = 5;
    let more = objects.len().saturating_sub(SHOWN);
    let mut listed = objects[..objects.len().min(SHOWN)].join(", ");
    if more > 0 {
        listed.push_str(&format!(" and {more} more"));
    }
    Ok(Some(Error::corrupted(format!(
        "sqlite: the database is not a stowage store: it has no stowage_schema table but \
         holds {} schema object(s) of another application ({listed}); stowage creates its \
         tables only in a new or empty database and left this one unchanged: point the URL \
         at a new file or a stowage database",
        objects.len()
    ))))
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
