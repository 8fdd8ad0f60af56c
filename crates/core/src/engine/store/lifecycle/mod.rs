//! [`Lifecycle`] over the seam: retention and expiry (`retention`), blob
//! references (`refs`) and their garbage collection (`gc`), forks (`fork`) and
//! statistics (`stats`).

use async_trait::async_trait;

use super::EngineStore;
use crate::lifecycle::{
    BlobGc, IfRunning, Lifecycle, Referrer, RunRetention, SessionRetention, StoreStats, Sweep,
};
use crate::{Digest, ReleaseRecord, Result, RunId, Session};

mod fork;
mod gc;
mod referrers;
mod refs;
mod retention;
mod stats;

pub(in crate::engine::store) use refs::confirm_refs;
use retention::SessionSweep;

#[async_trait]
impl Lifecycle for EngineStore {
    async fn delete_run(&self, run: RunId, if_running: IfRunning) -> Result<bool> {
        self.delete_run_now(run, if_running).await
    }

    async fn prune_runs(
        &self,
        policy: &RunRetention,
        after: Option<RunId>,
    ) -> Result<Sweep<RunId>> {
        self.prune_runs_now(policy, after).await
    }

    async fn expire_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        self.sweep_sessions(SessionSweep::Expire, policy, after)
            .await
    }

    async fn prune_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        self.sweep_sessions(SessionSweep::Delete, policy, after)
            .await
    }

    async fn pin_blob(&self, digest: &Digest, label: &str) -> Result<()> {
        self.pin_now(digest, label).await
    }

    async fn unpin_blob(&self, digest: &Digest, label: &str) -> Result<bool> {
        self.unpin_now(digest, label).await
    }

    async fn blob_referrers(&self, digest: &Digest) -> Result<Vec<Referrer>> {
        self.referrers_now(digest).await
    }

    async fn gc_blobs(&self, policy: &BlobGc, after: Option<&Digest>) -> Result<Sweep<Digest>> {
        self.gc_now(policy, after).await
    }

    async fn fork_session(&self, from: &str, to: &str) -> Result<Session> {
        self.fork_session_now(from, to).await
    }

    async fn fork_release(&self, from: &str, to: &str) -> Result<ReleaseRecord> {
        self.fork_release_now(from, to).await
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.stats_now().await
    }

    async fn compact(&self) -> Result<()> {
        self.0.engine.compact().await
    }
}
