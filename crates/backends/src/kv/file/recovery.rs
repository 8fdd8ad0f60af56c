//! Recovery on open: load the newest checkpoint, check that no segment is
//! missing, replay the records after the checkpoint, truncate a torn tail
//! of the last segment, and refuse (or, with salvage, cut and report) any
//! other damage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use stowage_core::{Error, Result};

use super::checkpoint::{self, Position};
use super::index::Index;
use super::pack;
use super::record::{self, Damage, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::vfs::{read_all, VFile, Vfs};
use super::FileOptions;

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    /// The checkpoint used (the seq of the first record after it).
    pub(crate) checkpoint: Option<u64>,
    /// Records replayed from the log.
    pub(crate) replayed_records: u64,
    /// A torn tail that was truncated: (segment, offset, bytes removed).
    pub(crate) truncated_tail: Option<(u64, u64, u64)>,
    /// What salvage gave up, one sentence each (empty without salvage).
    pub(crate) lost: Vec<String>,
    /// Segments no longer referenced (left by an interrupted compaction) and removed.
    pub(crate) removed_segments: Vec<u64>,
}

/// The state recovery hands to the engine.
pub(crate) struct Recovered {
    pub(crate) index: Index,
    pub(crate) segs: BTreeMap<u64, Arc<dyn VFile>>,
    pub(crate) active: u64,
    pub(crate) tail: u64,
    /// The active file's length (zeros from `tail` on).
    pub(crate) filled: u64,
    /// Where the active segment's records begin that no record proves
    /// synced (`tail` when every record is): after a failed fsync they
    /// may sit only in the page cache (see `FileKv::open`).
    pub(crate) unproven: u64,
    pub(crate) next_seq: u64,
    pub(crate) report: RecoveryReport,
}

/// The file name of segment (or pack) `id`.
pub(crate) fn segment_name(id: u64) -> String {
    if pack::is_pack(id) {
        return pack::pack_name(id);
    }
    format!("{id:016x}.wal")
}

/// The id in file name `name` (16 hex digits, then `ext`).
pub(crate) fn parse_hex(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?;
    if stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

pub(crate) fn corrupted(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::corrupted(format!("file store {}: {what}", dir.display()))
}

pub(crate) fn io_err(dir: &Path, what: &str, e: std::io::Error) -> Error {
    Error::from(e).context(format!("file store {}: {what}", dir.display()))
}

/// Creates segment `id` with its header, synced, and syncs the directory.
pub(crate) fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u64,
) -> std::io::Result<Arc<dyn VFile>> {
    let path = dir.join(segment_name(id));
    let file = vfs.create(&path)?;
    let result = file
        .write_at(&record::segment_header(id), 0)
        .and_then(|()| file.sync_data())
        .and_then(|()| vfs.sync_dir(dir));
    match result {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = vfs.remove(&path);
            Err(e)
        }
    }
}

/// The highest durable watermark carried by an intact record with a
/// plausible seq (at least `expected`) anywhere after `from` in `bytes`
/// (`None`: no such record).
///
/// A record's watermark `w` proves that every record with a seq below `w`
/// had been made durable by a completed fsync before that record was
/// written. So damage at record `expected` lies inside what was
/// acknowledged exactly when some later record carries `w > expected`;
/// otherwise no acknowledgement can have depended on it (see
/// `docs/file-engine.md`, "Recovery").
fn watermark_after(bytes: &[u8], from: usize, seg: u64, expected: u64) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut at = from + 1;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let mut s = [0u8; 8];
        s.copy_from_slice(&bytes[at + 8..at + 16]);
        let seq = u64::from_le_bytes(s);
        if seq >= expected && seq - expected < (1 << 32) {
            if let Ok(Some(frame)) = record::decode_frame(&bytes[at..], seg) {
                best = Some(best.map_or(frame.synced, |b| b.max(frame.synced)));
                at += frame.len;
                continue;
            }
        }
        at += 1;
    }
    best
}

