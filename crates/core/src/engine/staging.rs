//! [`Staging`]: the [`Txn`] of engines that apply a job's writes after
//! the job returns (the memory engine, the KV engines, the example
//! engine), and the [`Write`]s it collects.

use std::fmt;

use bytes::Bytes;

use super::seam::{Direction, Entry, RangeSize, Reader, Table, Txn, Visit};
use crate::Result;

/// One write a job staged, in a [`Staging`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// Sets `key` to `value`.
    Put {
        /// The table.
        table: Table,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key`.
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

/// The [`Txn`] of an engine that applies a job's writes after the job
/// returned: reads go to `reader` (which must stay consistent for the
/// job, see [`Engine::write`](super::Engine::write)), writes are staged in order. The engine
/// then applies [`Staging::into_writes`] all or nothing.
pub struct Staging<'a> {
    reader: &'a dyn Reader,
    writes: Vec<Write>,
}

impl<'a> Staging<'a> {
    /// A transaction reading from `reader`, with nothing staged.
    pub fn new(reader: &'a dyn Reader) -> Staging<'a> {
        Staging {
            reader,
            writes: Vec::new(),
        }
    }

    /// What the job staged, in order.
    pub fn into_writes(self) -> Vec<Write> {
        self.writes
    }
}

impl fmt::Debug for Staging<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staging")
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl Reader for Staging<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.reader.get(table, key)
    }

    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        self.reader.get_bytes(table, key)
    }

    fn checks_values(&self) -> bool {
        self.reader.checks_values()
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        self.reader.scan(table, start, end, direction, limit)
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
        self.reader
            .scan_each(table, start, end, direction, limit, visit)
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        self.reader.measure(table, start, end)
    }
}

impl Txn for Staging<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.writes.push(Write::Put { table, key, value });
        Ok(())
    }

    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()> {
        self.writes.push(Write::Delete { table, key });
        Ok(())
    }

    fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        self.writes.push(Write::DeleteRange { table, start, end });
        Ok(())
    }
}
