//! The statements over one table, and [`Reader`] / [`Txn`] over a
//! connection: every call is one cached prepared statement.

use std::sync::LazyLock;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use stowage_core::engine::{Direction, Entry, RangeSize, Reader, Table, Txn};
use stowage_core::{Error, Result};

use super::errors::SqlResult;

/// The SQL text of every statement over one table (table names are
/// `Table::name`: lowercase letters and underscores, safe to splice).
struct TableSql {
    get: String,
    forward: String,
    forward_open: String,
    reverse: String,
    reverse_open: String,
    measure: String,
    measure_open: String,
    put: String,
    delete: String,
    delete_range: String,
}

impl TableSql {
    fn new(t: &str) -> TableSql {
        let scan = |bounded: bool, order: &str| {
            let upper = if bounded { " AND key < ?2" } else { "" };
            let limit = if bounded { "?3" } else { "?2" };
            format!(
                "SELECT key, value FROM {t} WHERE key >= ?1{upper} ORDER BY key {order} LIMIT {limit}"
            )
        };
        // length() of a BLOB reads its size from the record header, not
        // its overflow pages.
        let measure = |bounded: bool| {
            let upper = if bounded { " AND key < ?2" } else { "" };
            format!(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM {t} WHERE key >= ?1{upper}"
            )
        };
        TableSql {
            measure: measure(true),
            measure_open: measure(false),
            get: format!("SELECT value FROM {t} WHERE key = ?1"),
            forward: scan(true, "ASC"),
            forward_open: scan(false, "ASC"),
            reverse: scan(true, "DESC"),
            reverse_open: scan(false, "DESC"),
            put: format!("INSERT OR REPLACE INTO {t} (key, value) VALUES (?1, ?2)"),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            delete_range: format!("DELETE FROM {t} WHERE key >= ?1 AND key < ?2"),
        }
    }
}

/// One [`TableSql`] per table, indexed by [`Table::id`].
static SQL: LazyLock<Vec<TableSql>> =
    LazyLock::new(|| Table::ALL.iter().map(|t| TableSql::new(t.name())).collect());

fn sql(table: Table) -> Result<&'static TableSql> {
    SQL.get(usize::from(table.id()))
        .ok_or_else(|| Error::internal(format!("sqlite: no statements for table {table:?}")))
}

/// A stored key or value: a BLOB, or `Corrupted` for anything else
/// (written behind the SDK's back).
fn blob(row: &Row<'_>, column: usize, table: Table) -> Result<Vec<u8>> {
    match row.get_ref(column).doing("reading a row")? {
        ValueRef::Blob(bytes) => Ok(bytes.to_vec()),
        other => Err(Error::corrupted(format!(
            "sqlite: table {} holds a {} where a BLOB belongs",
            table.name(),
            other.data_type()
        ))),
    }
}

/// A scan limit as SQLite's `LIMIT` (huge limits mean "all").
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Runs one statement that returns no rows (`BEGIN`, `COMMIT`, …),
/// prepared once per connection.
pub(super) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Reads and writes through one connection, inside whatever transaction
/// the caller opened (a read snapshot, or the writer's group).
pub(super) struct SqlConn<'a>(pub(super) &'a Connection);

impl Reader for SqlConn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut stmt = self
            .0
            .prepare_cached(&sql(table)?.get)
            .doing("preparing a get")?;
        let mut rows = stmt.query([key]).doing("get")?;
        match rows.next().doing("get")? {
            Some(row) => blob(row, 0, table).map(Some),
            None => Ok(None),
        }
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        if limit == 0 || end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let s = sql(table)?;
        let text = match (direction, end.is_some()) {
            (Direction::Forward, true) => &s.forward,
            (Direction::Forward, false) => &s.forward_open,
            (Direction::Reverse, true) => &s.reverse,
            (Direction::Reverse, false) => &s.reverse_open,
        };
        let mut stmt = self.0.prepare_cached(text).doing("preparing a scan")?;
        let limit = sql_limit(limit);
        let mut rows = match end {
            Some(end) => stmt.query(rusqlite::params![start, end, limit]),
            None => stmt.query(rusqlite::params![start, limit]),
        }
        .doing("scan")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().doing("scan")? {
            out.push((blob(row, 0, table)?, blob(row, 1, table)?));
        }
        Ok(out)
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        if end.is_some_and(|end| end <= start) {
            return Ok(RangeSize::default());
        }
        let s = sql(table)?;
        let text = if end.is_some() {
            &s.measure
        } else {
            &s.measure_open
        };
        let mut stmt = self.0.prepare_cached(text).doing("preparing a measure")?;
        let read = |row: &Row<'_>| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?));
        let (entries, bytes) = match end {
            Some(end) => stmt.query_row(rusqlite::params![start, end], read),
            None => stmt.query_row(rusqlite::params![start], read),
        }
        .doing("measure")?;
        Ok(RangeSize {
            entries: u64::try_from(entries).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
        })
    }
}

impl Txn for SqlConn<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let mut stmt = self
            .0
            .prepare_cached(&sql(table)?.put)
            .doing("preparing a put")?;
        stmt.execute(rusqlite::params![key, value]).doing("put")?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()> {
        let mut stmt = self
            .0
            .prepare_cached(&sql(table)?.delete)
            .doing("preparing a delete")?;
        stmt.execute([key]).doing("delete")?;
        Ok(())
    }

    fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        let mut stmt = self
            .0
            .prepare_cached(&sql(table)?.delete_range)
            .doing("preparing a delete_range")?;
        stmt.execute(rusqlite::params![start, end])
            .doing("delete_range")?;
        Ok(())
    }
}
