//! The store logic written once over the ordered key-value seam.
//!
//! An engine (RocksDB, sled, our file engine) supplies only
//! [`OrderedKv`]: get, ordered range scan, atomic write batch. Everything
//! else — key layout ([`keys`]), per-entity locking ([`locks`]), chunked
//! blobs, run/release/session/supersession rules (which call core) — lives
//! here once, so engines cannot drift. See `docs/kv.md`.
//!
//! Reads run inside `spawn_blocking`, behind a semaphore that bounds how
//! many blocking calls one store runs at once; so do mutations, except
//! over an engine with group commit (the file engine): there they run on
//! the store's writer thread (`writer`). Such an engine defers the fsync
//! of writes made inside either, and the caller waits for it
//! asynchronously before its result is returned (`deferred`).

// `_kv` alone (no engine) is not a real build; only silence it there.
#![cfg_attr(
    not(any(feature = "file", feature = "rocksdb", feature = "sled")),
    allow(dead_code)
)]

use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::{Capabilities, Error, Result, StoreEnv, Stores};
use tokio::sync::Semaphore;

use self::locks::LockTable;
use self::seam::OrderedKv;

mod cas;
mod deferred;
mod gate;
mod heads;
mod keys;
mod locks;
pub(crate) mod options;
mod releases;
mod runs;
pub(crate) mod seam;
mod sessions;
mod supersessions;
mod writer;

#[cfg(all(test, any(feature = "sled", feature = "rocksdb", feature = "file")))]
mod engine_tests;
#[cfg(test)]
mod layer_tests;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(feature = "rocksdb")]
pub(crate) mod rocksdb;
#[cfg(feature = "sled")]
pub(crate) mod sled;

/// How many seam calls one store runs on the blocking pool at once.
const MAX_BLOCKING: usize = 64;

/// The stores over one engine: a thin generic shell that erases the engine
/// to `Arc<dyn OrderedKv>`. `capabilities.max_blob_size` is the blob limit;
/// `streaming` should be `true` (blobs are stored in chunks).
pub(crate) fn kv_stores<K: OrderedKv>(
    engine: Arc<K>,
    env: StoreEnv,
    capabilities: Capabilities,
) -> Result<Stores> {
    let engine: Arc<dyn OrderedKv> = engine;
    stores_over(engine, env, capabilities)
}

fn stores_over(
    engine: Arc<dyn OrderedKv>,
    env: StoreEnv,
    capabilities: Capabilities,
) -> Result<Stores> {
    let gate = Arc::new(gate::Gate::new(capabilities.backend, engine));
    let engine: Arc<dyn OrderedKv> = Arc::clone(&gate) as Arc<dyn OrderedKv>;
    let writer = if engine.group_commits() {
        Some(writer::Writer::start()?)
    } else {
        None
    };
    let store = KvStore(Arc::new(Kv {
        writer,
        engine,
        env,
        locks: LockTable::new(),
        run_heads: heads::RunHeads::default(),
        supersession_lock: Mutex::new(()),
        uploads_recovered: Mutex::new(false),
        permits: Arc::new(Semaphore::new(MAX_BLOCKING)),
        max_blob_size: capabilities.max_blob_size,
    }));
    let stores = Stores::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store),
        capabilities,
    );
    Ok(stores.with_closer(Arc::new(gate::CloseGate(gate))))
}

/// One handle implementing all five store traits (one module each).
#[derive(Clone)]
pub(crate) struct KvStore(Arc<Kv>);

/// The shared state of a store over one engine.
pub(crate) struct Kv {
    /// Runs the mutations of an engine with group commit (see `writer`).
    writer: Option<writer::Writer>,
    engine: Arc<dyn OrderedKv>,
    env: StoreEnv,
    locks: LockTable,
    /// Committed run records and chain heads, for appends (see `heads`).
    run_heads: heads::RunHeads,
    /// Held across the chain walk and the insert of a supersession `put`,
    /// so cycle checks see every committed record.
    supersession_lock: Mutex<()>,
    /// Whether the chunks of uploads interrupted by a crash were removed.
    uploads_recovered: Mutex<bool>,
    permits: Arc<Semaphore>,
    max_blob_size: u64,
}

