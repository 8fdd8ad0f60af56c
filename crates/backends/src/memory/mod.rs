//! The in-memory backend (`memory://`, feature `memory`, the default).
//!
//! Everything lives in the process's memory: nothing is durable and nothing
//! is shared with other processes. It implements all five store traits with
//! the same rules as every other backend (validation, encodings, hash chains
//! and state machines all come from `stowage-core`).
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
//! There is no global lock serialising unrelated entities. Each run, session
//! and release name has its own mutex inside an ordered map guarded by a
//! read-write lock that is only write-locked to insert or remove an entity.
//! Blobs live in 16 ordered shards (by the digest's first byte), each
//! write-locked only to insert or remove one blob; hashing and checksumming
//! happen outside any lock.
//! Supersession `put`s are serialised by one short writer lock so that the
//! cycle check and the insert are atomic across targets; readers never take
//! it. A global "gate" is taken *shared* by every mutation and *exclusively*
//! by [`MemoryBackend::fork`], which therefore copies a consistent
//! point-in-time snapshot even while writers run. Lock order is always
//! gate → map → entity; no lock is ever held across an `.await`.
//!
//! # Integrity
//!
//! Blobs carry a CRC32C checked on every read; `verify` re-hashes fully.
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

mod cas;
mod releases;
mod runs;
mod sessions;
mod supersessions;

use std::fmt;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};
use stowage_core::{
    Capabilities, Digest, DurabilityLevel, Error, LogEntry, Result, RunEvent, RunId, StoreEnv,
    Stores, Timestamp,
};

/// Largest blob the memory backend accepts: 256 MiB.
const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;

/// An in-memory store of all five kinds of state.
///
/// Cloning gives another handle to the same state; use
/// [`MemoryBackend::fork`] for an independent copy.
#[derive(Clone)]
pub struct MemoryBackend {
    state: Arc<State>,
}

/// The whole state of one memory backend.
pub(crate) struct State {
    env: StoreEnv,
    /// Taken shared by every mutation, exclusively by `fork`.
    gate: RwLock<()>,
    blobs: cas::Blobs,
    runs: runs::Runs,
    releases: releases::Releases,
    sessions: sessions::Sessions,
    supersessions: supersessions::Supersessions,
}

impl State {
    fn empty(env: StoreEnv) -> Self {
        State {
            env,
            gate: RwLock::new(()),
            blobs: cas::Blobs::default(),
            runs: runs::Runs::default(),
            releases: releases::Releases::default(),
            sessions: sessions::Sessions::default(),
            supersessions: supersessions::Supersessions::default(),
        }
    }

    /// Held for the duration of every mutation (taken before any other lock).
    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    fn now(&self) -> Timestamp {
        self.env.clock.now()
    }
}

impl MemoryBackend {
    /// An empty store using `env` for its clock and run ids.
    pub fn new(env: StoreEnv) -> Self {
        MemoryBackend {
            state: Arc::new(State::empty(env)),
        }
    }

    /// One handle per store trait, all over this backend's state.
    pub fn stores(&self) -> Stores {
        let s = &self.state;
        Stores::new(
            Arc::new(cas::MemoryCas(Arc::clone(s))),
            Arc::new(runs::MemoryRuns(Arc::clone(s))),
            Arc::new(releases::MemoryReleases(Arc::clone(s))),
            Arc::new(sessions::MemorySessions(Arc::clone(s))),
            Arc::new(supersessions::MemorySupersessions(Arc::clone(s))),
            Self::capabilities(),
        )
    }

    /// What the memory backend can do: not durable, not shared, blobs up to
    /// 256 MiB, streaming reads without copying.
    pub fn capabilities() -> Capabilities {
        Capabilities {
            backend: "memory",
            durability: DurabilityLevel::None,
            shared: false,
            max_blob_size: MAX_BLOB_SIZE,
            streaming: true,
        }
    }

    /// A deep copy of all state with the same environment. (Blob and log
    /// payload bytes are immutable, so the copy shares them; nothing either
    /// backend does afterwards is visible to the other.)
    ///
    /// The copy is a consistent point-in-time snapshot: it waits for
    /// in-flight mutations to finish and holds new ones off while copying,
    /// so it never contains half of an operation. Later changes to either
    /// backend do not affect the other.
    pub fn fork(&self) -> MemoryBackend {
        self.fork_with(self.state.env.clone())
    }

