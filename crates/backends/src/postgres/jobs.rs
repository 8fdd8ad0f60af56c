//! Running read and write jobs on a connection: the transactions around
//! them, their locks, and what a failure means.

use std::panic::{catch_unwind, AssertUnwindSafe};

use stowage_core::engine::{ReadJob, WriteJob};
use stowage_core::{Error, ErrorKind, Result};

use super::errors::{self, PgResult};
use super::pool::Conn;
use super::sql::SqlConn;

/// How often opening a write transaction is retried after a serialization
/// failure or deadlock (the job has not run yet, so this is safe).
const BEGIN_RETRIES: usize = 3;

/// Runs `job` in one read-only `REPEATABLE READ` transaction: every
/// statement of the job reads the same snapshot.
///
/// # Errors
/// The job's error; the server's, mapped.
pub(super) fn read(conn: &mut Conn, job: ReadJob) -> Result<()> {
    conn.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .doing("starting a read transaction")?;
    let result = {
        let reader = SqlConn::new(conn);
        catch_unwind(AssertUnwindSafe(|| job(&reader)))
            .unwrap_or_else(|_| Err(Error::internal("postgres: the read job panicked")))
    };
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

/// Runs `job` as one transaction after `begin` (`BEGIN` and the scope's
/// advisory locks), then commits.
///
/// # Errors
/// The job's error (rolled back); `Unavailable` when the transaction could
/// not start or the server refused the commit (nothing applied);
/// `OutcomeUnknown` when the connection was lost after `COMMIT` was sent.
pub(super) fn write(conn: &mut Conn, begin: &str, job: WriteJob) -> Result<()> {
    let mut attempt = 0;
    loop {
        match conn.client.batch_execute(begin) {
            Ok(()) => break,
            Err(e) => {
                conn.rollback();
                if errors::is_retryable(&e) && attempt < BEGIN_RETRIES {
                    attempt += 1;
                    continue;
                }
                return Err(errors::map(
                    e,
                    "starting a write transaction (BEGIN and advisory locks)",
                ));
            }
        }
    }
    let (result, failed, staged) = {
        let mut txn = SqlConn::new(conn);
        let result = catch_unwind(AssertUnwindSafe(|| job(&mut txn))).unwrap_or_else(|_| {
            Err(Error::internal(
                "postgres: the write job panicked; its writes were rolled back",
            ))
        });
        (result, txn.failed(), txn.staged())
    };
    if let Err(e) = result {
        conn.rollback();
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
    commit(conn, staged)
}

/// Sends the staged writes and `COMMIT` as one simple query: PostgreSQL
/// runs them in order and stops at the first error (the transaction is
/// then aborted and `COMMIT` never runs).
fn commit(conn: &mut Conn, mut staged: Vec<String>) -> Result<()> {
    staged.push("COMMIT".to_owned());
    match conn.client.batch_execute(&staged.join(";\n")) {
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
