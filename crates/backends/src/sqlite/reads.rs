//! Read jobs: a small pool of read-only connections, each job run on a
//! blocking thread inside `BEGIN` … `COMMIT`, so every statement of the
//! job reads the same WAL snapshot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;
use stowage_core::engine::ReadJob;
use stowage_core::{Error, Result};
use tokio::sync::Semaphore;

use super::conn;
use super::errors::SqlResult;
use super::schema;
use super::sql::{exec, SqlConn};

/// Read connections, opened lazily up to `size`, at most `size` in use.
pub(super) struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    size: u32,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf, busy_timeout: Duration, size: usize) -> ReadPool {
        let size = u32::try_from(size).unwrap_or(1).max(1);
        ReadPool {
            path,
            busy_timeout,
            size,
            permits: Arc::new(Semaphore::new(size as usize)),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Keeps `conn` as an idle connection (the one the open checked).
    pub(super) fn seed(&self, conn: Connection) {
        self.idle.lock().push(conn);
    }

    /// Runs `job` on a pooled connection off the async runtime.
    ///
    /// # Errors
    /// `Conflict` once the pool is closed; the job's error; SQLite's,
    /// mapped.
    pub(super) async fn read(
        self: &Arc<Self>,
        job: ReadJob,
        closed: impl Fn() -> Error,
    ) -> Result<()> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let pool = Arc::clone(self);
        // The permit lives as long as the job, even if this future is
        // dropped, so `close` waits for every job that holds a connection.
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.idle.lock().pop() {
                Some(conn) => conn,
                None => conn::open_reader(&pool.path, pool.busy_timeout)?,
            };
            let result = run(&conn, job);
            if conn.is_autocommit() {
                pool.idle.lock().push(conn);
            }
            result
        })
        .await;
        joined.map_err(|e| Error::internal("sqlite: a read job panicked").with_source(e))?
    }

    /// Waits for the reads in flight, refuses new ones and closes every
    /// connection.
    pub(super) async fn close(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size).await {
            all.forget();
        }
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock());
        drop(idle);
    }
}

/// `job` inside one read transaction.
fn run(conn: &Connection, mut job: ReadJob) -> Result<()> {
    exec(conn, "BEGIN").doing("starting a read transaction")?;
    let result = schema::check_current(conn).and_then(|()| job(&SqlConn(conn)));
    let ended = exec(conn, "COMMIT").doing("ending a read transaction");
    if ended.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result.and(ended)
}
