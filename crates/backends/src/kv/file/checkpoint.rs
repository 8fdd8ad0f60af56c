//! Checkpoints: a snapshot of the index and the WAL position it covers, so
//! opening replays only the records written after it.
//!
//! Format 2: magic `STWGCKP2`, then the replay position (segment u64,
//! offset u64, next seq u64), the block count u64, the blocks of the index
//! (table u8, first key's length u32, first key, location count u64, the
//! locations), and a CRC32C of everything before it. A location is its
//! segment and its offset as the zigzag LEB128 varint of their difference
//! from the previous location's (in the block; from 0 at its start), its
//! length as a LEB128 varint, and its CRC32C; a run's events, written one
//! after another, take ~8 bytes each. Fixed-width integers are
//! little-endian. Format 1 (`STWGCKP1`, one entry per key with fixed-width
//! locations) is still read. A checkpoint is written to `checkpoint.tmp`,
//! fsynced, renamed to `<next seq>.ckp`, and the directory fsynced.

use super::index::{Index, Loc};
use super::record::Damage;
use crate::kv::seam::Table;

const MAGIC: &[u8; 8] = b"STWGCKP2";
const MAGIC_V1: &[u8; 8] = b"STWGCKP1";

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
    for (table, blocks) in index.tables() {
        for (first, locs) in blocks.blocks() {
            buf.push(table.id());
            buf.extend_from_slice(&len_u32(first.len()).to_le_bytes());
            buf.extend_from_slice(first);
            buf.extend_from_slice(&(locs.len() as u64).to_le_bytes());
            let mut prev = (0u64, 0u64);
            for loc in locs {
                put_varint(&mut buf, zigzag(loc.seg.wrapping_sub(prev.0)));
                put_varint(&mut buf, zigzag(loc.off.wrapping_sub(prev.1)));
                put_varint(&mut buf, u64::from(loc.len));
                buf.extend_from_slice(&loc.crc.to_le_bytes());
                prev = (loc.seg, loc.off);
            }
            count += 1;
        }
    }
    buf[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Keys are bounded by the record size, far below `u32::MAX`.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A difference as an unsigned number that stays small for small
/// differences of either sign.
fn zigzag(diff: u64) -> u64 {
    let v = diff as i64;
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> u64 {
    ((v >> 1) as i64 ^ -((v & 1) as i64)) as u64
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
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
    fn varint(&mut self) -> Result<u64, Damage> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Damage("a varint in the checkpoint is too long".into()))
    }
    fn table(&mut self) -> Result<Table, Damage> {
        let id = self.take(1)?[0];
        Table::ALL
            .get(id as usize)
            .copied()
            .ok_or_else(|| Damage(format!("unknown table id {id} in the checkpoint")))
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
    let magic = c.take(8)?;
    if magic != MAGIC && magic != MAGIC_V1 {
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
        let table = c.table()?;
        let klen = c.u32()? as usize;
        let first = c.take(klen)?;
        if magic == MAGIC_V1 {
            // One key with its fixed-width location.
            let loc = within_a_file(Loc {
                seg: c.u64()?,
                off: c.u64()?,
                len: c.u32()?,
                crc: c.u32()?,
            })?;
            index.insert(table, first, loc);
            continue;
        }
        let n = c.u64()?;
        let mut prev = (0u64, 0u64);
        let mut key = first.to_vec();
        for i in 0..n {
            let seg = prev.0.wrapping_add(unzigzag(c.varint()?));
            let off = prev.1.wrapping_add(unzigzag(c.varint()?));
            let len = u32::try_from(c.varint()?)
                .map_err(|_| Damage("a value length in the checkpoint is too large".into()))?;
            let loc = within_a_file(Loc {
                seg,
                off,
                len,
                crc: c.u32()?,
            })?;
            if i > 0 && !next_key(&mut key) {
                return Err(Damage(
                    "a block of the checkpoint overflows its counter".into(),
                ));
            }
            index.insert(table, &key, loc);
            prev = (seg, off);
        }
    }
    if c.pos != body.len() {
        return Err(Damage("the checkpoint has trailing bytes".into()));
    }
    Ok((index, pos))
}

/// Steps `key` to the next key of its block (its last 8 bytes, a
/// big-endian counter, plus one); `false` if it has no counter or it
/// overflows.
fn next_key(key: &mut [u8]) -> bool {
    let Some(at) = key.len().checked_sub(8) else {
        return false;
    };
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&key[at..]);
    match u64::from_be_bytes(counter).checked_add(1) {
        Some(next) => {
            key[at..].copy_from_slice(&next.to_be_bytes());
            true
        }
        None => false,
    }
}

