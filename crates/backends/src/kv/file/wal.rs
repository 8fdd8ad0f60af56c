//! The write path: appending a batch as one record, segment rotation, and
//! group commit (concurrent writers share one fsync; a failed fsync
//! poisons the engine).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::Thread;

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
    pub(crate) next_seq: u64,
    pub(crate) since_checkpoint: u64,
}

/// Group-commit state (guarded by `FileKv::commit`).
#[derive(Default)]
pub(crate) struct Commit {
    /// Every record with a seq below this is on stable storage.
    pub(crate) synced: u64,
    /// A leader is running fsync right now (or was just handed the role).
    pub(crate) syncing: bool,
    /// Writers parked until a leader settles them.
    pub(crate) waiters: Vec<Waiter>,
}

impl Commit {
    /// The state of a freshly opened log: everything below `synced` is
    /// durable, nobody waits.
    pub(crate) fn new(synced: u64) -> Self {
        Commit {
            synced,
            syncing: false,
            waiters: Vec::new(),
        }
    }
}

/// A parked writer: the record it waits for and where to tell it.
pub(crate) struct Waiter {
    seq: u64,
    slot: Arc<Slot>,
}

/// How many fsync rounds one leader runs back to back while writers wait,
/// before it hands the role over and returns to its own caller.
const LEAD_ROUNDS: u32 = 4;

/// Still waiting.
const PENDING: u8 = 0;
/// A fsync covered the record.
const DURABLE: u8 = 1;
/// The fsync failed; the engine is poisoned.
const FAILED: u8 = 2;
/// Not covered yet: this writer is the next leader.
const LEAD: u8 = 3;

/// Where a leader settles a parked writer: a state (written under the
/// commit lock, read by the writer after `unpark`) and its thread.
struct Slot {
    state: AtomicU8,
    thread: Thread,
}

impl Slot {
    /// Parks until a leader moved the state away from `PENDING` (spurious
    /// wake-ups park again) and returns it.
    fn park(&self) -> u8 {
        loop {
            match self.state.load(Ordering::Acquire) {
                PENDING => std::thread::park(),
                settled => return settled,
            }
        }
    }
}

thread_local! {
    /// One slot per thread, reused by every wait (a thread waits for one
    /// record at a time), so waiting allocates nothing.
    static SLOT: Arc<Slot> = Arc::new(Slot {
        state: AtomicU8::new(PENDING),
        thread: std::thread::current(),
    });
}

/// Unparks settled writers (after the commit lock was released).
fn wake(woken: &[Waiter]) {
    for w in woken {
        w.slot.thread.unpark();
    }
}

impl FileKv {
    /// Fails when a failed fsync poisoned the engine.
    pub(crate) fn check_poison(&self) -> Result<()> {
        match &*self.poison.read() {
            None => Ok(()),
            Some(why) => Err(Error::internal(format!(
                "file store {} is unusable after a failed fsync ({why}); close and reopen it",
                self.dir.display()
            ))),
        }
    }

