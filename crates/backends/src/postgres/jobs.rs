//! Running read and write jobs on a connection: the transactions around
//! them, their locks, and what a failure means.

use std::panic::{catch_unwind, AssertUnwindSafe};

use stowage_core::engine::ReadJob;
use stowage_core::{Error, ErrorKind, Result};

use super::errors::{self, PgResult};
use super::pool::Conn;
use super::sql::SqlConn;

/// Runs `job` in one read-only `REPEATABLE READ` transaction (opened with
/// its first read): every statement of the job reads the same snapshot.
///
/// # Errors
/// The job's error; the server's, mapped.
pub(super) fn read(conn: &mut Conn, mut job: ReadJob) -> Result<()> {
    conn.prepare()?;
    let (result, sent) = {
        let reader = SqlConn::new(
            conn,
            Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_owned()),
        );
        let result = catch_unwind(AssertUnwindSafe(|| job(&reader)))
            .unwrap_or_else(|_| Err(Error::internal("postgres: the read job panicked")));
        (result, reader.unsent_begin().is_none())
    };
    if !sent {
        // The job read nothing: no transaction was opened.
        return result;
    }
    match result {
        Ok(()) => conn
            .client
            .batch_execute("COMMIT")
            .doing("ending a read transaction")
            .inspect_err(|_| conn.rollback()),
        Err(e) => {
            conn.rollback();
            Err(e)
        }
    }
}

/// Sends the staged writes and `COMMIT` (after `begin` if the job read
/// nothing) as one simple query: PostgreSQL runs them in order and stops
/// at the first error (the transaction is then aborted and `COMMIT` never
/// runs).
pub(super) fn commit(conn: &mut Conn, begin: Option<String>, staged: Vec<String>) -> Result<()> {
    if begin.is_some() && staged.is_empty() {
        // Nothing read, nothing written: no transaction to run.
        return Ok(());
    }
    let mut batch = begin.unwrap_or_default();
    for statement in staged.iter().map(String::as_str).chain(["COMMIT"]) {
        if !batch.is_empty() {
            batch.push_str(";\n");
        }
        batch.push_str(statement);
    }
    match conn.client.batch_execute(&batch) {
        Ok(()) => Ok(()),
        Err(e) if errors::is_connection_lost(&e) => {
            conn.broken = true;
            Err(errors::map_as(
                e,
                ErrorKind::OutcomeUnknown,
                "COMMIT (the connection was lost: the writes may or may not have been applied)",
            ))
        }
        Err(e) => {
            conn.rollback();
            Err(errors::map(e, "writing and COMMIT"))
        }
    }
}
