//! Store statistics over the seam: [`Reader::measure`] of whole tables and
//! of the key ranges that share one (blob headers and chunks, release
//! heads and records), in one consistent read. Nothing is decoded.

use super::super::EngineStore;
use crate::engine::keys;
use crate::engine::{RangeSize, Reader, Table};
use crate::lifecycle::StoreStats;
use crate::Result;

fn measure(
    reader: &dyn Reader,
    table: Table,
    (start, end): (Vec<u8>, Vec<u8>),
) -> Result<RangeSize> {
    reader.measure(table, &start, Some(&end))
}

fn stats(reader: &dyn Reader) -> Result<StoreStats> {
    let whole = |table| reader.measure(table, &[], None);
    let headers = measure(reader, Table::Blobs, keys::blob_headers_after(None))?;
    let chunks = measure(reader, Table::Blobs, keys::all_blob_chunks())?;
    let heads = measure(reader, Table::Releases, keys::release_heads_after(None))?;
    let records = measure(reader, Table::Releases, keys::all_release_records())?;
    let mut stats = StoreStats {
        blobs: headers.entries,
        blob_bytes: chunks.bytes,
        release_names: heads.entries,
        release_records: records.entries,
        stored_bytes: headers.bytes + chunks.bytes + heads.bytes + records.bytes,
        ..StoreStats::default()
    };
    for table in Table::ALL {
        if matches!(table, Table::Blobs | Table::Releases) {
            continue;
        }
        let size = whole(table)?;
        stats.stored_bytes += size.bytes;
        let count = match table {
            Table::Runs => &mut stats.runs,
            Table::RunEvents => &mut stats.run_events,
            Table::Sessions => &mut stats.sessions,
            Table::SessionLog => &mut stats.log_entries,
            Table::Supersessions => &mut stats.supersessions,
            Table::BlobRefs => &mut stats.blob_references,
            _ => continue,
        };
        *count = size.entries;
    }
    Ok(stats)
}

impl EngineStore {
    pub(super) async fn stats_now(&self) -> Result<StoreStats> {
        self.read(|_, reader| stats(reader)).await
    }
}
