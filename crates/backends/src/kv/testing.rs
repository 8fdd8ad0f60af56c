//! Test support: an in-process `BTreeMap` engine, and helpers that damage
//! stored records through any engine (for the conformance `tamper` hook).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::{Capabilities, DurabilityLevel, Error, Result, StoreEnv, Stores};

use super::seam::{Batch, Direction, Op, OrderedKv, Table};

/// The keys and values of one table.
type TableMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// The simplest correct engine: one `BTreeMap` per table behind a mutex.
#[derive(Default)]
pub(crate) struct MemKv {
    tables: Mutex<BTreeMap<Table, TableMap>>,
}

impl OrderedKv for MemKv {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tables
            .lock()
            .get(&table)
            .and_then(|t| t.get(key).cloned()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let tables = self.tables.lock();
        let Some(t) = tables.get(&table) else {
            return Ok(Vec::new());
        };
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        let range = t.range((Bound::Included(start.to_vec()), upper));
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(match direction {
            Direction::Forward => range.take(limit).map(clone).collect(),
            Direction::Reverse => range.rev().take(limit).map(clone).collect(),
        })
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut tables = self.tables.lock();
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    tables.entry(table).or_default().insert(key, value);
                }
                Op::Delete { table, key } => {
                    tables.entry(table).or_default().remove(&key);
                }
                Op::DeleteRange { table, start, end } => {
                    let t = tables.entry(table).or_default();
                    let doomed: Vec<Vec<u8>> =
                        t.range(start..end).map(|(k, _)| k.clone()).collect();
                    for key in doomed {
                        t.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the test engines declare (8 MiB blobs).
fn test_capabilities() -> Capabilities {
    Capabilities::new("kv-test", DurabilityLevel::None, false, 8 * 1024 * 1024)
}

/// Stores over a fresh [`MemKv`], plus the engine for tampering.
pub(crate) fn mem_stores() -> (Stores, Arc<MemKv>) {
    test_stores(MemKv::default())
}

/// Stores over a test engine (8 MiB blobs), plus the engine.
pub(crate) fn test_stores<K: OrderedKv + Default>(engine: K) -> (Stores, Arc<K>) {
    test_stores_with(engine, StoreEnv::default())
}

/// [`test_stores`] with the clock and id generator of `env`.
pub(crate) fn test_stores_with<K: OrderedKv>(engine: K, env: StoreEnv) -> (Stores, Arc<K>) {
    let engine = Arc::new(engine);
    let stores = super::kv_stores(
        Arc::clone(&engine) as Arc<dyn OrderedKv>,
        env,
        test_capabilities(),
    )
    .expect("stores over the engine");
    (stores, engine)
}

/// The reads of a test engine that wraps a [`MemKv`] in a field `inner`
/// and changes only how it writes.
macro_rules! reads_from_inner {
    () => {
        fn get(
            &self,
            table: $crate::kv::seam::Table,
            key: &[u8],
        ) -> stowage_core::Result<Option<Vec<u8>>> {
            self.inner.get(table, key)
        }

        fn scan(
            &self,
            table: $crate::kv::seam::Table,
            start: &[u8],
            end: Option<&[u8]>,
            direction: $crate::kv::seam::Direction,
            limit: usize,
        ) -> stowage_core::Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.inner.scan(table, start, end, direction, limit)
        }
    };
}
pub(crate) use reads_from_inner;

/// Applies `target` to the records of `engine` through a throwaway
/// [`KvEngine`](super::engine::KvEngine): the one place every kv harness
/// (in-memory, file, RocksDB, sled) inflicts damage.
pub(crate) async fn tamper_kv(
    engine: Arc<dyn OrderedKv>,
    target: stowage_conformance::Tamper,
) -> Result<()> {
    let caps = test_capabilities();
    let engine = super::engine::KvEngine::new(engine, caps)?;
    stowage_conformance::tamper_engine(&engine, target).await
}

/// A conformance harness over a fresh [`MemKv`] (not durable: no reopen).
pub(crate) struct MemHarness {
    engine: Mutex<Option<Arc<MemKv>>>,
}

#[async_trait::async_trait]
impl stowage_conformance::Harness for MemHarness {
    async fn open(&self) -> Result<Stores> {
        let (stores, engine) = mem_stores();
        *self.engine.lock() = Some(engine);
        Ok(stores)
    }

    async fn tamper(&self, _stores: &Stores, target: stowage_conformance::Tamper) -> Result<()> {
        let engine = self
            .engine
            .lock()
            .clone()
            .ok_or_else(|| Error::internal("the harness's store is not open"))?;
        tamper_kv(engine, target).await
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        Ok(test_stores_with(MemKv::default(), env).0)
    }
}

/// The factory for `conformance_tests!`.
async fn mem_harness() -> MemHarness {
    MemHarness {
        engine: Mutex::new(None),
    }
}

stowage_conformance::conformance_tests!(mem_harness);
