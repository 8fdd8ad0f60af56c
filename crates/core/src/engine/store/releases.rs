//! `ReleaseRegistry` over the seam.
//!
//! One table, `Releases`, holding two key kinds told apart by a tag byte:
//! heads (`name → current seq`, keyed by the raw name so they list in name
//! order) and records (`(lp(name), seq) → record`). A promote or rollback
//! is one write job in the name's scope that writes the record and the new
//! head.

use async_trait::async_trait;

use super::{get_record, scan_records, EngineStore, Owned};
use crate::encoding::encode_record;
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::lifecycle::Referrer;
use crate::validate::{self, page_limit};
use crate::{Digest, Error, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Result, Timestamp};

pub(super) fn scope(name: &str) -> Scope {
    Scope::entity(Table::Releases, keys::release_head(name))
}

pub(super) fn head(reader: &dyn Reader, name: &str) -> Result<Option<ReleaseRecord>> {
    let Some(seq) = reader.get(Table::Releases, &keys::release_head(name))? else {
        return Ok(None);
    };
    let seq = keys::decode_u64("release head", &seq)?;
    record(reader, name, seq)?.map(Some).ok_or_else(|| {
        Error::corrupted(format!(
            "release {:?}: its head names record #{seq}, which is missing",
            validate::preview(name)
        ))
    })
}

fn record(reader: &dyn Reader, name: &str, seq: u64) -> Result<Option<ReleaseRecord>> {
    get_record(
        reader,
        Table::Releases,
        &keys::release_record(name, seq),
        "release record",
    )
}

pub(super) fn head_or_not_found(reader: &dyn Reader, name: &str) -> Result<ReleaseRecord> {
    head(reader, name)?.ok_or_else(|| {
        Error::not_found(format!(
            "release {:?} was never promoted",
            validate::preview(name)
        ))
    })
}

fn append(txn: &mut dyn Txn, record: &ReleaseRecord) -> Result<()> {
    txn.put(
        Table::Releases,
        keys::release_record(&record.name, record.seq),
        encode_record(record)?,
    )?;
    txn.put(
        Table::Releases,
        keys::release_head(&record.name),
        record.seq.to_be_bytes().to_vec(),
    )
}

/// Restores record `seq` of `name` (`None`: the one before the current).
fn restore(
    txn: &mut dyn Txn,
    name: &str,
    seq: Option<u64>,
    actor: &str,
    now: Timestamp,
) -> Result<ReleaseRecord> {
    let head = head_or_not_found(txn, name)?;
    let seq = match seq {
        Some(seq) => seq,
        None => head.rollback_seq()?,
    };
    let restore = record(txn, name, seq)?.ok_or_else(|| {
        Error::not_found(format!(
            "release {:?} has no record #{seq}",
            validate::preview(name)
        ))
    })?;
    let record = ReleaseRecord::restoration(&head, &restore, actor, None, now)?;
    append(txn, &record)?;
    Ok(record)
}

impl EngineStore {
    async fn restore(&self, name: &str, seq: Option<u64>, actor: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        validate::identifier("promoted_by", actor)?;
        let (name, actor) = (name.to_owned(), actor.to_owned());
        self.write(scope(&name), move |shared, txn| {
            restore(txn, &name, seq, &actor, shared.now())
        })
        .await
    }
}

#[async_trait]
impl ReleaseRegistry for EngineStore {
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_current_seq: Option<u64>,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        metadata.validate()?;
        let name = name.to_owned();
        let referrer = Referrer::Release(name.clone());
        let call = self.reference_call([spec_digest], referrer).await?;
        let mut metadata = Owned::new(metadata);
        let promoted = self
            .write(scope(&name), move |shared, txn| {
                let head = head(txn, &name)?;
                let record = ReleaseRecord::promotion(
                    &name,
                    spec_digest,
                    metadata.take(shared)?,
                    head.as_ref(),
                    expected_current_seq,
                    shared.now(),
                )?;
                append(txn, &record)?;
                Ok(record)
            })
            .await;
        self.settle_referenced(call, promoted).await
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        self.restore(name, None, promoted_by).await
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        self.restore(name, Some(seq), promoted_by).await
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        let name = name.to_owned();
        self.read(move |_, reader| head_or_not_found(reader, &name))
            .await
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        validate::identifier("release name", name)?;
        let limit = page_limit(limit);
        let (start, end) = keys::release_records_before(name, before);
        self.read(move |_, reader| {
            scan_records(
                reader,
                Table::Releases,
                (&start, Some(&end)),
                Direction::Reverse,
                limit,
                "release record",
            )
        })
        .await
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let limit = page_limit(limit);
        let (start, end) = keys::release_heads_after(after);
        self.read(move |_, reader| {
            reader
                .scan(
                    Table::Releases,
                    &start,
                    Some(&end),
                    Direction::Forward,
                    limit,
                )?
                .iter()
                .map(|(key, _)| {
                    let name = key.get(1..).unwrap_or_default();
                    String::from_utf8(name.to_vec())
                        .map_err(|_| Error::corrupted("a release name is not UTF-8"))
                })
                .collect()
        })
        .await
    }
}
