//! The in-memory backend (`memory://`, feature `memory`, the default).
//!
//! Everything lives in the process's memory: nothing is durable and nothing
//! is shared with other processes. It is core's reference engine
//! ([`MemoryEngine`]) under core's stores, so every rule is the one every
//! other backend runs; this module adds snapshots and damage hooks.
//!
//! # Capabilities
//!
//! | capability | value |
//! |---|---|
//! | backend | `"memory"` |
//! | durable | no |
//! | shared between processes | no |
//! | `max_blob_size` | 256 MiB |
//! | streaming | yes: `get_stream` yields zero-copy chunks of the stored bytes |
//!
//! # Concurrency
//!
//! Read jobs share one read-write lock; write jobs hold it exclusively for
//! the few microseconds of their rules and staging (blob hashing and
//! checksumming happen before, outside it). [`MemoryBackend::fork`] copies
//! under the shared lock, so a snapshot never holds half of a mutation.
//!
//! # Integrity
//!
//! Blob chunks carry a CRC32C checked on every read; `verify` re-hashes fully.
//! Run events and log entries carry their hash chain. The `corrupt_*`
//! methods damage stored data behind the SDK's back so that tests can prove
//! the damage is reported as `Corrupted`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use stowage_backends::memory::MemoryBackend;
//! let backend = MemoryBackend::new(stowage_core::StoreEnv::default());
//! let stores = backend.stores();
//! let d = stores.cas.put(bytes::Bytes::from_static(b"hi")).await.unwrap();
//! let snapshot = backend.fork();
//! stores.cas.delete(&d).await.unwrap();
//! assert!(snapshot.stores().cas.contains(&d).await.unwrap());
//! # });
//! ```

use std::fmt;
use std::future::Future;

use stowage_core::engine::{tamper, MemoryEngine};
use stowage_core::{
    Capabilities, Digest, Error, LogEntry, Result, RunEvent, RunId, StoreEnv, Stores,
};

/// An in-memory store of all five kinds of state.
///
/// Cloning gives another handle to the same state; use
/// [`MemoryBackend::fork`] for an independent copy.
#[derive(Clone)]
pub struct MemoryBackend {
    engine: MemoryEngine,
    env: StoreEnv,
}

impl MemoryBackend {
    /// An empty store using `env` for its clock and run ids.
    pub fn new(env: StoreEnv) -> Self {
        MemoryBackend {
            engine: MemoryEngine::new(),
            env,
        }
    }

    /// One handle per store trait, all over this backend's state.
    /// Closing them closes the backend: every later call fails with
    /// `Conflict`.
    pub fn stores(&self) -> Stores {
        stowage_core::engine::stores(std::sync::Arc::new(self.engine.clone()), self.env.clone())
    }

    /// The engine under the stores (to damage it with
    /// `stowage_core::engine::tamper`, say).
    pub fn engine(&self) -> &MemoryEngine {
        &self.engine
    }

    /// What the memory backend can do: not durable, not shared, blobs up to
    /// 256 MiB, streaming.
    pub fn capabilities() -> Capabilities {
        MemoryEngine::declared_capabilities()
    }

    /// A deep copy of all state with the same environment.
    ///
    /// The copy is a consistent point-in-time snapshot: it waits for
    /// in-flight mutations to finish and holds new ones off while copying,
    /// so it never contains half of an operation. Later changes to either
    /// backend do not affect the other.
    pub fn fork(&self) -> MemoryBackend {
        self.fork_with(self.env.clone())
    }

    /// As [`MemoryBackend::fork`], with a different clock and id generator.
    pub fn fork_with(&self, env: StoreEnv) -> MemoryBackend {
        MemoryBackend {
            engine: self.engine.fork(),
            env,
        }
    }

    /// Runs a damage hook to completion: the memory engine never waits, so
    /// its futures finish on their first poll.
    fn damage(&self, hook: impl Future<Output = Result<()>>) -> bool {
        futures::executor::block_on(hook).is_ok()
    }

