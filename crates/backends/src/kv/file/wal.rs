//! The write path: appending a batch as one record, segment rotation, and
//! group commit (concurrent writers share one fsync; a failed fsync
//! poisons the engine).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use stowage_core::{Durability, Error, ErrorKind, Result};

use super::record::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::recovery::create_segment;
use super::vfs::VFile;
use super::FileKv;
use crate::kv::seam::Batch;

/// The tail of the log (guarded by `FileKv::wal`).
pub(crate) struct Wal {
    pub(crate) active: u64,
    pub(crate) file: Arc<dyn VFile>,
    pub(crate) tail: u64,
    /// The active file is at least this long, zeros past what was written
    /// (see [`FileKv::fill_ahead`]).
    pub(crate) filled: u64,
    /// Frames appended (and applied to the index) but not yet written to
    /// the file: they end at `tail`. Written by [`FileKv::flush_locked`]
    /// before every fsync, at rotation, when a reader may need them, and
    /// once they reach [`FLUSH_AT`] bytes.
    pub(crate) buf: Vec<u8>,
    /// The seq of the first record in `buf` (when it holds any).
    pub(crate) buf_seq: u64,
    pub(crate) next_seq: u64,
    pub(crate) since_checkpoint: u64,
}

/// How far ahead of the tail the active segment is filled with zeros at a
/// time (capped at the segment size).
const FILL_STEP: u64 = 1 << 20;

/// Unwritten frames are written once they reach this many bytes.
const FLUSH_AT: usize = 1 << 20;

/// A frame at least this large that does not fit in the zeros already
/// reserved is written at once from its own buffer, growing the file,
/// instead of being copied into [`Wal::buf`] behind a zero fill of its
/// size (see [`FileKv::append_locked`]).
const DIRECT_AT: usize = 64 << 10;

/// Group-commit state (guarded by `FileKv::commit`).
#[derive(Debug, Default)]
pub(crate) struct Commit {
    /// Every record with a seq below this is on stable storage.
    pub(crate) synced: u64,
    /// A leader is running fsync right now.
    pub(crate) syncing: bool,
}

impl FileKv {
    /// Fails when a failed fsync (or a failed write of records the index
    /// already shows) poisoned the engine.
    pub(crate) fn check_poison(&self) -> Result<()> {
        match &*self.poison.read() {
            None => Ok(()),
            Some(why) => Err(Error::internal(format!(
                "file store {} is unusable after {why}; close and reopen it",
                self.dir.display()
            ))),
        }
    }

