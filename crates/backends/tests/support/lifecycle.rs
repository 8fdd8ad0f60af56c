//! Shared by the lifecycle tests: a clock the test sets, stores opened
//! with it, fresh URLs and a whole GC pass.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use stowage_core::lifecycle::BlobGc;
use stowage_core::{
    Digest, LogKind, NewLogEntry, RandomIds, SigningKey, StoreEnv, Stores, Supersession,
    SupersessionDraft, SupersessionKind, Timestamp,
};

use super::redis_server;

/// A start time far from the epoch.
pub(crate) const T0: u64 = 1_700_000_000_000;

/// A clock that stays where the test puts it.
#[derive(Debug)]
pub(crate) struct Clock(AtomicU64);

impl Clock {
    pub(crate) fn at(ms: u64) -> Arc<Clock> {
        Arc::new(Clock(AtomicU64::new(ms)))
    }

    pub(crate) fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub(crate) fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl stowage_core::Clock for Clock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// A store at `url` on the test's clock.
pub(crate) async fn open_at(url: &str, clock: &Arc<Clock>) -> Stores {
    let env = StoreEnv::new(clock.clone(), Arc::new(RandomIds::default()));
    stowage_backends::open_with(url, env)
        .await
        .expect("open redis store")
}

/// A fresh prefix on the single-node server.
pub(crate) fn standalone(tag: &str) -> String {
    redis_server::fresh_url(tag)
}

/// A fresh prefix on the 3-node cluster.
pub(crate) fn cluster(tag: &str) -> String {
    redis_server::with_params(
        &redis_server::cluster_url(),
        &format!("prefix={}", redis_server::unique_prefix(tag)),
    )
}

/// One whole `gc_blobs` pass (batches of 2): examined, deleted, bytes.
pub(crate) async fn gc_all(s: &Stores, policy: &BlobGc) -> (u64, u64, u64) {
    let policy = policy.clone().batch(2);
    let (mut after, mut total) = (None, (0, 0, 0));
    loop {
        let sweep = s.lifecycle.gc_blobs(&policy, after.as_ref()).await.unwrap();
        total.0 += sweep.examined;
        total.1 += sweep.affected;
        total.2 += sweep.removed;
        match sweep.next {
            Some(next) => after = Some(next),
            None => return total,
        }
    }
}

/// A small log entry.
pub(crate) fn entry(n: u8) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "user", "text", Bytes::from(vec![n; 8]))
}

/// A signed supersession of `target` by `replacement`.
pub(crate) fn sup(target: Digest, replacement: Digest) -> Supersession {
    Supersession::sign(
        &SigningKey::from_bytes(&[3; 32]),
        SupersessionDraft::new(
            target,
            Some(replacement),
            SupersessionKind::Correction,
            "r",
            Timestamp::from_millis(T0),
        ),
    )
}
