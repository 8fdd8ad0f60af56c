//! The SQLite backend (`sqlite:///abs/file.db`, `sqlite:rel/file.db`,
//! feature `sqlite`): one database file that several processes on one
//! host may use at once.
//!
//! It is an [`Engine`] written only against the public seam of
//! `stowage-core` ([`stowage_core::engine`]), as a third party would write
//! one: every store rule (validation, hash chains, state machines, paging,
//! chunked blobs) comes from core through [`stowage_core::engine::stores`].
//!
//! # Capabilities
//!
//! | capability | value |
//! |---|---|
//! | backend | `"sqlite"` |
//! | durable | `durability=durable` (default): survives power loss (`synchronous=FULL` in WAL mode: the WAL is fsynced at every commit); `durability=buffered`: survives `kill -9`, not power loss (`synchronous=NORMAL`) |
//! | shared between processes | yes, on one host (SQLite's file locks; not over network file systems) |
//! | `max_blob_size` | 256 MiB (blobs are stored by core as 1 MiB chunks) |
//! | streaming | yes: chunks are written and read one at a time |
//!
//! # URL options
//!
//! | option | values | default |
//! |---|---|---|
//! | `durability` | `durable` (alias `sync`), `buffered` | `durable` |
//! | `busy_timeout_ms` | how long a write waits for another process's write lock, 0 (do not wait) to 3600000 | 10000 |
//! | `readers` | read connections, 1 to 64 | 4 |
//! | `require` | a [`DurabilityLevel`] name, checked before opening (see [`open`](crate::open)) | none |
//!
//! # How it works
//!
//! * **Schema**: WAL mode; one `(key BLOB PRIMARY KEY, value BLOB NOT
//!   NULL) WITHOUT ROWID` table per [`Table`](stowage_core::engine::Table), named
//!   [`Table::name`](stowage_core::engine::Table::name), and a
//!   `stowage_schema` table with a `version` row. A file with a newer
//!   version is refused with `Unsupported`, a SQLite database of another
//!   application (no `stowage_schema`, schema objects of its own) with
//!   `Corrupted`, unchanged; tables are created at open.
//! * **Writes**: one writer thread owns the write connection and commits
//!   in groups: it drains the queued jobs, runs `BEGIN IMMEDIATE`, each job
//!   inside a `SAVEPOINT` (a failing job is rolled back alone and gets its
//!   error), then one `COMMIT` — one fsync for the whole group — and only
//!   then answers every job, so [`Engine::write`] hands back
//!   [`Durable::ready`]. `BEGIN IMMEDIATE` takes the database's write lock,
//!   which serializes writers across processes too; [`Scope`]s are
//!   therefore not needed. A queued job runs even if its caller went away.
//! * **Reads**: a pool of read-only connections, used from
//!   `spawn_blocking`; each read job runs inside `BEGIN` … `COMMIT`, so all
//!   of its statements see one WAL snapshot.
//! * **Errors**: `SQLITE_CORRUPT`/`SQLITE_NOTADB` → `Corrupted`,
//!   `SQLITE_FULL` → `StorageFull`, `SQLITE_BUSY`/`SQLITE_LOCKED` (after
//!   `busy_timeout_ms`) → `Unavailable` with nothing applied,
//!   `SQLITE_READONLY`/`SQLITE_PERM` → `Unsupported` (a file that cannot be
//!   written, which SQLite would silently open read-only, is refused at
//!   open), an I/O error during `COMMIT` → `OutcomeUnknown`; the SQLite
//!   error is kept as the source. Values of the wrong SQL type (written behind the SDK's back)
//!   are `Corrupted`.
//! * **Close**: [`Engine::close`] lets the queued writes finish, stops the
//!   writer thread and closes every connection; calls after it fail with
//!   `Conflict` (closing again is `Ok`, as `Stores::close` promises).
//!   Dropping the engine without closing also lets the queue drain, in
//!   the background.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite://{}/agents.db", dir.path().display());
//! let stores = stowage_backends::open(&url).await.unwrap();
//! assert!(stores.capabilities.shared);
//! let d = stores.cas.put(bytes::Bytes::from_static(b"hi")).await.unwrap();
//! assert_eq!(&stores.cas.get(&d).await.unwrap()[..], b"hi");
//! stores.close().await.unwrap();
//! # });
//! ```

