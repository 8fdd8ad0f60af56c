//! Background-free maintenance: checkpoints (fast reopen) and compaction
//! (reclaiming segments whose values were mostly deleted or replaced).
//!
//! Both run under `FileKv::maintenance`, either when called or from the
//! writer whose append crossed the checkpoint interval.

use stowage_core::{Error, Result};

use super::checkpoint::{self, Position};
use super::index::Loc;
use super::record::{self, SEGMENT_HEADER_LEN};
use super::recovery::segment_name;
use super::wal::Wal;
use super::FileKv;
use crate::kv::seam::{Batch, Table};

/// Upper bound of value bytes rewritten per compaction record.
const COMPACT_CHUNK: usize = 4 << 20;

impl FileKv {
    /// Runs a checkpoint, then compaction, when the log grew by the
    /// configured interval since the last checkpoint. Errors other than
    /// poisoning are left for the next attempt (the write that triggered
    /// this already succeeded).
    pub(crate) fn maybe_maintain(&self) {
        if !self.maintenance_due(&self.wal.lock()) {
            return;
        }
        // Another writer is already on it.
        let Some(_guard) = self.maintenance.try_lock() else {
            return;
        };
        let _ = self
            .checkpoint_locked()
            .and_then(|()| self.compact_locked().map(|_| ()));
    }

    /// Whether the log grew by the checkpoint interval since the last
    /// checkpoint (the caller holds the WAL lock).
    pub(crate) fn maintenance_due(&self, w: &Wal) -> bool {
        self.opts.checkpoint_interval > 0 && w.since_checkpoint >= self.opts.checkpoint_interval
    }

    /// Writes a checkpoint of the index at the current end of the log
    /// (after making the log durable up to there), then removes older
    /// checkpoints.
    ///
    /// # Errors
    /// `StorageFull` when the checkpoint does not fit (nothing changes);
    /// a failed fsync poisons the engine.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let _m = self.maintenance.lock();
        self.checkpoint_locked()
    }

    fn checkpoint_locked(&self) -> Result<()> {
        self.check_poison()?;
        self.check_writable()?;
        let (index, pos) = {
            let mut w = self.wal.lock();
            w.since_checkpoint = 0;
            let pos = Position {
                seg: w.active,
                off: w.tail,
                next_seq: w.next_seq,
            };
            (self.index.read().clone(), pos)
        };
        if pos.next_seq > 0 {
            self.block_until_durable(pos.next_seq - 1)?;
        }
        let bytes = checkpoint::encode(&index, pos);
        drop(index);
        let tmp = self.dir.join("checkpoint.tmp");
        let name = checkpoint::file_name(pos.next_seq);
        let write = self
            .vfs
            .create(&tmp)
            .and_then(|f| f.write_at(&bytes, 0).map(|()| f));
        let file = match write {
            Ok(f) => f,
            Err(e) => {
                let _ = self.vfs.remove(&tmp);
                return Err(Error::from(e).context("writing a checkpoint"));
            }
        };
        if let Err(e) = file.sync_data() {
            return Err(self.poison_with("fsync of a checkpoint", e));
        }
        if let Err(e) = self.vfs.rename(&tmp, &self.dir.join(&name)) {
            return Err(Error::from(e).context("installing a checkpoint"));
        }
        if let Err(e) = self.vfs.sync_dir(&self.dir) {
            return Err(self.poison_with("fsync of the directory", e));
        }
        if let Ok(names) = self.vfs.list(&self.dir) {
            for old in names {
                if old.ends_with(".ckp") && old != name {
                    let _ = self.vfs.remove(&self.dir.join(old));
                }
            }
        }
        Ok(())
    }

    /// Rewrites the live values of sealed segments that are at least half
    /// garbage into the active segment, checkpoints, and removes those
    /// segments. Returns the number of segments removed.
    ///
    /// Crash-safe at every step: until the checkpoint is durable the old
    /// segments are still the truth (the rewritten records only repeat
    /// current values); after it, nothing references them and recovery
    /// removes any that are left.
    ///
    /// # Errors
    /// As [`FileKv::write`](crate::kv::seam::OrderedKv::write); `Corrupted`
    /// when a value to move fails its checksum (nothing is removed).
    pub(crate) fn compact(&self) -> Result<usize> {
        self.check_writable()?;
        let _m = self.maintenance.lock();
        self.compact_locked()
    }

    fn compact_locked(&self) -> Result<usize> {
        self.check_poison()?;
        let active = self.wal.lock().active;
        // Sizes first, then live bytes: never two of these locks at once.
        let sealed: Vec<(u64, u64)> = self
            .segs
            .read()
            .iter()
            .filter(|(id, _)| **id < active)
            .map(|(id, f)| (*id, f.len().unwrap_or(0).saturating_sub(SEGMENT_HEADER_LEN)))
            .collect();
        let victims: Vec<u64> = {
            let index = self.index.read();
            sealed
                .into_iter()
                .filter(|(id, size)| index.live_bytes(*id).saturating_mul(2) <= *size)
                .map(|(id, _)| id)
                .collect()
        };
        if victims.is_empty() {
            return Ok(0);
        }
        let entries: Vec<(Table, Vec<u8>, Loc)> = {
            let index = self.index.read();
            index
                .entries()
                .filter(|(_, _, l)| victims.contains(&l.seg))
                .collect()
        };
        let mut last_seq = None;
        let mut chunk: Vec<(Table, Vec<u8>, Loc, Vec<u8>)> = Vec::new();
        let mut chunk_bytes = 0usize;
        for (table, key, loc) in entries {
            let file = self.segs.read().get(&loc.seg).cloned();
            let value = self.read_value(table, loc, file)?;
            let size = value.len() + key.len() + 16;
            let limit = COMPACT_CHUNK.min(self.opts.max_record_size / 2);
            if !chunk.is_empty() && chunk_bytes + size > limit {
                last_seq = self.rewrite(std::mem::take(&mut chunk))?.or(last_seq);
                chunk_bytes = 0;
            }
            chunk_bytes += size;
            chunk.push((table, key, loc, value));
        }
        last_seq = self.rewrite(chunk)?.or(last_seq);
        if let Some(seq) = last_seq {
            self.block_until_durable(seq)?;
        }
        self.checkpoint_locked()?;
        let still = self.index.read().referenced_segments();
        let mut removed = 0;
        for id in victims.into_iter().filter(|id| !still.contains(id)) {
            self.segs.write().remove(&id);
            self.vfs
                .remove(&self.dir.join(segment_name(id)))
                .map_err(|e| Error::from(e).context("removing a compacted segment"))?;
            removed += 1;
        }
        if let Err(e) = self.vfs.sync_dir(&self.dir) {
            return Err(self.poison_with("fsync of the directory", e));
        }
        Ok(removed)
    }

    /// Appends the values of `chunk` whose keys still point where they were
    /// read from (checked under the WAL lock, so no write can interleave).
    pub(super) fn rewrite(
        &self,
        chunk: Vec<(Table, Vec<u8>, Loc, Vec<u8>)>,
    ) -> Result<Option<u64>> {
        let mut w = self.wal.lock();
        let mut batch = Batch::default();
        {
            let index = self.index.read();
            for (table, key, loc, value) in chunk {
                if index.table(table).get(&key) == Some(loc) {
                    batch.put(table, key, value);
                }
            }
        }
        if batch.ops.is_empty() {
            return Ok(None);
        }
        let frame = record::encode_batch(&batch, self.opts.max_record_size)
            .map_err(|d| Error::internal(format!("compaction batch: {}", d.0)))?;
        self.append_locked(&mut w, frame).map(Some)
    }
}
