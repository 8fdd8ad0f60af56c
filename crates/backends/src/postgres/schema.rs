//! The store's schema: numbered migrations applied at open, under a
//! session advisory lock so that concurrent openers wait for each other,
//! and a `schema_version` table (one row) recording the last one applied.
//! A schema whose version is newer than this code knows is refused, at
//! open and by every transaction after it ([`check_sql`]).

use std::sync::LazyLock;

use stowage_core::engine::Table;
use stowage_core::{Error, Result};

use super::errors::PgResult;
use super::locks;
use super::pool::Conn;
use super::readable;

/// The schema version this code writes (the number of migrations).
/// 2: sessions keep a head (`session_heads`) that appends rewrite instead
/// of the session record, so a build that knows only version 1 must
/// refuse the schema rather than append beside heads it ignores.
pub const SCHEMA_VERSION: i32 = 2;

/// What the error of a failed [`check_sql`] says, before the version.
pub(super) const VERSION_MARK: &str = "stowage schema version ";

/// A statement that fails unless the schema is at [`SCHEMA_VERSION`]: it
/// casts a text naming the version to an integer, which fails
/// (`22P02`, its message holding [`VERSION_MARK`]; see
/// [`errors::map`](super::errors::map)) — PostgreSQL has no `RAISE`
/// outside PL/pgSQL, and a function would need DDL rights. Every
/// transaction runs it first (write transactions after their locks): a
/// process that had the store open when another, newer one upgraded the
/// schema must not go on writing its own layout into it (the v1 → v2
/// session heads: a v1 writer's appends would fork v2's chains). The
/// check is one lookup of a one-row table, in the same round trip.
pub(super) fn check_sql() -> &'static str {
    static CHECK: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT ('{VERSION_MARK}' || version)::int FROM schema_version \
             WHERE version <> {SCHEMA_VERSION}"
        )
    });
    &CHECK
}

/// The statements of migration `n` (1-based) for `schema`.
fn migration(n: i32) -> Option<String> {
    match n {
        1 => Some(
            Table::ALL
                .iter()
                .map(|t| create_table(*t))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        2 => Some(create_table(Table::SessionHeads)),
        _ => None,
    }
}

/// `CREATE TABLE IF NOT EXISTS` of one table, with its readable columns.
fn create_table(table: Table) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (key bytea PRIMARY KEY, value bytea NOT NULL{})",
        table.name(),
        readable::ddl(table).unwrap_or_default()
    )
}

/// Creates or upgrades the schema `schema` on `conn` (whose `search_path`
/// is `schema`).
///
/// # Errors
/// `Unsupported` for a schema of a newer version; `Corrupted` for a
/// damaged `schema_version` table; the server's errors, mapped.
pub(super) fn migrate(conn: &mut Conn, schema: &str) -> Result<()> {
    let key = locks::migration_key(schema);
    conn.client
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .doing("taking the migration lock")?;
    let result = migrate_locked(conn, schema);
    if result.is_err() {
        conn.rollback();
    }
    if conn
        .client
        .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
        .is_err()
    {
        // Closing the connection releases the session lock.
        conn.broken = true;
    }
    result
}

fn migrate_locked(conn: &mut Conn, schema: &str) -> Result<()> {
    if up_to_date(conn, schema)? {
        // Nothing to create: an application role with no DDL rights (only
        // its tables' SELECT, INSERT, UPDATE, DELETE) opens the store.
        // PostgreSQL checks the right to `CREATE … IF NOT EXISTS` before
        // it checks whether the object exists.
        return Ok(());
    }
    refuse_foreign(conn, schema)?;
    conn.client
        .batch_execute(&format!(
            // Quoted: a valid name may be a keyword (`order`, `user`).
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; \
             CREATE TABLE IF NOT EXISTS schema_version \
             (id int PRIMARY KEY CHECK (id = 1), version int NOT NULL)"
        ))
        .doing("creating the schema")?;
    let version = read_version(conn)?;
    check_version(version, schema)?;
    for n in version + 1..=SCHEMA_VERSION {
        let Some(statements) = migration(n) else {
            return Err(Error::internal(format!("postgres: no migration {n}")));
        };
        // Every table's lock first: the migration waits for the write
        // transactions in flight, and those after it see its version.
        conn.client
            .batch_execute(&format!(
                "{}; {statements}; INSERT INTO schema_version (id, version) VALUES (1, {n}) \
                 ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version; COMMIT",
                locks::lock_all_sql(schema)
            ))
            .doing(&format!("applying migration {n}"))?;
    }
    // A table added to core after the last migration: created as any
    // other (tables are all alike).
    let missing: Vec<String> = Table::ALL.iter().map(|t| create_table(*t)).collect();
    conn.client
        .batch_execute(&missing.join("; "))
        .doing("creating tables")?;
    Ok(())
}