mod conn;
#[cfg(test)]
mod engine_tests;
mod errors;
mod options;
mod reads;
mod schema;
mod sql;
#[cfg(test)]
mod tests;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use stowage_core::engine::{Durable, Engine, ReadJob, Scope, WriteJob};
use stowage_core::{Capabilities, Durability, DurabilityLevel, Error, Result};
use tokio::sync::oneshot;

pub(crate) use options::parse as parse_url;
pub use options::{SqliteOptions, DEFAULT_BUSY_TIMEOUT, DEFAULT_READERS, MAX_READERS};

/// The largest blob a SQLite store accepts.
pub const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;

/// The capabilities of a SQLite store opened with `opts`.
pub fn capabilities(opts: &SqliteOptions) -> Capabilities {
    let durability = match opts.durability {
        Durability::Buffered => DurabilityLevel::ProcessCrash,
        _ => DurabilityLevel::PowerLoss,
    };
    Capabilities::new("sqlite", durability, true, MAX_BLOB_SIZE)
}

/// The SQLite engine: hand it to [`stowage_core::engine::stores`] (as
/// [`SqliteOptions::open`] does) to get the five stores over one database
/// file. See the [module docs](self).
pub struct SqliteEngine {
    path: PathBuf,
    capabilities: Capabilities,
    /// The writer thread's queue; `None` once closed.
    queue: RwLock<Option<mpsc::Sender<writer::Queued>>>,
    writer: Mutex<Option<JoinHandle<Result<()>>>>,
    reads: Arc<reads::ReadPool>,
    closed: AtomicBool,
    /// Held (shared) by each running `compact`, whose connection is its
    /// own; `close` takes it exclusively, so it waits for them.
    compacting: tokio::sync::RwLock<()>,
    /// How long `compact` waits for the write lock.
    busy_timeout: Duration,
}

impl SqliteEngine {
    /// Opens (creating if missing, with its parent directories) the
    /// database file of `opts`: switches it to WAL, creates or checks the
    /// schema, and starts the writer thread.
    ///
    /// # Errors
    /// `InvalidInput` for bad options or a path that names a directory;
    /// `Unsupported` for a file written by a newer stowage (schema
    /// version), a file system without WAL support, or a database that
    /// cannot be written (a read-only file system, a file or directory
    /// without write permission: SQLite would open it read-only and every
    /// write would fail); `Corrupted` for a file that is not a SQLite
    /// database, a SQLite database of another application (no
    /// `stowage_schema` table but tables of its own: left unchanged) or a
    /// damaged schema row; `Unavailable` when the file cannot
    /// be opened for a reason that may pass (too many open files) or
    /// another process holds the write lock past the busy timeout.
    pub async fn open(opts: SqliteOptions) -> Result<Arc<SqliteEngine>> {
        opts.validate()?;
        let path = opts.absolute_path()?;
        let capabilities = capabilities(&opts);
        let for_open = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            options::create_parent(&for_open).map_err(|e| conn::parent_failure(&for_open, e))?;
            let writer = conn::open_writer(&for_open, opts.durability, opts.busy_timeout)?;
            schema::ensure(&writer)?;
            let reader = conn::open_reader(&for_open, opts.busy_timeout)?;
            Ok::<_, Error>((writer, reader, opts))
        })
        .await
        .map_err(|e| Error::internal("sqlite: opening panicked").with_source(e))?;
        let (writer_conn, reader, opts) =
            opened.map_err(|e| e.context(format!("opening sqlite://{}", path.display())))?;
        let reads = Arc::new(reads::ReadPool::new(
            path.clone(),
            opts.busy_timeout,
            opts.readers,
        ));
        reads.seed(reader);
        let (queue, handle) = writer::spawn(writer_conn)?;
        Ok(Arc::new(SqliteEngine {
            path,
            capabilities,
            queue: RwLock::new(Some(queue)),
            writer: Mutex::new(Some(handle)),
            reads,
            closed: AtomicBool::new(false),
            compacting: tokio::sync::RwLock::new(()),
            busy_timeout: opts.busy_timeout,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn closed_error(&self) -> Error {
        Error::conflict(format!(
            "the sqlite store {} was closed (Stores::close); open it again to use it",
            self.path.display()
        ))
    }

    /// Queues `job` for the writer thread (synchronously: once this
    /// returns `Ok`, the job will run even if nobody awaits its answer).
    fn enqueue(&self, job: WriteJob) -> Result<oneshot::Receiver<Result<()>>> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.read();
        let Some(queue) = queue.as_ref() else {
            return Err(self.closed_error());
        };
        queue.send(writer::Queued { job, reply }).map_err(|_| {
            Error::internal("sqlite: the writer thread has stopped; reopen the store")
        })?;
        Ok(answer)
    }
}

impl std::fmt::Debug for SqliteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEngine")
            .field("path", &self.path)
            .field("capabilities", &self.capabilities)
            .field("closed", &self.closed.load(Ordering::Acquire))
            .finish()
    }
}

