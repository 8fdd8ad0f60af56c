//! Checks for [`ReleaseRegistry`](stowage_core::ReleaseRegistry) (SPEC §5).

mod listing;
mod records;
mod rollbacks;

pub use listing::*;
pub use records::*;
pub use rollbacks::*;

use stowage_core::ReleaseRecord;

/// The seqs of `records`, in order.
fn seqs(records: &[ReleaseRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}