/// `loc` if the value it names lies where a file can hold it (its end is
/// a valid file offset), so reads never compute past `u64`.
fn within_a_file(loc: Loc) -> Result<Loc, Damage> {
    match loc.off.checked_add(u64::from(loc.len)) {
        Some(end) if end <= i64::MAX as u64 => Ok(loc),
        _ => Err(Damage(format!(
            "a location in the checkpoint ends past any file (offset {}, length {})",
            loc.off, loc.len
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(seg: u64, off: u64, len: u32) -> Loc {
        Loc {
            seg,
            off,
            len,
            crc: len ^ 0xdead_beef,
        }
    }

    fn event_key(run: u8, seq: u64) -> Vec<u8> {
        let mut key = vec![run; 16];
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    fn sample() -> Index {
        let mut index = Index::new();
        // A run's events: one block whose locations go back and forth
        // between segments (compaction moves some to a newer one).
        for seq in 0..50u64 {
            let (seg, off) = if seq % 7 == 3 {
                (9, 10)
            } else {
                (2, 4096 + seq * 300)
            };
            index.insert(Table::RunEvents, &event_key(1, seq), loc(seg, off, 200));
        }
        index.insert(
            Table::RunEvents,
            &event_key(2, u64::MAX),
            loc(3, 1 << 40, 1),
        );
        index.insert(Table::Meta, b"k", loc(1, 0, 0));
        // The largest values a location may hold.
        let far = i64::MAX as u64 - u64::from(u32::MAX);
        index.insert(Table::Runs, &[7; 16], loc(u64::MAX, far, u32::MAX));
        index
    }

    #[test]
    fn a_location_past_any_file_is_damage() {
        let mut index = Index::new();
        index.insert(Table::Runs, &[7; 16], loc(1, u64::MAX - 3, 8));
        let pos = Position {
            seg: 1,
            off: 24,
            next_seq: 1,
        };
        assert!(decode(&encode(&index, pos)).is_err());
    }

    fn all(index: &Index) -> Vec<(Table, Vec<u8>, Loc)> {
        index.entries().collect()
    }

    #[test]
    fn checkpoints_round_trip_blocks_and_single_keys() {
        let index = sample();
        let pos = Position {
            seg: 3,
            off: 77,
            next_seq: 1234,
        };
        let bytes = encode(&index, pos);
        let (back, back_pos) = decode(&bytes).unwrap();
        assert_eq!(back_pos, pos);
        assert_eq!(all(&back), all(&index));
        // The 50 events are one block of varint locations.
        assert!(bytes.len() < 50 * 12 + 200, "{} bytes", bytes.len());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn format_1_checkpoints_are_still_read() {
        let index = sample();
        let mut v1 = MAGIC_V1.to_vec();
        for v in [3u64, 77, 1234] {
            v1.extend_from_slice(&v.to_le_bytes());
        }
        let entries = all(&index);
        v1.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (table, key, loc) in &entries {
            v1.push(table.id());
            v1.extend_from_slice(&(key.len() as u32).to_le_bytes());
            v1.extend_from_slice(key);
            v1.extend_from_slice(&loc.seg.to_le_bytes());
            v1.extend_from_slice(&loc.off.to_le_bytes());
            v1.extend_from_slice(&loc.len.to_le_bytes());
            v1.extend_from_slice(&loc.crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let (back, pos) = decode(&v1).unwrap();
        assert_eq!(pos.next_seq, 1234);
        assert_eq!(all(&back), entries);
    }
}
