//! Records a file system that turned read-only left behind: appended
//! and shown by the index, but either refused when the WAL's buffer
//! (`Wal::buf`) was written out (stranded in memory), or written to the
//! file when an fsync that was to make them durable (a round's, a
//! rotation's seal, the close's) answered EROFS.
//!
//! Poisoning the engine there (as any other failed write of records the
//! index shows, or failed fsync, does) would fail every read,
//! acknowledged data included, although nothing acknowledged is in
//! doubt: acknowledged records were durable before. Instead writes stop
//! ([`FileKv::stop_writes`]: `Unsupported`), and:
//! - every record from the first one not known durable on is *in doubt*:
//!   it is never reported durable; its writer, still waiting for the
//!   fsync, gets `OutcomeUnknown` (applied and visible in this process,
//!   but a reopen may not find it — a stranded one it surely will not);
//! - reads go on, and a stranded value is read from memory, so every read
//!   sees the state the index shows (a value read from a file whose fsync
//!   failed is checked against its CRC32C like any other);
//! - nothing can later be reported durable by mistake (the concern behind
//!   poisoning after a failed fsync): no record is appended any more, the
//!   durable watermark never passes the first record in doubt
//!   (`mark_synced`), however a later fsync answers, so a job that read a
//!   record in doubt and wrote nothing waits for it and is told
//!   `OutcomeUnknown` too, and the close answers `OutcomeUnknown` (the
//!   answer of every wait that finds the store closed).
//!
//! Writes stay stopped until the store is reopened, so frames are
//! stranded at most once per opened store.

use std::sync::atomic::Ordering;

use stowage_core::{Error, ErrorKind, Result};

use super::index::Loc;
use super::wal::Wal;
use super::FileKv;

/// The frames that could not be written, as they would have been in
/// segment `seg` from offset `start`.
#[derive(Debug)]
pub(super) struct Stranded {
    seg: u64,
    start: u64,
    bytes: Vec<u8>,
}

impl FileKv {
    /// What a failed write of the WAL's buffer (`e`; the caller holds the
    /// WAL lock) does to the engine: on a file system turned read-only the
    /// buffer is stranded, its records are in doubt, and writes stop
    /// (returns `Unsupported`: the caller's own change, if any, was not
    /// applied yet); any other failure poisons it (the index shows those
    /// records).
    pub(super) fn flush_failed(&self, w: &mut Wal, e: std::io::Error) -> Error {
        if e.kind() != std::io::ErrorKind::ReadOnlyFilesystem {
            return self.poison_after("a failed write", "writing the log", e);
        }
        let stranded = Stranded {
            seg: w.active,
            start: w.tail - w.buf.len() as u64,
            bytes: std::mem::take(&mut w.buf),
        };
        {
            let mut slot = self.stranded.write();
            // Writes stop below: nothing is appended after these frames.
            if slot.is_none() {
                *slot = Some(stranded);
            }
        }
        // Before the flag: a reader that finds the buffer written out
        // then finds the records in doubt, and so looks here.
        self.doubt_from(w.buf_seq);
        self.unflushed.store(false, Ordering::Release);
        self.stop_writes("writing the log", e, None)
    }

    /// Puts every record from `seq` on in doubt (see the module docs).
    pub(super) fn doubt_from(&self, seq: u64) {
        self.in_doubt_from.fetch_min(seq, Ordering::AcqRel);
    }

    /// The seq of the first record in doubt, if any.
    pub(super) fn in_doubt_from(&self) -> Option<u64> {
        let seq = self.in_doubt_from.load(Ordering::Acquire);
        (seq != u64::MAX).then_some(seq)
    }

    /// The answer to a writer waiting for record `seq` to become durable,
    /// when it is in doubt.
    pub(super) fn in_doubt_error(&self, seq: u64) -> Option<Error> {
        let first = self.in_doubt_from()?;
        (seq >= first).then(|| {
            Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "file store {}: the file system turned read-only before this write was made \
                     durable: it is applied and visible to reads until the store is closed, but \
                     a reopen may not find it; write it again once the store is reopened on \
                     writable storage",
                    self.dir.display()
                ),
            )
        })
    }

    /// The answer of a close that made every other record durable:
    /// `OutcomeUnknown` while records are in doubt, since whoever waits
    /// for a write after the close is answered with it (the gate).
    pub(super) fn closed_in_doubt(&self) -> Result<()> {
        match self.in_doubt_from() {
            None => Ok(()),
            Some(seq) => Err(Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "file store {}: closed, but the records appended from seq {seq} on, after the \
                     file system turned read-only, were not made durable: a reopen may not find \
                     them (their writers were told so)",
                    self.dir.display()
                ),
            )),
        }
    }

    /// Copies the value at `loc` into `buf` (`loc.len` bytes) when it lies
    /// in the stranded frames; `false` when it does not.
    pub(super) fn read_stranded(&self, loc: Loc, buf: &mut [u8]) -> bool {
        if self.in_doubt_from().is_none() {
            return false;
        }
        let slot = self.stranded.read();
        let Some(s) = slot.as_ref() else {
            return false;
        };
        let value = (loc.seg == s.seg)
            .then(|| loc.off.checked_sub(s.start))
            .flatten()
            .and_then(|at| usize::try_from(at).ok())
            .and_then(|at| s.bytes.get(at..at.checked_add(buf.len())?));
        match value {
            Some(value) => {
                buf.copy_from_slice(value);
                true
            }
            None => false,
        }
    }
}
