//! The file backend: our own crash-safe embedded engine behind the
//! ordered-KV seam. Design, formats and invariants: `docs/file-engine.md`.
//!
//! - A segmented write-ahead log holds every batch as one CRC32C-framed
//!   record ([`record`]); segments rotate at a configured size.
//! - An in-memory index maps every key to the offset of its value on disk
//!   ([`index`]); reads fetch values by offset and check their CRC32C.
//! - Group commit: concurrent writers share one fsync ([`wal`]).
//! - Recovery truncates a torn tail and refuses other damage ([`recovery`]).
//! - Checkpoints make reopening fast; compaction reclaims space ([`maintain`]).
//! - All file-system calls go through the I/O seam ([`vfs`]), which tests
//!   replace with a simulated disk.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use stowage_core::{Capabilities, Durability, Error, Result, StoreEnv, Stores};

use self::index::{Index, Loc};
use self::recovery::{segment_name, RecoveryReport};
use self::vfs::{RealFs, VFile, Vfs};
use self::wal::{Commit, Wal};
use crate::kv::seam::{Batch, Direction, DurableFuture, OrderedKv, RangeSize, Table, Visit};

mod blocks;
mod checkpoint;
mod index;
mod maintain;
mod pack;
mod pool;
mod read;
mod record;
mod recovery;
mod stranded;
pub(crate) mod url_options;
mod vfs;
mod wal;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

/// A scan hit before its value is read: key, location, segment file.
type Hit = (Vec<u8>, Loc, Option<Arc<dyn VFile>>);
/// Where a value is: its location and its segment file (if open).
type Placed = (Loc, Option<Arc<dyn VFile>>);

/// How the engine is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileOptions {
    /// A segment is sealed and the next one started once it would exceed
    /// this many bytes (a larger record gets a segment of its own).
    pub(crate) segment_size: u64,
    /// `Sync`: fsync before acknowledging. `Buffered`: acknowledge once the
    /// write reached the OS (survives `kill -9`, not power loss).
    pub(crate) durability: Durability,
    /// The largest batch payload, checked before anything is allocated.
    pub(crate) max_record_size: usize,
    /// Bytes of log written between automatic checkpoints (0: only on
    /// [`FileKv::close`] and explicit calls).
    pub(crate) checkpoint_interval: u64,
    /// Open a damaged store anyway, keeping what is intact and reporting
    /// what was lost in [`FileKv::recovery_report`].
    pub(crate) salvage: bool,
    /// `mode=read_only`: inspect a store (say on a read-only mount or a
    /// snapshot) without changing anything: no lock file, no recovery
    /// truncation or clean-up, no fsync, no checkpoint; every write is
    /// refused with `Unsupported`. A torn tail is left in place and
    /// ignored.
    pub(crate) read_only: bool,
    /// The most entries one pack takes: compaction holds each with its
    /// old and new location until it installs them, so this bounds its
    /// memory (a larger compaction writes several packs). Not a URL
    /// option; tests lower it.
    pub(crate) pack_entries: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            segment_size: 64 << 20,
            durability: Durability::Sync,
            max_record_size: 64 << 20,
            checkpoint_interval: 256 << 20,
            salvage: false,
            read_only: false,
            pack_entries: 1 << 20,
        }
    }
}

