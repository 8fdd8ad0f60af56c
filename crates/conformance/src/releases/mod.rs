//! Checks for [`ReleaseRegistry`](stowage_core::ReleaseRegistry) (SPEC §5).

mod listing;
mod records;

pub use listing::*;
pub use records::*;

use stowage_core::ReleaseRecord;

/// The seqs of `records`, in order.
fn seqs(records: &[ReleaseRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}
