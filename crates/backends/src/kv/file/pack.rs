//! Packs: compacted, compressed images of sealed segments.
//!
//! Compaction ([`maintain`](super::maintain)) copies the live values of
//! sealed segments, in key order, into a pack: a stream of records
//! (table, key, value) cut into blocks of about [`BLOCK_LEN`] bytes, each
//! stored LZ4-compressed (or as is, when that saves too little), with a
//! table of the blocks at the end. The index then points into the pack's
//! uncompressed stream, so a pack reads like a segment ([`Pack`] is a
//! read-only [`VFile`]) and every value keeps its CRC32C check.
//!
//! A run's events lie side by side in a pack, one hash after the other,
//! which is what makes them compress: an event costs ~60 bytes there
//! instead of ~350 in the log (`docs/file-engine.md`, "Packs").
//!
//! Format 1: magic `STWGPAK1`; the blocks; the block table (per block:
//! stream offset u64, file offset u64, stored length u32, stream length
//! u32, kind u8 (0 stored, 1 LZ4), CRC32C u32 of the stored bytes); then
//! a 40-byte trailer: table offset u64, block count u64, stream length
//! u64, value bytes u64 (what compaction weighs garbage against), CRC32C
//! u32 of table and trailer, padding u32. Records in the stream: table
//! u8, key length u32, key, value length u32, value (little-endian).
//! The keys make a pack self-describing for tools, though recovery takes
//! every location from the checkpoint, which is the only thing that
//! references a pack.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::ErrorKind;

use super::index::Index;
use super::record::Damage;
use super::recovery::{corrupted, io_err, parse_hex, RecoveryReport};
use super::vfs::{VFile, Vfs};
use crate::kv::seam::Table;

/// Pack ids have this bit set; segment ids never do.
pub(crate) const PACK_BIT: u64 = 1 << 63;
/// A block is cut once its stream bytes reach this (a larger record gets
/// a block of its own).
pub(crate) const BLOCK_LEN: usize = 32 << 10;
const MAGIC: &[u8; 8] = b"STWGPAK1";
const ENTRY_LEN: usize = 29;
const TRAILER_LEN: usize = 40;
/// Decompressed blocks kept per pack for reads that follow each other.
const CACHED_BLOCKS: usize = 4;
const KIND_STORED: u8 = 0;
const KIND_LZ4: u8 = 1;

/// The id of pack file `name` (`<n:016x>.pack`).
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let n = parse_hex(name, ".pack")?;
    (!is_pack(n)).then_some(n | PACK_BIT)
}

/// Whether `id` names a pack.
pub(crate) fn is_pack(id: u64) -> bool {
    id & PACK_BIT != 0
}

/// The file name of pack `id`.
pub(crate) fn pack_name(id: u64) -> String {
    format!("{:016x}.pack", id & !PACK_BIT)
}

/// One block: where its bytes are in the stream and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    at: u64,
    file_off: u64,
    stored: u32,
    len: u32,
    kind: u8,
    crc: u32,
}

impl Block {
    fn end(&self) -> u64 {
        self.at + u64::from(self.len)
    }
}

/// Writes a pack file record by record; nothing references it until the
/// caller installs it.
pub(crate) struct PackWriter {
    file: Arc<dyn VFile>,
    file_off: u64,
    at: u64,
    values: u64,
    pending: Vec<u8>,
    blocks: Vec<Block>,
}

impl PackWriter {
    /// Creates (or truncates) the pack file at `path`.
    pub(crate) fn create(vfs: &dyn Vfs, path: &Path) -> io::Result<PackWriter> {
        let file = vfs.create(path)?;
        file.write_at(MAGIC, 0)?;
        Ok(PackWriter {
            file,
            file_off: MAGIC.len() as u64,
            at: 0,
            values: 0,
            pending: Vec::with_capacity(BLOCK_LEN * 2),
            blocks: Vec::new(),
        })
    }

