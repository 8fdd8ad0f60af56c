//! The engine seam's types: tables, key ranges, transactions, scopes and
//! the durability hand-off. See the [module docs](super) for the contract.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;

use super::StoreCache;
use crate::{Capabilities, Result};

/// A namespace of keys: a column family (RocksDB), a tree (sled), a table
/// of the file engine or of SQLite. Keys in different tables never collide.
///
/// Which keys a store writes to which table is core's business (the
/// engine never parses keys or values); the set of tables may grow in a
/// minor release, so engines must treat every table alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Blob headers and chunks.
    Blobs,
    /// Run records by run id.
    Runs,
    /// Run events by (run id, seq).
    RunEvents,
    /// Idempotency keys of run events: (run id, key) → seq.
    RunIdempotency,
    /// Secondary index: (spec digest, run id).
    RunsBySpec,
    /// Secondary index: (agent name, run id).
    RunsByAgent,
    /// Release heads and records.
    Releases,
    /// Session records by id.
    Sessions,
    /// Session log entries by (session id, seq).
    SessionLog,
    /// Idempotency keys of log entries: (session id, key) → seq.
    SessionIdempotency,
    /// Supersessions by target.
    Supersessions,
    /// Secondary index: (agent, order key, target).
    SupersessionsByAgent,
    /// Store metadata (pending uploads, schema facts).
    Meta,
    /// Run heads by run id: status, event count and chain head, the small
    /// record every append reads and rewrites.
    RunHeads,
    /// The blob reference index: (digest, referrer) → when it was recorded
    /// (see [`lifecycle`](crate::lifecycle)).
    BlobRefs,
    /// Session heads by id: whether the log is closed, its length and
    /// chain head, the small record every `append_log` reads and rewrites.
    SessionHeads,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 16] = [
        Table::Blobs,
        Table::Runs,
        Table::RunEvents,
        Table::RunIdempotency,
        Table::RunsBySpec,
        Table::RunsByAgent,
        Table::Releases,
        Table::Sessions,
        Table::SessionLog,
        Table::SessionIdempotency,
        Table::Supersessions,
        Table::SupersessionsByAgent,
        Table::Meta,
        Table::RunHeads,
        Table::BlobRefs,
        Table::SessionHeads,
    ];

    /// A stable name (column family, tree or SQL table name): lowercase
    /// ASCII letters and underscores only.
    pub fn name(self) -> &'static str {
        match self {
            Table::Blobs => "blobs",
            Table::Runs => "runs",
            Table::RunEvents => "run_events",
            Table::RunIdempotency => "run_idempotency",
            Table::RunsBySpec => "runs_by_spec",
            Table::RunsByAgent => "runs_by_agent",
            Table::Releases => "releases",
            Table::Sessions => "sessions",
            Table::SessionLog => "session_log",
            Table::SessionIdempotency => "session_idempotency",
            Table::Supersessions => "supersessions",
            Table::SupersessionsByAgent => "supersessions_by_agent",
            Table::Meta => "meta",
            Table::RunHeads => "run_heads",
            Table::BlobRefs => "blob_refs",
            Table::SessionHeads => "session_heads",
        }
    }

    /// A stable one-byte id (for engines that keep every table in one key
    /// space): the table's position in [`Table::ALL`].
    pub fn id(self) -> u8 {
        self as u8
    }
}

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending key order.
    Forward,
    /// Descending key order.
    Reverse,
}

/// One key and its value, as a scan returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What [`Reader::scan_each`] hands each entry to: the key and the value,
/// borrowed. An error stops the scan and is returned from it.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<()>;

/// How many entries a key range holds and the bytes of their values, as
/// [`Reader::measure`] counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeSize {
    /// Entries in the range.
    pub entries: u64,
    /// Sum of their value lengths.
    pub bytes: u64,
}

/// Entries [`measure_by_scan`] reads per scan.
const MEASURE_PAGE: usize = 1024;

/// [`Reader::measure`] by scanning `reader` page by page (copying every
/// value): the default, for engines with nothing cheaper.
///
/// # Errors
/// As [`Reader::scan`].
pub fn measure_by_scan<R: Reader + ?Sized>(
    reader: &R,
    table: Table,
    start: &[u8],
    end: Option<&[u8]>,
) -> Result<RangeSize> {
    let mut size = RangeSize::default();
    let mut from = start.to_vec();
    loop {
        let page = reader.scan(table, &from, end, Direction::Forward, MEASURE_PAGE)?;
        for (_, value) in &page {
            size.entries += 1;
            size.bytes += value.len() as u64;
        }
        match page.last() {
            Some((last, _)) if page.len() == MEASURE_PAGE => {
                from = last.clone();
                from.push(0);
            }
            _ => return Ok(size),
        }
    }
}