    /// Poisons the engine after `what` failed with `e`, returning the error
    /// for the caller (whose write may or may not be on disk).
    pub(crate) fn poison_with(&self, what: &str, e: std::io::Error) -> Error {
        let why = format!("{what}: {e}");
        let mut p = self.poison.write();
        if p.is_none() {
            *p = Some(why.clone());
        }
        Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "file store {}: {why}; the write may or may not be durable and the store must be reopened",
                self.dir.display()
            ),
        )
        .with_source(e)
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        Error::from(e).context(format!("file store {}: {what}", self.dir.display()))
    }

    /// Appends `batch` as one record and, unless buffered, waits for the
    /// fsync covering it.
    pub(crate) fn write_batch(&self, batch: &Batch) -> Result<()> {
        self.check_poison()?;
        let frame = record::encode_batch(batch, self.opts.max_record_size)
            .map_err(|d| Error::invalid_input(format!("file store write refused: {}", d.0)))?;
        let (seq, maintenance_due) = {
            let mut w = self.wal.lock();
            let seq = self.append_locked(&mut w, frame)?;
            (seq, self.maintenance_due(&w))
        };
        if self.opts.durability == Durability::Sync {
            self.wait_durable(seq)?;
        }
        if maintenance_due {
            self.maybe_maintain();
        }
        Ok(())
    }

    /// Appends an encoded frame at the tail (the caller holds the WAL
    /// lock) and applies it to the index. Returns the record's seq.
    pub(crate) fn append_locked(&self, w: &mut Wal, mut frame: Vec<u8>) -> Result<u64> {
        self.check_poison()?;
        let len = frame.len() as u64;
        if w.tail > SEGMENT_HEADER_LEN && w.tail.saturating_add(len) > self.opts.segment_size {
            self.rotate(w)?;
        }
        let seq = w.next_seq;
        record::seal_frame(&mut frame, w.active, seq);
        if let Err(e) = w.file.write_at(&frame, w.tail) {
            // Take back whatever part of the frame reached the file.
            if let Err(e2) = w.file.set_len(w.tail) {
                return Err(self.poison_with("undoing a failed append", e2));
            }
            return Err(self.io_error("appending to the log", e));
        }
        let payload = frame.get(RECORD_HEADER_LEN..).unwrap_or(&[]);
        let ops = record::decode_batch(payload).map_err(|d| {
            Error::internal(format!("a just-encoded batch does not decode: {}", d.0))
        })?;
        self.index
            .write()
            .apply(w.active, w.tail + RECORD_HEADER_LEN as u64, &ops);
        w.tail += len;
        w.next_seq += 1;
        w.since_checkpoint += len;
        Ok(seq)
    }

    /// Seals the active segment (fsync) and starts the next one (header
    /// fsynced, directory fsynced) before anything is written in it.
    fn rotate(&self, w: &mut Wal) -> Result<()> {
        if let Err(e) = w.file.sync_data() {
            return Err(self.poison_with("sealing a segment", e));
        }
        {
            let mut c = self.commit.lock();
            c.synced = c.synced.max(w.next_seq);
        }
        let id = w.active + 1;
        let file = match create_segment(&*self.vfs, &self.dir, id) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                return Err(self.io_error("starting a new segment", e))
            }
            Err(e) => return Err(self.poison_with("starting a new segment", e)),
        };
        self.segs.write().insert(id, file.clone());
        w.active = id;
        w.file = file;
        w.tail = SEGMENT_HEADER_LEN;
        Ok(())
    }

    /// Returns once record `seq` (already appended) is on stable storage.
    ///
    /// Group commit: the first waiter becomes the leader, reads the tail
    /// seq, and runs one fsync with no lock held. Writers arriving
    /// meanwhile register in `Commit::waiters` and park. After the fsync
    /// the leader marks durable exactly the waiters it covered, hands the
    /// leadership to one waiter it did not cover (if any), and only then,
    /// with the lock released, unparks them: each writer is woken once, by
    /// the round that settles it, and never contends for the lock again.
    /// A failed fsync poisons the engine and fails every waiter with
    /// `OutcomeUnknown`.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        {
            let mut c = self.commit.lock();
            self.check_poison()?;
            if c.synced > seq {
                return Ok(());
            }
            if c.syncing {
                let slot = SLOT.with(Arc::clone);
                slot.state.store(PENDING, Ordering::Relaxed);
                c.waiters.push(Waiter {
                    seq,
                    slot: Arc::clone(&slot),
                });
                drop(c);
                match slot.park() {
                    DURABLE => return Ok(()),
                    LEAD => {}
                    _ => return Err(self.failed_round_error()),
                }
            } else {
                c.syncing = true;
            }
        }
        self.lead(seq)
    }

    /// Runs fsyncs (holding `Commit::syncing`) until record `seq` is
    /// covered, then settles the waiters and passes the leadership on.
    fn lead(&self, seq: u64) -> Result<()> {
        let mut rounds = 0;
        loop {
            let (target, file) = {
                let w = self.wal.lock();
                (w.next_seq, Arc::clone(&w.file))
            };
            let result = file.sync_data();
            let mut c = self.commit.lock();
            if let Err(e) = result {
                let err = self.poison_with("fsync of the log", e);
                c.syncing = false;
                let failed = std::mem::take(&mut c.waiters);
                for w in &failed {
                    w.slot.state.store(FAILED, Ordering::Release);
                }
                drop(c);
                for w in &failed {
                    w.slot.thread.unpark();
                }
                return Err(err);
            }
            c.synced = c.synced.max(target);
            let synced = c.synced;
            let mut woken = Vec::new();
            let mut i = 0;
            while i < c.waiters.len() {
                if c.waiters[i].seq < synced {
                    let w = c.waiters.swap_remove(i);
                    w.slot.state.store(DURABLE, Ordering::Release);
                    woken.push(w);
                } else {
                    i += 1;
                }
            }
            rounds += 1;
            if seq >= synced || (rounds < LEAD_ROUNDS && !c.waiters.is_empty()) {
                // Our own record is not covered yet (cannot happen for a
                // record appended before this call), or others are waiting
                // and this thread is already running: sync again at once
                // rather than wait for a parked writer to be scheduled.
                drop(c);
                wake(&woken);
                continue;
            }
            // Hand over to the oldest uncovered waiter, woken first so the
            // next fsync starts as soon as possible.
            let next = c
                .waiters
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.seq)
                .map(|(i, _)| i);
            match next {
                Some(i) => {
                    let w = c.waiters.swap_remove(i);
                    w.slot.state.store(LEAD, Ordering::Release);
                    woken.insert(0, w);
                }
                None => c.syncing = false,
            }
            drop(c);
            wake(&woken);
            return Ok(());
        }
    }

    /// The error of a writer whose group-commit round failed.
    fn failed_round_error(&self) -> Error {
        Error::new(
            ErrorKind::OutcomeUnknown,
            format!(
                "file store {}: the fsync covering this write failed; the write may or may not be \
                 durable and the store must be reopened",
                self.dir.display()
            ),
        )
    }
}
