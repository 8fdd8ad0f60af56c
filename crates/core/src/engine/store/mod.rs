//! The five stores written once over [`Engine`]: one module per store,
//! each a sequence of read and write jobs whose order of checks is the
//! contract's (validate → idempotency → state → chain → write).

use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use serde::de::DeserializeOwned;

use super::{keys, Direction, Engine, Reader, Scope, Table, Txn, WriteJob};
use crate::{Error, ErrorKind, Result, StoreEnv, Stores, Timestamp};

mod blob_header;
pub(crate) mod cas;
mod heads;
mod lifecycle;

pub use heads::StoreCache;
mod releases;
pub(crate) mod run_head;
mod runs;
pub(crate) mod session_head;
mod sessions;
mod supersessions;
mod tails;
#[cfg(test)]
mod tests;
mod upload;

/// The five stores over `engine`, using `env` for the clock and run ids.
/// Closing the stores closes the engine.
pub fn stores(engine: Arc<dyn Engine>, env: StoreEnv) -> Stores {
    let capabilities = engine.capabilities();
    let engine_reruns = engine.reruns_jobs();
    let store = EngineStore(Arc::new(Shared {
        // Nothing to recover where nothing survives a crash, nor where
        // other processes may be uploading into the same data.
        upload_recovery: (capabilities.survives_kill() && !capabilities.shared)
            .then(|| upload::upload_recovery(&engine)),
        engine,
        env,
        max_blob_size: capabilities.max_blob_size,
        reruns: engine_reruns,
    }));
    Stores::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        capabilities,
    )
    .with_closer(Arc::new(store))
}

/// One handle implementing all five store traits (one module each).
#[derive(Clone)]
pub(crate) struct EngineStore(Arc<Shared>);

/// What every job of one store shares.
pub(crate) struct Shared {
    engine: Arc<dyn Engine>,
    env: StoreEnv,
    /// Set once the chunks of uploads interrupted by a crash were removed;
    /// one cell per engine, shared by every store bundle over it. `None`
    /// where there is nothing to recover.
    upload_recovery: Option<Arc<OnceCell<()>>>,
    max_blob_size: u64,
    /// The engine may call a job more than once (`Engine::reruns_jobs`).
    reruns: bool,
}

impl Shared {
    fn now(&self) -> Timestamp {
        self.env.clock.now()
    }

    /// The engine's cache, if it keeps one — never over an engine that
    /// calls jobs again: an append answered from the cache reads nothing,
    /// so such an engine could not see it conflict with a concurrent
    /// delete or state change.
    fn cache(&self) -> Option<&StoreCache> {
        if self.reruns {
            return None;
        }
        self.engine.cache()
    }
}

/// What a write job consumes (a new event, a record to store): moved into
/// the job's only call, or copied into each call when the engine may call
/// the job again ([`Engine::reruns_jobs`]), so the common path copies
/// nothing.
pub(crate) struct Owned<T>(Option<T>);

impl<T: Clone> Owned<T> {
    pub(crate) fn new(value: T) -> Owned<T> {
        Owned(Some(value))
    }

    /// The value for this call of the job.
    ///
    /// # Errors
    /// `Internal` when an engine that calls jobs once called it again.
    pub(crate) fn take(&mut self, shared: &Shared) -> Result<T> {
        let value = if shared.reruns {
            self.0.clone()
        } else {
            self.0.take()
        };
        value.ok_or_else(|| {
            Error::internal(
                "the engine called a write job again, yet declared that it calls jobs once",
            )
        })
    }
}

/// A job's result, carried out of the engine's closure.
struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T> Slot<T> {
    fn new() -> (Slot<T>, Slot<T>) {
        let shared = Arc::new(Mutex::new(None));
        (Slot(Arc::clone(&shared)), Slot(shared))
    }

    fn fill(&self, value: T) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(value);
        }
    }

    fn take(self) -> Result<T> {
        self.0
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .ok_or_else(|| Error::internal("the engine returned without running the job"))
    }
}

impl EngineStore {
    /// Runs `f` against one consistent view.
    async fn read<T, F>(&self, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Shared, &dyn Reader) -> Result<T> + Send + 'static,
    {
        let (slot, out) = Slot::new();
        let shared = Arc::clone(&self.0);
        let read = self
            .0
            .engine
            .read(Box::new(move |reader| {
                out.fill(f(&shared, reader)?);
                Ok(())
            }))
            .await;
        self.watch(read)?;
        slot.take()
    }

    /// Passes an engine call's outcome on; one that says the engine may be
    /// broken (`Internal`, `OutcomeUnknown`: a poisoned engine answers
    /// every later call so) first shuts the stores' cache for good, so no
    /// read is answered from it that the engine would refuse.
    fn watch<T>(&self, outcome: Result<T>) -> Result<T> {
        if let Err(e) = &outcome {
            if matches!(e.kind(), ErrorKind::Internal | ErrorKind::OutcomeUnknown) {
                if let Some(cache) = self.0.cache() {
                    cache.close();
                }
            }
        }
        outcome
    }

