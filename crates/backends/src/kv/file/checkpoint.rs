//! Checkpoints: a snapshot of the index and the WAL position it covers, so
//! opening replays only the records written after it.
//!
//! Format: magic `STWGCKP1`, then the replay position (segment u64, offset
//! u64, next seq u64), the entry count u64, the entries (table u8, key
//! length u32, key, segment u64, offset u64, length u32, CRC32C u32), and a
//! CRC32C of everything before it. All integers little-endian. A checkpoint
//! is written to `checkpoint.tmp`, fsynced, renamed to `<next seq>.ckp`,
//! and the directory fsynced.

use super::index::{Index, Loc};
use super::record::Damage;
use crate::kv::seam::Table;

const MAGIC: &[u8; 8] = b"STWGCKP1";

/// Where replay resumes after a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The segment holding the next record.
    pub(crate) seg: u64,
    /// The offset of the next record in it.
    pub(crate) off: u64,
    /// The seq the next record must carry.
    pub(crate) next_seq: u64,
}

/// The file name of the checkpoint covering records before `next_seq`.
pub(crate) fn file_name(next_seq: u64) -> String {
    format!("{next_seq:016x}.ckp")
}

/// Encodes `index` at `pos`.
pub(crate) fn encode(index: &Index, pos: Position) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(MAGIC);
    for v in [pos.seg, pos.off, pos.next_seq] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    let count_at = buf.len();
    buf.extend_from_slice(&0u64.to_le_bytes());
    let mut count: u64 = 0;
    for (table, key, loc) in index.entries() {
        buf.push(table.id());
        let klen = u32::try_from(key.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&klen.to_le_bytes());
        buf.extend_from_slice(key);
        buf.extend_from_slice(&loc.seg.to_le_bytes());
        buf.extend_from_slice(&loc.off.to_le_bytes());
        buf.extend_from_slice(&loc.len.to_le_bytes());
        buf.extend_from_slice(&loc.crc.to_le_bytes());
        count += 1;
    }
    buf[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        let end = self.pos.saturating_add(n);
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| Damage("the checkpoint ends early".into()))?;
        self.pos = end;
        Ok(out)
    }
    fn u64(&mut self) -> Result<u64, Damage> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, Damage> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
}

/// Decodes a checkpoint file.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Index, Position), Damage> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| Damage("the checkpoint is truncated".into()))?;
    let (body, crc) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(Damage("the checkpoint's CRC32C does not match".into()));
    }
    let mut c = Cursor {
        bytes: body,
        pos: 0,
    };
    if c.take(8)? != MAGIC {
        return Err(Damage("not a checkpoint file".into()));
    }
    let pos = Position {
        seg: c.u64()?,
        off: c.u64()?,
        next_seq: c.u64()?,
    };
    let count = c.u64()?;
    let mut index = Index::new();
    for _ in 0..count {
        let table_id = c.take(1)?[0];
        let table = Table::ALL
            .get(table_id as usize)
            .copied()
            .ok_or_else(|| Damage(format!("unknown table id {table_id} in the checkpoint")))?;
        let klen = c.u32()? as usize;
        let key = c.take(klen)?.to_vec();
        let loc = Loc {
            seg: c.u64()?,
            off: c.u64()?,
            len: c.u32()?,
            crc: c.u32()?,
        };
        index.insert(table, key, loc);
    }
    if c.pos != body.len() {
        return Err(Damage("the checkpoint has trailing bytes".into()));
    }
    Ok((index, pos))
}
