//! The on-disk framing of the write-ahead log: segment headers, record
//! frames and the batch payload inside a record.
//!
//! Every decoder here is total: it takes untrusted bytes and returns a
//! [`Damage`] instead of panicking, and it checks every length against the
//! bytes actually present before allocating. Stored records are decoded
//! against the format alone, never against `max_record_size`: that option
//! only refuses new writes, and a store written with a larger one (the
//! option may be lowered between opens) holds records above it that are
//! just as acknowledged.

use crate::kv::seam::{Batch, Op, Table};

/// Magic at the start of every segment file (format 2: records carry the
/// durable watermark).
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"STWGSEG2";
/// Magic of format 1 segments (16-byte record headers, no watermark),
/// which this version refuses to open rather than misread.
pub(crate) const SEGMENT_MAGIC_V1: &[u8; 8] = b"STWGSEG1";
/// Length of the segment header: magic, segment id, CRC32C, padding.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 24;
/// Length of a record frame header: payload length, CRC32C, seq, synced.
pub(crate) const RECORD_HEADER_LEN: usize = 24;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_RANGE: u8 = 3;

/// Why bytes did not decode (the caller adds segment and offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage(pub(crate) String);

/// The header of segment `id`.
pub(crate) fn segment_header(id: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks that `bytes` start with the header of segment `id`.
pub(crate) fn check_segment_header(bytes: &[u8], id: u64) -> Result<(), Damage> {
    let expected = segment_header(id);
    match bytes.get(..expected.len()) {
        Some(h) if h == expected => Ok(()),
        Some(h) if h.starts_with(SEGMENT_MAGIC_V1) => Err(Damage(
            "the segment was written by an older stowage (segment format 1); this version \
             reads only format 2"
                .into(),
        )),
        Some(_) => Err(Damage(format!(
            "segment header is not that of segment {id}"
        ))),
        None => Err(Damage("segment header is incomplete".into())),
    }
}

/// Whether `bytes` start like a format 1 segment.
pub(crate) fn is_v1_segment(bytes: &[u8]) -> bool {
    bytes.starts_with(SEGMENT_MAGIC_V1)
}

fn record_crc(segment: u64, len: u32, seq: u64, synced: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&segment.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &synced.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Encodes `batch` into a buffer that starts with [`RECORD_HEADER_LEN`]
/// reserved bytes (filled by [`seal_frame`]), with the operations as
/// [`decode_batch`] would read them back from its payload (borrowing from
/// `batch`, which holds the same bytes), so the writer need not decode
/// what it just encoded.
///
/// Errors when the payload would exceed `max_payload` bytes (checked before
/// anything large is allocated).
pub(crate) fn encode_batch(
    batch: &Batch,
    max_payload: usize,
) -> Result<(Vec<u8>, Vec<OpRef<'_>>), Damage> {
    let mut size: usize = 4;
    for op in &batch.ops {
        size = size.saturating_add(match op {
            Op::Put { key, value, .. } => 2 + 8 + key.len() + value.len(),
            Op::Delete { key, .. } => 2 + 4 + key.len(),
            Op::DeleteRange { start, end, .. } => 2 + 8 + start.len() + end.len(),
        });
    }
    if size > max_payload {
        return Err(Damage(format!(
            "the batch needs {size} bytes, more than the maximum record size of {max_payload} bytes"
        )));
    }
    let count = u32::try_from(batch.ops.len())
        .map_err(|_| Damage("the batch has more than 2^32 operations".into()))?;
    let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + size);
    buf.resize(RECORD_HEADER_LEN, 0);
    buf.extend_from_slice(&count.to_le_bytes());
    let mut ops = Vec::with_capacity(batch.ops.len());
    for op in &batch.ops {
        ops.push(match op {
            Op::Put { table, key, value } => {
                buf.extend_from_slice(&[TAG_PUT, table.id()]);
                put_bytes(&mut buf, key);
                let value_offset = put_bytes(&mut buf, value);
                OpRef::Put {
                    table: *table,
                    key,
                    value,
                    value_offset,
                }
            }
            Op::Delete { table, key } => {
                buf.extend_from_slice(&[TAG_DELETE, table.id()]);
                put_bytes(&mut buf, key);
                OpRef::Delete { table: *table, key }
            }
            Op::DeleteRange { table, start, end } => {
                buf.extend_from_slice(&[TAG_DELETE_RANGE, table.id()]);
                put_bytes(&mut buf, start);
                put_bytes(&mut buf, end);
                OpRef::DeleteRange {
                    table: *table,
                    start,
                    end,
                }
            }
        });
    }
    Ok((buf, ops))
}

/// Appends `bytes` with their length; returns where they start in the
/// payload (after the frame header).
fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    // Lengths fit: the whole payload was checked against `max_payload`,
    // which is itself at most u32::MAX.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    let at = buf.len() - RECORD_HEADER_LEN;
    buf.extend_from_slice(bytes);
    at
}