/// Consistent read access: everything a job reads through one `Reader`
/// comes from one point in time (a snapshot, or a lock that keeps
/// conflicting writers out). Keys are compared as unsigned bytes.
pub trait Reader {
    /// The value of `key`, if any.
    ///
    /// # Errors
    /// When the engine cannot read (I/O, a damaged page: `Corrupted`).
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// [`Reader::get`] as shared bytes. Stores read large values (blob
    /// chunks) this way and hand them out as they are, so an engine that
    /// can lend its read buffer (say, one it reuses once the caller drops
    /// it) overrides this; the default wraps [`Reader::get`]'s vector
    /// without copying.
    ///
    /// # Errors
    /// As [`Reader::get`].
    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.get(table, key)?.map(Bytes::from))
    }

    /// Whether every value this reader returns was checked against a
    /// checksum the engine stored with it, so that damaged bytes come back
    /// as `Corrupted`, never as a value. Stores then skip their own
    /// checksum over the same bytes (a blob chunk's CRC32C), so each
    /// stored byte is still checked once per read; `verify` re-hashes
    /// either way. The default, `false`, keeps the stores' checks.
    fn checks_values(&self) -> bool {
        false
    }

    /// Entries with `start <= key < end` (`end = None`: no upper bound;
    /// `end <= start`: none), in `direction` order, at most `limit`.
    ///
    /// # Errors
    /// As [`Reader::get`].
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>>;

    /// [`Reader::scan`], each entry handed to `visit` as borrowed bytes,
    /// in order, instead of returned as owned copies: an engine that reads
    /// neighbouring values with one read lends slices of its buffer. Stores
    /// decode event pages and log pages this way. The default visits what
    /// [`Reader::scan`] returns.
    ///
    /// # Errors
    /// As [`Reader::get`], or the first error `visit` returns.
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
    /// (`end = None`: no upper bound), from the same view as the job's
    /// other reads. Store statistics call it on whole tables, so an engine
    /// should answer from its indexes without copying values; the default
    /// scans (and copies) every value.
    ///
    /// # Errors
    /// As [`Reader::get`].
    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        measure_by_scan(self, table, start, end)
    }
}

/// A read-write transaction: reads as [`Reader`], plus staged writes that
/// the engine applies all together, or none of them, when the job returns
/// `Ok` (see [`Engine::write`]), in the order they were staged (a
/// `delete_range` then a `put` inside that range leaves the put). Whether
/// a read sees this transaction's own earlier writes is left to the
/// engine: stores never read what they wrote.
pub trait Txn: Reader {
    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// When the engine cannot stage it (SQL engines write as they go); the
    /// job then fails and nothing is applied.
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()>;

    /// Removes `key` (nothing if absent).
    ///
    /// # Errors
    /// As [`Txn::put`].
    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()>;

    /// Removes every key with `start <= key < end`.
    ///
    /// # Errors
    /// As [`Txn::put`].
    fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) -> Result<()>;
}

/// What a write job must be serialized against: two jobs whose scopes
/// overlap never interleave (the second reads everything the first wrote).
///
/// An engine may serialize more than it is asked (one writer at a time,
/// as SQLite does) but never less. Across processes this must hold too for
/// an engine whose [`Capabilities::shared`] is `true`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One entity: its head record is `key` in `table`. Overlaps the same
    /// entity and [`Scope::Table`] of the same table.
    Entity {
        /// The entity's table.
        table: Table,
        /// The entity's key in it.
        key: Vec<u8>,
    },
    /// Every entity of one table (a supersession `put` walks chains across
    /// targets).
    Table(Table),
    /// Nothing: the job writes keys no other job writes concurrently
    /// (chunks under a fresh random id). It must still be atomic.
    Unshared,
}

impl Scope {
    /// The scope of one entity.
    pub fn entity(table: Table, key: impl Into<Vec<u8>>) -> Scope {
        Scope::Entity {
            table,
            key: key.into(),
        }
    }

    /// The table a scope locks, if any.
    pub fn table(&self) -> Option<Table> {
        match self {
            Scope::Entity { table, .. } | Scope::Table(table) => Some(*table),
            Scope::Unshared => None,
        }
    }
}

/// Resolves once a write is durable at the engine's declared
/// [`DurabilityLevel`](crate::DurabilityLevel): returned by [`Engine::write`] once the write is
/// applied (visible to every later read). A store acknowledges a mutation
/// only after awaiting it; an engine that syncs inside `write` hands back
/// [`Durable::ready`].
#[must_use = "a write is acknowledged only once its Durable resolved"]
pub struct Durable(Option<Pin<Box<dyn Future<Output = Result<()>> + Send>>>);

impl Durable {
    /// Already durable.
    pub fn ready() -> Durable {
        Durable(None)
    }

    /// Durable once `future` resolves `Ok`. An `Err` means the write may or
    /// may not have reached the disk: engines report `OutcomeUnknown`.
    pub fn new(future: impl Future<Output = Result<()>> + Send + 'static) -> Durable {
        Durable(Some(Box::pin(future)))
    }

