//! A storage engine written outside the stowage workspace, against the
//! public seam only (`stowage::engine`): every table in one `BTreeMap`
//! behind a `RwLock`; a write job runs against core's `Staging` and its
//! staged writes are applied, in order, when it succeeds.
//!
//! Used by the `custom_engine` example and, unchanged, by
//! `tests/custom_engine_conformance.rs`, which runs the whole conformance
//! suite against it in one line.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use stowage::engine::{
    Direction, Durable, Engine, Entry, ReadJob, Reader, Scope, Staging, Table, Write, WriteJob,
};
use stowage::{Capabilities, DurabilityLevel, Error, Result};

type Map = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

/// The engine: cloning shares the data.
#[derive(Clone, Default)]
pub(crate) struct MapEngine(Arc<RwLock<Map>>);

fn poisoned() -> Error {
    Error::internal("a job panicked while holding the map")
}

/// Reads from the map as it is.
struct View<'a>(&'a Map);

impl Reader for View<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(&(table.id(), key.to_vec())).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let lower = Bound::Included((table.id(), start.to_vec()));
        let upper = match end {
            Some(end) => Bound::Excluded((table.id(), end.to_vec())),
            // Every key of the next table sorts after this table's keys.
            None => Bound::Excluded((table.id() + 1, Vec::new())),
        };
        let range = self.0.range((lower, upper));
        let entry = |((_, k), v): (&(u8, Vec<u8>), &Vec<u8>)| (k.clone(), v.clone());
        Ok(match direction {
            Direction::Forward => range.take(limit).map(entry).collect(),
            Direction::Reverse => range.rev().take(limit).map(entry).collect(),
        })
    }
}

#[async_trait]
impl Engine for MapEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("map", DurabilityLevel::None, false, 16 << 20)
    }

    async fn read(&self, mut job: ReadJob) -> Result<()> {
        let map = self.0.read().map_err(|_| poisoned())?;
        job(&View(&map))
    }

    async fn write(&self, _scope: Scope, mut job: WriteJob) -> Result<Durable> {
        // One writer at a time: stricter than any scope asks.
        let mut map = self.0.write().map_err(|_| poisoned())?;
        // Core's `Staging` reads through our view and stages the writes;
        // we apply them, in order, once the job succeeded.
        let view = View(&map);
        let mut staged = Staging::new(&view);
        job(&mut staged)?;
        let writes = staged.into_writes();
        for write in writes {
            match write {
                Write::Put { table, key, value } => {
                    map.insert((table.id(), key), value);
                }
                Write::Delete { table, key } => {
                    map.remove(&(table.id(), key));
                }
                Write::DeleteRange { table, start, end } => {
                    let doomed: Vec<_> = View(&map)
                        .scan(table, &start, Some(&end), Direction::Forward, usize::MAX)?
                        .into_iter()
                        .map(|(key, _)| (table.id(), key))
                        .collect();
                    for key in doomed {
                        map.remove(&key);
                    }
                }
                // The seam may grow new kinds of writes in a minor release.
                other => return Err(Error::unsupported(format!("cannot apply {other:?}"))),
            }
        }
        Ok(Durable::ready())
    }
}
