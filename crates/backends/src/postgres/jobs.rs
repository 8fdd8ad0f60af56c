//! Running read and write jobs on a connection: the transactions around
//! them, their locks, and what a failure means.

use std::panic::{catch_unwind, AssertUnwindSafe};

use stowage_core::engine::ReadJob;
use stowage_core::{Error, ErrorKind, Result};

use super::errors::{self, PgResult};
use super::pool::Conn;
use super::sql::SqlConn;

/// Runs `job` in one read-only `REPEATABLE READ` transaction (opened with
/// its first read, after the schema version check): every statement of
/// the job reads the same snapshot.
///
/// # Errors
/// The job's error; the server's, mapped.
pub(super) fn read(conn: &mut Conn, mut job: ReadJob) -> Result<()> {
    conn.prepare()?;
    let (result, sent) = {
        let reader = SqlConn::new(
            conn,
            Some(format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {}",
                super::schema::check_sql()
            )),
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

/// The most SQL text sent in one message: PostgreSQL refuses a message of
/// 1 GiB or more (and drops the connection), and a job's writes — a large
/// `replace_log`, say, its payloads as hex — can add up to more.
const MAX_MESSAGE: usize = 64 << 20;

/// Sends the staged writes and `COMMIT` as simple queries of at most
/// [`MAX_MESSAGE`] bytes each, most often one: PostgreSQL runs them in
/// order and stops at the first error (the transaction is then aborted and
/// `COMMIT` never runs). A job that read nothing left its opening
/// statements (`begin`) unsent: they go first, on their own.
pub(super) fn commit(conn: &mut Conn, begin: Option<String>, staged: Vec<String>) -> Result<()> {
    if let Some(begin) = begin {
        if staged.is_empty() {
            // Nothing read, nothing written: no transaction to run.
            return Ok(());
        }
        open(conn, &begin)?;
    }
    let batches = messages(&staged, MAX_MESSAGE);
    let last = batches.len() - 1;
    for (i, batch) in batches.iter().enumerate() {
        match conn.client.batch_execute(batch) {
            Ok(()) => {}
            Err(e) if errors::is_connection_lost(&e) && i < last => {
                conn.broken = true;
                return Err(errors::map_as(
                    e,
                    ErrorKind::Unavailable,
                    "writing (the connection was lost before COMMIT was sent: nothing was applied)",
                ));
            }
            Err(e) if errors::is_connection_lost(&e) => {
                conn.broken = true;
                return Err(errors::map_as(
                    e,
                    ErrorKind::OutcomeUnknown,
                    "COMMIT (the connection was lost: the writes may or may not have been applied)",
                ));
            }
            Err(e) => {
                conn.rollback();
                return Err(errors::map(e, "writing and COMMIT"));
            }
        }
    }
    Ok(())
}

/// Opens the transaction of a job that read nothing: `begin` alone, not
/// with its writes and `COMMIT`, so that a pooled connection the server
/// had closed (a restart, an idle timeout, a killed backend) is found out
/// while nothing was sent that could have been applied — it is then
/// replaced and `begin` sent again ([`Conn::send_first`], as for a job's
/// first read). Sent with the `COMMIT`, the lost connection
/// would leave the outcome unknown although nothing ran. One more round
/// trip, for such jobs only.
///
/// # Errors
/// `Unavailable` when the server cannot be reached (nothing was applied);
/// the server's error (the schema version check's, say), mapped, after a
/// rollback.
fn open(conn: &mut Conn, begin: &str) -> Result<()> {
    conn.send_first(|client| client.batch_execute(begin))
        .map_err(|e| {
            if errors::is_connection_lost(&e) {
                conn.broken = true;
            } else {
                conn.rollback();
            }
            errors::map(e, "opening a write transaction")
        })
}

/// The statements and `COMMIT`, joined into messages of fewer
/// than `max` bytes where the statements allow (one longer statement is a
/// message of its own); never empty.
fn messages(staged: &[String], max: usize) -> Vec<String> {
    let mut batches = vec![String::new()];
    for statement in staged.iter().map(String::as_str).chain(["COMMIT"]) {
        let fits = batches
            .last()
            .is_some_and(|b| b.is_empty() || b.len() + statement.len() + 2 < max);
        if !fits {
            batches.push(String::new());
        }
        if let Some(batch) = batches.last_mut() {
            if !batch.is_empty() {
                batch.push_str(";\n");
            }
            batch.push_str(statement);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::messages;

    #[test]
    fn large_transactions_are_sent_in_several_messages_ending_with_commit() {
        let one = messages(&["a".repeat(10)], 100);
        assert_eq!(one, [format!("{};\nCOMMIT", "a".repeat(10))]);
        let staged: Vec<String> = (0..10).map(|i| format!("{i}").repeat(30)).collect();
        let many = messages(&staged, 100);
        assert!(many.len() > 3, "{many:?}");
        assert!(many.iter().all(|m| m.len() < 100), "{many:?}");
        assert_eq!(many.join(";\n"), format!("{};\nCOMMIT", staged.join(";\n")));
        let huge = messages(&["x".repeat(500)], 100);
        assert_eq!(huge, ["x".repeat(500), "COMMIT".to_owned()]);
    }
}
