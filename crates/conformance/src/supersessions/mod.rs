//! Checks for [`SupersessionStore`](stowage_core::SupersessionStore) (SPEC §7).

mod paging;
mod put;
mod query;

pub use paging::*;
pub use put::*;
pub use query::*;
