//! # stowage-conformance
//!
//! The suite every stowage backend must pass (SPEC §8).

pub mod cas;
pub mod harness;
pub mod integrity;
mod macros;
mod model;
pub mod releases;
pub mod reopen;
pub mod runs;
pub mod sessions;
pub mod supersessions;
mod util;

pub use harness::{Harness, Tamper};
#[doc(hidden)]
pub use macros::__run;
#[doc(hidden)]
pub use model::__run_model;