/// Recovers the store in `dir`.
///
/// With `opts.read_only` it changes nothing on disk: a torn tail or a torn
/// segment is ignored in place rather than cut, leftovers are not removed,
/// and a directory without a store is `NotFound`.
pub(crate) fn recover(vfs: &dyn Vfs, dir: &Path, opts: &FileOptions) -> Result<Recovered> {
    if opts.read_only && opts.salvage {
        return Err(Error::invalid_input(format!(
            "file store {}: salvage=true rewrites the store, so it cannot be combined with \
             mode=read_only",
            dir.display()
        )));
    }
    let writable = !opts.read_only;
    // Records are decoded against the bytes present, never against
    // `opts.max_record_size`: it refuses new writes only, and may have
    // been lowered since larger records were acknowledged.
    let mut report = RecoveryReport::default();
    let mut seg_ids = BTreeSet::new();
    let mut pack_ids = BTreeSet::new();
    let mut ckps = BTreeMap::new();
    for name in vfs.list(dir).map_err(|e| io_err(dir, "listing", e))? {
        if let Some(id) = parse_hex(&name, ".wal") {
            // Segment ids count up from 1 and stay below the pack bit; a
            // name above it was never written by a store (and `id + 1`
            // past it would reach pack ids, then overflow).
            if pack::is_pack(id) {
                if !opts.salvage {
                    return Err(corrupted(
                        dir,
                        format!("{name} is no segment name a store writes (id out of range)"),
                    ));
                }
                report
                    .lost
                    .push(format!("{name} is no segment name a store writes; ignored"));
                continue;
            }
            seg_ids.insert(id);
        } else if let Some(seq) = parse_hex(&name, ".ckp") {
            ckps.insert(seq, name);
        } else if let Some(id) = pack::parse_name(&name) {
            pack_ids.insert(id);
        } else if (name == "checkpoint.tmp" || name.ends_with(".pack.tmp")) && writable {
            let _ = vfs.remove(&dir.join(&name));
        }
    }

    // The newest intact checkpoint.
    let mut loaded: Option<(Index, Position)> = None;
    for (seq, name) in ckps.iter().rev() {
        let path = dir.join(name);
        let bytes = vfs
            .open(&path)
            .and_then(|f| read_all(&*f))
            .map_err(|e| io_err(dir, &format!("reading checkpoint {name}"), e))?;
        match checkpoint::decode(&bytes) {
            Ok(found) => {
                report.checkpoint = Some(*seq);
                loaded = Some(found);
                break;
            }
            Err(Damage(why)) if opts.salvage => {
                // Set aside like a damaged segment or pack, so that a plain
                // open of the salvaged store does not refuse it again.
                let mut line = format!("checkpoint {name} is damaged ({why}); not used");
                if writable {
                    let lost = format!("{name}.lost");
                    vfs.rename(&path, &dir.join(&lost))
                        .and_then(|()| vfs.sync_dir(dir))
                        .map_err(|e| io_err(dir, "setting a damaged checkpoint aside", e))?;
                    line.push_str(&format!("; set aside as {lost}"));
                }
                report.lost.push(line);
            }
            Err(Damage(why)) => return Err(corrupted(dir, format!("checkpoint {name}: {why}"))),
        }
    }
    let (mut index, start, start_off, mut expected) = match loaded {
        Some((index, pos)) => (index, pos.seg, pos.off, Some(pos.next_seq)),
        None => (Index::new(), 1, SEGMENT_HEADER_LEN, Some(0)),
    };

    // No gap from the replay start to the newest segment.
    let mut live: Vec<u64> = Vec::new();
    if let Some(&last) = seg_ids.iter().next_back() {
        let mut id = start;
        if !seg_ids.contains(&start) && opts.salvage {
            if let Some(&first) = seg_ids.range(start..).next() {
                report.lost.push(format!(
                    "segments {} to {} are missing; replay starts at {}",
                    segment_name(start),
                    segment_name(first - 1),
                    segment_name(first)
                ));
                id = first;
                expected = None;
            }
        }
        while id <= last {
            if seg_ids.contains(&id) {
                live.push(id);
            } else if opts.salvage {
                set_aside(vfs, dir, &seg_ids, id, &mut report)?;
                break;
            } else {
                return Err(corrupted(
                    dir,
                    format!("segment {} is missing", segment_name(id)),
                ));
            }
            id += 1;
        }
    }
    if report.checkpoint.is_some() && live.first() != Some(&start) && !opts.salvage {
        return Err(corrupted(
            dir,
            format!(
                "segment {} (named by the checkpoint) is missing",
                segment_name(start)
            ),
        ));
    }

    // Older segments: keep the referenced ones, remove the rest.
    let referenced = index.referenced_segments();
    for &id in seg_ids.range(..start) {
        if !referenced.contains(&id) && writable {
            vfs.remove(&dir.join(segment_name(id)))
                .map_err(|e| io_err(dir, "removing an unreferenced segment", e))?;
            report.removed_segments.push(id);
        }
    }
    // A pack no checkpoint names is a leftover of an interrupted
    // compaction, unless salvage had to give up something already (say
    // the newest checkpoint, which named it): then it is set aside.
    let leftovers = !opts.salvage || (report.checkpoint.is_some() && report.lost.is_empty());
    let mut segs = pack::recover(
        vfs,
        dir,
        &pack_ids,
        &mut index,
        pack::Recovery {
            leftovers,
            salvage: opts.salvage,
            writable,
        },
        &mut report,
    )?;
    for &id in &referenced {
        if id >= start {
            continue;
        }
        if seg_ids.contains(&id) {
            let f = vfs
                .open(&dir.join(segment_name(id)))
                .map_err(|e| io_err(dir, "opening a segment", e))?;
            segs.insert(id, f);
        } else if opts.salvage {
            let n = index.drop_segment(id);
            report.lost.push(format!(
                "segment {} is missing: {n} entries lost",
                segment_name(id)
            ));
        } else {
            return Err(corrupted(
                dir,
                format!(
                    "segment {} is missing but still referenced",
                    segment_name(id)
                ),
            ));
        }
    }

    // Replay.
    let mut tail = SEGMENT_HEADER_LEN;
    // The largest durable watermark any record carries, and the records of
    // the active segment at or past it (seq, offset), oldest first.
    let mut proven = 0u64;
    let mut unproven: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut filled = SEGMENT_HEADER_LEN;
    let mut active = None;
    for (i, &id) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        let name = segment_name(id);
        let path = dir.join(&name);
        let file = vfs
            .open(&path)
            .map_err(|e| io_err(dir, "opening a segment", e))?;
        let bytes = read_all(&*file).map_err(|e| io_err(dir, &format!("reading {name}"), e))?;
        if record::is_v1_segment(&bytes) {
            return Err(Error::unsupported(format!(
                "file store {}: segment {name} was written by an older stowage (segment \
                 format 1, 16-byte record headers); this version reads only format 2 and \
                 changes nothing: open it with the version that wrote it and copy the data out",
                dir.display()
            )));
        }
        if let Err(Damage(why)) = record::check_segment_header(&bytes, id) {
            // A segment is only written after its header and the directory
            // were synced, so a bad header on the newest, never-checkpointed
            // segment with nothing after it is an interrupted rotation. One
            // that records follow is damage to acknowledged data.
            let empty = (bytes.get(SEGMENT_HEADER_LEN as usize..))
                .is_none_or(|rest| rest.iter().all(|&b| b == 0));
            if !empty && opts.salvage && i > 0 {
                set_aside(vfs, dir, &seg_ids, id, &mut report)?;
                report
                    .lost
                    .push(format!("segment {name}: its header is damaged ({why})"));
                break;
            }
            if !empty {
                return Err(corrupted(
                    dir,
                    format!("segment {name} at offset 0: {why}, and records follow it"),
                ));
            }
            if is_last && (report.checkpoint.is_none() || id != start) && i > 0 {
                if writable {
                    vfs.remove(&path)
                        .map_err(|e| io_err(dir, "removing a torn segment", e))?;
                }
                report.truncated_tail = Some((id, 0, bytes.len() as u64));
                break;
            }
            if is_last && live.len() == 1 && report.checkpoint.is_none() {
                if writable {
                    vfs.remove(&path)
                        .map_err(|e| io_err(dir, "removing a torn segment", e))?;
                }
                report.truncated_tail = Some((id, 0, bytes.len() as u64));
                break;
            }
            return Err(corrupted(dir, format!("segment {name} at offset 0: {why}")));
        }
        let mut off = if id == start {
            start_off
        } else {
            SEGMENT_HEADER_LEN
        } as usize;
        if off > bytes.len() {
            return Err(corrupted(
                dir,
                format!(
                    "segment {name} at offset {}: the segment ends before the checkpoint's position {off}",
                    bytes.len()
                ),
            ));
        }
        let mut salvaged = false;
        filled = bytes.len() as u64;
        loop {
            let rest = bytes.get(off..).unwrap_or(&[]);
            // `intact`: the frame passed its CRC, so these are the bytes
            // that were written — never a torn write, whatever follows.
            let (damage, intact) = match record::decode_frame(rest, id) {
                Ok(None) => break,
                Ok(Some(frame)) if expected.is_some_and(|e| e != frame.seq) => (
                    Damage(format!(
                        "record seq {} where {} was expected",
                        frame.seq,
                        expected.unwrap_or(0)
                    )),
                    true,
                ),
                Ok(Some(frame)) => match (
                    record::decode_batch(frame.payload),
                    frame.seq.checked_add(1),
                ) {
                    (Ok(ops), Some(next_seq)) => {
                        proven = proven.max(frame.synced);
                        if is_last {
                            unproven.push_back((frame.seq, off as u64));
                            while unproven.front().is_some_and(|&(seq, _)| seq < proven) {
                                unproven.pop_front();
                            }
                        }
                        index.apply(id, (off + RECORD_HEADER_LEN) as u64, &ops);
                        report.replayed_records += 1;
                        expected = Some(next_seq);
                        off += frame.len;
                        continue;
                    }
                    (Err(d), _) => (d, true),
                    // Only a crafted or damaged store gets here (2^64
                    // records): an intact frame, so damage, not a torn tail.
                    (Ok(_), None) => (
                        Damage(format!(
                            "record seq {} leaves no seq for a next record",
                            frame.seq
                        )),
                        true,
                    ),
                },
                Err(d) => (d, false),
            };
            if !intact && rest.iter().all(|&b| b == 0) {
                // Zeros the engine wrote ahead of its tail: the clean end
                // (`filled` stays the file's length). Records lost before
                // the next segment show as a seq gap at its first record.
                break;
            }
            let next = expected.unwrap_or(0);
            // A torn write in the last segment: no intact record after the
            // damage proves the damaged record durable (a reordered write
            // can leave later records of the same unsynced round intact).
            let watermark = watermark_after(&bytes, off, id, next);
            if is_last && !intact && watermark.is_none_or(|w| w <= next) {
                if writable {
                    truncate(&*file, off as u64)
                        .map_err(|e| io_err(dir, "truncating a torn tail", e))?;
                }
                report.truncated_tail = Some((id, off as u64, (bytes.len() - off) as u64));
                filled = off as u64;
                break;
            }
            if !opts.salvage {
                let proof = match watermark {
                    Some(w) if is_last && !intact => format!(
                        "; a later record shows that every record below seq {w} had been \
                         fsynced, so this is damage to acknowledged data, not a torn write"
                    ),
                    _ => String::new(),
                };
                return Err(corrupted(
                    dir,
                    format!("segment {name} at offset {off}: {}{proof}", damage.0),
                ));
            }
            truncate(&*file, off as u64).map_err(|e| io_err(dir, "salvaging", e))?;
            filled = off as u64;
            report.lost.push(format!(
                "segment {name} from offset {off}: {} bytes dropped ({})",
                bytes.len() - off,
                damage.0
            ));
            if let Some(&after) = live.get(i + 1) {
                set_aside(vfs, dir, &seg_ids, after, &mut report)?;
            }
            salvaged = true;
            break;
        }
        tail = off as u64;
        segs.insert(id, file);
        active = Some(id);
        if salvaged {
            break;
        }
    }
    let active = match active {
        Some(id) => id,
        None if !writable => {
            return Err(Error::new(
                stowage_core::ErrorKind::NotFound,
                format!(
                    "file store {}: no store here to open with mode=read_only",
                    dir.display()
                ),
            ));
        }
        None => {
            let id = start;
            let file =
                create_segment(vfs, dir, id).map_err(|e| io_err(dir, "creating a segment", e))?;
            segs.insert(id, file);
            tail = SEGMENT_HEADER_LEN;
            filled = SEGMENT_HEADER_LEN;
            id
        }
    };
    // Replay built the blocks by pushing; their spare capacity goes back.
    index.shrink();
    Ok(Recovered {
        index,
        segs,
        active,
        unproven: unproven.front().map_or(tail, |&(_, off)| off.min(tail)),
        tail,
        filled,
        next_seq: expected.unwrap_or(0),
        report,
    })
}

fn truncate(file: &dyn VFile, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    file.sync_data()
}

/// Salvage: renames segments from `from` on to `*.wal.lost` and reports it.
fn set_aside(
    vfs: &dyn Vfs,
    dir: &Path,
    seg_ids: &BTreeSet<u64>,
    from: u64,
    report: &mut RecoveryReport,
) -> Result<()> {
    for &id in seg_ids.range(from..) {
        let name = segment_name(id);
        vfs.rename(&dir.join(&name), &dir.join(format!("{name}.lost")))
            .map_err(|e| io_err(dir, "setting a segment aside", e))?;
        report.lost.push(format!(
            "segment {name} set aside as {name}.lost (after damage)"
        ));
    }
    vfs.sync_dir(dir)
        .map_err(|e| io_err(dir, "syncing the directory", e))
}
