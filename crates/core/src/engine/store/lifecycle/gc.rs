//! Blob references, pins and garbage collection over the seam.
//!
//! `BlobRefs` holds `(digest, referrer) → recorded at (u64 BE ms)`. A
//! reference is recorded before the write that makes it (creating a run,
//! promoting, putting a supersession), in a job in the blob's scope, as
//! `put`, `delete` and collection run, so recording a reference, touching
//! a blob (a `put` of an existing blob) and collecting it are ordered.
//! Collection drops an entry only when its referrer no longer makes that
//! reference and the entry is older than the grace period, so a write
//! still on its way is safe.
//!
//! Calls record entries of their own (`refs`) so that a call that fails
//! takes back what it recorded and nothing else.
//!
//! Stores written before the index existed hold references it does not
//! know, so collection first makes the index complete, once per store: it
//! records the references of every existing run, release record and
//! supersession, then writes a marker in `Meta`. Until the marker exists
//! no collection deletes anything (every collector backfills first), and
//! everything written meanwhile records its own references.
//!
//! Damage stops no sweep: a referrer whose record fails its checks keeps
//! every blob it is recorded as referencing, and so does a damaged
//! reference entry; a blob whose header is damaged is kept; the backfill
//! skips a damaged record (it names nothing readable; what it referenced
//! was recorded when it was written).

use super::super::cas::{blob_header, delete_body, scope as blob_scope, BlobHeader};
use super::super::runs::load_record;
use super::super::{supersessions, EngineStore};
use super::confirm_refs;
use crate::encoding::decode_record;
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::lifecycle::{BlobGc, Referrer, Sweep};
use crate::{Digest, ErrorKind, ReleaseRecord, Result, Run, Supersession};

/// Reference index entries read per scan.
const REF_PAGE: usize = 256;

