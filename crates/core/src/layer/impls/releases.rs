//! `ReleaseRegistry` over an interposed layer, in the shape described in [`super`].

use crate::{Digest, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Result};
use async_trait::async_trait;

use super::{id, opt_id, opt_u64};
use crate::layer::{Entity, Interposed, Operation as Op, Reuse};

#[async_trait]
impl ReleaseRegistry for Interposed {
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_current_seq: Option<u64>,
    ) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self
            .call(Op::ReleasesPromote, entity, || {
                format!(
                    "name {}, spec {}, expected {}",
                    id(name),
                    spec_digest.short(),
                    opt_u64(expected_current_seq)
                )
            })
            .seq(expected_current_seq);
        let mut metadata = Reuse::new(metadata);
        self.run(call, move |last| {
            (metadata.take(last))
                .map(|m| (self.inner.releases).promote(name, spec_digest, m, expected_current_seq))
        })
        .await
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self.call(Op::ReleasesRollback, entity, || {
            format!("name {}, by {}", id(name), id(promoted_by))
        });
        self.run(call, move |_| {
            Some(self.inner.releases.rollback(name, promoted_by))
        })
        .await
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self
            .call(Op::ReleasesRollbackTo, entity, || {
                format!("name {}, seq {seq}, by {}", id(name), id(promoted_by))
            })
            .seq(Some(seq));
        self.run(call, move |_| {
            Some(self.inner.releases.rollback_to(name, seq, promoted_by))
        })
        .await
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self.call(Op::ReleasesCurrent, entity, || format!("name {}", id(name)));
        self.run(call, move |_| Some(self.inner.releases.current(name)))
            .await
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        let entity = Some(Entity::Release(name.to_owned()));
        let call = self.call(Op::ReleasesHistory, entity, || {
            format!(
                "name {}, before {}, limit {limit}",
                id(name),
                opt_u64(before)
            )
        });
        self.run(call, move |_| {
            Some(self.inner.releases.history(name, before, limit))
        })
        .await
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let call = self.call(Op::ReleasesListNames, None, || {
            format!("after {}, limit {limit}", opt_id(after))
        });
        self.run(call, move |_| {
            Some(self.inner.releases.list_names(after, limit))
        })
        .await
    }
}
