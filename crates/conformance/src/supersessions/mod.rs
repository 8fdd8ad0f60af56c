//! Checks for [`SupersessionStore`](stowage_core::SupersessionStore) (SPEC §7).

mod put;
mod query;

pub use put::*;
pub use query::*;
