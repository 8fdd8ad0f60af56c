//! Runnable examples of stowage; see `quickstart.rs`
//! (`cargo run -p stowage-examples --example quickstart`).
