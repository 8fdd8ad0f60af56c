//! Running read and write jobs on a connection: the transactions around
//! them, their locks, and what a failure means.

use std::panic::{catch_unwind, AssertUnwindSafe};

use stowage_core::engine::{ReadJob, WriteJob};
use stowage_core::{Error, ErrorKind, Result};

use super::errors::{self, PgResult};
use super::pool::Conn;
use super::sql::SqlConn;

/// Runs `job` in one read-only `REPEATABLE READ` transaction (opened with
/// its first read): every statement of the job reads the same snapshot.
///
/// # Errors
/// The job's error; the server's, mapped.
pub(super) fn read(conn: &mut Conn, job: ReadJob) -> Result<()> {
    conn.prepare()?;
    let (result, sent) = {
        let reader = SqlConn::new(
            conn,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_owned(),
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

/// Runs `job` as one transaction opened by `begin` (`BEGIN` and the
/// scope's advisory locks, sent with the job's first read), then sends its
/// staged writes and `COMMIT` together.
///
/// Serialization failures and deadlocks cannot happen here: statements run
/// at `READ COMMITTED`, and the advisory locks are taken in one global
/// order (see `locks`), so nothing is retried (a job runs at most once).
///
/// # Errors
/// The job's error (rolled back; a failed lock wait or lost connection
/// reaches the job as `Unavailable` from its first read); `Unavailable`
/// when the server refused the writes or the commit (nothing applied);
/// `OutcomeUnknown` when the connection was lost after `COMMIT` was sent.
pub(super) fn write(conn: &mut Conn, begin: String, job: WriteJob) -> Result<()> {
    conn.prepare()?;
    let (result, failed, unsent, staged) = {
        let mut txn = SqlConn::new(conn, begin);
        let result = catch_unwind(AssertUnwindSafe(|| job(&mut txn))).unwrap_or_else(|_| {
            Err(Error::internal(
                "postgres: the write job panicked; its writes were rolled back",
            ))
        });
        (result, txn.failed(), txn.unsent_begin(), txn.staged())
    };
    if let Err(e) = result {
        if unsent.is_none() {
            conn.rollback();
        }
        return Err(e);
    }
    if failed {
        // The job ignored a failed statement: PostgreSQL aborted the
        // transaction, and `COMMIT` would quietly roll it back.
        conn.rollback();
        return Err(Error::internal(
            "postgres: a statement of the write job failed and the job went on; \
             its writes were rolled back",
        ));
    }
    commit(conn, unsent, staged)
}

/// Sends the staged writes and `COMMIT` (after `begin` if the job read
/// nothing) as one simple query: PostgreSQL runs them in order and stops
/// at the first error (the transaction is then aborted and `COMMIT` never
/// runs).
fn commit(conn: &mut Conn, begin: Option<String>, staged: Vec<String>) -> Result<()> {
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
