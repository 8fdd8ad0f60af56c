//! Blob references, pins and garbage collection over the seam.
//!
//! `BlobRefs` holds `(digest, referrer) → recorded at (u64 BE ms)`. Every
//! job that writes or reads a blob's references runs in that blob's
//! scope, as `put` and `delete` do, so recording a reference, touching a
//! blob (a `put` of an existing blob) and collecting it are ordered.
//! A reference is recorded before the write that makes it (creating a
//! run, promoting, putting a supersession); collection drops an entry
//! only when its referrer no longer makes that reference and the entry is
//! older than the grace period, so a write still on its way is safe.

use futures::future::try_join_all;

use super::super::cas::{blob_header, delete_body, scope as blob_scope, BlobHeader};
use super::super::runs::load_record;
use super::super::{supersessions, EngineStore};
use super::retention::{batch_size, before};
use crate::engine::keys;
use crate::engine::{Direction, Reader, Table, Txn};
use crate::lifecycle::{BlobGc, Referrer, Sweep};
use crate::validate::{self, MAX_PAGE};
use crate::{Digest, ErrorKind, ReleaseRecord, Result};

/// Reference index entries read per scan.
const REF_PAGE: usize = 256;

/// Whether `referrer` still references `digest`.
fn is_live(reader: &dyn Reader, digest: &Digest, referrer: &Referrer) -> Result<bool> {
    match referrer {
        Referrer::Run(id) => {
            match load_record(reader, *id) {
                Ok(run) => Ok(run.spec_digest == *digest
                    || run.summary.is_some_and(|s| s.blobs.contains(digest))),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        }
        Referrer::Release(name) => release_references(reader, name, digest),
        Referrer::Supersession(target) => Ok(supersessions::load(reader, target)?
            .is_some_and(|s| s.target == *digest || s.replacement == Some(*digest))),
        Referrer::Pin(_) => Ok(true),
    }
}

/// Whether any record of release `name` has spec `digest`.
fn release_references(reader: &dyn Reader, name: &str, digest: &Digest) -> Result<bool> {
    let (mut start, end) = keys::release_records_before(name, None);
    loop {
        let page = reader.scan(
            Table::Releases,
            &start,
            Some(&end),
            Direction::Forward,
            REF_PAGE,
        )?;
        for (_, value) in &page {
            let record: ReleaseRecord = crate::encoding::decode_record("release record", value)?;
            if record.spec_digest == *digest {
                return Ok(true);
            }
        }
        match page.last() {
            Some((last, _)) if page.len() == REF_PAGE => start = keys::successor(last),
            _ => return Ok(false),
        }
    }
}

/// Collects the blob `digest` if nothing references it and it was last
/// put before `cutoff` (ms); drops stale reference entries on the way.
/// Returns the bytes freed.
fn collect(txn: &mut dyn Txn, digest: &Digest, cutoff: u64) -> Result<Option<u64>> {
    let Some(header) = blob_header(txn, digest)? else {
        return Ok(None);
    };
    if header.put_at >= cutoff {
        return Ok(None);
    }
    let (mut start, end) = keys::blob_refs(digest);
    let mut stale = Vec::new();
    loop {
        let page = txn.scan(
            Table::BlobRefs,
            &start,
            end.as_deref(),
            Direction::Forward,
            REF_PAGE,
        )?;
        for (key, value) in &page {
            let referrer = keys::referrer_of(digest, key)?;
            let recorded = keys::decode_u64("blob reference", value)?;
            if recorded >= cutoff || is_live(txn, digest, &referrer)? {
                // Referenced: the stale entries seen so far go, the blob stays.
                for key in stale {
                    txn.delete(Table::BlobRefs, key)?;
                }
                return Ok(None);
            }
            stale.push(key.clone());
        }
        match page.last() {
            Some((last, _)) if page.len() == REF_PAGE => start = keys::successor(last),
            _ => break,
        }
    }
    for key in stale {
        txn.delete(Table::BlobRefs, key)?;
    }
    remove_blob(txn, digest, &header)?;
    Ok(Some(header.size))
}

fn remove_blob(txn: &mut dyn Txn, digest: &Digest, header: &BlobHeader) -> Result<()> {
    txn.delete(Table::Blobs, keys::blob_header(digest))?;
    delete_body(txn, &header.body)
}

impl EngineStore {
    /// Records that `referrer` references each of `digests`, each in a job
    /// in the blob's scope. Call before the write that makes the reference.
    pub(in crate::engine::store) async fn reference(
        &self,
        digests: impl IntoIterator<Item = Digest>,
        referrer: Referrer,
    ) -> Result<()> {
        let mut digests: Vec<Digest> = digests.into_iter().collect();
        digests.sort_unstable();
        digests.dedup();
        try_join_all(digests.into_iter().map(|digest| {
            let key = keys::blob_ref(&digest, &referrer);
            self.write(blob_scope(&digest), move |shared, txn| {
                let now = shared.now().as_millis().to_be_bytes().to_vec();
                txn.put(Table::BlobRefs, key, now)
            })
        }))
        .await
        .map(drop)
    }

    pub(super) async fn pin_now(&self, digest: &Digest, label: &str) -> Result<()> {
        validate::identifier("pin label", label)?;
        self.reference([*digest], Referrer::Pin(label.to_owned()))
            .await
    }

    pub(super) async fn unpin_now(&self, digest: &Digest, label: &str) -> Result<bool> {
        validate::identifier("pin label", label)?;
        let key = keys::blob_ref(digest, &Referrer::Pin(label.to_owned()));
        self.write(blob_scope(digest), move |_, txn| {
            if txn.get(Table::BlobRefs, &key)?.is_none() {
                return Ok(false);
            }
            txn.delete(Table::BlobRefs, key)?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn referrers_now(&self, digest: &Digest) -> Result<Vec<Referrer>> {
        let digest = *digest;
        self.read(move |_, reader| {
            let (start, end) = keys::blob_refs(&digest);
            reader
                .scan(
                    Table::BlobRefs,
                    &start,
                    end.as_deref(),
                    Direction::Forward,
                    MAX_PAGE,
                )?
                .iter()
                .map(|(key, _)| keys::referrer_of(&digest, key))
                .collect()
        })
        .await
    }

    pub(super) async fn gc_now(
        &self,
        policy: &BlobGc,
        after: Option<&Digest>,
    ) -> Result<Sweep<Digest>> {
        let limit = batch_size(policy.batch);
        let (start, end) = keys::blob_headers_after(after);
        let page: Vec<(Digest, u64)> = self
            .read(move |_, reader| {
                reader
                    .scan(Table::Blobs, &start, Some(&end), Direction::Forward, limit)?
                    .iter()
                    .map(|(key, value)| {
                        Ok((
                            keys::digest_of_blob_header(key)?,
                            BlobHeader::decode(value)?.put_at,
                        ))
                    })
                    .collect()
            })
            .await?;
        let next = (page.len() == limit).then(|| page[page.len() - 1].0);
        let cutoff = before(self.0.now(), policy.grace).as_millis();
        let (mut affected, mut removed) = (0, 0);
        for (digest, put_at) in &page {
            if *put_at >= cutoff {
                continue;
            }
            let digest = *digest;
            let freed = self
                .write(blob_scope(&digest), move |_, txn| {
                    collect(txn, &digest, cutoff)
                })
                .await?;
            if let Some(bytes) = freed {
                affected += 1;
                removed += bytes;
            }
        }
        Ok(Sweep::new(page.len() as u64, affected, removed, next))
    }
}
