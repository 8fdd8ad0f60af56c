//! Test support: an in-process `BTreeMap` engine, and helpers that damage
//! stored records through any engine (for the conformance `tamper` hook).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::{
    Capabilities, Digest, DurabilityLevel, Error, LogEntry, Result, RunEvent, RunId, StoreEnv,
    Stores,
};

use super::cas::BlobHeader;
use super::keys;
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

/// Stores over a fresh [`MemKv`], plus the engine for tampering.
pub(crate) fn mem_stores() -> (Stores, Arc<MemKv>) {
    test_stores(MemKv::default())
}

/// Stores over a test engine (8 MiB blobs), plus the engine.
pub(crate) fn test_stores<K: OrderedKv + Default>(engine: K) -> (Stores, Arc<K>) {
    let engine = Arc::new(engine);
    let caps = Capabilities {
        backend: "kv-test",
        durability: DurabilityLevel::None,
        shared: false,
        max_blob_size: 8 * 1024 * 1024,
        streaming: true,
    };
    let stores = super::kv_stores(Arc::clone(&engine), StoreEnv::default(), caps)
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

fn flip_first_byte(bytes: &mut [u8]) {
    if let Some(b) = bytes.first_mut() {
        *b ^= 0x55;
    }
}

/// Damages a blob: flips a byte of its first chunk (keeping the length and
/// the stored CRC), or for the empty blob adds a stray byte of content.
pub(crate) fn tamper_blob(engine: &dyn OrderedKv, digest: &Digest) -> Result<()> {
    let header_bytes = engine
        .get(Table::Blobs, &keys::blob_header(digest))?
        .ok_or_else(|| Error::not_found("no such blob to tamper with"))?;
    let mut header: BlobHeader = decode_record("blob header", &header_bytes)?;
    let mut batch = Batch::default();
    if header.chunks == 0 {
        header.chunks = 1;
        let mut chunk = crc32c::crc32c(b"x").to_be_bytes().to_vec();
        chunk.push(b'x');
        batch.put(Table::Blobs, keys::blob_chunk(&header.body, 0), chunk);
        batch.put(
            Table::Blobs,
            keys::blob_header(digest),
            encode_record(&header)?,
        );
    } else {
        let key = keys::blob_chunk(&header.body, 0);
        let mut chunk = engine
            .get(Table::Blobs, &key)?
            .ok_or_else(|| Error::not_found("blob chunk missing"))?;
        if let Some(data) = chunk.get_mut(4..) {
            flip_first_byte(data);
        }
        batch.put(Table::Blobs, key, chunk);
    }
    engine.write(batch)
}

/// Rewrites the payload of one run event, leaving its hash as stored.
pub(crate) fn tamper_event(engine: &dyn OrderedKv, run: RunId, seq: u64) -> Result<()> {
    let key = keys::run_event(run, seq);
    let bytes = engine
        .get(Table::RunEvents, &key)?
        .ok_or_else(|| Error::not_found("no such event to tamper with"))?;
    let mut event: RunEvent = decode_record("run event", &bytes)?;
    event.payload = serde_json::json!({ "tampered": event.payload });
    let mut batch = Batch::default();
    batch.put(Table::RunEvents, key, encode_record(&event)?);
    engine.write(batch)
}

/// Rewrites the payload of one session log entry, leaving its hash.
pub(crate) fn tamper_log(engine: &dyn OrderedKv, session: &str, seq: u64) -> Result<()> {
    let key = keys::log_entry(session, seq);
    let bytes = engine
        .get(Table::SessionLog, &key)?
        .ok_or_else(|| Error::not_found("no such log entry to tamper with"))?;
    let mut entry: LogEntry = decode_record("session log entry", &bytes)?;
    let mut payload = entry.payload.to_vec();
    payload.push(b'!');
    entry.payload = payload.into();
    let mut batch = Batch::default();
    batch.put(Table::SessionLog, key, encode_record(&entry)?);
    engine.write(batch)
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
        use stowage_conformance::Tamper;
        let engine = self
            .engine
            .lock()
            .clone()
            .ok_or_else(|| Error::internal("the harness's store is not open"))?;
        match target {
            Tamper::Blob(digest) => tamper_blob(engine.as_ref(), &digest),
            Tamper::RunEvent { run, seq } => tamper_event(engine.as_ref(), run, seq),
            Tamper::LogEntry { session, seq } => tamper_log(engine.as_ref(), &session, seq),
        }
    }
}

/// The factory for `conformance_tests!`.
async fn mem_harness() -> MemHarness {
    MemHarness {
        engine: Mutex::new(None),
    }
}

stowage_conformance::conformance_tests!(mem_harness);
