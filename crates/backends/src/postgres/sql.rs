//! The statements over one table, and [`Reader`] / [`Txn`] over a pooled
//! connection. Every read is one prepared statement (prepared once per
//! connection), one round trip; writes are staged as SQL text (see
//! [`super::literal`]) and sent with `COMMIT` as one simple query, so a
//! write job costs its reads plus two round trips. Stores never read what
//! they wrote in the same job (the seam leaves that to the engine), so
//! staging is invisible to them. Table names are unqualified: each
//! connection's `search_path` is the store's schema.

use std::cell::{Cell, RefCell};
use std::sync::LazyLock;

use postgres::types::ToSql;
use stowage_core::engine::{Direction, Entry, Reader, Table, Txn};
use stowage_core::{Error, Result};

use super::errors::PgResult;
use super::pool::Conn;
use super::literal::bytea;
use super::readable;

/// The SQL text of every statement over one table (table names are
/// `Table::name`: lowercase letters and underscores, safe to splice).
struct TableSql {
    get: String,
    forward: String,
    forward_open: String,
    reverse: String,
    reverse_open: String,
}

impl TableSql {
    fn new(table: Table) -> TableSql {
        let t = table.name();
        let scan = |bounded: bool, order: &str| {
            let upper = if bounded { " AND key < $2" } else { "" };
            let limit = if bounded { "$3" } else { "$2" };
            format!(
                "SELECT key, value FROM {t} WHERE key >= $1{upper} ORDER BY key {order} LIMIT {limit}"
            )
        };
        TableSql {
            get: format!("SELECT value FROM {t} WHERE key = $1"),
            forward: scan(true, "ASC"),
            forward_open: scan(false, "ASC"),
            reverse: scan(true, "DESC"),
            reverse_open: scan(false, "DESC"),
        }
    }
}

/// One [`TableSql`] per table, indexed by [`Table::id`].
static SQL: LazyLock<Vec<TableSql>> =
    LazyLock::new(|| Table::ALL.iter().map(|t| TableSql::new(*t)).collect());

fn sql(table: Table) -> Result<&'static TableSql> {
    SQL.get(usize::from(table.id()))
        .ok_or_else(|| Error::internal(format!("postgres: no statements for table {table:?}")))
}

/// A scan limit as SQL `LIMIT` (huge limits mean "all").
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Reads and writes through one connection, inside whatever transaction
/// the caller opened (a read snapshot or a write transaction). Remembers
/// whether any statement failed: PostgreSQL then aborted the transaction,
/// and a `COMMIT` would silently roll it back.
pub(super) struct SqlConn<'a> {
    conn: RefCell<&'a mut Conn>,
    failed: Cell<bool>,
    staged: Vec<String>,
}

impl<'a> SqlConn<'a> {
    pub(super) fn new(conn: &'a mut Conn) -> SqlConn<'a> {
        SqlConn {
            conn: RefCell::new(conn),
            failed: Cell::new(false),
            staged: Vec::new(),
        }
    }

    /// The staged writes, in order, as SQL statements.
    pub(super) fn staged(&mut self) -> Vec<String> {
        std::mem::take(&mut self.staged)
    }

    /// Whether a statement failed (the transaction is aborted).
    pub(super) fn failed(&self) -> bool {
        self.failed.get()
    }

    fn query(
        &self,
        text: &'static str,
        params: &[&(dyn ToSql + Sync)],
        doing: &str,
    ) -> Result<Vec<postgres::Row>> {
        let mut conn = self
            .conn
            .try_borrow_mut()
            .map_err(|_| Error::internal("postgres: a job re-entered its connection"))?;
        let result = conn.query(text, params).doing(doing);
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }
}

/// A stored key or value (`bytea NOT NULL`).
fn bytes(row: &postgres::Row, column: usize, table: Table) -> Result<Vec<u8>> {
    row.try_get::<_, Vec<u8>>(column).map_err(|e| {
        Error::corrupted(format!(
            "postgres: table {} holds a value that is not bytea: {e}",
            table.name()
        ))
        .with_source(e)
    })
}

impl Reader for SqlConn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let rows = self.query(&sql(table)?.get, &[&key], "get")?;
        match rows.first() {
            Some(row) => bytes(row, 0, table).map(Some),
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
        let limit = sql_limit(limit);
        let rows = match (direction, end) {
            (Direction::Forward, Some(end)) => {
                self.query(&s.forward, &[&start, &end, &limit], "scan")?
            }
            (Direction::Forward, None) => self.query(&s.forward_open, &[&start, &limit], "scan")?,
            (Direction::Reverse, Some(end)) => {
                self.query(&s.reverse, &[&start, &end, &limit], "scan")?
            }
            (Direction::Reverse, None) => self.query(&s.reverse_open, &[&start, &limit], "scan")?,
        };
        rows.iter()
            .map(|row| Ok((bytes(row, 0, table)?, bytes(row, 1, table)?)))
            .collect()
    }
}

impl Txn for SqlConn<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let t = table.name();
        let (names, values) = readable::columns(table, &value);
        let mut updates = String::from("value = EXCLUDED.value");
        for name in names.split(", ").filter(|n| !n.is_empty()) {
            updates.push_str(&format!(", {name} = EXCLUDED.{name}"));
        }
        self.staged.push(format!(
            "INSERT INTO {t} (key, value{names}) VALUES ({}, {}{values}) \
             ON CONFLICT (key) DO UPDATE SET {updates}",
            bytea(&key),
            bytea(&value)
        ));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()> {
        self.staged.push(format!(
            "DELETE FROM {} WHERE key = {}",
            table.name(),
            bytea(&key)
        ));
        Ok(())
    }

    fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        self.staged.push(format!(
            "DELETE FROM {} WHERE key >= {} AND key < {}",
            table.name(),
            bytea(&start),
            bytea(&end)
        ));
        Ok(())
    }
}