    /// Runs `f` as one write job over `scope` and answers once what it
    /// wrote (or read) is durable.
    async fn write<T, F>(&self, scope: Scope, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Shared, &mut dyn Txn) -> Result<T> + Send + 'static,
    {
        let (value, durable) = self.write_applied(scope, f).await?;
        self.watch(durable.wait().await)?;
        Ok(value)
    }

    /// [`EngineStore::write`], returning once applied (with what to await
    /// before acknowledging).
    async fn write_applied<T, F>(&self, scope: Scope, mut f: F) -> Result<(T, super::Durable)>
    where
        T: Send + 'static,
        F: FnMut(&Shared, &mut dyn Txn) -> Result<T> + Send + 'static,
    {
        let (slot, out) = Slot::new();
        let shared = Arc::clone(&self.0);
        let job: WriteJob = Box::new(move |txn| {
            out.fill(f(&shared, txn)?);
            Ok(())
        });
        let durable = self.watch(self.0.engine.write(scope, job).await)?;
        Ok((slot.take()?, durable))
    }
}

impl EngineStore {
    /// The page of `log` strictly after `after_seq` (at most `limit`
    /// entries), decoded, if the stores' cache holds it whole; `None`
    /// sends the read to the engine.
    async fn cached_page<T>(
        &self,
        log: &heads::Log,
        after_seq: Option<u64>,
        limit: usize,
        decode: impl Fn(&[u8]) -> Result<T>,
    ) -> Option<Result<Vec<T>>> {
        let first = super::keys::first_after(after_seq)?;
        let entries = self.0.cache()?.events(log, first, limit)?;
        Some(decode_page(entries.iter().map(|entry| Ok(&entry[..])), decode).await)
    }

