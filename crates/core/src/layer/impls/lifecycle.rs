//! `Lifecycle` over an interposed layer, in the shape described in [`super`].

use async_trait::async_trait;

use super::{id, opt_digest, opt_id};
use crate::layer::{Entity, Interposed, Operation as Op};
use crate::lifecycle::{
    BlobGc, IfRunning, Lifecycle, Referrer, RunRetention, SessionRetention, StoreStats, Sweep,
};
use crate::{Digest, ReleaseRecord, Result, RunId, Session};

#[async_trait]
impl Lifecycle for Interposed {
    async fn delete_run(&self, run: RunId, if_running: IfRunning) -> Result<bool> {
        let call = self.call(Op::LifecycleDeleteRun, Some(Entity::Run(run)), || {
            format!("run {run}, if running {if_running:?}")
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.delete_run(run, if_running))
        })
        .await
    }

    async fn prune_runs(
        &self,
        policy: &RunRetention,
        after: Option<RunId>,
    ) -> Result<Sweep<RunId>> {
        let call = self.call(Op::LifecyclePruneRuns, None, || {
            let after_text = after.map_or_else(|| "none".to_owned(), |r| r.to_string());
            format!("{policy:?}, after {after_text}")
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.prune_runs(policy, after))
        })
        .await
    }

    async fn expire_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        let call = self.call(Op::LifecycleExpireSessions, None, || {
            format!("{policy:?}, after {}", opt_id(after))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.expire_sessions(policy, after))
        })
        .await
    }

    async fn prune_sessions(
        &self,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        let call = self.call(Op::LifecyclePruneSessions, None, || {
            format!("{policy:?}, after {}", opt_id(after))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.prune_sessions(policy, after))
        })
        .await
    }

    async fn pin_blob(&self, digest: &Digest, label: &str) -> Result<()> {
        let call = self.call(Op::LifecyclePinBlob, Some(Entity::Blob(*digest)), || {
            format!("blob {}, label {}", digest.short(), id(label))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.pin_blob(digest, label))
        })
        .await
    }

    async fn unpin_blob(&self, digest: &Digest, label: &str) -> Result<bool> {
        let call = self.call(Op::LifecycleUnpinBlob, Some(Entity::Blob(*digest)), || {
            format!("blob {}, label {}", digest.short(), id(label))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.unpin_blob(digest, label))
        })
        .await
    }

    async fn blob_referrers(&self, digest: &Digest) -> Result<Vec<Referrer>> {
        let call = self.call(
            Op::LifecycleBlobReferrers,
            Some(Entity::Blob(*digest)),
            || format!("blob {}", digest.short()),
        );
        self.run(call, move |_| {
            Some(self.inner.lifecycle.blob_referrers(digest))
        })
        .await
    }

    async fn gc_blobs(&self, policy: &BlobGc, after: Option<&Digest>) -> Result<Sweep<Digest>> {
        let call = self.call(Op::LifecycleGcBlobs, None, || {
            format!("{policy:?}, after {}", opt_digest(after))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.gc_blobs(policy, after))
        })
        .await
    }

    async fn fork_session(&self, from: &str, to: &str) -> Result<Session> {
        let entity = Some(Entity::Session(to.to_owned()));
        let call = self.call(Op::LifecycleForkSession, entity, || {
            format!("from {}, to {}", id(from), id(to))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.fork_session(from, to))
        })
        .await
    }

    async fn fork_release(&self, from: &str, to: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(to.to_owned()));
        let call = self.call(Op::LifecycleForkRelease, entity, || {
            format!("from {}, to {}", id(from), id(to))
        });
        self.run(call, move |_| {
            Some(self.inner.lifecycle.fork_release(from, to))
        })
        .await
    }

    async fn compact(&self) -> Result<()> {
        let call = self.call(Op::LifecycleCompact, None, || "whole store".to_owned());
        self.run(call, move |_| Some(self.inner.lifecycle.compact()))
            .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        let call = self.call(Op::LifecycleStats, None, || "whole store".to_owned());
        self.run(call, move |_| Some(self.inner.lifecycle.stats()))
            .await
    }
}
