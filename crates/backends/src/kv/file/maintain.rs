//! Background-free maintenance: checkpoints (fast reopen) and compaction
//! (sealed segments packed, compressed, into [`pack`]s; packs whose values
//! were mostly deleted or replaced packed again).
//!
//! Both run under `FileKv::maintenance`, either when called or from the
//! writer whose append crossed the checkpoint interval.

use std::collections::BTreeSet;
use std::sync::Arc;

use stowage_core::{Error, ErrorKind, Result};

use super::checkpoint::{self, Position};
use super::index::{Index, Loc};
use super::pack::{self, PackWriter, PACK_BIT};
use super::record::SEGMENT_HEADER_LEN;
use super::recovery::segment_name;
use super::vfs::VFile;
use super::wal::Wal;
use super::{FileKv, Hit};
use crate::kv::seam::Table;

/// Packs smaller than this (stream bytes) are merged into the next pack.
const MERGE_BELOW: u64 = 8 << 20;
/// Keys pointed at a new pack per hold of the index lock.
const INSTALL_CHUNK: usize = 16 << 10;

/// Whether the bytes of a segment of `len` bytes compress enough to be
/// worth packing, judged on four samples across it: a store of
/// already-compressed blobs is not rewritten for nothing.
fn samples_compress(file: &dyn VFile, len: u64) -> bool {
    const SAMPLE: u64 = 64 << 10;
    let mut raw = 0;
    let mut packed = 0;
    let mut buf = vec![0u8; SAMPLE as usize];
    for i in 0..4 {
        let at = SEGMENT_HEADER_LEN + (len.saturating_sub(SEGMENT_HEADER_LEN + SAMPLE)) / 3 * i;
        let n = SAMPLE.min(len.saturating_sub(at)) as usize;
        if n == 0 || file.read_at(&mut buf[..n], at).is_err() {
            continue;
        }
        raw += n;
        packed += lz4_flex::block::compress(&buf[..n]).len();
    }
    packed * 4 < raw * 3
}

/// A key compaction moved: table, key, old and new location.
pub(super) type Moved = (Table, Vec<u8>, Loc, Loc);

impl FileKv {
    /// Runs compaction, then a checkpoint, when the log grew by the
    /// configured interval since the last checkpoint. Errors other than
    /// poisoning are left for the next interval (the write that triggered
    /// this already succeeded).
    pub(crate) fn maybe_maintain(&self) {
        if !self.maintenance_due(&self.wal.lock()) {
            return;
        }
        // Another writer is already on it.
        let Some(_guard) = self.maintenance.try_lock() else {
            return;
        };
        // A compaction that packs anything checkpoints. One that had
        // nothing to pack, or failed (a damaged value to move, a full
        // disk), does not: checkpoint anyway, so the replay stays short
        // and the interval starts again — else every later write would
        // find maintenance due and run the failing compaction again. A
        // value that failed its checks is remembered (`damaged`), and its
        // file left out until its key is written again.
        if !matches!(self.compact_locked(false), Ok(Some(_))) {
            let _ = self.checkpoint_locked();
        }
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
        let mut counted = 0;
        let result = self.write_checkpoint(&mut counted);
        if result.is_err() {
            // Still due: a close after a failed checkpoint must try again
            // rather than report a clean close.
            self.wal.lock().since_checkpoint += counted.max(1);
        }
        result
    }