    /// Integrity-testing hook: flips a byte of the stored blob (keeping its
    /// length; the empty blob gets a stray byte instead) without updating
    /// its checksum, so `get` and `verify` report `Corrupted`. Returns false
    /// if the blob is absent.
    pub fn corrupt_blob(&self, digest: &Digest) -> bool {
        self.damage(tamper::blob(&self.engine, *digest))
    }

    /// Integrity-testing hook: changes the payload of event `seq` of `run`
    /// and leaves its hash, so `verify_run` reports `Corrupted`. Returns
    /// false if there is no such event.
    pub fn corrupt_run_event(&self, run: RunId, seq: u64) -> bool {
        self.damage(tamper::run_event(&self.engine, run, seq))
    }

    /// Integrity-testing hook: replaces the stored events of `run` with
    /// exactly `events` (which the caller may have dropped, renumbered or
    /// re-chained), leaving the run record, so `verify_run` reports the
    /// difference as `Corrupted`. Returns false if there is no such run.
    pub fn corrupt_run_events(&self, run: RunId, events: Vec<RunEvent>) -> bool {
        self.damage(tamper::run_events(&self.engine, run, events))
    }

    /// Integrity-testing hook: replaces the stored log of `session` with
    /// exactly `entries`, leaving the session record, so `verify_log`
    /// reports the difference as `Corrupted`. Returns false if there is no
    /// such session.
    pub fn corrupt_log(&self, session: &str, entries: Vec<LogEntry>) -> bool {
        self.damage(tamper::log_entries(
            &self.engine,
            session.to_owned(),
            entries,
        ))
    }

    /// Integrity-testing hook: overwrites the chain head the record of
    /// `run` keeps (not its events or count), so `verify_run` reports
    /// `Corrupted`. Returns false if there is no such run.
    pub fn corrupt_run_head(&self, run: RunId, head: Option<Digest>) -> bool {
        self.damage(tamper::run_head(&self.engine, run, head))
    }

    /// Integrity-testing hook: overwrites the chain head the record of
    /// `session` keeps (not its log or length), so `verify_log` reports
    /// `Corrupted`. Returns false if there is no such session.
    pub fn corrupt_log_head(&self, session: &str, head: Option<Digest>) -> bool {
        self.damage(tamper::log_head(&self.engine, session.to_owned(), head))
    }

    /// Integrity-testing hook: changes the payload of log entry `seq` of
    /// `session` and leaves its hash, so `verify_log` reports `Corrupted`.
    /// Returns false if there is no such entry.
    pub fn corrupt_log_entry(&self, session: &str, seq: u64) -> bool {
        self.damage(tamper::log_entry(&self.engine, session.to_owned(), seq))
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// Refuses anything but `memory://` (a fresh, empty store).
///
/// # Errors
/// `InvalidInput` naming the URL when it has a host, path, query,
/// fragment or credentials: a memory store has no location.
pub(crate) fn check_url(url: &url::Url) -> Result<()> {
    let extra = if url.host_str().is_some_and(|h| !h.is_empty()) {
        Some("a host")
    } else if url.port().is_some() {
        Some("a port")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("credentials")
    } else if !url.path().is_empty() {
        Some("a path")
    } else if url.query().is_some() {
        Some("a query")
    } else if url.fragment().is_some() {
        Some("a fragment")
    } else {
        None
    };
    if let Some(what) = extra {
        return Err(Error::invalid_input(format!(
            "store URL {:?} has {what}; a memory store is written exactly `memory://`",
            crate::open::shown_url(url.as_str())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_sync() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<MemoryBackend>();
    }

    #[tokio::test]
    async fn urls_other_than_memory_are_rejected() {
        let ok = url::Url::parse("memory://").unwrap();
        assert!(check_url(&ok).is_ok());
        for bad in [
            "memory://host",
            "memory:///path",
            "memory://?x=1",
            "memory://#frag",
            "memory://user@host:5",
        ] {
            let url = url::Url::parse(bad).unwrap();
            let err = check_url(&url).unwrap_err();
            assert_eq!(err.kind(), stowage_core::ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().contains("memory://"), "{err}");
        }
    }
}
