//! `ReleaseRegistry` over the seam.
//!
//! One table, `Releases`, holding two key kinds told apart by a tag byte:
//! heads (`name → current seq`, keyed by the raw name so they list in name
//! order) and records (`(lp(name), seq) → record`). A promote or rollback
//! holds the name's stripe and writes the record and the new head in one
//! atomic batch.

use async_trait::async_trait;
use stowage_core::encoding::encode_record;
use stowage_core::validate::{self, page_limit};
use stowage_core::{Digest, Error, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Result};

use super::keys;
use super::seam::{Batch, Direction, Table};
use super::{Kv, KvStore};

impl Kv {
    /// The current record of `name`, if it was ever promoted.
    fn release_head(&self, name: &str) -> Result<Option<ReleaseRecord>> {
        let Some(seq) = self
            .engine
            .get(Table::Releases, &keys::release_head(name))?
        else {
            return Ok(None);
        };
        let seq = keys::decode_u64("release head", &seq)?;
        self.release_record(name, seq)?.map(Some).ok_or_else(|| {
            Error::corrupted(format!(
                "release {:?}: its head names record #{seq}, which is missing",
                validate::preview(name)
            ))
        })
    }

    fn release_record(&self, name: &str, seq: u64) -> Result<Option<ReleaseRecord>> {
        self.get_record(
            Table::Releases,
            &keys::release_record(name, seq),
            "release record",
        )
    }

    fn head_or_not_found(&self, name: &str) -> Result<ReleaseRecord> {
        self.release_head(name)?.ok_or_else(|| {
            Error::not_found(format!(
                "release {:?} was never promoted",
                validate::preview(name)
            ))
        })
    }

    /// Appends `record` and makes it the head, atomically.
    fn append_release(&self, record: &ReleaseRecord) -> Result<()> {
        let mut batch = Batch::default();
        batch.put(
            Table::Releases,
            keys::release_record(&record.name, record.seq),
            encode_record(record)?,
        );
        batch.put(
            Table::Releases,
            keys::release_head(&record.name),
            record.seq.to_be_bytes().to_vec(),
        );
        self.write(batch)
    }

    fn restore_locked(&self, name: &str, seq: Option<u64>, actor: &str) -> Result<ReleaseRecord> {
        let head = self.head_or_not_found(name)?;
        let seq = match seq {
            Some(seq) => seq,
            None => head.rollback_seq()?,
        };
        let restore = self.release_record(name, seq)?.ok_or_else(|| {
            Error::not_found(format!(
                "release {:?} has no record #{seq}",
                validate::preview(name)
            ))
        })?;
        let record = ReleaseRecord::restoration(&head, &restore, actor, None, self.now())?;
        self.append_release(&record)?;
        Ok(record)
    }
}

#[async_trait]
impl ReleaseRegistry for KvStore {
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_next_seq: Option<u64>,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        metadata.validate()?;
        let name = name.to_owned();
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Releases, name.as_bytes());
            let head = kv.release_head(&name)?;
            let record = ReleaseRecord::promotion(
                &name,
                spec_digest,
                metadata,
                head.as_ref(),
                expected_next_seq,
                kv.now(),
            )?;
            kv.append_release(&record)?;
            Ok(record)
        })
        .await
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        validate::identifier("promoted_by", promoted_by)?;
        let (name, actor) = (name.to_owned(), promoted_by.to_owned());
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Releases, name.as_bytes());
            kv.restore_locked(&name, None, &actor)
        })
        .await
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        validate::identifier("promoted_by", promoted_by)?;
        let (name, actor) = (name.to_owned(), promoted_by.to_owned());
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Releases, name.as_bytes());
            kv.restore_locked(&name, Some(seq), &actor)
        })
        .await
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        let name = name.to_owned();
        self.blocking(move |kv| kv.head_or_not_found(&name)).await
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        validate::identifier("release name", name)?;
        let limit = page_limit(limit);
        let name = name.to_owned();
        self.blocking(move |kv| {
            let (start, end) = keys::release_records_before(&name, before);
            kv.scan_records(
                Table::Releases,
                &start,
                Some(&end),
                Direction::Reverse,
                limit,
                "release record",
            )
        })
        .await
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let limit = page_limit(limit);
        let after = after.map(str::to_owned);
        self.blocking(move |kv| {
            let (start, end) = keys::release_heads_after(after.as_deref());
            let heads = kv.engine.scan(
                Table::Releases,
                &start,
                Some(&end),
                Direction::Forward,
                limit,
            )?;
            heads
                .iter()
                .map(|(key, _)| {
                    // A head key is the tag byte, then the raw name.
                    let name = key.get(1..).unwrap_or_default();
                    String::from_utf8(name.to_vec())
                        .map_err(|_| Error::corrupted("a release name is not UTF-8"))
                })
                .collect()
        })
        .await
    }
}