    /// Waits until the write is durable.
    ///
    /// # Errors
    /// When the engine could not make it durable.
    pub async fn wait(self) -> Result<()> {
        match self.0 {
            None => Ok(()),
            Some(future) => future.await,
        }
    }
}

impl fmt::Debug for Durable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.is_some() { "pending" } else { "ready" };
        f.debug_tuple("Durable").field(&state).finish()
    }
}

/// A read job: called with a consistent [`Reader`]. An engine that checks
/// consistency after the fact (it validates what the job read, as the
/// Redis engine does) may call it again when the check fails; only the
/// last call's outcome counts.
pub type ReadJob = Box<dyn FnMut(&dyn Reader) -> Result<()> + Send + 'static>;

/// A write job: called with a [`Txn`]; what its last call staged is
/// applied. An engine that serializes jobs by locks calls it once. An
/// optimistic engine (the Redis engine: it validates what the job read
/// when it applies the writes) may call it again, with a fresh `Txn`,
/// when that validation fails; only the last call's writes and outcome
/// count, so a job has no effect but what it stages and returns.
pub type WriteJob = Box<dyn FnMut(&mut dyn Txn) -> Result<()> + Send + 'static>;

/// A storage engine: what a backend supplies so that every store rule of
/// core runs over it. See the [module docs](super) for the contract of
/// each method and what the conformance suite checks.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// What the stores over this engine declare (backend name, durability,
    /// sharing between processes, blob limit).
    fn capabilities(&self) -> Capabilities;

    /// Runs `job` against one consistent view of committed state.
    ///
    /// # Errors
    /// The job's error, or the engine's (`Unavailable`, `Corrupted`…).
    async fn read(&self, job: ReadJob) -> Result<()>;

    /// Runs `job` as one transaction serialized against every write job of
    /// an overlapping `scope`, and applies what it staged atomically if it
    /// returns `Ok`. Returns once the writes are visible to later reads,
    /// with the [`Durable`] to await before acknowledging. The `Durable`
    /// also covers whatever the job read that was not yet durable (a retry
    /// answered from an earlier write), so even a job that wrote nothing
    /// waits for it.
    ///
    /// Once called, the job runs to completion, or not at all, even if the
    /// returned future is dropped: a started write is never torn.
    ///
    /// # Errors
    /// The job's error (nothing applied); `Unavailable` when nothing was
    /// applied; `OutcomeUnknown` when the writes may have been applied.
    async fn write(&self, scope: Scope, job: WriteJob) -> Result<Durable>;

    /// Runs `job` as [`Engine::write`] does, for a caller that will not
    /// wait for it to be durable: cleanup that a crash may undo harmlessly
    /// (the stores drop a finished call's blob references this way).
    /// Returns once the writes are visible to later reads; they become
    /// durable with later writes. The default is `write` with its
    /// [`Durable`] dropped. An engine that answers a write only once it is
    /// durable (the file engine's group commit) answers this one as soon
    /// as it is applied.
    ///
    /// # Errors
    /// As [`Engine::write`].
    async fn write_eventually_durable(&self, scope: Scope, job: WriteJob) -> Result<()> {
        self.write(scope, job).await.map(drop)
    }

    /// Whether this engine may call a job more than once (it validates what
    /// the job read when it applies the writes, and runs the job again when
    /// that check fails; see [`WriteJob`]). Stores then keep what a job
    /// consumes (the new event, the record to store) and give each call a
    /// copy; for an engine that calls every job once (the default, `false`)
    /// they move it into the only call. An engine calls a job again only
    /// when something the job read changed: a job that reads nothing is
    /// called once either way.
    fn reruns_jobs(&self) -> bool {
        false
    }

    /// The cache the stores over this engine share, for an engine whose
    /// data nothing else writes (see [`StoreCache`]); `None` (the default)
    /// makes every append read its run's record. The stores ignore it when
    /// [`Engine::reruns_jobs`]: an append answered from the cache reads
    /// nothing such an engine could validate.
    fn cache(&self) -> Option<&StoreCache> {
        None
    }

    /// Returns space that deletions freed to the file system, where the
    /// engine holds on to it (log segments, free pages); may take long and
    /// runs beside live traffic. The default does nothing: an engine that
    /// reuses or releases space on its own needs nothing here.
    ///
    /// # Errors
    /// The engine's (I/O, `StorageFull` while rewriting).
    async fn compact(&self) -> Result<()> {
        Ok(())
    }

    /// Flushes what the engine buffers and releases what it holds (file
    /// locks). Called by `Stores::close`; afterwards every read and write
    /// fails with `Conflict`, and closing again returns `Ok(())`.
    ///
    /// # Errors
    /// When the final flush failed.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
