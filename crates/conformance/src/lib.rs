//! # stowage-conformance
//!
//! The suite every stowage backend must pass (SPEC §8). Work in progress:
//! see the harness contract in [`harness`].

pub mod harness;

pub use harness::{Harness, Tamper};
