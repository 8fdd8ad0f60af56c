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
use crate::kv::seam::{Table, Visit};

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
        let mut buf = vec![0u8; self.value_len(table, loc, file.as_deref())?];
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
        let len = self.value_len(table, loc, file.as_deref())?;
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

    /// The length of the value at `loc`, checked before a buffer of that
    /// size is allocated. A value within `max_record_size` is taken as is
    /// (no extra call). A larger one is legitimate — written when the
    /// option was higher; it only refuses new writes — so it is bounded by
    /// its file instead: it must lie within the bytes the file holds.
    fn value_len(&self, table: Table, loc: Loc, file: Option<&dyn VFile>) -> Result<usize> {
        let len = loc.len as usize;
        if len <= self.opts.max_record_size {
            return Ok(len);
        }
        let file = file.ok_or_else(|| self.missing(table, loc))?;
        let size = file
            .len()
            .map_err(|e| Error::from(e).context(self.where_(table, loc)))?;
        if loc
            .off
            .checked_add(u64::from(loc.len))
            .is_none_or(|end| end > size)
        {
            return Err(Error::corrupted(format!(
                "{}: the index claims a value of {} bytes, past the end of the file ({size} \
                 bytes)",
                self.where_(table, loc),
                loc.len
            )));
        }
        Ok(len)
    }

    fn missing(&self, table: Table, loc: Loc) -> Error {
        Error::corrupted(format!(
            "{}: the segment is missing",
            self.where_(table, loc)
        ))
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
        let file = file.ok_or_else(|| self.missing(table, loc))?;
        self.flush_for_read()?;
        if self.read_stranded(loc, buf) {
            return self.check_crc(table, loc, buf);
        }
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
        self.check_crc(table, loc, buf)
    }

    fn check_crc(&self, table: Table, loc: Loc, value: &[u8]) -> Result<()> {
        if crc32c::crc32c(value) != loc.crc {
            return Err(Error::corrupted(format!(
                "{}: the value's CRC32C does not match",
                self.where_(table, loc)
            )));
        }
        Ok(())
    }

    /// Hands the key and value of each of `hits` to `visit`, in order,
    /// each value checked against its CRC32C first.
    pub(super) fn visit_values(
        &self,
        table: Table,
        hits: Vec<Hit>,
        visit: Visit<'_>,
    ) -> Result<()> {
        let mut rest = &hits[..];
        while let Some(first) = rest.first() {
            let run = coalescible(rest);
            if run == 1 || !self.read_span(&rest[..run], visit)? {
                let (key, loc, file) = first.clone();
                visit(&key, &self.read_value(table, loc, file)?)?;
                rest = &rest[1..];
                continue;
            }
            rest = &rest[run..];
        }
        Ok(())
    }

    /// Reads the values of `hits` (one segment, ascending, close together)
    /// with one read and visits them. Returns `false`, having visited
    /// nothing, when the span cannot be read or a value does not check out:
    /// the caller then reads them one by one, which reports the precise
    /// error.
    fn read_span(&self, hits: &[Hit], visit: Visit<'_>) -> Result<bool> {
        let (Some((_, first, Some(file))), Some((_, last, _))) = (hits.first(), hits.last()) else {
            return Ok(false);
        };
        // Bounded by MAX_SPAN (as `coalescible` joins them), not by
        // `max_record_size`: values written under a larger one are read
        // like any other.
        let start = first.off;
        let Some(span_len) = last
            .off
            .checked_add(u64::from(last.len))
            .and_then(|end| end.checked_sub(start))
            .filter(|&n| n <= MAX_SPAN)
        else {
            return Ok(false);
        };
        self.flush_for_read()?;
        if self.in_doubt_from().is_some() {
            // Some values may be in memory only (stranded): read one by
            // one.
            return Ok(false);
        }
        let mut span = vec![0u8; span_len as usize];
        if file.read_at(&mut span, start).is_err() {
            return Ok(false);
        }
        let value = |loc: &Loc| {
            let at = (loc.off - start) as usize;
            span.get(at..at + loc.len as usize)
        };
        // Every value checks out before the first is visited.
        let intact = hits
            .iter()
            .all(|(_, loc, _)| value(loc).is_some_and(|v| crc32c::crc32c(v) == loc.crc));
        if !intact {
            return Ok(false);
        }
        for (key, loc, _) in hits {
            visit(key, value(loc).unwrap_or_default())?;
        }
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
    let mut end = first.off.saturating_add(u64::from(first.len));
    let mut n = 1;
    for (_, loc, _) in &hits[1..] {
        let next_end = loc.off.saturating_add(u64::from(loc.len));
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