    /// Answers a write job that put `log`'s head in the cache pending
    /// (with the token it returned, if the stores keep a cache): confirms
    /// it once the engine applied the job, then waits until durable. A
    /// job that failed may have put a head the engine did not apply: the
    /// log is forgotten.
    async fn settle<T>(
        &self,
        log: &heads::Log,
        applied: Result<((T, Option<u64>), super::Durable)>,
    ) -> Result<T> {
        match applied {
            Ok(((value, token), durable)) => {
                if let (Some(cache), Some(token)) = (self.0.cache(), token) {
                    cache.settle(log, token, true);
                }
                self.watch(durable.wait().await)?;
                Ok(value)
            }
            Err(e) => {
                if let Some(cache) = self.0.cache() {
                    cache.forget(log);
                }
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::Close for EngineStore {
    async fn close(&self) -> Result<()> {
        // First, so no read is answered from the cache once closing began.
        if let Some(cache) = self.0.engine.cache() {
            cache.close();
        }
        self.0.engine.close().await
    }
}

/// A record stored under a key made of its own fields.
pub(super) trait Keyed {
    /// The key it is stored under.
    fn own_key(&self) -> Vec<u8>;
}

impl Keyed for crate::Run {
    fn own_key(&self) -> Vec<u8> {
        keys::run(self.id)
    }
}

impl Keyed for crate::Session {
    fn own_key(&self) -> Vec<u8> {
        keys::session(&self.id)
    }
}

impl Keyed for crate::LogEntry {
    fn own_key(&self) -> Vec<u8> {
        keys::log_entry(&self.session_id, self.seq)
    }
}

impl Keyed for crate::ReleaseRecord {
    fn own_key(&self) -> Vec<u8> {
        keys::release_record(&self.name, self.seq)
    }
}

impl Keyed for crate::Supersession {
    fn own_key(&self) -> Vec<u8> {
        keys::supersession(&self.target)
    }
}

/// The record `bytes` stored under `key`, decoded with core's record
/// codec. One that belongs under another key (a value copied or moved
/// behind the store's back: its checksums are intact) is `Corrupted`,
/// never served as the record asked for.
pub(super) fn decode_keyed<T: DeserializeOwned + Keyed>(
    what: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T> {
    let record: T = crate::encoding::decode_record(what, bytes)?;
    if record.own_key() != key {
        return Err(Error::corrupted(format!(
            "the {what} stored under key {} belongs under key {} (moved behind the store's back)",
            hex::encode(key),
            hex::encode(record.own_key()),
        )));
    }
    Ok(record)
}

/// The record under `key`, decoded by [`decode_keyed`].
pub(super) fn get_record<T: DeserializeOwned + Keyed>(
    reader: &dyn Reader,
    table: Table,
    key: &[u8],
    what: &str,
) -> Result<Option<T>> {
    match reader.get(table, key)? {
        None => Ok(None),
        Some(bytes) => decode_keyed(what, key, &bytes).map(Some),
    }
}

/// Every value of a scan, decoded by [`decode_keyed`] from the engine's
/// borrowed bytes ([`Reader::scan_each`]: no copy per value).
fn scan_records<T: DeserializeOwned + Keyed>(
    reader: &dyn Reader,
    table: Table,
    (start, end): (&[u8], Option<&[u8]>),
    direction: Direction,
    limit: usize,
    what: &str,
) -> Result<Vec<T>> {
    // Pages are bounded (`page_limit`); one allocation instead of a
    // series of doublings that copy every decoded value again.
    let mut out = Vec::with_capacity(limit.min(PAGE_CAPACITY));
    reader.scan_each(table, start, end, direction, limit, &mut |key, value| {
        out.push(decode_keyed(what, key, value)?);
        Ok(())
    })?;
    Ok(out)
}

/// The most entries a page reserves room for up front.
const PAGE_CAPACITY: usize = 1024;

/// The values of one scan, copied by a read job into one buffer so that
/// the caller decodes them after the job ([`RawPage::decode`]): decoding
/// where the records are used, instead of on the engine's (blocking)
/// thread, keeps them in the caller's cache and allocator. Reading
/// 10 000 events in pages of 1 000 measured ~1.35× faster that way, and
/// steady where decoding on the engine's thread swung with the CPU the
/// scheduler picked (docs/benchmarks-peers.md). Used for the two
/// append-only logs (run events, session log), whose pages are read in
/// bulk and whose values are small.
#[derive(Default)]
pub(super) struct RawPage {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// The engine checked every value against a checksum of its own
    /// ([`Reader::checks_values`]).
    checked: bool,
}

/// [`decode_page`] lets other tasks run after this many values (about a
/// millisecond of decoding).
const DECODE_BATCH: usize = 1024;

impl RawPage {
    /// Copies the first `limit` values of `start..end`, in key order (see
    /// [`Reader::scan_each`]).
    pub(super) fn scan(
        reader: &dyn Reader,
        table: Table,
        (start, end): (&[u8], &[u8]),
        limit: usize,
    ) -> Result<RawPage> {
        let mut page = RawPage {
            bytes: Vec::new(),
            ends: Vec::with_capacity(limit.min(PAGE_CAPACITY)),
            checked: reader.checks_values(),
        };
        let forward = Direction::Forward;
        reader.scan_each(table, start, Some(end), forward, limit, &mut |_, value| {
            page.bytes.extend_from_slice(value);
            page.ends.push(page.bytes.len());
            Ok(())
        })?;
        Ok(page)
    }

    /// How many values the page holds.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Every value decoded, in scan order: by `decode` when the engine
    /// checked every value against a checksum of its own (damage in
    /// storage already came back as `Corrupted`, so the entries' hashes
    /// need no check on this hot path, as a blob's chunks need no CRC of
    /// the store's; `verify_*` re-hashes), else by `check`, which also
    /// checks each entry's hash.
    pub(super) async fn decode_entries<T>(
        self,
        decode: impl Fn(&[u8]) -> Result<T>,
        check: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        if self.checked {
            self.decode(decode).await
        } else {
            self.decode(check).await
        }
    }

    /// Every value decoded by `decode`, in scan order (see
    /// [`decode_page`]).
    pub(super) async fn decode<T>(self, decode: impl Fn(&[u8]) -> Result<T>) -> Result<Vec<T>> {
        let mut start = 0;
        let values = self.ends.iter().map(|&end| {
            let value = self.bytes.get(start..end);
            start = end;
            value.ok_or_else(|| Error::internal("a raw page's value bounds are out of order"))
        });
        decode_page(values, decode).await
    }
}

/// `entries`, a page of one log read after `after`, if they belong to it:
/// `place(entry)` says whether the entry names the log's owner, and its
/// seq. An entry of another owner, or whose seq does not rise past the
/// one before, was stored under a key not its own (copied behind the
/// store's back; hashes alone do not show that): `Corrupted` naming
/// `log`, never served.
pub(super) fn own_entries<T>(
    log: &str,
    entries: Vec<T>,
    after: Option<u64>,
    place: impl Fn(&T) -> (bool, u64),
) -> Result<Vec<T>> {
    let mut last = after;
    for entry in &entries {
        let (owned, seq) = place(entry);
        if !owned || last.is_some_and(|last| seq <= last) {
            return Err(Error::corrupted(format!(
                "{log}: the entry stored after seq {} is not its own (it names seq {seq} \
                 {}); the log was edited behind the store's back",
                last.map_or_else(|| "none".to_owned(), |l| l.to_string()),
                if owned { "of this log" } else { "of another" },
            )));
        }
        last = Some(seq);
    }
    Ok(entries)
}

/// Every value decoded by `decode`, in order, yielding to the executor
/// every [`DECODE_BATCH`] values so a large page does not hold a worker
/// thread for long.
async fn decode_page<'a, T>(
    values: impl ExactSizeIterator<Item = Result<&'a [u8]>> + Send,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(values.len());
    for (n, value) in values.enumerate() {
        if n > 0 && n % DECODE_BATCH == 0 {
            tokio::task::yield_now().await;
        }
        out.push(decode(value?)?);
    }
    Ok(out)
}