    /// Appends a record; returns the stream offset of its value.
    pub(crate) fn push(&mut self, table: Table, key: &[u8], value: &[u8]) -> io::Result<u64> {
        let too_long = |_| io::Error::new(io::ErrorKind::InvalidInput, "record too long");
        let klen = u32::try_from(key.len()).map_err(too_long)?;
        let vlen = u32::try_from(value.len()).map_err(too_long)?;
        self.pending.push(table.id());
        self.pending.extend_from_slice(&klen.to_le_bytes());
        self.pending.extend_from_slice(key);
        self.pending.extend_from_slice(&vlen.to_le_bytes());
        let value_at = self.at + self.pending.len() as u64;
        self.pending.extend_from_slice(value);
        self.values += u64::from(vlen);
        if self.pending.len() >= BLOCK_LEN {
            self.cut()?;
        }
        Ok(value_at)
    }

    /// Writes the pending stream bytes as one block.
    fn cut(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(self.pending.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block too long"))?;
        let packed = lz4_flex::block::compress(&self.pending);
        // Compression must pay for the decompression of every read.
        let (kind, stored) = if packed.len() < self.pending.len() / 8 * 7 {
            (KIND_LZ4, &packed[..])
        } else {
            (KIND_STORED, &self.pending[..])
        };
        self.file.write_at(stored, self.file_off)?;
        self.blocks.push(Block {
            at: self.at,
            file_off: self.file_off,
            stored: stored.len() as u32,
            len,
            kind,
            crc: crc32c::crc32c(stored),
        });
        self.file_off += stored.len() as u64;
        self.at += u64::from(len);
        self.pending.clear();
        Ok(())
    }

    /// Writes the last block, the block table and the trailer, syncs the
    /// file, and returns it as a readable pack.
    pub(crate) fn finish(mut self, id: u64) -> io::Result<Pack> {
        self.cut()?;
        let mut tail = Vec::with_capacity(self.blocks.len() * ENTRY_LEN + TRAILER_LEN);
        for b in &self.blocks {
            tail.extend_from_slice(&b.at.to_le_bytes());
            tail.extend_from_slice(&b.file_off.to_le_bytes());
            tail.extend_from_slice(&b.stored.to_le_bytes());
            tail.extend_from_slice(&b.len.to_le_bytes());
            tail.push(b.kind);
            tail.extend_from_slice(&b.crc.to_le_bytes());
        }
        for v in [
            self.file_off,
            self.blocks.len() as u64,
            self.at,
            self.values,
        ] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32c::crc32c(&tail);
        tail.extend_from_slice(&crc.to_le_bytes());
        tail.extend_from_slice(&[0u8; 4]);
        self.file.write_at(&tail, self.file_off)?;
        self.file.sync_data()?;
        Ok(Pack::new(id, self.file, self.blocks, self.at, self.values))
    }
}

/// An open pack: a read-only [`VFile`] over its uncompressed stream.
pub(crate) struct Pack {
    id: u64,
    file: Arc<dyn VFile>,
    blocks: Vec<Block>,
    len: u64,
    values: u64,
    cache: Mutex<Vec<(usize, Arc<Vec<u8>>)>>,
}

impl Pack {
    fn new(id: u64, file: Arc<dyn VFile>, blocks: Vec<Block>, len: u64, values: u64) -> Pack {
        Pack {
            id,
            file,
            blocks,
            len,
            values,
            cache: Mutex::new(Vec::with_capacity(CACHED_BLOCKS)),
        }
    }