    /// As [`MemoryBackend::fork`], with a different clock and id generator.
    pub fn fork_with(&self, env: StoreEnv) -> MemoryBackend {
        let s = &self.state;
        let _exclusive = s.gate.write();
        let state = State {
            env,
            gate: RwLock::new(()),
            blobs: s.blobs.snapshot(),
            runs: s.runs.snapshot(),
            releases: s.releases.snapshot(),
            sessions: s.sessions.snapshot(),
            supersessions: s.supersessions.snapshot(),
        };
        MemoryBackend {
            state: Arc::new(state),
        }
    }

    /// Integrity-testing hook: flips a byte of the stored blob (keeping its
    /// length; the empty blob gets garbage bytes instead) without updating
    /// its checksum, so `get` and `verify` report `Corrupted`. Returns false
    /// if the blob is absent.
    pub fn corrupt_blob(&self, digest: &Digest) -> bool {
        let _w = self.state.writing();
        self.state.blobs.corrupt(digest)
    }

    /// Integrity-testing hook: changes the payload of event `seq` of `run`
    /// and leaves its hash, so `verify_run` reports `Corrupted`. Returns
    /// false if there is no such event.
    pub fn corrupt_run_event(&self, run: RunId, seq: u64) -> bool {
        let _w = self.state.writing();
        self.state.runs.corrupt_event(run, seq)
    }

    /// Integrity-testing hook: replaces the stored events of `run` with
    /// exactly `events` (which the caller may have dropped, renumbered or
    /// re-chained), leaving the run record, so `verify_run` reports the
    /// difference as `Corrupted`. Returns false if there is no such run.
    pub fn corrupt_run_events(&self, run: RunId, events: Vec<RunEvent>) -> bool {
        let _w = self.state.writing();
        self.state.runs.replace_events(run, events)
    }

    /// Integrity-testing hook: replaces the stored log of `session` with
    /// exactly `entries`, leaving the session record, so `verify_log`
    /// reports the difference as `Corrupted`. Returns false if there is no
    /// such session.
    pub fn corrupt_log(&self, session: &str, entries: Vec<LogEntry>) -> bool {
        let _w = self.state.writing();
        self.state.sessions.replace_entries(session, entries)
    }

    /// Integrity-testing hook: overwrites the chain head the record of
    /// `run` keeps (not its events or count), so `verify_run` reports
    /// `Corrupted`. Returns false if there is no such run.
    pub fn corrupt_run_head(&self, run: RunId, head: Option<Digest>) -> bool {
        let _w = self.state.writing();
        self.state.runs.set_head(run, head)
    }

    /// Integrity-testing hook: overwrites the chain head the record of
    /// `session` keeps (not its log or length), so `verify_log` reports
    /// `Corrupted`. Returns false if there is no such session.
    pub fn corrupt_log_head(&self, session: &str, head: Option<Digest>) -> bool {
        let _w = self.state.writing();
        self.state.sessions.set_head(session, head)
    }

    /// Integrity-testing hook: changes the payload of log entry `seq` of
    /// `session` and leaves its hash, so `verify_log` reports `Corrupted`.
    /// Returns false if there is no such entry.
    pub fn corrupt_log_entry(&self, session: &str, seq: u64) -> bool {
        let _w = self.state.writing();
        self.state.sessions.corrupt_entry(session, seq)
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("env", &self.state.env)
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
            url.as_str()
        )));
    }
    Ok(())
}

/// Entries with seq strictly after `after_seq`, at most `limit` (clamped),
/// from a gap-free log whose index is its seq.
fn page_after<T: Clone>(items: &[T], after_seq: Option<u64>, limit: usize) -> Vec<T> {
    let start = match after_seq {
        None => 0,
        Some(s) => match s.checked_add(1).and_then(|n| usize::try_from(n).ok()) {
            Some(n) => n,
            None => return Vec::new(),
        },
    };
    items
        .get(start..)
        .unwrap_or(&[])
        .iter()
        .take(stowage_core::validate::page_limit(limit))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_sync_and_share_state() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<MemoryBackend>();
        let backend = MemoryBackend::new(StoreEnv::default());
        assert!(Arc::ptr_eq(&backend.state, &backend.clone().state));
        assert!(!Arc::ptr_eq(&backend.state, &backend.fork().state));
    }

    #[test]
    fn page_after_handles_edges() {
        let v = [0u64, 1, 2, 3];
        assert_eq!(page_after(&v, None, 2), vec![0, 1]);
        assert_eq!(page_after(&v, Some(1), 10), vec![2, 3]);
        assert_eq!(page_after(&v, Some(3), 10), Vec::<u64>::new());
        assert_eq!(page_after(&v, Some(99), 10), Vec::<u64>::new());
        assert_eq!(page_after(&v, Some(u64::MAX), 10), Vec::<u64>::new());
        assert_eq!(page_after(&v, None, 0), Vec::<u64>::new());
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
