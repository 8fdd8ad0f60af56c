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

use stowage_core::engine::{Direction, Entry, RangeSize, Reader, Table, Txn};
use stowage_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::SimpleQueryMessage;

use super::literal::bytea;
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
    measure: String,
    measure_open: String,
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
        // Counts come back as bytea (int8send) like every other column;
        // octet_length reads a toasted value's size without detoasting it.
        let measure = |bounded: bool| {
            let upper = if bounded { " AND key < $2" } else { "" };
            format!(
                "SELECT int8send(count(*)), int8send(coalesce(sum(octet_length(value)), 0)::int8) \
                 FROM {t} WHERE key >= $1{upper}"
            )
        };
        TableSql {
            measure: measure(true),
            measure_open: measure(false),
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

/// Reads and writes through one connection. The transaction's opening
/// statements (`begin`: `BEGIN` and its locks) are sent together with the
/// job's first read, as one simple query (one round trip), or with its
/// writes if it reads nothing. Remembers whether any statement failed:
/// PostgreSQL then aborted the transaction, and a `COMMIT` would silently
/// roll it back.
pub(super) struct SqlConn<'a> {
    conn: RefCell<&'a mut Conn>,
    begin: RefCell<Option<String>>,
    failed: Cell<bool>,
    staged: Vec<String>,
}

/// The rows of one read: each row's columns, as bytes.
type Rows = Vec<Vec<Vec<u8>>>;

impl<'a> SqlConn<'a> {
    /// Reads and writes through `conn`; `begin`, if any, is sent with the
    /// first statement.
    pub(super) fn new(conn: &'a mut Conn, begin: Option<String>) -> SqlConn<'a> {
        SqlConn {
            conn: RefCell::new(conn),
            begin: RefCell::new(begin),
            failed: Cell::new(false),
            staged: Vec::new(),
        }
    }

    /// The opening statements, if no read sent them yet.
    pub(super) fn unsent_begin(&self) -> Option<String> {
        self.begin.borrow_mut().take()
    }

    /// The staged writes, in order, as SQL statements.
    pub(super) fn staged(&mut self) -> Vec<String> {
        std::mem::take(&mut self.staged)
    }

    /// Whether a statement failed (the transaction is aborted).
    pub(super) fn failed(&self) -> bool {
        self.failed.get()
    }

    /// Runs a read: the prepared `text` with `params`, or, while the
    /// opening statements are unsent, `literal()` (the same query with
    /// literals) after them in one simple query.
    fn fetch(
        &self,
        table: Table,
        text: &'static str,
        params: &[&(dyn ToSql + Sync)],
        literal: impl FnOnce() -> String,
        doing: &str,
    ) -> Result<Rows> {
        let mut conn = self
            .conn
            .try_borrow_mut()
            .map_err(|_| Error::internal("postgres: a job re-entered its connection"))?;
        let begin = self.begin.borrow_mut().take();
        let result = match begin {
            Some(begin) => {
                let batch = format!("{begin}; {}", literal());
                // A pooled connection the server had closed: the job's
                // first statement runs again on a new one.
                match conn.send_first(|client| client.simple_query(&batch)) {
                    Ok(messages) => last_rows(messages, table),
                    Err(e) => Err(super::errors::map(e, doing)),
                }
            }
            None => match conn.query(text, params) {
                Ok(rows) => rows
                    .iter()
                    .map(|row| (0..row.len()).map(|i| bytes(row, i, table)).collect())
                    .collect(),
                Err(e) => Err(super::errors::map(e, doing)),
            },
        };
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }
}

/// The rows of the last statement of a simple query, their `bytea`
/// columns decoded from hex text.
fn last_rows(messages: Vec<SimpleQueryMessage>, table: Table) -> Result<Rows> {
    let mut current = Vec::new();
    let mut last = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => current.push(row),
            SimpleQueryMessage::CommandComplete(_) => last = std::mem::take(&mut current),
            _ => {}
        }
    }
    last.iter()
        .map(|row| (0..row.len()).map(|i| unhex(row.get(i), table)).collect())
        .collect()
}