    /// Opens pack `id` from `file`, checking its trailer and block table
    /// (blocks are checked when read). What a block may claim is bounded
    /// by the file (LZ4 expands at most ~255×), not by options that may
    /// have changed since the pack was written.
    pub(crate) fn open(id: u64, file: Arc<dyn VFile>) -> io::Result<Result<Pack, Damage>> {
        let size = file.len()?;
        let damage = |why: &str| Ok(Err(Damage(format!("pack {}: {why}", pack_name(id)))));
        let Some(trailer_at) = size.checked_sub(TRAILER_LEN as u64) else {
            return damage("the file is too short");
        };
        let mut trailer = [0u8; TRAILER_LEN];
        file.read_at(&mut trailer, trailer_at)?;
        let word =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let (table_off, count, len, values) = (
            word(&trailer, 0),
            word(&trailer, 8),
            word(&trailer, 16),
            word(&trailer, 24),
        );
        let table_len = count.checked_mul(ENTRY_LEN as u64);
        if table_off < MAGIC.len() as u64
            || table_off > trailer_at
            || table_len != Some(trailer_at - table_off)
        {
            return damage("the block table does not fit the file");
        }
        let mut tail = vec![0u8; (size - table_off) as usize];
        file.read_at(&mut tail, table_off)?;
        let body = tail.len() - 8;
        if crc32c::crc32c(&tail[..body]).to_le_bytes()[..] != tail[body..body + 4] {
            return damage("the block table's CRC32C does not match");
        }
        let mut magic = [0u8; 8];
        file.read_at(&mut magic, 0)?;
        if &magic != MAGIC {
            return damage("not a pack file");
        }
        let mut blocks = Vec::with_capacity(count as usize);
        let (mut at, mut file_off) = (0u64, MAGIC.len() as u64);
        for e in tail[..body - 32].chunks_exact(ENTRY_LEN) {
            let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap_or_default());
            let b = Block {
                at: word(e, 0),
                file_off: word(e, 8),
                stored: u32_at(16),
                len: u32_at(20),
                kind: e[24],
                crc: u32_at(25),
            };
            let fits = b.at == at
                && b.file_off == file_off
                && b.len > 0
                && ((b.kind == KIND_LZ4 && u64::from(b.len) <= u64::from(b.stored) * 256)
                    || (b.kind == KIND_STORED && b.stored == b.len))
                && b.file_off + u64::from(b.stored) <= table_off;
            if !fits {
                return damage("a block table entry is out of place");
            }
            at = b.end();
            file_off += u64::from(b.stored);
            blocks.push(b);
        }
        if at != len || file_off != table_off {
            return damage("the blocks do not add up to the pack");
        }
        Ok(Ok(Pack::new(id, file, blocks, len, values)))
    }

    fn invalid(&self, why: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("pack {}: {why}", pack_name(self.id)),
        )
    }

    /// The stream bytes of compressed block `i`, from the cache or the file.
    fn decompressed(&self, i: usize) -> io::Result<Arc<Vec<u8>>> {
        if let Some((_, bytes)) = self.cache.lock().iter().find(|(n, _)| *n == i) {
            return Ok(Arc::clone(bytes));
        }
        let b = self.blocks[i];
        let mut stored = vec![0u8; b.stored as usize];
        self.file.read_at(&mut stored, b.file_off)?;
        self.check(&b, &stored)?;
        let mut bytes = vec![0u8; b.len as usize];
        match lz4_flex::block::decompress_into(&stored, &mut bytes) {
            Ok(n) if n == bytes.len() => {}
            _ => return Err(self.invalid(format!("block at {} does not decompress", b.at))),
        }
        let bytes = Arc::new(bytes);
        let mut cache = self.cache.lock();
        if cache.len() == CACHED_BLOCKS {
            cache.remove(0);
        }
        cache.push((i, Arc::clone(&bytes)));
        Ok(bytes)
    }

    fn check(&self, b: &Block, stored: &[u8]) -> io::Result<()> {
        if crc32c::crc32c(stored) != b.crc {
            return Err(self.invalid(format!("block at {} fails its CRC32C", b.at)));
        }
        Ok(())
    }
}

impl VFile for Pack {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let end = off.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read past the end of pack {}", pack_name(self.id)),
            ));
        }
        let mut i = self.blocks.partition_point(|b| b.end() <= off);
        let mut done = 0usize;
        while done < buf.len() {
            let Some(b) = self.blocks.get(i) else {
                return Err(self.invalid("the block table ends early".into()));
            };
            let from = (off + done as u64 - b.at) as usize;
            let n = (b.len as usize - from).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            if b.kind == KIND_STORED {
                // The value's own CRC32C (checked by the caller) covers
                // these bytes; the block's is for whole-block reads.
                self.file.read_at(out, b.file_off + from as u64)?;
            } else {
                out.copy_from_slice(&self.decompressed(i)?[from..from + n]);
            }
            done += n;
            i += 1;
        }
        Ok(())
    }

    fn write_at(&self, _buf: &[u8], _off: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "packs are read-only",
        ))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "packs are read-only",
        ))
    }

    /// A pack is synced before it is installed.
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn packed_value_bytes(&self) -> Option<u64> {
        Some(self.values)
    }
}

