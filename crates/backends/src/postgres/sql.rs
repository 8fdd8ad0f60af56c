//! The statements over one table, and [`Reader`] / [`Txn`] over a pooled
//! connection: every call is one prepared statement (prepared once per
//! connection), one round trip. Table names are unqualified: each
//! connection's `search_path` is the store's schema.

use std::cell::{Cell, RefCell};
use std::sync::LazyLock;

use postgres::types::ToSql;
use stowage_core::engine::{Direction, Entry, Reader, Table, Txn};
use stowage_core::{Error, Result};

use super::errors::PgResult;
use super::pool::Conn;
use super::readable;

/// The SQL text of every statement over one table (table names are
/// `Table::name`: lowercase letters and underscores, safe to splice).
struct TableSql {
    get: String,
    forward: String,
    forward_open: String,
    reverse: String,
    reverse_open: String,
    put: String,
    delete: String,
    delete_range: String,
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
            put: readable::put_sql(table).unwrap_or_else(|| {
                format!(
                    "INSERT INTO {t} (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                )
            }),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_range: format!("DELETE FROM {t} WHERE key >= $1 AND key < $2"),
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
}

impl<'a> SqlConn<'a> {
    pub(super) fn new(conn: &'a mut Conn) -> SqlConn<'a> {
        SqlConn {
            conn: RefCell::new(conn),
            failed: Cell::new(false),
        }
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

    fn execute(&self, text: &'static str, params: &[&(dyn ToSql + Sync)], doing: &str) -> Result<()> {
        let mut conn = self
            .conn
            .try_borrow_mut()
            .map_err(|_| Error::internal("postgres: a job re-entered its connection"))?;
        let result = conn.execute(text, params).doing(doing);
        if result.is_err() {
            self.failed.set(true);
        }
        result.map(|_| ())
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
        let text = &sql(table)?.put;
        match readable::columns(table, &value) {
            Some(cols) => {
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&key, &value];
                params.extend(cols.params());
                self.execute(text, &params, "put")
            }
            None => self.execute(text, &[&key, &value], "put"),
        }
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()> {
        self.execute(&sql(table)?.delete, &[&key], "delete")
    }

    fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        self.execute(&sql(table)?.delete_range, &[&start, &end], "delete_range")
    }
}