impl KvStore {
    /// Runs `f` on the blocking pool (bounded by the semaphore) with the
    /// shared state; used for reads, and for writes that need no ordering
    /// with other mutations (blob chunks). The closure runs to completion
    /// even if the caller's future is dropped, so a started write is never
    /// torn. Writes it made reach the caller only once durable.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Kv) -> Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.0.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the store's blocking pool was closed"))?;
        let kv = Arc::clone(&self.0);
        let (result, ticket) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            deferred::collect(|| f(&kv))
        })
        .await
        .map_err(|e| Error::internal(format!("a storage task failed: {e}")))?;
        self.acknowledge(result, ticket).await
    }

    /// Runs the mutation `f` (a read-modify-write): on the writer thread
    /// when the engine has group commit, else like [`KvStore::blocking`].
    /// Either way the result reaches the caller only once the writes it
    /// made are durable, and the mutation runs to completion even if the
    /// caller's future is dropped.
    async fn mutate<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Kv) -> Result<T> + Send + 'static,
    {
        let Some(writer) = &self.0.writer else {
            return self.blocking(f).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let kv = Arc::clone(&self.0);
        let _in_flight = writer.enter();
        writer.submit(Box::new(move || {
            let (result, ticket) = deferred::collect(|| f(&kv));
            // Answered from state that may not be durable yet (say, an
            // idempotent retry finding its original): wait for it too.
            let ticket = match (&result, ticket) {
                (Ok(_), None) => kv.engine.unsynced_ticket(),
                (_, ticket) => ticket,
            };
            let outcome = match (result, ticket) {
                (Ok(value), Some(ticket))
                    if kv.writer.as_ref().is_some_and(writer::Writer::alone) =>
                {
                    // A lone writer: lead the fsync here instead of handing
                    // it to another thread and back. With company, the
                    // writer thread goes on and a waiter leads the round.
                    kv.engine.settle(ticket).map(|rest| (Ok(value), rest))
                }
                other => Ok(other),
            };
            // Released before the reply, so a caller that drops the store
            // on receiving it really closes the engine.
            drop(kv);
            let _ = tx.send(outcome);
        }));
        let (result, ticket) = rx
            .await
            .map_err(|_| Error::internal("a storage task failed on the store's writer thread"))??;
        self.acknowledge(result, ticket).await
    }

    /// Returns `result` once the writes up to `ticket` are durable, after
    /// running any maintenance they made due (on the blocking pool, so a
    /// writer thread goes on meanwhile).
    async fn acknowledge<T>(&self, result: Result<T>, ticket: Option<u64>) -> Result<T> {
        let value = result?;
        if let Some(ticket) = ticket {
            Arc::clone(&self.0.engine).wait_durable(ticket).await?;
        }
        if self.0.engine.take_maintenance() {
            let kv = Arc::clone(&self.0);
            tokio::task::spawn_blocking(move || kv.engine.maintain())
                .await
                .map_err(|e| Error::internal(format!("store maintenance failed: {e}")))?;
        }
        Ok(value)
    }
}

impl Kv {
    fn now(&self) -> stowage_core::Timestamp {
        self.env.clock.now()
    }
}

/// Typed helpers over the seam, shared by the store modules.
impl Kv {
    /// Writes `batch` atomically. Inside a store call
    /// ([`KvStore::blocking`], [`KvStore::mutate`]) the engine may defer
    /// durability until the call acknowledges; anywhere else this returns
    /// only once the batch is durable.
    fn write(&self, batch: seam::Batch) -> Result<()> {
        deferred::write(&*self.engine, batch)
    }

    /// The record under `key`, decoded with core's `decode_record`.
    fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        table: seam::Table,
        key: &[u8],
        what: &str,
    ) -> Result<Option<T>> {
        match self.engine.get(table, key)? {
            None => Ok(None),
            Some(bytes) => stowage_core::encoding::decode_record(what, &bytes).map(Some),
        }
    }

    /// Decodes every value of a scan.
    fn scan_records<T: serde::de::DeserializeOwned>(
        &self,
        table: seam::Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: seam::Direction,
        limit: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        self.engine
            .scan(table, start, end, direction, limit)?
            .iter()
            .map(|(_, v)| stowage_core::encoding::decode_record(what, v))
            .collect()
    }
}

#[cfg(feature = "file")]
pub(crate) mod file;