/// The engine: one open store directory.
pub(crate) struct FileKv {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    opts: FileOptions,
    index: RwLock<Index>,
    segs: RwLock<BTreeMap<u64, Arc<dyn VFile>>>,
    wal: Mutex<Wal>,
    commit: Mutex<Commit>,
    synced: Condvar,
    /// Wakes async waiters when a group-commit round ends.
    round_done: tokio::sync::Notify,
    poison: RwLock<Option<String>>,
    /// Writes are refused (reads go on) after a failure that applied
    /// nothing but may have left bytes past the log's tail: a failed write
    /// of a record or of zeros ahead whose cut-back failed too, a segment
    /// that could not be cut back to seal it (the medium turned read-only,
    /// say). The kind and cause later writers are told (see
    /// [`FileKv::stop_writes`]).
    write_stop: RwLock<Option<(stowage_core::ErrorKind, String)>>,
    /// Frames a file system turned read-only refused to take from the
    /// WAL's buffer (`stranded.rs`; only ever set once `in_doubt_from` is).
    stranded: RwLock<Option<stranded::Stranded>>,
    /// The first record never to be reported durable (`u64::MAX`: none;
    /// `stranded.rs`).
    in_doubt_from: AtomicU64,
    /// Held around every fsync of a log segment, with the poison check
    /// before it and the poisoning after a failure (see
    /// [`FileKv::sync_log`]).
    log_sync: Mutex<()>,
    maintenance: Mutex<()>,
    /// The log grew by the checkpoint interval; whoever sees this runs
    /// [`FileKv::maybe_maintain`] (off the store's writer thread).
    maintenance_wanted: AtomicBool,
    /// The WAL holds frames not yet written to the file (see `Wal::buf`).
    unflushed: AtomicBool,
    report: RecoveryReport,
    /// The lock file's guard; taken out (released) by [`FileKv::close`].
    lock: Mutex<Option<Box<dyn Any + Send + Sync>>>,
    /// [`FileKv::close`] ran: `Drop` has nothing left to do.
    closed: AtomicBool,
    /// Read buffers of large values, lent out and reused (`pool.rs`).
    pool: Arc<pool::BufPool>,
    /// Sealed segments found not to compress (not sampled again).
    incompressible: Mutex<std::collections::BTreeSet<u64>>,
    /// Live values that failed their checks when automatic compaction
    /// read them (table, key, location): their files are left out of
    /// automatic compaction while the key still points there, so one
    /// damaged value does not fail every later maintenance.
    damaged: Mutex<Vec<(Table, Vec<u8>, Loc)>>,
}

impl FileKv {
    /// Opens (creating if needed) the store in `dir` on the real file system.
    ///
    /// # Errors
    /// `Unavailable` naming the holder when another opener holds the lock;
    /// `Corrupted` naming segment and offset for damage other than a torn
    /// tail (unless `salvage`); `InvalidInput` for bad options; I/O errors.
    pub(crate) fn open(dir: &Path, opts: FileOptions) -> Result<FileKv> {
        Self::open_on(Arc::new(RealFs), dir, opts)
    }

