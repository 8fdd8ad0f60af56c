//! The in-memory index: for every table, key → where the value lives on
//! disk. Values are never held in memory; RAM grows with the number of
//! keys, not with payload bytes.

use std::collections::{BTreeMap, HashMap};

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
    tables: Vec<BTreeMap<Vec<u8>, Loc>>,
    live: HashMap<u64, u64>,
}

impl Index {
    pub(crate) fn new() -> Self {
        Index {
            tables: vec![BTreeMap::new(); Table::ALL.len()],
            live: HashMap::new(),
        }
    }

    pub(crate) fn table(&self, table: Table) -> &BTreeMap<Vec<u8>, Loc> {
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
                    self.insert(table, key.to_vec(), loc);
                }
                OpRef::Delete { table, key } => self.remove(table, key),
                OpRef::DeleteRange { table, start, end } => {
                    if start < end {
                        let keys: Vec<Vec<u8>> = self.tables[table.id() as usize]
                            .range::<[u8], _>((
                                std::ops::Bound::Included(start),
                                std::ops::Bound::Excluded(end),
                            ))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in keys {
                            self.remove(table, &k);
                        }
                    }
                }
            }
        }
    }

    /// Sets `key` to `loc` (replacing any older location).
    pub(crate) fn insert(&mut self, table: Table, key: Vec<u8>, loc: Loc) {
        *self.live.entry(loc.seg).or_default() += u64::from(loc.len);
        if let Some(old) = self.tables[table.id() as usize].insert(key, loc) {
            self.unlive(old);
        }
    }

    fn remove(&mut self, table: Table, key: &[u8]) {
        if let Some(old) = self.tables[table.id() as usize].remove(key) {
            self.unlive(old);
        }
    }

    fn unlive(&mut self, old: Loc) {
        if let Some(l) = self.live.get_mut(&old.seg) {
            *l = l.saturating_sub(u64::from(old.len));
        }
    }

    /// Value bytes still referenced in segment `seg`.
    pub(crate) fn live_bytes(&self, seg: u64) -> u64 {
        self.live.get(&seg).copied().unwrap_or(0)
    }

    /// Every (table, key, loc), table by table in key order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Table, &Vec<u8>, &Loc)> {
        Table::ALL
            .iter()
            .zip(self.tables.iter())
            .flat_map(|(t, m)| m.iter().map(move |(k, l)| (*t, k, l)))
    }

    /// The segments any entry references.
    pub(crate) fn referenced_segments(&self) -> std::collections::BTreeSet<u64> {
        self.tables
            .iter()
            .flat_map(|m| m.values().map(|l| l.seg))
            .collect()
    }

    /// Drops every entry that lives in `seg` (salvage only).
    pub(crate) fn drop_segment(&mut self, seg: u64) -> usize {
        let mut dropped = 0;
        for m in &mut self.tables {
            let before = m.len();
            m.retain(|_, l| l.seg != seg);
            dropped += before - m.len();
        }
        self.live.remove(&seg);
        dropped
    }
}
