//! The RocksDB backend (`rocksdb:///abs/dir`): RocksDB supplies the seam.
//!
//! One column family per [`Table`]; a [`Batch`] is one `WriteBatch`
//! (atomic across column families). Durable by default: every batch is
//! written with `sync = true`, so the WAL is fsynced before `Ok`; RocksDB
//! groups concurrent writers into one WAL write and one fsync.
//! `?durability=buffered` writes the WAL without the fsync (survives
//! `kill -9`, not power loss). Scans are always bounded by explicit
//! `iterate_lower_bound` / `iterate_upper_bound`, never by a prefix
//! iterator. Options are explained in `docs/kv.md`. RocksDB's `LOCK` file
//! refuses a second opener, reported as `Unavailable`.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options,
    ReadOptions, SliceTransform, WriteBatch, WriteOptions, DB,
};
use stowage_core::{Capabilities, Durability, Error, ErrorKind, Result, StoreEnv, Stores};

use super::options::KvUrl;
use super::seam::{Batch, Direction, Op, OrderedKv, RangeSize, Table};

/// Length of a run id, the prefix of every `RunEvents` key.
const RUN_PREFIX: usize = 16;
/// Values at least this large go to blob files (the 1 MiB blob chunks).
const MIN_BLOB_FILE_VALUE: u64 = 64 * 1024;

/// An open RocksDB database with one column family per table.
pub(crate) struct RocksKv {
    db: DB,
    sync: bool,
    /// Set by a failed write: RocksDB then keeps its background error and
    /// refuses every later write (even once space is freed) until the
    /// database is reopened, so the store says so instead of repeating a
    /// stale error: `Unsupported` after a medium turned read-only,
    /// `Internal` otherwise, with the first failure's text.
    failed: parking_lot::RwLock<Option<(ErrorKind, String)>>,
}

/// Opens the store `parsed` describes (from a URL or typed options).
///
/// # Errors
/// As [`open`].
pub(crate) async fn open_parsed(parsed: KvUrl, env: StoreEnv) -> Result<Stores> {
    let capabilities = capabilities(&parsed);
    let engine = open(&parsed).await?;
    super::kv_stores(engine, env, capabilities)
}

/// What a RocksDB store can do.
pub(crate) fn capabilities(parsed: &KvUrl) -> Capabilities {
    Capabilities::new(
        "rocksdb",
        parsed.durability.level(),
        false,
        parsed.max_blob_size,
    )
}

/// Opens the engine on the blocking pool.
///
/// # Errors
/// `Unavailable` when another opener holds the directory; library errors
/// mapped by kind.
pub(crate) async fn open(parsed: &KvUrl) -> Result<Arc<RocksKv>> {
    if parsed.read_only {
        return Err(Error::unsupported(format!(
            "rocksdb store {}: mode=read_only is not supported yet (mode=read_only works for \
             file:// stores)",
            parsed.dir.display()
        )));
    }
    let dir = parsed.dir.clone();
    let sync = parsed.durability == Durability::Sync;
    tokio::task::spawn_blocking(move || RocksKv::open(&dir, sync))
        .await
        .map_err(|e| Error::internal(format!("opening RocksDB failed: {e}")))?
}

/// Options of one column family.
fn table_options(table: Table, cache: &Cache) -> Options {
    let mut block = BlockBasedOptions::default();
    // Point lookups dominate (run record, idempotency key, blob header,
    // supersession by target, session record): a 10 bits/key bloom filter
    // skips SST files that cannot hold the key.
    block.set_bloom_filter(10.0, false);
    block.set_block_cache(cache);
    block.set_cache_index_and_filter_blocks(true);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&block);
    opts.set_compression_type(DBCompressionType::Lz4);
    match table {
        Table::RunEvents => {
            // Events are read as "run R from seq N": a prefix bloom on the
            // run id skips SST files that hold none of R's events.
            opts.set_prefix_extractor(SliceTransform::create_fixed_prefix(RUN_PREFIX));
            opts.set_memtable_prefix_bloom_ratio(0.1);
        }
        Table::Blobs => {
            // 1 MiB chunks go to blob files instead of being rewritten by
            // every compaction of the LSM tree.
            opts.set_enable_blob_files(true);
            opts.set_min_blob_size(MIN_BLOB_FILE_VALUE);
            opts.set_blob_compression_type(DBCompressionType::Lz4);
            opts.set_enable_blob_gc(true);
        }
        _ => {}
    }
    opts
}