    /// Opens the store in `dir` on the file system `vfs` (the simulated
    /// disk in tests).
    pub(crate) fn open_on(vfs: Arc<dyn Vfs>, dir: &Path, opts: FileOptions) -> Result<FileKv> {
        if opts.segment_size < 4096 {
            return Err(Error::invalid_input(
                "segment_size must be at least 4096 bytes",
            ));
        }
        if opts.max_record_size < 1024 || opts.max_record_size > (u32::MAX as usize) {
            return Err(Error::invalid_input(
                "max_record_size must be between 1 KiB and 4 GiB",
            ));
        }
        let ctx = |e: std::io::Error| {
            Error::from(e).context(format!("opening file store {}", dir.display()))
        };
        let lock: Box<dyn Any + Send + Sync> = if opts.read_only {
            Box::new(())
        } else {
            // A brand-new store must survive power loss: its directory's
            // entry in the parent is fsynced (the lock file's and the
            // first segment's entries are synced with the first segment).
            vfs::create_dir_durably(&*vfs, dir)
                .map_err(|e| read_only_fs(dir, e).unwrap_or_else(&ctx))?;
            vfs.lock(&dir.join("LOCK"))?
        };
        let rec = recovery::recover(&*vfs, dir, &opts)?;
        let file = rec
            .segs
            .get(&rec.active)
            .cloned()
            .ok_or_else(|| Error::internal("recovery lost the active segment"))?;
        // What recovery read may still sit only in the page cache, and the
        // directory entries of files a crashed process created (a segment
        // it made at rotation, a checkpoint it renamed) may not be durable
        // yet: acknowledging writes that depend on them needs both synced.
        // In every mode: the engine counts everything replayed as synced
        // (the watermark of every later record, a close's checkpoint).
        if !opts.read_only {
            rewrite(&*file, rec.unproven, rec.tail).map_err(ctx)?;
            file.sync_data().map_err(ctx)?;
            vfs.sync_dir(dir).map_err(ctx)?;
        }
        let kv = FileKv {
            dir: dir.to_path_buf(),
            opts,
            index: RwLock::new(rec.index),
            segs: RwLock::new(rec.segs),
            wal: Mutex::new(Wal {
                active: rec.active,
                file,
                tail: rec.tail,
                filled: rec.filled,
                buf: Vec::new(),
                buf_seq: rec.next_seq,
                next_seq: rec.next_seq,
                // Anything replayed makes the next checkpoint worthwhile.
                since_checkpoint: rec.report.replayed_records.min(1),
            }),
            commit: Mutex::new(Commit {
                synced: rec.next_seq,
                syncing: false,
            }),
            synced: Condvar::new(),
            round_done: tokio::sync::Notify::new(),
            poison: RwLock::new(None),
            write_stop: RwLock::new(None),
            stranded: RwLock::new(None),
            in_doubt_from: AtomicU64::new(u64::MAX),
            log_sync: Mutex::new(()),
            maintenance: Mutex::new(()),
            maintenance_wanted: AtomicBool::new(false),
            unflushed: AtomicBool::new(false),
            report: rec.report,
            lock: Mutex::new(Some(lock)),
            closed: AtomicBool::new(false),
            pool: Arc::default(),
            incompressible: Mutex::default(),
            damaged: Mutex::default(),
            vfs,
        };
        // What salvage gave up (missing segments before the replay's
        // start, say) would stop a plain open again until some later
        // checkpoint: one now records where the store starts.
        if kv.opts.salvage && !kv.opts.read_only && !kv.report.lost.is_empty() {
            kv.checkpoint()?;
        }
        Ok(kv)
    }

    /// Closes the engine for `Stores::close`: writes out buffered frames,
    /// checkpoints when anything was written since the last checkpoint
    /// (whatever `checkpoint_interval` says), fsyncs every segment (also under
    /// `durability=buffered`), then releases the lock file, so the store
    /// can be opened again at once (without the checkpoint when writes were
    /// stopped, [`FileKv::stop_writes`]). The lock is released even when a step
    /// fails; `Drop` then does nothing. The caller must not write through
    /// this engine afterwards (the store layer's gate refuses it).
    ///
    /// # Errors
    /// The poison error of an engine whose fsync failed earlier, or the
    /// error of a failed write, checkpoint or fsync here.
    pub(crate) fn close(&self) -> Result<()> {
        let result = self.close_steps();
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        drop(self.lock.lock().take());
        result
    }

    fn close_steps(&self) -> Result<()> {
        self.check_poison()?;
        if self.opts.read_only {
            // Nothing was written, and a read-only medium takes no fsync.
            return Ok(());
        }
        let (since_checkpoint, next_seq) = {
            let mut w = self.wal.lock();
            if let Err(e) = self.flush_locked(&mut w) {
                // Stranded frames are answered as in doubt.
                if self.in_doubt_from().is_none() {
                    return Err(e);
                }
            }
            (w.since_checkpoint, w.next_seq)
        };
        // Writes were stopped: no checkpoint (the next open replays the
        // log), but what was appended is still made durable below, up to
        // the records in doubt.
        if since_checkpoint > 0 && self.write_stop.read().is_none() {
            self.checkpoint()?;
        }
        let end = self.in_doubt_from().map_or(next_seq, |s| s.min(next_seq));
        if end > 0 {
            self.block_until_durable(end - 1)?;
        }
        if self.write_stop.read().is_some() && self.opts.durability == Durability::Sync {
            // Every record is durable (above) or in doubt: the fsyncs
            // below would add nothing, and a medium turned read-only may
            // refuse them.
            return self.closed_in_doubt();
        }
        let segs: Vec<(u64, Arc<dyn VFile>)> = self
            .segs
            .read()
            .iter()
            .map(|(n, f)| (*n, Arc::clone(f)))
            .collect();
        for (seg, file) in segs {
            self.sync_log(
                &format!("syncing segment {} on close", segment_name(seg)),
                || file.sync_data(),
            )?;
        }
        self.closed_in_doubt()
    }