/// Whether `referrer` still references `digest`. A damaged referrer
/// (reads report it) keeps what it may reference, and the sweep goes on.
fn is_live(reader: &dyn Reader, digest: &Digest, referrer: &Referrer) -> Result<bool> {
    let live = match referrer {
        // Its spec, its summary's blobs or its events' (which the stored
        // events do not keep): live while the run exists.
        Referrer::Run(id) => match load_record(reader, *id) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Referrer::Release(name) => release_references(reader, name, digest),
        Referrer::Supersession(target) => supersessions::load(reader, target).map(|record| {
            record.is_some_and(|s| s.target == *digest || s.replacement == Some(*digest))
        }),
        Referrer::Pin(_) => Ok(true),
    };
    match live {
        Err(e) if e.kind() == ErrorKind::Corrupted => Ok(true),
        other => other,
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
            if entry_keeps(txn, digest, key, value, cutoff)? {
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

/// Whether the reference entry `key → value` of `digest` keeps the blob:
/// recorded at or after `cutoff`, or its referrer still references it.
/// A damaged entry (reads report it) keeps the blob, since it may name
/// any referrer, and the sweep goes on.
fn entry_keeps(
    reader: &dyn Reader,
    digest: &Digest,
    key: &[u8],
    value: &[u8],
    cutoff: u64,
) -> Result<bool> {
    let decoded = keys::referrer_of(digest, key)
        .and_then(|referrer| Ok((referrer, keys::decode_u64("blob reference", value)?)));
    match decoded {
        Ok((referrer, recorded)) => Ok(recorded >= cutoff || is_live(reader, digest, &referrer)?),
        Err(e) if e.kind() == ErrorKind::Corrupted => Ok(true),
        Err(e) => Err(e),
    }
}

fn remove_blob(txn: &mut dyn Txn, digest: &Digest, header: &BlobHeader) -> Result<()> {
    txn.delete(Table::Blobs, keys::blob_header(digest))?;
    delete_body(txn, &header.body)
}

/// Records per backfill job.
const BACKFILL_PAGE: usize = 512;

/// The references of one stored record of the table being backfilled.
type Extract = fn(&[u8]) -> Result<Vec<(Digest, Referrer)>>;

/// A key range whose records make references, and how to read them.
type Source = (Table, Vec<u8>, Option<Vec<u8>>, Extract);

fn run_refs(value: &[u8]) -> Result<Vec<(Digest, Referrer)>> {
    let run: Run = decode_record("run record", value)?;
    let mut out = vec![(run.spec_digest, Referrer::Run(run.id))];
    if let Some(summary) = run.summary {
        out.extend(
            summary
                .blobs
                .into_iter()
                .map(|d| (d, Referrer::Run(run.id))),
        );
    }
    Ok(out)
}

fn release_refs(value: &[u8]) -> Result<Vec<(Digest, Referrer)>> {
    let record: ReleaseRecord = decode_record("release record", value)?;
    Ok(vec![(record.spec_digest, Referrer::Release(record.name))])
}

fn supersession_refs(value: &[u8]) -> Result<Vec<(Digest, Referrer)>> {
    let s: Supersession = decode_record("supersession", value)?;
    let referrer = Referrer::Supersession(s.target);
    let mut out = vec![(s.target, referrer.clone())];
    out.extend(s.replacement.map(|d| (d, referrer)));
    Ok(out)
}

impl EngineStore {
    /// Makes the reference index complete if it is not yet (see the
    /// module docs).
    async fn ensure_indexed(&self) -> Result<()> {
        let marker = keys::refs_indexed();
        let indexed = self
            .read(move |_, reader| Ok(reader.get(Table::Meta, &marker)?.is_some()))
            .await?;
        if indexed {
            return Ok(());
        }
        let (records_start, records_end) = keys::all_release_records();
        let sources: [Source; 3] = [
            (Table::Runs, Vec::new(), None, run_refs),
            (
                Table::Releases,
                records_start,
                Some(records_end),
                release_refs,
            ),
            (Table::Supersessions, Vec::new(), None, supersession_refs),
        ];
        for (table, mut start, end, extract) in sources {
            loop {
                let (from, to) = (start.clone(), end.clone());
                let (refs, next) = self
                    .read(move |_, reader| {
                        let page = reader.scan(
                            table,
                            &from,
                            to.as_deref(),
                            Direction::Forward,
                            BACKFILL_PAGE,
                        )?;
                        let mut refs = Vec::new();
                        for (_, value) in &page {
                            // A damaged record (reads report it) names
                            // nothing readable; what it referenced when
                            // written was recorded then, unless the store
                            // predates the index.
                            match extract(value) {
                                Ok(found) => refs.extend(found),
                                Err(e) if e.kind() == ErrorKind::Corrupted => {}
                                Err(e) => return Err(e),
                            }
                        }
                        let next = match page.last() {
                            Some((last, _)) if page.len() == BACKFILL_PAGE => {
                                Some(keys::successor(last))
                            }
                            _ => None,
                        };
                        Ok((refs, next))
                    })
                    .await?;
                self.record_all(refs).await?;
                match next {
                    Some(next) => start = next,
                    None => break,
                }
            }
        }
        self.write(Scope::Table(Table::Meta), |_, txn| {
            txn.put(Table::Meta, keys::refs_indexed(), Vec::new())
        })
        .await
    }

    /// Records `refs` as of now, in one job: only while the index is not
    /// yet complete (no collector deletes then), so the blobs' scopes are
    /// not needed.
    async fn record_all(&self, refs: Vec<(Digest, Referrer)>) -> Result<()> {
        if refs.is_empty() {
            return Ok(());
        }
        self.write(Scope::Table(Table::BlobRefs), move |shared, txn| {
            for (digest, referrer) in &refs {
                confirm_refs(txn, referrer, std::slice::from_ref(digest), shared.now())?;
            }
            Ok(())
        })
        .await
    }
}

impl EngineStore {
    pub(super) async fn gc_now(
        &self,
        policy: &BlobGc,
        after: Option<&Digest>,
    ) -> Result<Sweep<Digest>> {
        self.ensure_indexed().await?;
        let cutoff = crate::lifecycle::cutoff(self.0.now(), policy.grace).as_millis();
        if after.is_none() {
            // A sweep starts by reclaiming streamed uploads abandoned as
            // long ago (their chunks have no header for the sweep to find).
            self.reclaim_abandoned_uploads(cutoff).await?;
        }
        let limit = crate::lifecycle::batch_limit(policy.batch);
        let (start, end) = keys::blob_headers_after(after);
        // A damaged header (reads report it) is kept: `put_at` unknown.
        let page: Vec<(Digest, Option<u64>)> = self
            .read(move |_, reader| {
                reader
                    .scan(Table::Blobs, &start, Some(&end), Direction::Forward, limit)?
                    .iter()
                    .map(|(key, value)| {
                        let put_at = BlobHeader::decode(value).ok().map(|h| h.put_at);
                        Ok((keys::digest_of_blob_header(key)?, put_at))
                    })
                    .collect()
            })
            .await?;
        let next = (page.len() == limit).then(|| page[page.len() - 1].0);
        let (mut affected, mut removed) = (0, 0);
        for (digest, put_at) in &page {
            if put_at.is_none_or(|put_at| put_at >= cutoff) {
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