    /// Fails when the store was opened with `mode=read_only`, or when
    /// writes were stopped ([`FileKv::stop_writes`]).
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.opts.read_only {
            return Err(Error::unsupported(format!(
                "file store {} was opened with mode=read_only: writes are refused (reopen it \
                 without mode=read_only, on writable storage, to change it)",
                self.dir.display()
            )));
        }
        if let Some((kind, why)) = &*self.write_stop.read() {
            return Err(Error::new(
                *kind,
                format!(
                    "file store {} refuses writes since {why}; reads still work, and the store \
                     takes writes again once reopened on writable storage",
                    self.dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Runs `sync`, an fsync of a log segment, unless the engine is
    /// poisoned, and poisons it if the fsync fails — all under
    /// `log_sync`, so no other log fsync runs between a failure and the
    /// poisoning. That order is what makes a later success mean anything:
    /// after a failed fsync Linux drops the dirty pages and reports the
    /// next fsync of the file as a success, although what it dropped is
    /// lost. Without it, a rotation sealing the segment while a round's
    /// fsync of it failed could mark the dropped records durable.
    ///
    /// # Errors
    /// As [`FileKv::check_poison`] when already poisoned (nothing synced);
    /// `OutcomeUnknown` when the fsync failed.
    pub(crate) fn sync_log(
        &self,
        what: &str,
        sync: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<()> {
        let _order = self.log_sync.lock();
        self.check_poison()?;
        match sync() {
            Ok(()) => Ok(()),
            // A medium turned read-only: every record not yet durable is
            // put in doubt and writes stop, but nothing poisons
            // (`stranded.rs`). The caller's own change, if any (a
            // rotation's record), was not applied.
            Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
                self.doubt_from(self.commit.lock().synced);
                Err(self.stop_writes(what, e, None))
            }
            Err(e) => Err(self.poison_with(what, e)),
        }
    }

    /// Poisons the engine after `what`, a fsync, failed with `e`,
    /// returning the error for the caller (whose write may or may not be
    /// on disk).
    pub(crate) fn poison_with(&self, what: &str, e: std::io::Error) -> Error {
        self.poison_after("a failed fsync", what, e)
    }

    /// [`FileKv::poison_with`] for a failure that is no fsync (`cause`
    /// says what it was, for the message of every later call).
    pub(super) fn poison_after(&self, cause: &str, what: &str, e: std::io::Error) -> Error {
        let why = format!("{what}: {e}");
        self.poison(&format!("{cause} ({why})"));
        Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "file store {}: {why}; the write may or may not be durable and the store must be reopened",
                self.dir.display()
            ),
        )
        .with_source(e)
    }

    /// Marks the engine unusable after `why` (the first cause is kept).
    fn poison(&self, why: &str) {
        let mut p = self.poison.write();
        if p.is_none() {
            *p = Some(why.to_string());
        }
    }

    /// Stops writes (reads go on) after `what` failed with `e` while
    /// undoing a failed change (`cause`, when there was one) that applied
    /// nothing: the index and the WAL's buffer never showed the record,
    /// but bytes past the log's tail (zeros, part of the record) may
    /// remain, so the tail can no longer be trusted to be where the next
    /// record may go. Recovery reads such bytes as the clean end of the
    /// segment (zeros) or a torn tail (part of a record no later record
    /// proves durable) and cuts them. Returns the caller's error:
    /// `Unsupported` when the file system turned read-only (it refused
    /// the change), else `Internal` — never `OutcomeUnknown`, since
    /// nothing was applied. Unlike a failed fsync, nothing acknowledged is
    /// in doubt, so reads keep working.
    pub(super) fn stop_writes(
        &self,
        what: &str,
        e: std::io::Error,
        cause: Option<std::io::Error>,
    ) -> Error {
        let read_only = [Some(&e), cause.as_ref()]
            .into_iter()
            .flatten()
            .any(|e| e.kind() == std::io::ErrorKind::ReadOnlyFilesystem);
        let (kind, why) = if read_only {
            (
                ErrorKind::Unsupported,
                format!("the file system turned read-only ({what}: {e})"),
            )
        } else {
            let after = cause.map(|c| format!(" after {c}")).unwrap_or_default();
            (ErrorKind::Internal, format!("{what} failed{after} ({e})"))
        };
        {
            let mut stop = self.write_stop.write();
            if stop.is_none() {
                *stop = Some((kind, why.clone()));
            }
        }
        Error::new(
            kind,
            format!(
                "file store {}: {why}; this write was not applied, and writes are refused from \
                 now on (reads still work; reopen the store on writable storage to write)",
                self.dir.display()
            ),
        )
        .with_source(e)
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        Error::from(e).context(format!("file store {}: {what}", self.dir.display()))
    }

    /// Appends `batch` as one record and, unless buffered, waits for the
    /// fsync covering it. Runs due maintenance (checkpoint, compaction) on
    /// the calling thread.
    pub(crate) fn write_batch(&self, batch: &Batch) -> Result<()> {
        let seq = self.append_batch(batch)?;
        if self.take_maintenance() {
            self.maybe_maintain();
        }
        match seq {
            Some(seq) => self.block_until_durable(seq),
            None => Ok(()),
        }
    }

    /// Whether an append made maintenance due since the last call (asked
    /// once: `true` hands the job to this caller).
    pub(crate) fn take_maintenance(&self) -> bool {
        self.maintenance_wanted.swap(false, Ordering::Relaxed)
    }

    /// The seq of the last record appended, when it is not yet durable
    /// (`None` when everything is, or in buffered mode).
    pub(crate) fn unsynced_seq(&self) -> Option<u64> {
        if self.opts.durability != Durability::Sync {
            return None;
        }
        // WAL lock before commit lock, as everywhere.
        let next = self.wal.lock().next_seq;
        let synced = self.commit.lock().synced;
        (next > synced).then(|| next - 1)
    }

    /// Appends `batch` as one record (visible to reads at once) and returns
    /// its seq when the caller must wait for it to become durable before
    /// acknowledging it (`None` when buffered). When the log grew enough
    /// for maintenance, sets `maintenance_wanted` for the caller to act on.
    pub(crate) fn append_batch(&self, batch: &Batch) -> Result<Option<u64>> {
        self.check_poison()?;
        self.check_writable()?;
        let (frame, ops) = record::encode_batch(batch, self.opts.max_record_size)
            .map_err(|d| Error::invalid_input(format!("file store write refused: {}", d.0)))?;
        let seq = {
            let mut w = self.wal.lock();
            let seq = self.append_locked(&mut w, frame, &ops)?;
            if self.maintenance_due(&w) {
                self.maintenance_wanted.store(true, Ordering::Relaxed);
            }
            seq
        };
        Ok((self.opts.durability == Durability::Sync).then_some(seq))
    }

    /// Appends an encoded frame at the tail (the caller holds the WAL
    /// lock) and applies its operations (`ops`, as [`record::encode_batch`]
    /// returned them with it) to the index. Returns the record's seq.
    pub(crate) fn append_locked(
        &self,
        w: &mut Wal,
        mut frame: Vec<u8>,
        ops: &[record::OpRef<'_>],
    ) -> Result<u64> {
        self.check_poison()?;
        // Writes stopped since `append_batch` checked (under this lock).
        self.check_writable()?;
        let seq = w.next_seq;
        // Checked before anything is written: only a crafted or damaged
        // store (a checkpoint or record claiming seq 2^64 - 1) gets here.
        let next_seq = seq.checked_add(1).ok_or_else(|| {
            Error::corrupted(format!(
                "file store {}: the log's sequence numbers are exhausted (next seq {seq}); \
                 the store's checkpoint or last record is damaged",
                self.dir.display()
            ))
        })?;
        let len = frame.len() as u64;
        if w.tail > SEGMENT_HEADER_LEN && w.tail.saturating_add(len) > self.opts.segment_size {
            self.rotate(w)?;
        }
        let end = w.tail.saturating_add(len);
        // A large frame past the reserved zeros is written now, before the
        // index shows it (a failure leaves nothing behind); zero-filling
        // its size first would write every byte twice. Others go to the
        // buffer, behind zeros that reserve their space, so writing them
        // later cannot run out of it.
        let direct = frame.len() >= DIRECT_AT && end > w.filled;
        if !direct {
            self.fill_ahead(w, end)?;
        }
        // The durable watermark goes into the record: on disk it proves
        // that every record below it had been acknowledged-safe (fsynced)
        // before this one was written. WAL lock before commit lock.
        let synced = self.commit.lock().synced;
        record::seal_frame(&mut frame, w.active, seq, synced);
        if direct {
            self.write_direct(w, &frame)?;
        } else {
            // Set before the index shows the record, so a reader that
            // finds it also finds the flag and writes the frame out first.
            self.unflushed.store(true, Ordering::Release);
            if w.buf.is_empty() {
                w.buf_seq = seq;
            }
            w.buf.extend_from_slice(&frame);
        }
        self.index
            .write()
            .apply(w.active, w.tail + RECORD_HEADER_LEN as u64, ops);
        w.tail += len;
        w.next_seq = next_seq;
        w.since_checkpoint += len;
        if w.buf.len() >= FLUSH_AT || self.opts.durability != Durability::Sync {
            if let Err(e) = self.flush_locked(w) {
                // This record is applied: stranded, it is not on disk.
                return Err(self.in_doubt_error(seq).unwrap_or(e));
            }
        }
        Ok(seq)
    }

    /// Writes `frame` at the tail (the caller holds the WAL lock), after
    /// the frames still buffered before it. On failure (`ENOSPC` →
    /// `StorageFull`) the file is cut back to the tail, so nothing partial
    /// stays, and the engine goes on; if that cut fails, writes are
    /// stopped ([`FileKv::stop_writes`]): the frame was never applied.
    fn write_direct(&self, w: &mut Wal, frame: &[u8]) -> Result<()> {
        // Its failure poisons: the index shows the buffered records.
        self.flush_locked(w)?;
        if let Err(e) = w.file.write_at(frame, w.tail) {
            if let Err(e2) = w.file.set_len(w.tail) {
                // Part of the frame may lie past the tail: no zeros are
                // reserved there any more.
                w.filled = w.tail;
                return Err(self.stop_writes("undoing a failed append", e2, Some(e)));
            }
            w.filled = w.tail;
            return Err(self.io_error("appending to the log", e));
        }
        w.filled = w.filled.max(w.tail.saturating_add(frame.len() as u64));
        Ok(())
    }

    /// Writes the frames appended but not yet written (the caller holds the
    /// WAL lock). A failure poisons the engine, since the index already
    /// shows those records, unless the file system turned read-only: then
    /// they are stranded in memory and writes stop (`stranded.rs`).
    pub(crate) fn flush_locked(&self, w: &mut Wal) -> Result<()> {
        self.write_buf(w).map_err(|e| self.flush_failed(w, e))
    }

    /// [`FileKv::flush_locked`] without the poisoning.
    fn write_buf(&self, w: &mut Wal) -> std::io::Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let start = w.tail - w.buf.len() as u64;
        w.file.write_at(&w.buf, start)?;
        w.buf.clear();
        self.unflushed.store(false, Ordering::Release);
        Ok(())
    }

    /// Writes out appended frames if there are any, so that a read of a
    /// just-appended value finds it in the file.
    ///
    /// # Errors
    /// A failed write poisons the engine as [`FileKv::flush_locked`] does
    /// (the index shows those records; their writers, waiting for
    /// durability, get `OutcomeUnknown`), but the reader gets `Internal`:
    /// a read applies nothing, so "may or may not have been applied" would
    /// be wrong for it.
    pub(crate) fn flush_for_read(&self) -> Result<()> {
        if !self.unflushed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut w = self.wal.lock();
        self.write_buf(&mut w).or_else(|e| {
            if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
                // Stranded: the read finds the frames in memory.
                self.flush_failed(&mut w, e);
                return Ok(());
            }
            let why = format!("writing the log: {e}");
            self.poison(&format!("a failed write ({why})"));
            Err(Error::internal(format!(
                "file store {}: {why} (records appended before this read, written out for \
                 it; the read changed nothing); the store must be reopened",
                self.dir.display()
            ))
            .with_source(e))
        })
    }

    /// Makes the active file at least `end` bytes long by writing zeros
    /// past what it holds (at least [`FILL_STEP`] at a time, up to the
    /// segment size), so appends overwrite preallocated zeros instead of
    /// growing the file: their `fdatasync` then has no file size to
    /// persist. Recovery reads an all-zero remainder as the clean end of
    /// a segment. On failure (`ENOSPC` → `StorageFull`) the file is cut
    /// back and nothing changes; if that cut fails, writes are stopped
    /// ([`FileKv::stop_writes`]; the frame was not applied yet, and only
    /// zeros lie past the tail).
    fn fill_ahead(&self, w: &mut Wal, end: u64) -> Result<()> {
        if end <= w.filled {
            return Ok(());
        }
        let target = end.max(
            w.filled
                .saturating_add(FILL_STEP)
                .min(self.opts.segment_size),
        );
        let zeros = vec![0u8; (target - w.filled).min(FILL_STEP) as usize];
        let mut at = w.filled;
        while at < target {
            let n = ((target - at) as usize).min(zeros.len());
            if let Err(e) = w.file.write_at(&zeros[..n], at) {
                if let Err(e2) = w.file.set_len(w.filled) {
                    return Err(self.stop_writes("undoing a failed preallocation", e2, Some(e)));
                }
                return Err(self.io_error("preallocating the log", e));
            }
            at += n as u64;
        }
        w.filled = target;
        Ok(())
    }

    /// Seals the active segment (cut to its last record, fsync) and starts
    /// the next one (header fsynced, directory fsynced) before anything is
    /// written in it.
    pub(super) fn rotate(&self, w: &mut Wal) -> Result<()> {
        self.flush_locked(w)?;
        // The cut is no fsync: its failure (a file system turned
        // read-only) leaves every record in place and zeros past them, so
        // it stops writes only. A failed fsync poisons (`sync_log`).
        self.check_poison()?;
        if let Err(e) = w.file.set_len(w.tail) {
            return Err(self.stop_writes("cutting a segment back to seal it", e, None));
        }
        self.sync_log("sealing a segment", || w.file.sync_data())?;
        // The zeros past the tail are gone: a write that still fits here
        // after a refused rotation must reserve its space again.
        w.filled = w.tail;
        self.mark_synced(&mut self.commit.lock(), w.next_seq);
        let id = w.active + 1;
        let file = match create_segment(&*self.vfs, &self.dir, id) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                return Err(self.io_error("starting a new segment", e))
            }
            // The old segment is sealed and synced, the new record not yet
            // applied: only writes stop. What a refused start may leave (a
            // file without its header) is what a crash during a rotation
            // leaves, which the next open cuts.
            Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
                return Err(self.stop_writes("starting a new segment", e, None))
            }
            Err(e) => {
                return Err(self.poison_after("a failed rotation", "starting a new segment", e))
            }
        };
        self.segs.write().insert(id, file.clone());
        w.active = id;
        w.file = file;
        w.tail = SEGMENT_HEADER_LEN;
        w.filled = SEGMENT_HEADER_LEN;
        Ok(())
    }

    /// Returns once record `seq` (already appended) is on stable storage.
    /// The first waiter becomes the leader and runs a round
    /// ([`FileKv::sync_round`]) for everyone appended so far; the others
    /// wait on the condvar and are covered by it or by the next leader
    /// (group commit). `parking_lot`'s `notify_all` requeues the waiters
    /// onto the commit mutex, so they wake one at a time rather than all
    /// at once.
    ///
    /// # Errors
    /// A failed fsync poisons the engine. A waiter that finds the engine
    /// poisoned gets `OutcomeUnknown`: its record was appended and may or
    /// may not have reached the disk.
    pub(crate) fn block_until_durable(&self, seq: u64) -> Result<()> {
        let mut c = self.commit.lock();
        loop {
            if self.is_durable(&c, seq)? {
                return Ok(());
            }
            if c.syncing {
                self.synced.wait(&mut c);
                continue;
            }
            c.syncing = true;
            parking_lot::MutexGuard::unlocked(&mut c, || self.sync_round())?;
        }
    }

    /// The same wait for an async caller, holding no thread while it waits
    /// (the store layer's deferred writes): the leader runs its round on
    /// the blocking pool, the others wait for the round's notification.
    /// A round runs to its end even if the leader's caller goes away.
    ///
    /// # Errors
    /// As [`FileKv::block_until_durable`].
    pub(crate) async fn durable(self: Arc<Self>, seq: u64) -> Result<()> {
        loop {
            let notified = self.round_done.notified();
            tokio::pin!(notified);
            // Registered before the check, so a round ending in between
            // still wakes this waiter.
            notified.as_mut().enable();
            let lead = {
                let mut c = self.commit.lock();
                if self.is_durable(&c, seq)? {
                    return Ok(());
                }
                !std::mem::replace(&mut c.syncing, true)
            };
            if lead {
                let round = Round(Some(Arc::clone(&self)));
                tokio::task::spawn_blocking(move || round.run())
                    .await
                    .map_err(|e| {
                        // The record is written and may yet become durable
                        // (a later round, the close): its outcome is unknown.
                        Error::new(
                            stowage_core::ErrorKind::OutcomeUnknown,
                            format!("a log fsync task failed: {e}"),
                        )
                    })??;
            } else {
                notified.await;
            }
        }
    }

    /// Records that every record below `target` is durable — never a
    /// record in doubt (`stranded.rs`): a fsync that succeeds after one
    /// refused, or after frames were stranded, proves nothing about them.
    fn mark_synced(&self, c: &mut Commit, target: u64) {
        let target = target.min(self.in_doubt_from().unwrap_or(u64::MAX));
        c.synced = c.synced.max(target);
    }

    /// Gives up the lead of a round that will not run: clears `syncing`
    /// and wakes every waiter, so one of them leads instead.
    fn abandon_round(&self) {
        self.end_round(None);
    }

    /// Whether record `seq` is durable (the caller holds the commit lock).
    ///
    /// # Errors
    /// `OutcomeUnknown` when a failed fsync poisoned the engine.
    fn is_durable(&self, c: &Commit, seq: u64) -> Result<bool> {
        if self.poison.read().is_some() {
            return Err(self.failed_round_error());
        }
        if let Some(in_doubt) = self.in_doubt_error(seq) {
            return Err(in_doubt);
        }
        Ok(c.synced > seq)
    }

    /// One group-commit round, run by the leader that set `syncing` (no
    /// lock held): fsyncs the log up to everything appended so far, then
    /// publishes the result and wakes every waiter, blocking or async.
    fn sync_round(&self) -> Result<()> {
        let flushed = {
            let mut w = self.wal.lock();
            self.flush_locked(&mut w)
                .map(|()| (w.next_seq, Arc::clone(&w.file)))
        };
        let result = flushed.and_then(|(target, file)| {
            self.sync_log("fsync of the log", || file.sync_data())
                .map(|()| target)
                // Poisoned by another thread's failure: this round's
                // records may or may not be durable.
                .map_err(|e| match e.kind() {
                    ErrorKind::OutcomeUnknown => e,
                    _ => self.failed_round_error(),
                })
        });
        match result {
            Ok(target) => {
                self.end_round(Some(target));
                Ok(())
            }
            // The medium turned read-only (the frames were stranded, or
            // the fsync refused): no progress. Every waiter checks again,
            // and learns its record is in doubt, or leads the round of
            // the records before them.
            Err(_) if self.in_doubt_from().is_some() => {
                self.end_round(None);
                Ok(())
            }
            Err(e) => {
                self.end_round(None);
                Err(e)
            }
        }
    }

    /// Ends a round: every record below `synced` (if any) is durable;
    /// wakes every waiter.
    fn end_round(&self, synced: Option<u64>) {
        let mut c = self.commit.lock();
        c.syncing = false;
        if let Some(target) = synced {
            self.mark_synced(&mut c, target);
        }
        drop(c);
        self.synced.notify_all();
        self.round_done.notify_waiters();
    }

    /// The error of a writer whose record was appended when a failed fsync
    /// poisoned the engine.
    fn failed_round_error(&self) -> Error {
        Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "file store {}: a fsync of the log failed while this write waited for it; the \
                 write may or may not be durable and the store must be reopened",
                self.dir.display()
            ),
        )
    }
}

/// The lead of one group-commit round, handed to the blocking pool. A
/// task the pool drops without running it (the runtime shutting down)
/// gives the lead back ([`FileKv::abandon_round`]); otherwise `syncing`
/// would stay set and every later wait for durability, the checkpoint of
/// a closing engine included, would wait forever.
struct Round(Option<Arc<FileKv>>);

impl Round {
    fn run(mut self) -> Result<()> {
        let outcome = match &self.0 {
            Some(kv) => kv.sync_round(),
            None => Ok(()),
        };
        // Only a round that ended keeps its lead: one that panicked is
        // given up by `drop`, or every later wait would hang.
        self.0 = None;
        outcome
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        if let Some(kv) = self.0.take() {
            kv.abandon_round();
        }
    }
}