    /// What recovery found and did when this engine was opened.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Where the value of `key` is, and its segment file.
    fn locate(&self, table: Table, key: &[u8]) -> Result<Option<Placed>> {
        self.check_poison()?;
        let index = self.index.read();
        Ok(index
            .table(table)
            .get(key)
            .map(|loc| (loc, self.segs.read().get(&loc.seg).cloned())))
    }

    /// The keys of a scan with where their values are, in order, taken
    /// under the index lock (released before any value is read).
    fn hits(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Hit>> {
        self.check_poison()?;
        if end.is_some_and(|e| e <= start) || limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.index.read();
        let segs = self.segs.read();
        let range = index.table(table).range(start, end);
        let pick = |(k, l): (Vec<u8>, Loc)| {
            let file = segs.get(&l.seg).cloned();
            (k, l, file)
        };
        Ok(match direction {
            Direction::Forward => range.take(limit).map(pick).collect(),
            Direction::Reverse => range.rev().take(limit).map(pick).collect(),
        })
    }
}

impl Drop for FileKv {
    /// Writes out frames not yet written, then checkpoints (best effort)
    /// when anything was written since the last one, so the next open
    /// replays little. The checkpoint is skipped when automatic checkpoints
    /// are off (`checkpoint_interval == 0`); nothing runs once the engine
    /// is poisoned or was closed ([`FileKv::close`] did all of it and
    /// reported errors). On a multi-threaded tokio worker this runs inside
    /// `block_in_place`, so the runtime moves its other tasks away.
    fn drop(&mut self) {
        if self.poison.read().is_some()
            || self.opts.read_only
            || self.closed.load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let work = || {
            // Frames not yet written reach the OS, as they would have
            // before the WAL buffered them.
            let _ = self.flush_locked(&mut self.wal.lock());
            if self.opts.checkpoint_interval > 0 && self.wal.lock().since_checkpoint > 0 {
                let _ = self.checkpoint();
            }
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(work);
        } else {
            work();
        }
    }
}

/// Writes the bytes `from..to` of `file` again, as they read now. After a
/// failed fsync (a process that died of it, then this open in the same
/// boot) Linux may have dropped those pages from the disk's queue while
/// still showing them in the page cache: recovery read them as written,
/// and the open's fsync would persist nothing of them. Written again, the
/// fsync persists them, so writes acknowledged after this open do not
/// stand on bytes the disk never got. Only records no later record proves
/// synced are rewritten: usually the last group-commit round, or nothing.
fn rewrite(file: &dyn VFile, from: u64, to: u64) -> std::io::Result<()> {
    if from >= to {
        return Ok(());
    }
    let len = usize::try_from(to - from)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "region too large"))?;
    let mut bytes = vec![0u8; len];
    file.read_at(&mut bytes, from)?;
    file.write_at(&bytes, from)
}

