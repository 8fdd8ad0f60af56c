//! [`Lifecycle`] on Redis (SPEC §10), with the semantics of core's engine
//! implementation: run retention (`runs`), session expiry and pruning
//! (`sessions`), blob references and garbage collection (`refs`, `gc`),
//! forks (`fork`) and statistics (`stats`). The scripts are in `scripts`;
//! `docs/redis.md` ("Lifecycle") has the key layout and what is atomic on
//! a single node and on a cluster.

use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::lifecycle::{
    BlobGc, IfRunning, Lifecycle, Referrer, RunRetention, SessionRetention, StoreStats, Sweep,
};
use stowage_core::{Digest, ReleaseRecord, Result, RunId, Session};

use super::Shared;

mod backfill;
mod fork;
mod gc;
pub(crate) mod refs;
mod runs;
mod scripts;
mod sessions;
mod stats;

pub(crate) use scripts::LifeScripts;

/// The lifecycle handle (`stores.lifecycle`).
pub(crate) struct RedisLifecycle(pub(crate) Arc<Shared>);

#[async_trait]
impl Lifecycle for RedisLifecycle {
    async fn delete_run(&self, run: RunId, if_running: IfRunning) -> Result<bool> {
        runs::delete_run(&self.0, run, if_running).await
    }

    async fn prune_runs(
        &self,
        policy: &RunRetention,
        after: Option<RunId>,
    ) -> Result<Sweep<RunId>> {
        runs::prune_runs(&self.0, policy, after).await
    }

    async fn expire_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        sessions::sweep(&self.0, sessions::SessionSweep::Expire, policy, after).await
    }

    async fn prune_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        sessions::sweep(&self.0, sessions::SessionSweep::Delete, policy, after).await
    }

    async fn pin_blob(&self, digest: &Digest, label: &str) -> Result<()> {
        refs::pin(&self.0, digest, label).await
    }

    async fn unpin_blob(&self, digest: &Digest, label: &str) -> Result<bool> {
        refs::unpin(&self.0, digest, label).await
    }

    async fn blob_referrers(&self, digest: &Digest) -> Result<Vec<Referrer>> {
        refs::referrers(&self.0, digest).await
    }

    async fn gc_blobs(&self, policy: &BlobGc, after: Option<&Digest>) -> Result<Sweep<Digest>> {
        gc::gc_blobs(&self.0, policy, after).await
    }

    async fn fork_session(&self, from: &str, to: &str) -> Result<Session> {
        fork::fork_session(&self.0, from, to).await
    }

    async fn fork_release(&self, from: &str, to: &str) -> Result<ReleaseRecord> {
        fork::fork_release(&self.0, from, to).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        stats::stats(&self.0).await
    }

    async fn compact(&self) -> Result<()> {
        // Redis frees memory as keys are deleted.
        Ok(())
    }
}
