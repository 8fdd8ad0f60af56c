//! The ordered key-value seam of the embedded engines (our file engine,
//! RocksDB, sled): crate-private, below core's public engine seam, which
//! [`KvEngine`](super::engine::KvEngine) implements over it.
//!
//! The seam is blocking; `KvEngine` calls it from `spawn_blocking` or its
//! writer thread. An engine with group commit may also let a writer wait
//! for durability asynchronously ([`OrderedKv::write_deferred`]), so a
//! writer waiting for a shared fsync holds no blocking thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use stowage_core::Result;

/// What [`OrderedKv::wait_durable`] returns.
pub(crate) type DurableFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

pub(crate) use stowage_core::engine::{Direction, RangeSize, Table, Visit};

/// One mutation in a [`Batch`]. The engines' own closed copy of core's
/// `#[non_exhaustive]` `Write`: the file engine's record format encodes it,
/// so every variant must be matched exhaustively (`KvEngine` converts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key` (no-op if absent).
    Delete {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
    },
    /// Removes every key with `start <= key < end`.
    DeleteRange {
        /// The table.
        table: Table,
        /// Inclusive start.
        start: Vec<u8>,
        /// Exclusive end.
        end: Vec<u8>,
    },
}

/// Mutations applied atomically: all or none, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) ops: Vec<Op>,
}

impl Batch {
    pub(crate) fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put { table, key, value });
    }

    pub(crate) fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push(Op::Delete { table, key });
    }

    pub(crate) fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(Op::DeleteRange { table, start, end });
    }
}

/// An ordered key-value engine. Keys are compared as bytes.
///
/// Implementations map their library errors into `stowage_core::Error` at
/// this boundary (keeping the source) and never expose library types.
pub(crate) trait OrderedKv: Send + Sync + 'static {
    /// The value of `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// [`OrderedKv::get`] as shared bytes
    /// ([`Reader::get_bytes`](stowage_core::engine::Reader::get_bytes)):
    /// an engine that lends out reusable read buffers overrides it.
    ///
    /// # Errors
    /// As [`OrderedKv::get`].
    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.get(table, key)?.map(Bytes::from))
    }

    /// Whether every value returned was checked against a checksum stored
    /// with it ([`Reader::checks_values`](stowage_core::engine::Reader::checks_values)).
    fn checks_values(&self) -> bool {
        false
    }

    /// Entries with `start <= key < end` (`end = None`: no upper bound), in
    /// `direction` order, at most `limit`.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// [`OrderedKv::scan`], each entry lent to `visit`
    /// ([`Reader::scan_each`](stowage_core::engine::Reader::scan_each)).
    ///
    /// # Errors
    /// As [`OrderedKv::scan`], or the first error `visit` returns.
    fn scan_each(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        visit: Visit<'_>,
    ) -> Result<()> {
        for (key, value) in self.scan(table, start, end, direction, limit)? {
            visit(&key, &value)?;
        }
        Ok(())
    }

    /// How many entries `start <= key < end` holds and their value bytes
    /// ([`Reader::measure`](stowage_core::engine::Reader::measure)), from
    /// the engine's index without copying values; `None` (the default):
    /// no cheaper way than scanning.
    ///
    /// # Errors
    /// As [`OrderedKv::get`].
    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<Option<RangeSize>> {
        let _ = (table, start, end);
        Ok(None)
    }

    /// Applies `batch` atomically and, unless the engine was opened with
    /// `Durability::Buffered`, durably before returning `Ok`.
    fn write(&self, batch: Batch) -> Result<()>;

    /// Whether [`OrderedKv::write_deferred`] defers durability, so
    /// `KvEngine` runs scoped write jobs on one writer thread (see
    /// `kv::writer`).
    fn group_commits(&self) -> bool {
        false
    }

    /// Applies `batch` atomically like [`OrderedKv::write`], but may return
    /// before it is durable: then it returns a ticket, and the batch is
    /// durable once [`OrderedKv::wait_durable`] of that ticket (or of a
    /// later one) resolved `Ok`. Nothing may be acknowledged before that.
    /// Engines without group commit write durably and return `None`.
    ///
    /// # Errors
    /// As [`OrderedKv::write`].
    fn write_deferred(&self, batch: Batch) -> Result<Option<u64>> {
        self.write(batch).map(|()| None)
    }

    /// The ticket covering everything written so far, when some of it is
    /// not yet durable (`None`: all of it is). A mutation that wrote
    /// nothing may still have read such a write (an idempotent retry
    /// finding its original), so it waits for this before answering.
    fn unsynced_ticket(&self) -> Option<u64> {
        None
    }

    /// Returns once every batch up to `ticket` is durable, blocking the
    /// calling thread (the writer thread's wait, which leads the fsync of
    /// its group).
    ///
    /// # Errors
    /// As [`OrderedKv::wait_durable`].
    fn wait_durable_blocking(&self, ticket: u64) -> Result<()> {
        let _ = ticket;
        Ok(())
    }

    /// Resolves once every batch up to `ticket` is durable.
    ///
    /// # Errors
    /// When the engine cannot make it durable (a failed fsync): the
    /// batches may or may not be on disk.
    fn wait_durable(self: Arc<Self>, ticket: u64) -> DurableFuture {
        let _ = ticket;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether deferred writes made background maintenance due (asked
    /// once: `true` hands the job to this caller, who runs
    /// [`OrderedKv::maintain`] on a blocking thread).
    fn take_maintenance(&self) -> bool {
        false
    }

    /// Best-effort maintenance (checkpoint, compaction); failures surface
    /// on later calls.
    ///
    /// # Errors
    /// Only when maintenance left the engine unusable (a failed fsync
    /// poisoned it): the stores' cache is then closed, so that later reads
    /// reach the engine and are told so.
    fn maintain(&self) -> Result<()> {
        Ok(())
    }

    /// Returns freed space to the file system now
    /// ([`Engine::compact`](stowage_core::engine::Engine::compact));
    /// blocking. The default does nothing.
    ///
    /// # Errors
    /// The engine's.
    fn compact(&self) -> Result<()> {
        Ok(())
    }

    /// Flushes what the engine buffers and releases what it holds that
    /// dropping it would not (the file engine's lock file); called once,
    /// by `Stores::close`, after which the engine is only dropped.
    /// Dropping the engine must release the rest (its database lock).
    ///
    /// # Errors
    /// When the final flush failed.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}
