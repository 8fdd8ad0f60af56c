//! `Lifecycle` on Redis: not implemented yet (every method answers
//! `Unsupported`, naming itself).

use async_trait::async_trait;
use std::sync::Arc;
use stowage_core::lifecycle::{
    BlobGc, IfRunning, Lifecycle, Referrer, RunRetention, SessionRetention, StoreStats, Sweep,
};
use stowage_core::{Digest, Error, ReleaseRecord, Result, RunId, Session};

use super::Shared;

pub(crate) struct RedisLifecycle(#[allow(dead_code)] pub(crate) Arc<Shared>);

fn unsupported<T>(what: &str) -> Result<T> {
    Err(Error::unsupported(format!(
        "lifecycle.{what} is not implemented on the Redis backend yet"
    )))
}

#[async_trait]
impl Lifecycle for RedisLifecycle {
    async fn delete_run(&self, _: RunId, _: IfRunning) -> Result<bool> {
        unsupported("delete_run")
    }
    async fn prune_runs(&self, _: &RunRetention, _: Option<RunId>) -> Result<Sweep<RunId>> {
        unsupported("prune_runs")
    }
    async fn expire_sessions(
        &self,
        _: &SessionRetention,
        _: Option<&str>,
    ) -> Result<Sweep<String>> {
        unsupported("expire_sessions")
    }
    async fn prune_sessions(&self, _: &SessionRetention, _: Option<&str>) -> Result<Sweep<String>> {
        unsupported("prune_sessions")
    }
    async fn pin_blob(&self, _: &Digest, _: &str) -> Result<()> {
        unsupported("pin_blob")
    }
    async fn unpin_blob(&self, _: &Digest, _: &str) -> Result<bool> {
        unsupported("unpin_blob")
    }
    async fn blob_referrers(&self, _: &Digest) -> Result<Vec<Referrer>> {
        unsupported("blob_referrers")
    }
    async fn gc_blobs(&self, _: &BlobGc, _: Option<&Digest>) -> Result<Sweep<Digest>> {
        unsupported("gc_blobs")
    }
    async fn fork_session(&self, _: &str, _: &str) -> Result<Session> {
        unsupported("fork_session")
    }
    async fn fork_release(&self, _: &str, _: &str) -> Result<ReleaseRecord> {
        unsupported("fork_release")
    }
    async fn compact(&self) -> Result<()> {
        // Redis frees memory as keys are deleted.
        Ok(())
    }
    async fn stats(&self) -> Result<StoreStats> {
        unsupported("stats")
    }
}