/// What the writer's answer means for the caller.
async fn answered(answer: oneshot::Receiver<Result<()>>) -> Result<Durable> {
    match answer.await {
        Ok(result) => result.map(|()| Durable::ready()),
        // The writer thread dropped the job's answer without sending: it
        // died midway (a bug), so the outcome is unknown.
        Err(_) => Err(Error::new(
            stowage_core::ErrorKind::OutcomeUnknown,
            "sqlite: the writer thread stopped before answering; the write may or may not \
             have been applied",
        )),
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    async fn read(&self, job: ReadJob) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        self.reads.read(job, || self.closed_error()).await
    }

    // Not an `async fn`: the job is queued when `write` is called, before
    // the returned future is first polled, so it runs even if that future
    // is dropped unpolled.
    fn write<'a, 'async_trait>(
        &'a self,
        scope: Scope,
        job: WriteJob,
    ) -> Pin<Box<dyn Future<Output = Result<Durable>> + Send + 'async_trait>>
    where
        'a: 'async_trait,
        Self: 'async_trait,
    {
        // One writer serializes every job, in this process and (through
        // `BEGIN IMMEDIATE`) across processes: the scope is not needed.
        let _ = scope;
        let queued = self.enqueue(job);
        Box::pin(async move { answered(queued?).await })
    }

    /// `VACUUM` on a connection of its own (a write transaction: writers
    /// here and in other processes wait for it), then a WAL checkpoint
    /// that truncates the WAL file.
    async fn compact(&self) -> Result<()> {
        let _running = self.compacting.read().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let (path, busy_timeout) = (self.path.clone(), self.busy_timeout);
        tokio::task::spawn_blocking(move || {
            let conn = conn::open_writer(&path, Durability::Sync, busy_timeout)?;
            conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(|e| errors::map(e, "compacting (VACUUM)"))
        })
        .await
        .map_err(|e| Error::internal("sqlite: compacting panicked").with_source(e))?
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            // `Stores::close` promises that closing again is `Ok`.
            return Ok(());
        }
        // A running compact ends first: its connection is the engine's too.
        drop(self.compacting.write().await);
        // Dropping the queue's sender lets the writer drain what is queued,
        // then stop and close its connection. The read connections close
        // first, so that the write connection is the database's last: it
        // then checkpoints and removes the WAL files.
        drop(self.queue.write().take());
        self.reads.close().await;
        let handle = self.writer.lock().take();
        match handle {
            Some(handle) => tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| Error::internal("sqlite: closing panicked").with_source(e))?
                .unwrap_or_else(|_| Err(Error::internal("sqlite: the writer thread panicked"))),
            None => Ok(()),
        }
    }
}
