//! The PostgreSQL backend (`postgres://user@host:port/db?schema=NAME`,
//! also `postgresql://`, feature `postgres`): one schema of a PostgreSQL
//! database that any number of processes on any number of hosts may use
//! at once.
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
//! | backend | `"postgres"` |
//! | durable | `as_configured`: acknowledged = committed, as durable as the server's `synchronous_commit` (and replication) make a commit |
//! | shared between processes | yes, and between hosts |
//! | `max_blob_size` | 256 MiB (blobs are stored by core as 1 MiB chunks) |
//!
//! # URL options
//!
//! | option | values | default |
//! |---|---|---|
//! | `schema` | a lowercase identifier (letters, digits, `_`) | `stowage` |
//! | `pool_size` | connections, 1 to 256: a quarter (1 to 8) write, the rest (at least 1) read | 16 |
//! | `connect_timeout_ms` | 1 to 3600000; bounds the whole connect (TCP, TLS, startup, login) | 10000 |
//! | `statement_timeout_ms` | 0 (none) to 3600000; lock waits included | 0 |
//! | `readable_columns` | `true`, `false`: fill the readable columns (below) at write time | `true` |
//! | `sslmode` | `disable`, `prefer`, `require`, `verify-ca`, `verify-full`, as libpq (see [`SslMode`]); `allow` is refused | `prefer` |
//! | `sslrootcert` | a PEM file of CA certificates; needed by `verify-ca` / `verify-full`; makes `require` act as `verify-ca` | none |
//! | `require` | a [`DurabilityLevel`] name, checked before connecting (see [`open`](crate::open)) | none |
//!
//! # How it works
//!
//! * **Schema**: one table per [`Table`](stowage_core::engine::Table),
//!   named [`Table::name`](stowage_core::engine::Table::name): `(key bytea
//!   PRIMARY KEY, value bytea NOT NULL)`, plus nullable readable columns
//!   on `run_events`, `runs`, `sessions`, `session_log` and `releases`
//!   for people querying with SQL (never read back). Numbered migrations
//!   run at open under a session advisory lock; a `schema_version` table
//!   records the last; a newer version is refused with `Unsupported`.
//! * **Writes**: jobs queue for up to a quarter of `pool_size` writers
//!   (1 to 8; the rest of the connections are the read pool): blocking
//!   threads, started while jobs wait, each holding one connection of the
//!   writers' pool. A writer takes the queued jobs whose scopes
//!   do not overlap (up to 64) as one group: `BEGIN` and every advisory
//!   lock they need (shared on their tables, exclusive on their entities;
//!   a table scope runs alone, exclusive on its table; see `locks.rs`),
//!   taken in one global order so no two transactions deadlock, are sent
//!   with the first job's first read; the jobs run one after another,
//!   their writes staged; all the staged writes and `COMMIT` go as one
//!   simple query `EXECUTE`-ing server-side prepared statements (group
//!   commit: one `COMMIT` and one round trip for the whole group). A job
//!   that fails gets its own error and its writes are dropped; a statement
//!   that fails aborts the transaction, and the jobs staged with it get
//!   `Unavailable` (nothing applied). `READ COMMITTED` is enough under
//!   these locks: every write job that overlaps waits for the lock, then
//!   reads what the earlier one committed. [`Engine::write`] returns after
//!   `COMMIT` with [`Durable::ready`].
//! * **Reads**: `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` (sent
//!   with the first statement) … `COMMIT`: one snapshot for the whole job.
//! * **TLS** (`sslmode`, `sslrootcert`): rustls with the ring provider,
//!   the modes as libpq's (see [`SslMode`]).
//! * **Errors**: refused or lost connections, timeouts, lock failures, a
//!   failed TLS handshake → `Unavailable` (nothing applied); a connection lost after `COMMIT` was
//!   sent → `OutcomeUnknown`; a full disk → `StorageFull`; a server that
//!   refuses writes (`25006`: a hot standby, `default_transaction_read_only`)
//!   → `Unsupported` (nothing applied);
//!   `data_corrupted` → `Corrupted`; the driver's error is kept as the
//!   source. Locks are taken in an order that cannot deadlock and
//!   statements run at `READ COMMITTED`, so there are no serialization
//!   failures to retry: a job runs at most once.
//! * **Close**: [`Engine::close`] waits for the jobs in flight and closes
//!   every connection; calls after it fail with `Conflict`.
//!
//! ```no_run
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stores = stowage_backends::open("postgres://postgres@127.0.0.1:5432/test?schema=agents")
//!     .await
//!     .unwrap();
//! assert!(stores.capabilities.shared);
//! stores.close().await.unwrap();
//! # });
//! ```