/// Opens pack `id` at `path` on `vfs`, mapping damage to `Corrupted`.
pub(crate) fn open_file(
    vfs: &dyn Vfs,
    path: &Path,
    id: u64,
) -> stowage_core::Result<Arc<dyn VFile>> {
    let ctx = |e: io::Error| {
        stowage_core::Error::from(e).context(format!("opening pack {}", path.display()))
    };
    let file = vfs.open(path).map_err(ctx)?;
    match Pack::open(id, file).map_err(ctx)? {
        Ok(pack) => Ok(Arc::new(pack)),
        Err(Damage(why)) => Err(stowage_core::Error::corrupted(format!(
            "{}: {why}",
            path.display()
        ))),
    }
}

/// How recovery treats packs (see [`recover`]).
pub(crate) struct Recovery {
    /// A pack no checkpoint names can only be a leftover of an
    /// interrupted compaction: remove it (else set it aside).
    pub(crate) leftovers: bool,
    pub(crate) salvage: bool,
    pub(crate) writable: bool,
}

/// Opens the packs on disk (`ids`) that `index` references, and removes
/// or sets aside (`<name>.lost`, reported) the others. A referenced pack
/// that is missing or does not open is `Corrupted`; with salvage its
/// entries are dropped and reported, and its file set aside.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    ids: &BTreeSet<u64>,
    index: &mut Index,
    how: Recovery,
    report: &mut RecoveryReport,
) -> stowage_core::Result<BTreeMap<u64, Arc<dyn VFile>>> {
    let referenced = index.referenced_segments();
    let set_aside = |id: u64, report: &mut RecoveryReport, why: String| {
        let name = pack_name(id);
        let mut line = format!("pack {name} {why}");
        if how.writable && ids.contains(&id) {
            vfs.rename(&dir.join(&name), &dir.join(format!("{name}.lost")))
                .map_err(|e| io_err(dir, "setting a pack aside", e))?;
            line.push_str(&format!("; set aside as {name}.lost"));
        }
        report.lost.push(line);
        Ok::<(), stowage_core::Error>(())
    };
    for &id in ids.iter().filter(|id| !referenced.contains(id)) {
        if !how.writable {
            continue;
        }
        if how.leftovers {
            vfs.remove(&dir.join(pack_name(id)))
                .map_err(|e| io_err(dir, "removing an unreferenced pack", e))?;
            report.removed_segments.push(id);
        } else {
            set_aside(id, report, "is named by no usable checkpoint".into())?;
        }
    }
    let mut packs = BTreeMap::new();
    for &id in referenced.iter().filter(|id| is_pack(**id)) {
        let opened = if ids.contains(&id) {
            open_file(vfs, &dir.join(pack_name(id)), id).map(Some)
        } else {
            Ok(None)
        };
        match opened {
            Ok(Some(pack)) => {
                packs.insert(id, pack);
            }
            // Only damage is given up: any other error reading the pack
            // (EIO, EMFILE, ENOMEM, …) may be transient, and dropping an
            // intact pack's entries for it would lose acknowledged data.
            // It fails the open instead, as a segment's or a checkpoint's
            // read error does.
            Ok(None) if how.salvage => {
                let n = index.drop_segment(id);
                set_aside(id, report, format!("is missing: {n} entries lost"))?;
            }
            Err(e) if how.salvage && e.kind() == ErrorKind::Corrupted => {
                let n = index.drop_segment(id);
                set_aside(id, report, format!("is damaged ({e}): {n} entries lost"))?;
            }
            Ok(None) => {
                return Err(corrupted(
                    dir,
                    format!("pack {} is missing but still referenced", pack_name(id)),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    if how.writable {
        vfs.sync_dir(dir)
            .map_err(|e| io_err(dir, "syncing the directory", e))?;
    }
    Ok(packs)
}
