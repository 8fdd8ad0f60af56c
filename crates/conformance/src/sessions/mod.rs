//! Checks for [`SessionStore`](stowage_core::SessionStore) (SPEC §6).

mod log;
mod records;
mod replace;

pub use log::*;
pub use records::*;
pub use replace::*;
