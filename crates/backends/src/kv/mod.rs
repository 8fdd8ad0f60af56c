//! The embedded ordered key-value engines (our file engine, RocksDB,
//! sled) behind core's public engine seam.
//!
//! An engine supplies only [`OrderedKv`]: get, ordered range scan, atomic
//! write batch, and (the file engine) deferred durability for group
//! commit. [`engine::KvEngine`] adapts it to
//! [`stowage_core::engine::Engine`] — blocking calls off the runtime,
//! in-process scope locks, the writer thread, durability tickets as
//! `Durable` futures — and core's stores run every rule over that. See
//! `docs/kv.md`.

// `_kv` alone (no engine) is not a real build; only silence it there.
#![cfg_attr(
    not(any(feature = "file", feature = "rocksdb", feature = "sled")),
    allow(dead_code)
)]

use std::sync::Arc;

use stowage_core::{Capabilities, Result, StoreEnv, Stores};

use self::seam::OrderedKv;

pub(crate) mod engine;
mod gate;
pub(crate) mod options;
pub(crate) mod seam;
mod writer;

#[cfg(test)]
mod adapter_tests;
#[cfg(all(test, any(feature = "sled", feature = "rocksdb", feature = "file")))]
mod engine_tests;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(feature = "rocksdb")]
pub(crate) mod rocksdb;
#[cfg(feature = "sled")]
pub(crate) mod sled;

/// The stores over one engine: core's store rules over [`engine::KvEngine`].
/// `capabilities.max_blob_size` is the blob limit.
pub(crate) fn kv_stores(
    engine: Arc<dyn OrderedKv>,
    env: StoreEnv,
    capabilities: Capabilities,
) -> Result<Stores> {
    let engine = engine::KvEngine::new(engine, capabilities)?;
    Ok(stowage_core::engine::stores(Arc::new(engine), env))
}

#[cfg(feature = "file")]
pub(crate) mod file;