/// `\x…` (`bytea_output=hex`, set at connect) as bytes.
fn unhex(text: Option<&str>, table: Table) -> Result<Vec<u8>> {
    let bad = || {
        Error::corrupted(format!(
            "postgres: table {} returned a value that is not hex bytea",
            table.name()
        ))
    };
    let hex = text.and_then(|t| t.strip_prefix("\\x")).ok_or_else(bad)?;
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
            _ => None,
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

/// A stored key or value (`bytea NOT NULL`).
fn bytes(row: &tokio_postgres::Row, column: usize, table: Table) -> Result<Vec<u8>> {
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
        // Prepared once per connection (`prepare_all`): the server does
        // not parse and plan the lookup for every job.
        let literal = || format!("EXECUTE stowage_get_{}({})", table.name(), bytea(key));
        let rows = self.fetch(table, &sql(table)?.get, &[&key], literal, "get")?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next()))
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
        let order = match direction {
            Direction::Forward => "ASC",
            Direction::Reverse => "DESC",
        };
        let literal = || {
            let upper = end
                .map(|end| format!(" AND key < {}", bytea(end)))
                .unwrap_or_default();
            format!(
                "SELECT key, value FROM {} WHERE key >= {}{upper} ORDER BY key {order} LIMIT {limit}",
                table.name(),
                bytea(start)
            )
        };
        let rows = match (direction, end) {
            (Direction::Forward, Some(end)) => {
                self.fetch(table, &s.forward, &[&start, &end, &limit], literal, "scan")?
            }
            (Direction::Forward, None) => {
                self.fetch(table, &s.forward_open, &[&start, &limit], literal, "scan")?
            }
            (Direction::Reverse, Some(end)) => {
                self.fetch(table, &s.reverse, &[&start, &end, &limit], literal, "scan")?
            }
            (Direction::Reverse, None) => {
                self.fetch(table, &s.reverse_open, &[&start, &limit], literal, "scan")?
            }
        };
        rows.into_iter()
            .map(|row| {
                let mut columns = row.into_iter();
                match (columns.next(), columns.next()) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => Err(Error::internal("postgres: a scan row lacks key or value")),
                }
            })
            .collect()
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        if end.is_some_and(|end| end <= start) {
            return Ok(RangeSize::default());
        }
        let s = sql(table)?;
        let literal = || {
            let upper = end
                .map(|end| format!(" AND key < {}", bytea(end)))
                .unwrap_or_default();
            format!(
                "SELECT int8send(count(*)), int8send(coalesce(sum(octet_length(value)), 0)::int8) \
                 FROM {} WHERE key >= {}{upper}",
                table.name(),
                bytea(start)
            )
        };
        let rows = match end {
            Some(end) => self.fetch(table, &s.measure, &[&start, &end], literal, "measure")?,
            None => self.fetch(table, &s.measure_open, &[&start], literal, "measure")?,
        };
        let count = |column: Option<&Vec<u8>>| {
            column
                .and_then(|c| <[u8; 8]>::try_from(c.as_slice()).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::internal("postgres: a measure row is not two int8"))
        };
        let row = rows
            .first()
            .ok_or_else(|| Error::internal("postgres: measure returned no row"))?;
        Ok(RangeSize {
            entries: count(row.first())?,
            bytes: count(row.get(1))?,
        })
    }
}

impl Txn for SqlConn<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let columns = if self.conn.get_mut().readable {
            readable::columns(table, &value)
        } else {
            readable::nulls(table).to_owned()
        };
        self.staged.push(format!(
            "EXECUTE stowage_put_{}({}, {}{columns})",
            table.name(),
            bytea(&key),
            bytea(&value)
        ));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()> {
        self.staged.push(format!(
            "EXECUTE stowage_delete_{}({})",
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
            "EXECUTE stowage_delete_range_{}({}, {})",
            table.name(),
            bytea(&start),
            bytea(&end)
        ));
        Ok(())
    }
}

/// Every server-side prepared statement the staged writes and first reads
/// `EXECUTE`, for every table: sent once per connection, before its first
/// job (after the open created the tables). Planning an `INSERT … ON
/// CONFLICT` costs more server time than running it.
pub(super) fn prepare_all() -> String {
    let mut out = Vec::new();
    for table in Table::ALL {
        let t = table.name();
        out.push(readable::put_prepare(table));
        out.push(format!(
            "PREPARE stowage_delete_{t} (bytea) AS DELETE FROM {t} WHERE key = $1"
        ));
        out.push(format!(
            "PREPARE stowage_delete_range_{t} (bytea, bytea) AS \
             DELETE FROM {t} WHERE key >= $1 AND key < $2"
        ));
        out.push(format!(
            "PREPARE stowage_get_{t} (bytea) AS SELECT value FROM {t} WHERE key = $1"
        ));
    }
    out.push(super::locks::PREPARE_LOCKS.to_owned());
    out.join(";\n")
}