impl OrderedKv for FileKv {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.locate(table, key)? {
            Some((loc, file)) => self.read_value(table, loc, file).map(Some),
            None => Ok(None),
        }
    }

    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        match self.locate(table, key)? {
            Some((loc, file)) => self.read_bytes(table, loc, file).map(Some),
            None => Ok(None),
        }
    }

    /// Every value read is checked against the CRC32C its index entry
    /// keeps ([`FileKv::read_value`]).
    fn checks_values(&self) -> bool {
        true
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<Option<RangeSize>> {
        self.check_poison()?;
        let mut size = RangeSize::default();
        if end.is_some_and(|e| e <= start) {
            return Ok(Some(size));
        }
        let index = self.index.read();
        for loc in index.table(table).locs(start, end) {
            size.entries += 1;
            size.bytes += u64::from(loc.len);
        }
        Ok(Some(size))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let hits = self.hits(table, start, end, direction, limit)?;
        let mut out = Vec::with_capacity(hits.len());
        self.visit_values(table, hits, &mut |key, value| {
            out.push((key.to_vec(), value.to_vec()));
            Ok(())
        })?;
        Ok(out)
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
        let hits = self.hits(table, start, end, direction, limit)?;
        self.visit_values(table, hits, visit)
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.write_batch(&batch)
    }

    fn group_commits(&self) -> bool {
        true
    }

    fn write_deferred(&self, batch: Batch) -> Result<Option<u64>> {
        self.append_batch(&batch)
    }

    fn unsynced_ticket(&self) -> Option<u64> {
        self.unsynced_seq()
    }

    fn wait_durable_blocking(&self, ticket: u64) -> Result<()> {
        self.block_until_durable(ticket)
    }

    fn wait_durable(self: Arc<Self>, ticket: u64) -> DurableFuture {
        Box::pin(self.durable(ticket))
    }

    fn take_maintenance(&self) -> bool {
        FileKv::take_maintenance(self)
    }

    fn maintain(&self) -> Result<()> {
        self.maybe_maintain();
        self.check_poison()
    }

    fn compact(&self) -> Result<()> {
        FileKv::compact(self).map(drop)
    }

    fn close(&self) -> Result<()> {
        FileKv::close(self)
    }
}

/// The error for a store that cannot be opened for writing because its
/// file system is read-only: `Unsupported`, pointing at `mode=read_only`.
pub(crate) fn read_only_medium(dir: &Path) -> Error {
    Error::unsupported(format!(
        "file store {}: the file system is read-only, so the store cannot be opened for \
         writing; add ?mode=read_only to the URL to inspect and verify it without writing",
        dir.display()
    ))
}

/// `Ok(error)` for an I/O error caused by a read-only file system;
/// `Err(e)` (the error back) otherwise.
fn read_only_fs(dir: &Path, e: std::io::Error) -> std::result::Result<Error, std::io::Error> {
    if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
        Ok(read_only_medium(dir).with_source(e))
    } else {
        Err(e)
    }
}

/// Opens the store in `dir` (absolute) with the engine options `opts`.
///
/// # Errors
/// As [`FileKv::open`].
pub(crate) async fn open_parts(
    dir: PathBuf,
    opts: FileOptions,
    max_blob_size: u64,
    env: StoreEnv,
) -> Result<Stores> {
    let caps = capabilities(opts.durability, max_blob_size);
    let engine = tokio::task::spawn_blocking(move || FileKv::open(&dir, opts))
        .await
        .map_err(|e| Error::internal(format!("opening the file store failed: {e}")))??;
    crate::kv::kv_stores(Arc::new(engine), env, caps)
}

/// What a file store opened from `url` can do (`InvalidInput` for a bad
/// URL), without opening it.
pub(crate) fn capabilities_for(url: &url::Url) -> Result<Capabilities> {
    let (_, opts, max_blob_size) = url_options::parse(url)?;
    Ok(capabilities(opts.durability, max_blob_size))
}

/// What the file backend can do: power-loss safe unless `buffered`.
fn capabilities(durability: Durability, max_blob_size: u64) -> Capabilities {
    Capabilities::new("file", durability.level(), false, max_blob_size)
}
