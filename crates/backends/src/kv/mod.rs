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

/// Retries `attempt` while it finds the store's lock held by this very
/// process or by the one that started it, for up to 2 s: an OS lock tied
/// to an open file (`flock`, as the file engine and sled take theirs) is
/// shared by a child the process is spawning until that child execs, so a
/// store the process has just closed can look held by itself for that
/// moment — and, to a program it then starts on that store, held by its
/// parent while the parent spawns another. `attempt` answers `Ok(Ok(_))`
/// when it took the lock, `Ok(Err(e))` when [`held_nearby`] says the holder
/// is such a process (retried; `e` is the answer once the time is up),
/// `Err(_)` otherwise.
#[cfg(any(feature = "file", feature = "sled"))]
pub(crate) fn retry_own_lock<T>(
    mut attempt: impl FnMut() -> stowage_core::Result<stowage_core::Result<T>>,
) -> stowage_core::Result<T> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
    let start = std::time::Instant::now();
    loop {
        match attempt()? {
            Ok(done) => return Ok(done),
            Err(held_here) if start.elapsed() >= PATIENCE => return Err(held_here),
            Err(_) => std::thread::sleep(PAUSE),
        }
    }
}

/// Whether `holder`, the pid a lock file names, is this process or its
/// parent: a holder whose share of the lock may be a spawning child's
/// inherited copy that goes away at its `exec` (see [`retry_own_lock`]).
#[cfg(any(feature = "file", feature = "sled"))]
pub(crate) fn held_nearby(holder: &str) -> bool {
    let Ok(pid) = holder.trim().parse::<u32>() else {
        return false;
    };
    #[cfg(unix)]
    let parent = std::os::unix::process::parent_id() == pid;
    #[cfg(not(unix))]
    let parent = false;
    pid == std::process::id() || parent
}
