//! Test support: an in-process `BTreeMap` engine, and helpers that damage
//! stored records through any engine (for the conformance `tamper` hook).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::encoding::{decode_event, decode_record, encode_event, encode_record};
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
    test_stores_with(engine, StoreEnv::default())
}

/// [`test_stores`] with the clock and id generator of `env`.
pub(crate) fn test_stores_with<K: OrderedKv>(engine: K, env: StoreEnv) -> (Stores, Arc<K>) {
    let engine = Arc::new(engine);
    let caps = Capabilities {
        backend: "kv-test",
        durability: DurabilityLevel::None,
        shared: false,
        max_blob_size: 8 * 1024 * 1024,
        streaming: true,
    };
    let stores = super::kv_stores(Arc::clone(&engine), env, caps).expect("stores over the engine");
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
    let mut event: RunEvent = decode_event("run event", &bytes)?;
    event.payload = serde_json::json!({ "tampered": event.payload });
    let mut batch = Batch::default();
    batch.put(Table::RunEvents, key, encode_event(&event)?);
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

/// Replaces every stored event of `run` with `events`, leaving the record.
pub(crate) fn tamper_events(engine: &dyn OrderedKv, run: RunId, events: &[RunEvent]) -> Result<()> {
    let (start, end) = keys::run_events_after(run, None)
        .ok_or_else(|| Error::internal("a run's whole event range is never empty"))?;
    let mut batch = Batch::default();
    batch.delete_range(Table::RunEvents, start, end);
    for event in events {
        batch.put(
            Table::RunEvents,
            keys::run_event(run, event.seq),
            encode_event(event)?,
        );
    }
    engine.write(batch)
}

/// Replaces every stored entry of `session`'s log with `entries`, leaving
/// the record (and the idempotency index).
pub(crate) fn tamper_entries(
    engine: &dyn OrderedKv,
    session: &str,
    entries: &[LogEntry],
) -> Result<()> {
    let (start, end) = keys::whole_log(session);
    let mut batch = Batch::default();
    batch.delete_range(Table::SessionLog, start, end);
    for entry in entries {
        batch.put(
            Table::SessionLog,
            keys::log_entry(session, entry.seq),
            encode_record(entry)?,
        );
    }
    engine.write(batch)
}

/// Applies `target` to the records of `engine`: the one place every kv
/// harness (in-memory, file, RocksDB, sled) inflicts damage.
pub(crate) fn tamper_kv(engine: &dyn OrderedKv, target: stowage_conformance::Tamper) -> Result<()> {
    use stowage_conformance::Tamper;
    match target {
        Tamper::Blob(digest) => tamper_blob(engine, &digest),
        Tamper::RunEvent { run, seq } => tamper_event(engine, run, seq),
        Tamper::LogEntry { session, seq } => tamper_log(engine, &session, seq),
        Tamper::RunEvents { run, events } => tamper_events(engine, run, &events),
        Tamper::LogEntries { session, entries } => tamper_entries(engine, &session, &entries),
        Tamper::RunHead { run, head } => {
            let key = keys::run(run);
            let bytes = engine
                .get(Table::Runs, &key)?
                .ok_or_else(|| Error::not_found("no such run to tamper with"))?;
            let mut record: stowage_core::Run = decode_record("run record", &bytes)?;
            record.head = head;
            let mut batch = Batch::default();
            batch.put(Table::Runs, key, encode_record(&record)?);
            engine.write(batch)
        }
        Tamper::LogHead { session, head } => {
            let key = keys::session(&session);
            let bytes = engine
                .get(Table::Sessions, &key)?
                .ok_or_else(|| Error::not_found("no such session to tamper with"))?;
            let mut record: stowage_core::Session = decode_record("session record", &bytes)?;
            record.log_head = head;
            let mut batch = Batch::default();
            batch.put(Table::Sessions, key, encode_record(&record)?);
            engine.write(batch)
        }
        other => Err(Error::unsupported(format!(
            "the kv harness cannot inflict {other:?}"
        ))),
    }
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
        tamper_kv(engine.as_ref(), target)
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