/// Fills the frame header of `frame` (from [`encode_batch`]) for record
/// `seq` in segment `segment`. `synced` is the engine's durable watermark
/// when the record is sealed: every record with a seq below it was on
/// stable storage (a completed fsync covered it) before this one was
/// written. Recovery uses it as proof of what was acknowledged
/// (`docs/file-engine.md`, "Recovery").
pub(crate) fn seal_frame(frame: &mut [u8], segment: u64, seq: u64, synced: u64) {
    let payload_len = frame.len().saturating_sub(RECORD_HEADER_LEN);
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    let crc = record_crc(
        segment,
        len,
        seq,
        synced,
        frame.get(RECORD_HEADER_LEN..).unwrap_or(&[]),
    );
    if let Some(h) = frame.get_mut(..RECORD_HEADER_LEN) {
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4..8].copy_from_slice(&crc.to_le_bytes());
        h[8..16].copy_from_slice(&seq.to_le_bytes());
        h[16..24].copy_from_slice(&synced.to_le_bytes());
    }
}

/// One record decoded from a segment.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    /// The record's sequence number.
    pub(crate) seq: u64,
    /// The durable watermark when it was sealed (see [`seal_frame`]).
    pub(crate) synced: u64,
    /// The payload (an encoded batch).
    pub(crate) payload: &'a [u8],
    /// Total bytes of the frame (header and payload).
    pub(crate) len: usize,
}

/// Decodes the record frame at the start of `bytes`, which belongs to
/// segment `segment`. `Ok(None)`: `bytes` is empty (clean end).
///
/// The claimed length is checked against the bytes present (the whole
/// segment was read), not against `max_record_size`, which may have been
/// lowered since the record was written: a record above it is intact.
pub(crate) fn decode_frame(bytes: &[u8], segment: u64) -> Result<Option<Frame<'_>>, Damage> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let header = bytes
        .get(..RECORD_HEADER_LEN)
        .ok_or_else(|| Damage("the record header is incomplete".into()))?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[8..16]);
    let seq = u64::from_le_bytes(seq_bytes);
    seq_bytes.copy_from_slice(&header[16..24]);
    let synced = u64::from_le_bytes(seq_bytes);
    if len < 4 {
        return Err(Damage(format!(
            "the record claims {len} payload bytes, too few"
        )));
    }
    let payload = usize::try_from(len)
        .ok()
        .and_then(|len| RECORD_HEADER_LEN.checked_add(len))
        .and_then(|end| bytes.get(RECORD_HEADER_LEN..end))
        .ok_or_else(|| {
            Damage(format!(
                "the record claims {len} payload bytes, more than the {} bytes left in the \
                 segment",
                bytes.len() - RECORD_HEADER_LEN
            ))
        })?;
    if record_crc(segment, len, seq, synced, payload) != crc {
        return Err(Damage("the record's CRC32C does not match".into()));
    }
    Ok(Some(Frame {
        seq,
        synced,
        len: RECORD_HEADER_LEN + payload.len(),
        payload,
    }))
}

/// One operation of a decoded batch, borrowing from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpRef<'a> {
    /// A put; `value_offset` is the value's offset inside the payload.
    Put {
        table: Table,
        key: &'a [u8],
        value: &'a [u8],
        value_offset: usize,
    },
    /// A delete.
    Delete { table: Table, key: &'a [u8] },
    /// A range delete.
    DeleteRange {
        table: Table,
        start: &'a [u8],
        end: &'a [u8],
    },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damage> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| Damage("a length overflows".into()))?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| Damage("the batch ends early".into()))?;
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Damage> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u8(&mut self) -> Result<u8, Damage> {
        Ok(self.take(1)?[0])
    }

    fn bytes(&mut self) -> Result<(&'a [u8], usize), Damage> {
        let len = self.u32()? as usize;
        let at = self.pos;
        Ok((self.take(len)?, at))
    }

    fn table(&mut self) -> Result<Table, Damage> {
        let id = self.u8()?;
        Table::ALL
            .get(id as usize)
            .copied()
            .ok_or_else(|| Damage(format!("unknown table id {id}")))
    }
}

/// Decodes a batch payload. Allocation is bounded by the payload size: the
/// op count is checked against the bytes present before the vector grows.
pub(crate) fn decode_batch(payload: &[u8]) -> Result<Vec<OpRef<'_>>, Damage> {
    let mut r = Reader {
        bytes: payload,
        pos: 0,
    };
    let count = r.u32()? as usize;
    // Each op needs at least 6 bytes (tag, table, one length).
    if count > payload.len() / 6 {
        return Err(Damage(format!(
            "the batch claims {count} operations in {} bytes",
            payload.len()
        )));
    }
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = r.u8()?;
        let table = r.table()?;
        let op = match tag {
            TAG_PUT => {
                let (key, _) = r.bytes()?;
                let (value, value_offset) = r.bytes()?;
                OpRef::Put {
                    table,
                    key,
                    value,
                    value_offset,
                }
            }
            TAG_DELETE => OpRef::Delete {
                table,
                key: r.bytes()?.0,
            },
            TAG_DELETE_RANGE => {
                let (start, _) = r.bytes()?;
                let (end, _) = r.bytes()?;
                OpRef::DeleteRange { table, start, end }
            }
            other => return Err(Damage(format!("unknown operation tag {other}"))),
        };
        ops.push(op);
    }
    if r.pos != payload.len() {
        return Err(Damage("the batch has trailing bytes".into()));
    }
    Ok(ops)
}
