//! Reading the values of a scan: neighbouring values of one segment are
//! read with one `pread` of the span that holds them, instead of one
//! each. A run's events are appended one after another (with the run's
//! small head records in between), so a page of 1 000 events is a handful
//! of reads instead of 1 000.

use std::sync::Arc;

use bytes::Bytes;
use stowage_core::{Error, Result};

use super::index::Loc;
use super::pool;
use super::recovery::segment_name;
use super::vfs::VFile;
use super::{FileKv, Hit};
use crate::kv::seam::Table;

/// Values further apart than this are read separately (the bytes in
/// between would be read for nothing).
const MAX_GAP: u64 = 16 << 10;
/// The largest span read at once.
const MAX_SPAN: u64 = 4 << 20;

impl FileKv {
    /// Reads the value of a key of `table` at `loc` and checks its CRC32C.
    pub(super) fn read_value(
        &self,
        table: Table,
        loc: Loc,
        file: Option<Arc<dyn VFile>>,
    ) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.value_len(table, loc)?];
        self.read_into(table, loc, file, &mut buf)?;
        Ok(buf)
    }

    /// [`FileKv::read_value`] as shared bytes: a large value (a blob
    /// chunk) is read into a buffer of the store's pool, which returns
    /// there once the bytes are dropped (`pool.rs`).
    pub(super) fn read_bytes(
        &self,
        table: Table,
        loc: Loc,
        file: Option<Arc<dyn VFile>>,
    ) -> Result<Bytes> {
        let len = self.value_len(table, loc)?;
        if !pool::pooled(len) {
            return self.read_value(table, loc, file).map(Bytes::from);
        }
        self.pool
            .read(len, |buf| self.read_into(table, loc, file, buf))
    }

    fn where_(&self, table: Table, loc: Loc) -> String {
        format!(
            "file store {}: a value of table {} in segment {} at offset {}",
            self.dir.display(),
            table.name(),
            segment_name(loc.seg),
            loc.off
        )
    }

    /// The length of the value at `loc`, refused above the largest record.
    fn value_len(&self, table: Table, loc: Loc) -> Result<usize> {
        let len = loc.len as usize;
        if len > self.opts.max_record_size {
            return Err(Error::corrupted(format!(
                "{}: the index claims a value of {} bytes",
                self.where_(table, loc),
                loc.len
            )));
        }
        Ok(len)
    }

    /// Fills `buf` (`loc.len` bytes) with the value at `loc` and checks
    /// its CRC32C.
    fn read_into(
        &self,
        table: Table,
        loc: Loc,
        file: Option<Arc<dyn VFile>>,
        buf: &mut [u8],
    ) -> Result<()> {
        let file = file.ok_or_else(|| {
            Error::corrupted(format!(
                "{}: the segment is missing",
                self.where_(table, loc)
            ))
        })?;
        self.flush_for_read()?;
        file.read_at(buf, loc.off).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupted(format!(
                    "{}: the value is cut short",
                    self.where_(table, loc)
                ))
                .with_source(e)
            } else {
                Error::from(e).context(self.where_(table, loc))
            }
        })?;
        if crc32c::crc32c(buf) != loc.crc {
            return Err(Error::corrupted(format!(
                "{}: the value's CRC32C does not match",
                self.where_(table, loc)
            )));
        }
        Ok(())
    }

    /// The values of `hits`, in order, each checked against its CRC32C.
    pub(super) fn read_values(
        &self,
        table: Table,
        hits: Vec<Hit>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::with_capacity(hits.len());
        let mut rest = &hits[..];
        while let Some(first) = rest.first() {
            let run = coalescible(rest);
            if run == 1 || !self.read_span(&rest[..run], &mut out)? {
                let (key, loc, file) = first.clone();
                out.push((key, self.read_value(table, loc, file)?));
                rest = &rest[1..];
                continue;
            }
            rest = &rest[run..];
        }
        Ok(out)
    }

    /// Reads the values of `hits` (one segment, ascending, close together)
    /// with one read. Returns `false`, having added nothing, when the span
    /// cannot be read or a value does not check out: the caller then reads
    /// them one by one, which reports the precise error.
    fn read_span(&self, hits: &[Hit], out: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<bool> {
        let (Some((_, first, Some(file))), Some((_, last, _))) = (hits.first(), hits.last()) else {
            return Ok(false);
        };
        if hits
            .iter()
            .any(|(_, loc, _)| loc.len as usize > self.opts.max_record_size)
        {
            return Ok(false);
        }
        self.flush_for_read()?;
        let start = first.off;
        let mut span = vec![0u8; (last.off + u64::from(last.len) - start) as usize];
        if file.read_at(&mut span, start).is_err() {
            return Ok(false);
        }
        let values: Option<Vec<Vec<u8>>> = hits
            .iter()
            .map(|(_, loc, _)| {
                let at = (loc.off - start) as usize;
                let value = span.get(at..at + loc.len as usize)?;
                (crc32c::crc32c(value) == loc.crc).then(|| value.to_vec())
            })
            .collect();
        let Some(values) = values else {
            return Ok(false);
        };
        out.extend(hits.iter().map(|(k, _, _)| k.clone()).zip(values));
        Ok(true)
    }
}

/// How many hits from the front of `hits` can be read with one span: the
/// same segment file, ascending and non-overlapping offsets, gaps of at
/// most [`MAX_GAP`], a span of at most [`MAX_SPAN`].
fn coalescible(hits: &[Hit]) -> usize {
    let Some((_, first, _)) = hits.first() else {
        return 0;
    };
    let mut end = first.off + u64::from(first.len);
    let mut n = 1;
    for (_, loc, _) in &hits[1..] {
        let next_end = loc.off + u64::from(loc.len);
        if loc.seg != first.seg
            || loc.off < end
            || loc.off - end > MAX_GAP
            || next_end - first.off > MAX_SPAN
        {
            break;
        }
        end = next_end;
        n += 1;
    }
    n
}