/// Whether `schema` holds every table at [`SCHEMA_VERSION`] already.
///
/// # Errors
/// As [`check_version`] for a schema of a newer version; the server's,
/// mapped.
fn up_to_date(conn: &mut Conn, schema: &str) -> Result<bool> {
    let mut names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    names.push("schema_version");
    let present: i64 = conn
        .client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = $1 \
             AND tablename = ANY($2)",
            &[&schema, &names],
        )
        .doing("listing the schema's tables")?
        .get(0);
    if usize::try_from(present).ok() != Some(names.len()) {
        return Ok(false);
    }
    let version = read_version(conn)?;
    check_version(version, schema)?;
    Ok(version == SCHEMA_VERSION)
}

/// Refuses a schema where another application keeps tables under the
/// names stowage would create, so that `CREATE TABLE IF NOT EXISTS` does
/// not adopt them (every later call would fail on their columns): a table
/// of a stowage name is stowage's when it has `key` and `value` columns
/// of type `bytea`, as every version of stowage made them (a schema from
/// before `schema_version` existed is upgraded, not refused).
///
/// # Errors
/// `Corrupted` naming the tables; what the server answers otherwise.
fn refuse_foreign(conn: &mut Conn, schema: &str) -> Result<()> {
    let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let foreign: Vec<String> = conn
        .client
        .query(
            "SELECT t.tablename::text FROM pg_catalog.pg_tables t \
             WHERE t.schemaname = $1 AND t.tablename = ANY($2) \
             AND (SELECT count(*) FROM information_schema.columns c \
                  WHERE c.table_schema = t.schemaname AND c.table_name = t.tablename \
                  AND c.column_name IN ('key', 'value') AND c.data_type = 'bytea') < 2 \
             ORDER BY 1",
            &[&schema, &names],
        )
        .doing("checking the schema's tables")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(Error::corrupted(format!(
        "postgres: schema {schema} holds tables named as stowage's but not shaped as stowage's \
         ({}): they belong to another application, and stowage will not adopt them; choose \
         another schema (`schema=`)",
        foreign.join(", ")
    )))
}

/// The recorded version; 0 for a schema without one.
///
/// # Errors
/// `Corrupted` when `schema_version` is not stowage's (another
/// application's table of that name).
fn read_version(conn: &mut Conn) -> Result<i32> {
    let rows = conn
        .client
        .query("SELECT version FROM schema_version WHERE id = 1", &[])
        .map_err(|e| match e.code() {
            Some(c)
                if *c == tokio_postgres::error::SqlState::UNDEFINED_COLUMN
                    || *c == tokio_postgres::error::SqlState::DATATYPE_MISMATCH =>
            {
                Error::corrupted(
                    "postgres: the schema's schema_version table is not stowage's (another \
                     application's?); choose another schema (`schema=`)",
                )
                .with_source(e)
            }
            _ => super::errors::map(e, "reading the schema version"),
        })?;
    match rows.first() {
        None => Ok(0),
        Some(row) => row.try_get::<_, i32>(0).map_err(|e| {
            Error::corrupted("postgres: the schema_version row is damaged").with_source(e)
        }),
    }
}

/// Refuses a version this code cannot read.
pub(super) fn check_version(version: i32, schema: &str) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::unsupported(format!(
            "postgres: schema {schema} has schema version {version}, written by a newer \
             stowage; this build knows schema version {SCHEMA_VERSION} at most: upgrade \
             stowage to open it"
        )));
    }
    if version < 0 {
        return Err(Error::corrupted(format!(
            "postgres: schema {schema} has schema version {version}, which no stowage ever wrote"
        )));
    }
    Ok(())
}
