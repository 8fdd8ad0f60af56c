//! Named release pointers with an append-only history.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::validate;

/// Who promoted what, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReleaseMetadata {
    /// A human label such as `"v1.4.2"` (free text, at most 4 KiB).
    pub version_label: String,
    /// The actor (an identifier).
    pub promoted_by: String,
    /// Free text, at most 4 KiB.
    pub notes: String,
}

impl ReleaseMetadata {
    /// Metadata with a label, an actor and no notes.
    pub fn new(version_label: impl Into<String>, promoted_by: impl Into<String>) -> Self {
        ReleaseMetadata {
            version_label: version_label.into(),
            promoted_by: promoted_by.into(),
            notes: String::new(),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        validate::text("version label", &self.version_label)?;
        validate::identifier("promoted_by", &self.promoted_by)?;
        validate::text("release notes", &self.notes)
    }
}

/// One record in a release's history. The newest record is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReleaseRecord {
    /// The release name.
    pub name: String,
    /// Position in this name's history: 0, 1, 2, … without gaps.
    pub seq: u64,
    /// The spec this record makes current.
    pub spec_digest: Digest,
    /// Label, actor and notes. A rollback copies the restored label and
    /// records its own actor.
    pub metadata: ReleaseMetadata,
    /// When the record was appended (store clock).
    pub created_at: Timestamp,
    /// The record that was current just before this one.
    pub previous: Option<u64>,
    /// For a rollback record: the seq whose spec it restored.
    pub restored: Option<u64>,
    /// The seq a [`ReleaseRegistry::rollback`] from this record restores:
    /// `previous` for a promotion, the restored record's own target for a
    /// rollback — so repeated rollbacks walk further back.
    pub rollback_target: Option<u64>,
}

impl ReleaseRecord {
    /// The record a promotion appends after `head` (the current record).
    ///
    /// # Errors
    /// `InvalidInput` for bad input; `Conflict` when `expected_current_seq`
    /// is given and is not `head`'s seq (or there is no `head`).
    pub fn promotion(
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        head: Option<&ReleaseRecord>,
        expected_current_seq: Option<u64>,
        now: Timestamp,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        metadata.validate()?;
        let seq = next_seq(name, head, expected_current_seq)?;
        Ok(ReleaseRecord {
            name: name.to_owned(),
            seq,
            spec_digest,
            metadata,
            created_at: now,
            previous: head.map(|h| h.seq),
            restored: None,
            rollback_target: head.map(|h| h.seq),
        })
    }

    /// The record that restores `restore` after `head`, by `actor`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad actor; `Conflict` when
    /// `expected_current_seq` is given and is not `head`'s seq.
    pub fn restoration(
        head: &ReleaseRecord,
        restore: &ReleaseRecord,
        actor: &str,
        expected_current_seq: Option<u64>,
        now: Timestamp,
    ) -> Result<ReleaseRecord> {
        validate::identifier("promoted_by", actor)?;
        let seq = next_seq(&head.name, Some(head), expected_current_seq)?;
        Ok(ReleaseRecord {
            name: head.name.clone(),
            seq,
            spec_digest: restore.spec_digest,
            metadata: ReleaseMetadata {
                version_label: restore.metadata.version_label.clone(),
                promoted_by: actor.to_owned(),
                notes: format!("rollback to #{}", restore.seq),
            },
            created_at: now,
            previous: Some(head.seq),
            restored: Some(restore.seq),
            rollback_target: restore.rollback_target,
        })
    }

    /// The seq a rollback from this (current) record restores.
    ///
    /// # Errors
    /// `Conflict` when there is nothing earlier to restore.
    pub fn rollback_seq(&self) -> Result<u64> {
        self.rollback_target.ok_or_else(|| {
            Error::conflict(format!(
                "release {:?} has nothing earlier to roll back to (current is #{})",
                validate::preview(&self.name),
                self.seq
            ))
        })
    }
}

/// The seq after `head`, checked against the caller's expected current seq.
fn next_seq(name: &str, head: Option<&ReleaseRecord>, expected: Option<u64>) -> Result<u64> {
    let current = head.map(|h| h.seq);
    if let Some(e) = expected {
        if current != Some(e) {
            let now =
                current.map_or_else(|| "it has no release".to_owned(), |c| format!("it is {c}"));
            return Err(Error::conflict(format!(
                "release {:?}: expected current seq {e} but {now}",
                validate::preview(name)
            )));
        }
    }
    match current {
        None => Ok(0),
        Some(c) => c.checked_add(1).ok_or_else(|| {
            Error::conflict(format!(
                "release {:?} has reached the largest seq",
                validate::preview(name)
            ))
        }),
    }
}

/// Named release pointers. Per name, appends are atomic and linearizable:
/// concurrent promotes are all kept, in some order, none lost.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stowage_core::{Digest, ReleaseMetadata, ReleaseRegistry};
/// async fn demo(reg: &dyn ReleaseRegistry) -> stowage_core::Result<()> {
///     let meta = || ReleaseMetadata::new("v1", "ci");
///     reg.promote("planner", Digest::of(b"a"), meta(), None).await?;
///     reg.promote("planner", Digest::of(b"b"), meta(), None).await?;
///     let back = reg.rollback("planner", "oncall").await?;
///     assert_eq!(back.spec_digest, Digest::of(b"a"));
///     Ok(())
/// }
/// # });
/// ```
#[async_trait]
pub trait ReleaseRegistry: Send + Sync {
    /// Appends a record making `spec_digest` current, at the current seq
    /// + 1 (0 for a name never promoted). With `expected_current_seq` it
    /// is a compare-and-promote: it appends only if the current record's
    /// seq is that one, so a name never promoted fails any expectation
    /// (promote it once without one to start its history).
    ///
    /// # Errors
    /// `InvalidInput`; `Conflict` on an `expected_current_seq` mismatch,
    /// changing nothing.
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_current_seq: Option<u64>,
    ) -> Result<ReleaseRecord>;

    /// Appends a record restoring the current record's rollback target.
    ///
    /// # Errors
    /// `NotFound` for an unknown name; `Conflict` when there is nothing
    /// earlier; `InvalidInput` for a bad actor.
    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord>;

    /// Appends a record restoring record `seq` explicitly.
    ///
    /// # Errors
    /// `NotFound` for an unknown name or seq; `InvalidInput` for a bad actor.
    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord>;

    /// The current (newest) record.
    ///
    /// # Errors
    /// `NotFound` for a name never promoted.
    async fn current(&self, name: &str) -> Result<ReleaseRecord>;

    /// Records with seq strictly less than `before` (all when `None`),
    /// newest first, at most `limit` (clamped to
    /// [`MAX_PAGE`](crate::validate::MAX_PAGE)). Empty for an unknown name.
    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>>;

    /// Release names strictly after `after`, ascending by UTF-8 bytes, at
    /// most `limit` (clamped to [`MAX_PAGE`](crate::validate::MAX_PAGE)).
    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
}
