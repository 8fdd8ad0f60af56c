//! Checks for [`RunLedger`](stowage_core::RunLedger) (SPEC §4).

mod events;
mod listing;
mod races;
mod records;
mod rules;

pub use events::*;
pub use listing::*;
pub use races::*;
pub use records::*;
pub use rules::*;
