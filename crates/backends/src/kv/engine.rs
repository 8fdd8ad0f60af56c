//! [`KvEngine`]: the public engine seam ([`stowage_core::engine::Engine`])
//! over an embedded ordered key-value engine ([`OrderedKv`]: our file
//! engine, RocksDB, sled).
//!
//! Reads run on the blocking pool, behind a semaphore that bounds how many
//! blocking calls one store runs at once. Each read sees whole write
//! batches, but a read job's reads are not one snapshot: the rules
//! tolerate entities deleted or logs extended between them, and a job
//! that still reports damage runs again before the damage is believed.
//! A write job stages its writes in a [`Batch`] and the batch is written
//! when the job returns `Ok`. Jobs are
//! serialized by their [`Scope`] with in-process locks, which is enough
//! because these engines admit a single opening process. Over an engine
//! with group commit (the file engine) scoped jobs run one after another on
//! the store's writer thread instead (see `writer`): the engine then
//! defers the fsync, and the writer thread answers each job once the
//! fsync of its group made it durable.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use stowage_core::engine::{
    measure_by_scan, Direction, Durable, Engine, Entry, RangeSize, ReadJob, Reader, Scope, Staging,
    StoreCache, Table, Visit, Write, WriteJob,
};
use stowage_core::{Capabilities, Close, Error, ErrorKind, Result};
use tokio::sync::Semaphore;

use super::gate::Gate;
use super::seam::{Batch, OrderedKv};
use super::writer::Writer;

/// How many seam calls one store runs on the blocking pool at once.
const MAX_BLOCKING: usize = 64;

/// How many times a read job that reported damage runs in all (see
/// `Engine::read` below).
const READ_TRIES: usize = 3;

/// Lock stripes for entity scopes.
const STRIPES: usize = 256;

/// The engine seam over one [`OrderedKv`].
#[derive(Clone)]
pub(crate) struct KvEngine(Arc<Inner>);

struct Inner {
    capabilities: Capabilities,
    /// The engine behind its close gate.
    engine: Arc<Gate>,
    /// Runs the scoped jobs of an engine with group commit.
    writer: Option<Writer>,
    locks: ScopeLocks,
    permits: Arc<Semaphore>,
    /// These engines admit one opener, and it writes only through this
    /// object: the stores over it may cache.
    cache: StoreCache,
}

impl KvEngine {
    /// The seam over `engine`, declaring `capabilities`.
    ///
    /// # Errors
    /// When the writer thread cannot be started.
    pub(crate) fn new(engine: Arc<dyn OrderedKv>, capabilities: Capabilities) -> Result<KvEngine> {
        let writer = if engine.group_commits() {
            Some(Writer::start()?)
        } else {
            None
        };
        Ok(KvEngine(Arc::new(Inner {
            engine: Arc::new(Gate::new(capabilities.backend, engine)),
            capabilities,
            writer,
            locks: ScopeLocks::new(),
            permits: Arc::new(Semaphore::new(MAX_BLOCKING)),
            cache: StoreCache::new(),
        })))
    }