mod client;
mod errors;
mod jobs;
mod literal;
mod locks;
mod options;
mod pool;
mod readable;
mod schema;
mod sql;
mod tls;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::engine::{Durable, Engine, ReadJob, Scope, WriteJob};
use stowage_core::{Capabilities, DurabilityLevel, Error, Result};

pub(crate) use options::parse as parse_url;
pub use options::{
    PostgresOptions, SslMode, DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_SCHEMA,
    MAX_POOL_SIZE,
};
pub use schema::SCHEMA_VERSION;

/// The largest blob a PostgreSQL store accepts.
pub const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;

/// The capabilities of a PostgreSQL store.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        "postgres",
        DurabilityLevel::AsConfigured,
        true,
        MAX_BLOB_SIZE,
    )
}

/// The PostgreSQL engine: hand it to [`stowage_core::engine::stores`] (as
/// [`PostgresOptions::open`] does) to get the five stores over one schema.
/// See the [module docs](self).
pub struct PostgresEngine {
    shown: String,
    schema: String,
    pool: Arc<pool::Pool>,
    writers: writer::Writers,
    closed: AtomicBool,
}

impl PostgresEngine {
    /// Connects, creates or upgrades the schema of `opts`, and keeps the
    /// connection for the pool.
    ///
    /// # Errors
    /// `InvalidInput` for bad options (an unreadable `sslrootcert`
    /// included); `Unavailable` when the server cannot be reached, does not
    /// answer within `connect_timeout`, refuses the login, or the TLS
    /// handshake fails (a certificate `sslmode`
    /// does not accept, a server without TLS under `require`); `Unsupported` for a schema written
    /// by a newer stowage; the server's other errors, mapped.
    pub async fn open(opts: PostgresOptions) -> Result<Arc<PostgresEngine>> {
        opts.validate()?;
        let shown = opts.shown();
        // Reads `sslrootcert`: blocking I/O.
        let for_tls = opts.clone();
        let connector = tokio::task::spawn_blocking(move || tls::Connector::new(&for_tls))
            .await
            .map_err(|e| {
                Error::internal("postgres: reading the TLS roots panicked").with_source(e)
            })??;
        let (readers, writer_count) = split_pool(opts.pool_size);
        let config = pool::config(&opts);
        let pool = Arc::new(pool::Pool::new(
            config.clone(),
            connector.clone(),
            shown.clone(),
            readers,
            opts.readable_columns,
        ));
        let writers = writer::Writers::new(
            pool::Pool::new(
                config,
                connector,
                shown.clone(),
                writer_count,
                opts.readable_columns,
            ),
            opts.schema.clone(),
            writer_count,
        );
        let schema = opts.schema.clone();
        let for_open = schema.clone();
        pool.run(
            move |conn| schema::migrate(conn, &for_open),
            || Error::internal("postgres: the pool closed while opening"),
        )
        .await
        .map_err(|e| e.context(format!("opening {shown}")))?;
        Ok(Arc::new(PostgresEngine {
            shown,
            schema,
            pool,
            writers,
            closed: AtomicBool::new(false),
        }))
    }

    /// The store's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn closed_error(&self) -> Error {
        Error::conflict(format!(
            "the postgres store {} was closed (Stores::close); open it again to use it",
            self.shown
        ))
    }
}

/// How `pool_size` connections are split: a quarter (1 to 8) to the
/// writers, the rest (at least one) to the pool for reads.
fn split_pool(pool_size: usize) -> (usize, usize) {
    let writers = (pool_size / 4).clamp(1, 8);
    (pool_size.saturating_sub(writers).max(1), writers)
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine")
            .field("store", &self.shown)
            .field("closed", &self.closed.load(Ordering::Acquire))
            .finish()
    }
}

#[async_trait]
impl Engine for PostgresEngine {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn read(&self, job: ReadJob) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        self.pool
            .run(move |conn| jobs::read(conn, job), || self.closed_error())
            .await
    }

    async fn write(&self, scope: Scope, job: WriteJob) -> Result<Durable> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        self.writers
            .write(scope, job, || self.closed_error())
            .await
            .map(|()| Durable::ready())
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.writers.close().await;
        self.pool.close().await;
        Ok(())
    }
}