    /// Writes and installs a checkpoint of the index as it is now; sets
    /// `counted` to the log bytes it covers since the previous one.
    fn write_checkpoint(&self, counted: &mut u64) -> Result<()> {
        let (index, pos) = {
            let mut w = self.wal.lock();
            *counted = std::mem::take(&mut w.since_checkpoint);
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

    /// Packs the live values of every sealed segment, of packs at least
    /// half garbage and of small packs into new packs ([`pack`]; at most
    /// `pack_entries` keys each), checkpoints, and removes what it packed.
    /// With `seal` (an explicit `compact`) the active segment is sealed
    /// first, so everything written so far is packed. Returns the number
    /// of files removed.
    ///
    /// Crash-safe at every step: until the checkpoint is durable the old
    /// files are still the truth (the new pack only repeats current
    /// values, and recovery removes a pack no checkpoint references);
    /// after it, nothing references the old ones and recovery removes any
    /// that are left.
    ///
    /// # Errors
    /// As [`FileKv::write`](crate::kv::seam::OrderedKv::write); `Corrupted`
    /// when a value to move fails its checksum (nothing is removed).
    pub(crate) fn compact(&self) -> Result<usize> {
        self.check_writable()?;
        let _m = self.maintenance.lock();
        Ok(self.compact_locked(true)?.unwrap_or(0))
    }

    /// [`FileKv::compact`] under the maintenance lock; `None` when there
    /// was nothing to pack (and no checkpoint was written).
    fn compact_locked(&self, seal: bool) -> Result<Option<usize>> {
        self.check_poison()?;
        self.check_writable()?;
        let active = {
            let mut w = self.wal.lock();
            if seal && w.tail > SEGMENT_HEADER_LEN {
                self.rotate(&mut w)?;
            }
            w.active
        };
        let victims = self.victims(active, seal);
        if victims.is_empty() {
            return Ok(None);
        }
        // At most `pack_entries` per pack, so memory stays bounded.
        let mut after = None;
        loop {
            let entries = self.victim_entries(&victims, after.as_ref());
            let Some((table, key, _)) = entries.last() else {
                break;
            };
            let (last, full) = (
                (*table, key.clone()),
                entries.len() >= self.opts.pack_entries,
            );
            let id = self.next_pack_id();
            let (pack, moved) = self.write_pack(id, entries)?;
            self.install(id, pack, moved);
            if !full {
                break;
            }
            after = Some(last);
        }
        self.checkpoint_locked()?;
        let still = self.index.read().referenced_segments();
        let mut removed = 0;
        for id in victims.into_iter().filter(|id| !still.contains(id)) {
            self.segs.write().remove(&id);
            self.vfs
                .remove(&self.dir.join(segment_name(id)))
                .map_err(|e| Error::from(e).context("removing a compacted file"))?;
            self.incompressible.lock().remove(&id);
            removed += 1;
        }
        if let Err(e) = self.vfs.sync_dir(&self.dir) {
            return Err(self.poison_with("fsync of the directory", e));
        }
        Ok(Some(removed))
    }

    /// Up to `pack_entries` keys (table by table, in key order, after
    /// `after`) whose values live in `victims`, with their locations.
    fn victim_entries(
        &self,
        victims: &BTreeSet<u64>,
        after: Option<&(Table, Vec<u8>)>,
    ) -> Vec<(Table, Vec<u8>, Loc)> {
        let index = self.index.read();
        let mut out = Vec::new();
        let mut reached = after.is_none();
        for (table, blocks) in index.tables() {
            // Strictly after `after`: its successor (the key and a 0 byte).
            let from: Vec<u8> = match after {
                Some((t, key)) if table == *t => {
                    reached = true;
                    key.iter().copied().chain([0]).collect()
                }
                _ if !reached => continue,
                _ => Vec::new(),
            };
            for (key, loc) in blocks.range(&from, None) {
                if !victims.contains(&loc.seg) {
                    continue;
                }
                out.push((table, key, loc));
                if out.len() >= self.opts.pack_entries {
                    return out;
                }
            }
        }
        out
    }

    /// What to pack: the sealed segments (ids below `active`; unless
    /// `all`, only those at least half garbage or whose bytes compress,
    /// and none holding a live value known to be damaged),
    /// packs at least half garbage, and small packs when there are two
    /// or more files to pack. Files are sampled outside the locks, and a
    /// segment found not to compress is not sampled again.
    fn victims(&self, active: u64, all: bool) -> BTreeSet<u64> {
        let files: Vec<(u64, Arc<dyn VFile>, u64)> = {
            let index = self.index.read();
            // Automatic compaction leaves out files with a value known to
            // be damaged (it would fail again); an explicit one reports it.
            let skip = if all {
                BTreeSet::new()
            } else {
                self.damaged_files(&index)
            };
            let segs = self.segs.read();
            segs.iter()
                .filter(|(id, _)| pack::is_pack(**id) || **id < active)
                .filter(|(id, _)| !skip.contains(id))
                .map(|(id, f)| (*id, Arc::clone(f), index.live_bytes(*id)))
                .collect()
        };
        let mut due = BTreeSet::new();
        let mut small = Vec::new();
        for (id, file, live) in files {
            let len = file.len().unwrap_or(0);
            let garbage = live.saturating_mul(2) <= file.packed_value_bytes().unwrap_or(len);
            if pack::is_pack(id) {
                if garbage {
                    due.insert(id);
                } else if len < MERGE_BELOW {
                    small.push(id);
                }
            } else if all || garbage || self.compresses(id, &*file, len) {
                due.insert(id);
            }
        }
        if due.len() + small.len() > 1 {
            due.extend(small);
        }
        due
    }

    /// Whether sealed segment `id` compresses enough to be worth packing
    /// ([`samples_compress`]); a segment that does not is remembered.
    fn compresses(&self, id: u64, file: &dyn VFile, len: u64) -> bool {
        if self.incompressible.lock().contains(&id) {
            return false;
        }
        let worth = samples_compress(file, len);
        if !worth {
            self.incompressible.lock().insert(id);
        }
        worth
    }

    /// A pack id above every pack's and the log's next seq, so ids never
    /// repeat while a checkpoint may name them.
    fn next_pack_id(&self) -> u64 {
        // Packs on disk that are not open (set aside, or left behind by a
        // failed removal) count too.
        let on_disk = self.vfs.list(&self.dir).unwrap_or_default();
        let names = on_disk
            .iter()
            .filter_map(|n| pack::parse_name(n.strip_suffix(".lost").unwrap_or(n)));
        let above = self
            .segs
            .read()
            .keys()
            .copied()
            .filter(|id| pack::is_pack(*id))
            .chain(names)
            .max()
            .map_or(0, |id| (id & !PACK_BIT) + 1);
        PACK_BIT | above.max(self.wal.lock().next_seq)
    }

    /// Writes the values at `entries` (table by table, in key order) into
    /// pack `id`, synced and named, and returns it with every entry's old
    /// and new location. On failure the partial file is removed.
    fn write_pack(
        &self,
        id: u64,
        entries: Vec<(Table, Vec<u8>, Loc)>,
    ) -> Result<(Arc<dyn VFile>, Vec<Moved>)> {
        let name = segment_name(id);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let written = self.fill_pack(id, &tmp, entries).and_then(|(pack, moved)| {
            self.vfs
                .rename(&tmp, &self.dir.join(&name))
                .map_err(|e| Error::from(e).context("installing a pack"))?;
            Ok((pack, moved))
        });
        if written.is_err() {
            let _ = self.vfs.remove(&tmp);
        }
        let written = written?;
        if let Err(e) = self.vfs.sync_dir(&self.dir) {
            return Err(self.poison_with("fsync of the directory", e));
        }
        Ok(written)
    }

    fn fill_pack(
        &self,
        id: u64,
        path: &std::path::Path,
        entries: Vec<(Table, Vec<u8>, Loc)>,
    ) -> Result<(Arc<dyn VFile>, Vec<Moved>)> {
        let io = |e: std::io::Error| {
            Error::from(e).context(format!("writing pack {}", segment_name(id)))
        };
        let mut writer = PackWriter::create(&*self.vfs, path).map_err(io)?;
        let mut moved = Vec::with_capacity(entries.len());
        let mut entries = entries.into_iter().peekable();
        while let Some(&(table, _, _)) = entries.peek() {
            let hits: Vec<Hit> = {
                let segs = self.segs.read();
                std::iter::from_fn(|| entries.next_if(|(t, _, _)| *t == table))
                    .map(|(_, key, loc)| (key, loc, segs.get(&loc.seg).cloned()))
                    .collect()
            };
            let olds: Vec<Loc> = hits.iter().map(|(_, loc, _)| *loc).collect();
            let mut rest = olds.iter();
            let before = moved.len();
            let visited = self.visit_values(table, hits, &mut |key, value| {
                let at = writer.push(table, key, value).map_err(io)?;
                let old = *rest
                    .next()
                    .ok_or_else(|| Error::internal("compaction visited more values than asked"))?;
                let new = Loc {
                    seg: id,
                    off: at,
                    ..old
                };
                moved.push((table, key.to_vec(), old, new));
                Ok(())
            });
            if let Err(e) = visited {
                // Values are visited in order and the first that fails
                // its checks stops the visit: it is the next one.
                if e.kind() == ErrorKind::Corrupted {
                    if let Some(&loc) = olds.get(moved.len() - before) {
                        self.remember_damaged(table, loc);
                    }
                }
                return Err(e);
            }
        }
        let pack = writer.finish(id).map_err(io)?;
        Ok((Arc::new(pack), moved))
    }

    /// Remembers the value at `loc` of `table` as damaged (see
    /// `FileKv::damaged`), with the key that points at it.
    fn remember_damaged(&self, table: Table, loc: Loc) {
        if self
            .damaged
            .lock()
            .iter()
            .any(|(t, _, l)| *t == table && *l == loc)
        {
            return;
        }
        // Only after a failure: a walk of the table is fine.
        let key = {
            let index = self.index.read();
            let mut entries = index.table(table).range(&[], None);
            entries.find(|(_, l)| *l == loc).map(|(key, _)| key)
        };
        if let Some(key) = key {
            self.damaged.lock().push((table, key, loc));
        }
    }

    /// The files holding a value remembered as damaged that a key still
    /// points at (the others are forgotten: their keys were written again).
    fn damaged_files(&self, index: &Index) -> BTreeSet<u64> {
        let mut damaged = self.damaged.lock();
        damaged.retain(|(table, key, loc)| index.table(*table).get(key) == Some(*loc));
        damaged.iter().map(|(_, _, loc)| loc.seg).collect()
    }

    /// Makes `pack` readable and points every key of `moved` that still
    /// has its old location at its copy in the pack (a key written since
    /// keeps its newer value; its copy is garbage).
    /// The pack is synced and named first, so installing in chunks (the
    /// index lock is released between them, for writers) is safe.
    pub(super) fn install(&self, id: u64, pack: Arc<dyn VFile>, moved: Vec<Moved>) {
        self.segs.write().insert(id, pack);
        for chunk in moved.chunks(INSTALL_CHUNK) {
            let mut index = self.index.write();
            for (table, key, old, new) in chunk {
                if index.table(*table).get(key) == Some(*old) {
                    index.insert(*table, key, *new);
                }
            }
        }
    }
}
