//! [`MemoryEngine`]: the reference engine, everything in the process's
//! memory.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{
    Direction, Durable, Engine, Entry, RangeSize, ReadJob, Reader, Scope, Staging, StoreCache,
    Table, Write, WriteJob,
};
use crate::{Capabilities, DurabilityLevel, Error, Result};

/// Largest blob the memory engine accepts: 256 MiB.
const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;

type Tables = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The simplest correct [`Engine`]: one ordered map per table behind one
/// read-write lock. A write job runs with the lock held exclusively (so
/// write jobs never interleave, whatever their scope) and its staged
/// writes are applied before the lock is released; a read job holds it
/// shared. Nothing is durable and nothing is shared with other processes.
///
/// Cloning gives another handle onto the same data; [`MemoryEngine::fork`]
/// gives an independent copy. Any number of `Stores` may be built over one
/// engine and its clones: they all see the same data.
#[derive(Clone)]
pub struct MemoryEngine {
    inner: Arc<Inner>,
}

struct Inner {
    tables: RwLock<Tables>,
    closed: AtomicBool,
    max_blob_size: u64,
    /// Nothing but this engine (and its clones, which share `Inner`)
    /// writes these tables, so the stores over it may cache run records.
    cache: StoreCache,
}

impl std::fmt::Debug for MemoryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEngine").finish_non_exhaustive()
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        MemoryEngine::new()
    }
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> MemoryEngine {
        MemoryEngine::with_tables(Tables::new(), MAX_BLOB_SIZE)
    }

    fn with_tables(tables: Tables, max_blob_size: u64) -> MemoryEngine {
        MemoryEngine {
            inner: Arc::new(Inner {
                tables: RwLock::new(tables),
                closed: AtomicBool::new(false),
                max_blob_size,
                cache: StoreCache::new(),
            }),
        }
    }

    /// This (empty) engine, taking blobs up to `bytes` instead of 256 MiB
    /// (tests of size limits, say). Data written before is dropped.
    pub fn with_blob_limit(self, bytes: u64) -> MemoryEngine {
        MemoryEngine::with_tables(Tables::new(), bytes)
    }

    /// What every memory engine declares.
    pub fn declared_capabilities() -> Capabilities {
        Capabilities::new("memory", DurabilityLevel::None, false, MAX_BLOB_SIZE)
    }

    /// An independent copy of everything committed so far: a consistent
    /// point in time, even while writers run (write jobs hold the lock).
    pub fn fork(&self) -> MemoryEngine {
        let tables = match self.inner.tables.read() {
            Ok(tables) => tables.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        MemoryEngine::with_tables(tables, self.inner.max_blob_size)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::conflict(
                "the memory store was closed (Stores::close); create a new one to use it",
            ));
        }
        Ok(())
    }
}

fn poisoned() -> Error {
    Error::internal("a memory store job panicked while holding its lock")
}

fn scan(
    tables: &Tables,
    table: Table,
    start: &[u8],
    end: Option<&[u8]>,
    direction: Direction,
    limit: usize,
) -> Vec<Entry> {
    let Some(map) = tables.get(&table) else {
        return Vec::new();
    };
    if end.is_some_and(|end| end <= start) {
        return Vec::new();
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let range = map.range::<[u8], _>((Bound::Included(start), upper));
    let entry = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
    match direction {
        Direction::Forward => range.take(limit).map(entry).collect(),
        Direction::Reverse => range.rev().take(limit).map(entry).collect(),
    }
}

/// A consistent view: the tables under the held lock.
struct View<'a>(&'a Tables);

impl Reader for View<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        Ok(scan(self.0, table, start, end, direction, limit))
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        let mut size = RangeSize::default();
        let Some(map) = self.0.get(&table) else {
            return Ok(size);
        };
        if end.is_some_and(|end| end <= start) {
            return Ok(size);
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for (_, value) in map.range::<[u8], _>((Bound::Included(start), upper)) {
            size.entries += 1;
            size.bytes += value.len() as u64;
        }
        Ok(size)
    }
}

fn apply(tables: &mut Tables, writes: Vec<Write>) {
    for write in writes {
        match write {
            Write::Put { table, key, value } => {
                tables.entry(table).or_default().insert(key, value);
            }
            Write::Delete { table, key } => {
                if let Some(map) = tables.get_mut(&table) {
                    map.remove(&key);
                }
            }
            Write::DeleteRange { table, start, end } => {
                if let Some(map) = tables.get_mut(&table) {
                    if start < end {
                        let mut tail = map.split_off(&start);
                        let mut rest = tail.split_off(&end);
                        map.append(&mut rest);
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_blob_size: self.inner.max_blob_size,
            ..MemoryEngine::declared_capabilities()
        }
    }

    async fn read(&self, mut job: ReadJob) -> Result<()> {
        self.check_open()?;
        let tables = self.inner.tables.read().map_err(|_| poisoned())?;
        job(&View(&tables))
    }

    async fn write(&self, _scope: Scope, mut job: WriteJob) -> Result<Durable> {
        self.check_open()?;
        let mut tables = self.inner.tables.write().map_err(|_| poisoned())?;
        let view = View(&tables);
        let mut staged = Staging::new(&view);
        job(&mut staged)?;
        let writes = staged.into_writes();
        apply(&mut tables, writes);
        Ok(Durable::ready())
    }

    fn cache(&self) -> Option<&StoreCache> {
        Some(&self.inner.cache)
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        Ok(())
    }
}