    /// Runs `f` on the blocking pool, bounded by the semaphore. It runs to
    /// completion even if the caller's future is dropped.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.0.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the store's blocking pool was closed"))?;
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&inner)
        })
        .await
        .map_err(|e| Error::internal(format!("a storage task failed: {e}")))
    }

    /// Runs the write `job` over `scope` and returns the ticket its
    /// acknowledgement must still wait for. On the writer thread, a job
    /// whose caller will wait for durability (`wait`) is answered only once
    /// its group's fsync made it durable (ticket `None`): one wake-up of
    /// the caller per write instead of one for the answer and one for the
    /// fsync.
    async fn apply(&self, scope: Scope, job: WriteJob, wait: bool) -> Result<Option<u64>> {
        let writer = match &self.0.writer {
            // Chunks of a fresh blob body need no ordering: keep them (and
            // their copying) off the writer thread.
            Some(writer) if scope != Scope::Unshared => writer,
            _ => {
                return self
                    .blocking(move |inner| {
                        let _guard = inner.locks.lock(&scope);
                        inner.run(job)
                    })
                    .await?
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = Arc::clone(&self.0);
        writer.submit(Box::new(move || {
            let ticket = match inner.run(job) {
                Ok(Some(ticket)) if wait => ticket,
                outcome => {
                    // Released before the reply, so a caller that drops
                    // the store on receiving it really closes the engine.
                    drop(inner);
                    let _ = tx.send(outcome);
                    return None;
                }
            };
            // Answered after the rest of the group ran: the first finish
            // leads the fsync that covers them all.
            Some(Box::new(move || {
                let outcome = inner.engine.wait_durable_blocking(ticket);
                drop(inner);
                let _ = tx.send(outcome.map(|()| None));
            }))
        }));
        // The job may have written before it failed to answer.
        rx.await.map_err(|_| {
            Error::new(
                ErrorKind::OutcomeUnknown,
                "a storage task failed on the store's writer thread",
            )
        })?
    }

    /// What to await before acknowledging a job answered with `ticket`,
    /// including any maintenance the write made due.
    fn durable(&self, ticket: Option<u64>) -> Durable {
        // Only an engine with group commit defers syncs or maintenance.
        if ticket.is_none() && self.0.writer.is_none() {
            return Durable::ready();
        }
        let inner = Arc::clone(&self.0);
        Durable::new(async move {
            if let Some(ticket) = ticket {
                Arc::clone(&inner.engine).wait_durable(ticket).await?;
            }
            if inner.engine.take_maintenance() {
                let engine = Arc::clone(&inner.engine);
                let maintained = tokio::task::spawn_blocking(move || engine.maintain())
                    .await
                    .map_err(|e| Error::internal(format!("store maintenance failed: {e}")))?;
                if maintained.is_err() {
                    // This write is durable; the engine broke after it. No
                    // read may be answered from the cache from now on.
                    inner.cache.close();
                }
            }
            Ok(())
        })
    }
}

impl Inner {
    /// Runs `job` and writes what it staged; returns the ticket to wait
    /// for (covering what the job read, when it wrote nothing).
    fn run(&self, mut job: WriteJob) -> Result<Option<u64>> {
        let reads = Reads(&*self.engine);
        let mut staged = Staging::new(&reads);
        job(&mut staged)?;
        let batch = batch_of(staged.into_writes())?;
        let unsynced = self.engine.unsynced_ticket();
        if batch.ops.is_empty() {
            return Ok(unsynced);
        }
        Ok(self.engine.write_deferred(batch)?.max(unsynced))
    }
}

/// The engine's batch for what a job staged.
fn batch_of(writes: Vec<Write>) -> Result<Batch> {
    let mut batch = Batch::default();
    for write in writes {
        match write {
            Write::Put { table, key, value } => batch.put(table, key, value),
            Write::Delete { table, key } => batch.delete(table, key),
            Write::DeleteRange { table, start, end } => batch.delete_range(table, start, end),
            other => {
                return Err(Error::internal(format!(
                    "the kv engines cannot apply {other:?}"
                )))
            }
        }
    }
    Ok(batch)
}

#[async_trait]
impl Engine for KvEngine {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities.clone()
    }

    async fn read(&self, mut job: ReadJob) -> Result<()> {
        self.blocking(move |inner| {
            let reads = Reads(&*inner.engine);
            let mut outcome = job(&reads);
            // Each read sees whole write batches, but a job's successive
            // reads may straddle one (no snapshots here), and the rules
            // report a state that never existed as damage. Such a job is
            // run again (the seam allows it); damage is reported when it
            // is seen again.
            for _ in 1..READ_TRIES {
                match &outcome {
                    Err(e) if e.kind() == ErrorKind::Corrupted => outcome = job(&reads),
                    _ => break,
                }
            }
            outcome
        })
        .await?
    }

    async fn write(&self, scope: Scope, job: WriteJob) -> Result<Durable> {
        let ticket = self.apply(scope, job, true).await?;
        Ok(self.durable(ticket))
    }

    async fn write_eventually_durable(&self, scope: Scope, job: WriteJob) -> Result<()> {
        self.apply(scope, job, false).await.map(drop)
    }

    fn cache(&self) -> Option<&StoreCache> {
        Some(&self.0.cache)
    }

    async fn compact(&self) -> Result<()> {
        self.blocking(|inner| inner.engine.compact()).await?
    }

    async fn close(&self) -> Result<()> {
        let engine = Arc::clone(&self.0.engine);
        tokio::task::spawn_blocking(move || engine.close())
            .await
            .map_err(|e| Error::internal(format!("closing the store failed: {e}")))?
    }
}

#[async_trait]
impl Close for KvEngine {
    async fn close(&self) -> Result<()> {
        Engine::close(self).await
    }
}

/// Reads straight from the engine.
struct Reads<'a>(&'a dyn OrderedKv);

impl Reader for Reads<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(table, key)
    }

    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        self.0.get_bytes(table, key)
    }

    fn checks_values(&self) -> bool {
        self.0.checks_values()
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        self.0.scan(table, start, end, direction, limit)
    }

    fn scan_each(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        visit: Visit<'_>,
    ) -> Result<()> {
        self.0.scan_each(table, start, end, direction, limit, visit)
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        match self.0.measure(table, start, end)? {
            Some(size) => Ok(size),
            None => measure_by_scan(self, table, start, end),
        }
    }
}

/// In-process locks that serialize overlapping scopes: every scope takes
/// `all` shared (a scope this code does not know takes it exclusively), a
/// table scope takes its table exclusively, an entity scope takes its
/// table shared and its stripe.
struct ScopeLocks {
    all: RwLock<()>,
    tables: Vec<RwLock<()>>,
    stripes: Vec<Mutex<()>>,
}

/// What [`ScopeLocks::lock`] holds.
#[allow(dead_code)] // held only for its drop
enum ScopeGuard<'a> {
    None,
    Everything(RwLockWriteGuard<'a, ()>),
    Table(RwLockReadGuard<'a, ()>, RwLockWriteGuard<'a, ()>),
    Entity(
        RwLockReadGuard<'a, ()>,
        RwLockReadGuard<'a, ()>,
        MutexGuard<'a, ()>,
    ),
}

impl ScopeLocks {
    fn new() -> ScopeLocks {
        ScopeLocks {
            all: RwLock::new(()),
            tables: Table::ALL.iter().map(|_| RwLock::new(())).collect(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn lock(&self, scope: &Scope) -> ScopeGuard<'_> {
        let table = scope
            .table()
            .and_then(|table| self.tables.get(usize::from(table.id())));
        match (scope, table) {
            (Scope::Unshared, _) => ScopeGuard::None,
            (Scope::Table(_), Some(table)) => ScopeGuard::Table(self.all.read(), table.write()),
            (Scope::Entity { table: t, key }, Some(table)) => {
                let mut hasher = DefaultHasher::new();
                t.hash(&mut hasher);
                key.hash(&mut hasher);
                let index = (hasher.finish() % STRIPES as u64) as usize;
                match self.stripes.get(index) {
                    Some(stripe) => {
                        ScopeGuard::Entity(self.all.read(), table.read(), stripe.lock())
                    }
                    None => ScopeGuard::Everything(self.all.write()),
                }
            }
            // A scope (or table) this code does not know: serialize
            // against everything.
            _ => ScopeGuard::Everything(self.all.write()),
        }
    }
}
