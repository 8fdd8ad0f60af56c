//! The in-memory index: for every table, key → where the value lives on
//! disk. Values are never held in memory; RAM grows with the number of
//! keys that do not count up (runs, sessions, blobs, records), not with
//! payload bytes, and a run's events cost a location each ([`Blocks`]).

use std::collections::{BTreeMap, BTreeSet};

use super::blocks::Blocks;
use super::record::OpRef;
use crate::kv::seam::Table;

/// Where a value lives: segment, byte offset, length, and its CRC32C
/// (checked on every read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seg: u64,
    pub(crate) off: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

/// Every table's keys, plus the live bytes each segment still holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    tables: Vec<Blocks>,
    /// Per segment (a handful: a small map, no hashing on the write path).
    live: BTreeMap<u64, u64>,
}

impl Index {
    pub(crate) fn new() -> Self {
        Index {
            tables: vec![Blocks::default(); Table::ALL.len()],
            live: BTreeMap::new(),
        }
    }

    pub(crate) fn table(&self, table: Table) -> &Blocks {
        // `tables` always has one map per table id.
        &self.tables[table.id() as usize]
    }

    /// Applies a decoded batch whose payload starts at `payload_off` in
    /// segment `seg`, in order.
    pub(crate) fn apply(&mut self, seg: u64, payload_off: u64, ops: &[OpRef<'_>]) {
        for op in ops {
            match *op {
                OpRef::Put {
                    table,
                    key,
                    value,
                    value_offset,
                } => {
                    let loc = Loc {
                        seg,
                        off: payload_off + value_offset as u64,
                        len: u32::try_from(value.len()).unwrap_or(u32::MAX),
                        crc: crc32c::crc32c(value),
                    };
                    self.insert(table, key, loc);
                }
                OpRef::Delete { table, key } => {
                    if let Some(old) = self.tables[table.id() as usize].remove(key) {
                        self.unlive(old);
                    }
                }
                OpRef::DeleteRange { table, start, end } => {
                    for old in self.tables[table.id() as usize].remove_range(start, Some(end)) {
                        self.unlive(old);
                    }
                }
            }
        }
    }

    /// Sets `key` to `loc` (replacing any older location).
    pub(crate) fn insert(&mut self, table: Table, key: &[u8], loc: Loc) {
        *self.live.entry(loc.seg).or_default() += u64::from(loc.len);
        if let Some(old) = self.tables[table.id() as usize].insert(key, loc) {
            self.unlive(old);
        }
    }

    fn unlive(&mut self, old: Loc) {
        if let Some(l) = self.live.get_mut(&old.seg) {
            *l = l.saturating_sub(u64::from(old.len));
        }
    }

    /// Gives back spare capacity (after recovery).
    pub(crate) fn shrink(&mut self) {
        self.tables.iter_mut().for_each(Blocks::shrink);
    }

    /// Value bytes still referenced in segment `seg`.
    pub(crate) fn live_bytes(&self, seg: u64) -> u64 {
        self.live.get(&seg).copied().unwrap_or(0)
    }

    /// Every table with its index, in table order.
    pub(crate) fn tables(&self) -> impl Iterator<Item = (Table, &Blocks)> {
        Table::ALL.iter().copied().zip(self.tables.iter())
    }

    /// Every (table, key, loc), table by table in key order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Table, Vec<u8>, Loc)> + '_ {
        self.tables()
            .flat_map(|(t, blocks)| blocks.entries().map(move |(k, l)| (t, k, l)))
    }

    /// The segments any entry references.
    pub(crate) fn referenced_segments(&self) -> BTreeSet<u64> {
        self.tables
            .iter()
            .flat_map(|t| t.blocks().flat_map(|(_, locs)| locs.iter().map(|l| l.seg)))
            .collect()
    }

    /// Drops every entry that lives in `seg` (salvage only).
    pub(crate) fn drop_segment(&mut self, seg: u64) -> usize {
        let mut dropped = 0;
        for t in &mut self.tables {
            let keys: Vec<Vec<u8>> = t
                .entries()
                .filter(|(_, l)| l.seg == seg)
                .map(|(k, _)| k)
                .collect();
            for key in keys {
                t.remove(&key);
                dropped += 1;
            }
        }
        self.live.remove(&seg);
        dropped
    }
}
