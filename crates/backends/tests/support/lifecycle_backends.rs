//! Shared by the lifecycle review tests: a clock the test moves, a fresh
//! store of each embedded kind on it, whole sweeps, and `on_backends!`,
//! which runs a test body on memory, sled and SQLite (as built).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use stowage_core::lifecycle::{BlobGc, RunRetention, SessionRetention};
use stowage_core::{LogKind, NewLogEntry, RandomIds, ReleaseMetadata, StoreEnv, Stores, Timestamp};

pub(crate) const T0: u64 = 1_700_000_000_000;

#[derive(Debug)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    pub(crate) fn at(ms: u64) -> Arc<Clock> {
        Arc::new(Clock(AtomicU64::new(ms)))
    }
    pub(crate) fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl stowage_core::Clock for Clock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// A fresh store of `kind` ("memory", "sled", "sqlite") on the test's clock.
pub(crate) async fn open(kind: &str, clock: &Arc<Clock>) -> (Stores, Option<tempfile::TempDir>) {
    let env = StoreEnv::new(clock.clone(), Arc::new(RandomIds::default()));
    let (url, dir) = match kind {
        "memory" => ("memory://".to_owned(), None),
        "sled" => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sled://{}", dir.path().join("db").display()),
                Some(dir),
            )
        }
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            (
                format!("sqlite://{}", dir.path().join("s.db").display()),
                Some(dir),
            )
        }
        _ => unreachable!(),
    };
    let stores = stowage_backends::open_with(&url, env).await.expect("open");
    (stores, dir)
}

pub(crate) fn entry(n: u8) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "user", "text", Bytes::from(vec![n; 8]))
}

pub(crate) fn md(label: &str) -> ReleaseMetadata {
    ReleaseMetadata::new(label, "ci")
}

/// Runs every sweep of `prune_runs` to the end.
pub(crate) async fn prune_all(s: &Stores, policy: &RunRetention) -> (u64, u64) {
    let (mut after, mut examined, mut affected) = (None, 0, 0);
    loop {
        let sweep = s.lifecycle.prune_runs(policy, after).await.unwrap();
        examined += sweep.examined;
        affected += sweep.affected;
        match sweep.next {
            Some(n) => after = Some(n),
            None => return (examined, affected),
        }
    }
}

pub(crate) async fn gc_all(s: &Stores, policy: &BlobGc) -> (u64, u64) {
    let (mut after, mut examined, mut affected) = (None, 0, 0);
    loop {
        let sweep = s.lifecycle.gc_blobs(policy, after.as_ref()).await.unwrap();
        examined += sweep.examined;
        affected += sweep.affected;
        match sweep.next {
            Some(n) => after = Some(n),
            None => return (examined, affected),
        }
    }
}

pub(crate) async fn sessions_sweep(
    s: &Stores,
    policy: &SessionRetention,
    expire: bool,
) -> (u64, u64) {
    let (mut after, mut examined, mut affected) = (None::<String>, 0, 0);
    loop {
        let sweep = if expire {
            s.lifecycle
                .expire_sessions(policy, after.as_deref())
                .await
                .unwrap()
        } else {
            s.lifecycle
                .prune_sessions(policy, after.as_deref())
                .await
                .unwrap()
        };
        examined += sweep.examined;
        affected += sweep.affected;
        match sweep.next {
            Some(n) => after = Some(n),
            None => return (examined, affected),
        }
    }
}

/// Runs `$name(kind)` once per embedded backend built.
macro_rules! on_backends {
    ($name:ident) => {
        mod $name {
            #[cfg(feature = "memory")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                super::$name("memory").await
            }
            #[cfg(feature = "sled")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sled() {
                super::$name("sled").await
            }
            #[cfg(feature = "sqlite")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name("sqlite").await
            }
        }
    };
}
