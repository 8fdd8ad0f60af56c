//! Checks for [`SessionStore`](stowage_core::SessionStore) (SPEC §6).

mod log;
mod races;
mod records;
mod replace;
mod rules;

pub use log::*;
pub use races::*;
pub use records::*;
pub use replace::*;
pub use rules::*;