impl RocksKv {
    fn open(dir: &Path, sync: bool) -> Result<Arc<RocksKv>> {
        let cache = Cache::new_lru_cache(32 * 1024 * 1024);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_db_write_buffer_size(64 * 1024 * 1024);
        db_opts.set_bytes_per_sync(1024 * 1024);
        db_opts.set_keep_log_file_num(4);
        let families = Table::ALL
            .iter()
            .map(|&t| ColumnFamilyDescriptor::new(t.name(), table_options(t, &cache)));
        let db = DB::open_cf_descriptors(&db_opts, dir, families).map_err(|e| {
            map_err(e).context(format_args!("opening RocksDB at {}", dir.display()))
        })?;
        Ok(Arc::new(RocksKv {
            db,
            sync,
            failed: parking_lot::RwLock::new(None),
        }))
    }

    fn cf(&self, table: Table) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(table.name())
            .ok_or_else(|| Error::internal(format!("column family {} is missing", table.name())))
    }
}

/// Maps a RocksDB error into the stowage error kinds (keeping the message).
fn map_err(err: rocksdb::Error) -> Error {
    use rocksdb::ErrorKind as R;
    let text = err.to_string();
    // Only contention on the LOCK file means "open elsewhere": every error
    // about that file names it, a denied permission or a read-only medium
    // too, and those are not worth a retry.
    let contended = [
        "Resource temporarily unavailable",
        "No locks available",
        "lock hold by current process",
    ];
    let kind = if text.contains("/LOCK") && contended.iter().any(|c| text.contains(c)) {
        return Error::new(
            ErrorKind::Unavailable,
            "the RocksDB store is already open (by this or another process); close it first",
        )
        .with_source(err);
    } else if text.contains("Read-only file system") {
        return Error::unsupported(
            "RocksDB: the file system is read-only, so the store cannot be opened \
             (mode=read_only works for file:// stores): copy the directory to writable \
             storage to inspect it",
        )
        .with_source(err);
    } else if text.contains("No space left") {
        ErrorKind::StorageFull
    } else {
        match err.kind() {
            R::Corruption => ErrorKind::Corrupted,
            R::NotSupported => ErrorKind::Unsupported,
            R::InvalidArgument => ErrorKind::InvalidInput,
            R::Busy | R::TryAgain | R::TimedOut => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    };
    Error::new(kind, format!("RocksDB: {text}")).with_source(err)
}

/// Maps the error of a batch write. RocksDB appends the batch to its WAL
/// before anything else can fail (the WAL's sync, the memtable), and
/// replays what reached the WAL on reopen: unless the write was refused
/// before it began, or its WAL append found the disk full (a torn WAL
/// record is dropped on reopen), it may have been applied.
fn map_write_err(err: rocksdb::Error) -> Error {
    use rocksdb::ErrorKind as R;
    let text = err.to_string();
    if matches!(
        err.kind(),
        R::Busy | R::TryAgain | R::InvalidArgument | R::NotSupported
    ) || text.contains("No space left")
    {
        return map_err(err);
    }
    // The WAL append itself was refused by a medium turned read-only:
    // nothing reached the WAL. RocksDB then refuses every later write
    // with the same error, before appending anything.
    if text.contains("While appending to file") && text.contains("Read-only file system") {
        return Error::unsupported(format!(
            "RocksDB: the file system turned read-only: nothing was applied, and writes are \
             refused until the store is reopened on writable storage (reads still work): {text}"
        ))
        .with_source(err);
    }
    Error::new(
        ErrorKind::OutcomeUnknown,
        format!(
            "RocksDB: a write failed and may or may not be applied; the store must be reopened: \
             {text}"
        ),
    )
    .with_source(err)
}

impl OrderedKv for RocksKv {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(table)?, key).map_err(map_err)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if end.is_some_and(|end| end <= start) || limit == 0 {
            return Ok(Vec::new());
        }
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(start.to_vec());
        if let Some(end) = end {
            read.set_iterate_upper_bound(end.to_vec());
        }
        // Use the prefix bloom only for a forward scan within one run;
        // everything else iterates in total order (bounded above).
        let within_one_run = table == Table::RunEvents
            && direction == Direction::Forward
            && end.is_some_and(|end| {
                start.len() >= RUN_PREFIX
                    && end.len() >= RUN_PREFIX
                    && start.get(..RUN_PREFIX) == end.get(..RUN_PREFIX)
            });
        if within_one_run {
            read.set_prefix_same_as_start(true);
        } else {
            read.set_total_order_seek(true);
        }
        let mode = match direction {
            Direction::Forward => IteratorMode::From(start, rocksdb::Direction::Forward),
            Direction::Reverse => IteratorMode::End,
        };
        self.db
            .iterator_cf_opt(self.cf(table)?, read, mode)
            .take(limit)
            .map(|item| {
                item.map(|(k, v)| (k.into_vec(), v.into_vec()))
                    .map_err(map_err)
            })
            .collect()
    }

    fn compact(&self) -> Result<()> {
        for table in Table::ALL {
            self.db
                .compact_range_cf(self.cf(table)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<Option<RangeSize>> {
        let mut size = RangeSize::default();
        if end.is_some_and(|end| end <= start) {
            return Ok(Some(size));
        }
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(start.to_vec());
        if let Some(end) = end {
            read.set_iterate_upper_bound(end.to_vec());
        }
        read.set_total_order_seek(true);
        // A statistics pass must not evict the working set.
        read.fill_cache(false);
        let mut iter = self.db.raw_iterator_cf_opt(self.cf(table)?, read);
        iter.seek(start);
        while iter.valid() {
            size.entries += 1;
            size.bytes += iter.value().map_or(0, |v| v.len() as u64);
            iter.next();
        }
        iter.status().map_err(map_err)?;
        Ok(Some(size))
    }

    fn write(&self, batch: Batch) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => wb.put_cf(self.cf(table)?, key, value),
                Op::Delete { table, key } => wb.delete_cf(self.cf(table)?, key),
                Op::DeleteRange { table, start, end } => {
                    wb.delete_range_cf(self.cf(table)?, start, end);
                }
            }
        }
        if let Some((kind, why)) = &*self.failed.read() {
            return Err(Error::new(
                *kind,
                format!(
                    "the RocksDB store refuses writes after a failed write ({why}); close and \
                     reopen it"
                ),
            ));
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.sync);
        self.db.write_opt(wb, &opts).map_err(|e| {
            let why = e.to_string();
            let err = map_write_err(e);
            // A medium turned read-only stays so: no retry helps.
            let later = match err.kind() {
                ErrorKind::Unsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Internal,
            };
            let mut failed = self.failed.write();
            if failed.is_none() {
                *failed = Some((later, why));
            }
            err
        })
    }

    fn close(&self) -> Result<()> {
        if self.sync && self.failed.read().is_some() {
            // Every acknowledged write was synced with it, and after a
            // failed write RocksDB refuses the flush ("Writer has
            // previous error").
            return Ok(());
        }
        // Under `durability=buffered` the WAL is not synced yet.
        self.db
            .flush_wal(true)
            .map_err(|e| map_err(e).context("syncing the RocksDB WAL on close"))
    }
}
