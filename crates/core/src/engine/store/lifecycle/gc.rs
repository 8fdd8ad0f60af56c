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
//! Run calls record entries of their own ([`CallRefs`]) so that a call
//! that fails takes back what it recorded and nothing else: the run's own
//! entry is written by the run's write, in the run's scope, and the call's
//! entry is removed only after that write returned. So a collector,
//! whatever it interleaves with, finds one of the two (see
//! [`EngineStore::settle_call`]).
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

use futures::future::join_all;

use super::super::cas::{blob_header, delete_body, scope as blob_scope, BlobHeader};
use super::super::runs::load_record;
use super::super::{supersessions, EngineStore};
use crate::encoding::decode_record;
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::lifecycle::{BlobGc, Referrer, Sweep};
use crate::{Digest, ErrorKind, ReleaseRecord, Result, Run, RunId, Supersession, Timestamp};

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
            let now = shared.now().as_millis().to_be_bytes();
            for (digest, referrer) in &refs {
                txn.put(
                    Table::BlobRefs,
                    keys::blob_ref(digest, referrer),
                    now.to_vec(),
                )?;
            }
            Ok(())
        })
        .await
    }
}

/// The references of one run call (`create_run`, `append_event`,
/// `finish_run`): entries of its own ([`keys::blob_ref_call`]), recorded
/// before its write like any reference, so that a call that fails takes
/// back exactly what it recorded. The write records the run's entries
/// when it succeeds ([`confirm_run_refs`]); [`EngineStore::settle_call`]
/// then removes the call's own, unless the outcome is unknown.
#[must_use = "settle the call's references once its write has an outcome"]
pub(in crate::engine::store) struct CallRefs {
    run: RunId,
    token: u64,
    digests: Vec<Digest>,
}

impl CallRefs {
    /// The declared digests, each once.
    pub(in crate::engine::store) fn digests(&self) -> Vec<Digest> {
        self.digests.clone()
    }
}

/// Records, in a run's successful write, that the run references each of
/// `digests` (its entries: in the same batch as the record or event that
/// makes the references).
pub(in crate::engine::store) fn confirm_run_refs(
    txn: &mut dyn Txn,
    run: RunId,
    digests: &[Digest],
    now: Timestamp,
) -> Result<()> {
    let now = now.as_millis().to_be_bytes();
    for digest in digests {
        let key = keys::blob_ref(digest, &Referrer::Run(run));
        txn.put(Table::BlobRefs, key, now.to_vec())?;
    }
    Ok(())
}

fn sorted_unique(digests: impl IntoIterator<Item = Digest>) -> Vec<Digest> {
    let mut digests: Vec<Digest> = digests.into_iter().collect();
    digests.sort_unstable();
    digests.dedup();
    digests
}

impl EngineStore {
    /// Records that `referrer` references each of `digests`, each in a job
    /// in the blob's scope. Call before the write that makes the reference.
    pub(in crate::engine::store) async fn reference(
        &self,
        digests: impl IntoIterator<Item = Digest>,
        referrer: Referrer,
    ) -> Result<()> {
        let entries = sorted_unique(digests)
            .into_iter()
            .map(|digest| (digest, keys::blob_ref(&digest, &referrer)));
        self.record_refs(entries).await
    }

    /// Records the references a call to run `run` is about to make (see
    /// [`CallRefs`]). No write when `digests` is empty, and no removal
    /// later either.
    pub(in crate::engine::store) async fn reference_call(
        &self,
        digests: impl IntoIterator<Item = Digest>,
        run: RunId,
    ) -> Result<CallRefs> {
        let call = CallRefs {
            run,
            token: rand::random(),
            digests: sorted_unique(digests),
        };
        let entries = call
            .digests
            .iter()
            .map(|digest| (*digest, keys::blob_ref_call(digest, run, call.token)));
        match self.record_refs(entries).await {
            Ok(()) => Ok(call),
            Err(e) => {
                // Some entries may be written: take them back.
                self.release_call(call).await;
                Err(e)
            }
        }
    }

    /// Removes the entries of `call` once its write has an outcome.
    ///
    /// Safety rests on the order: call this only after the run's write
    /// returned (its own entries, if it succeeded, are then applied and
    /// readable), never concurrently with it. A write whose outcome is
    /// unknown may still land, so its caller keeps the entries instead
    /// ([`EngineStore::settle_call`]). A removal that fails leaves an entry
    /// that keeps its blob while the run exists (as a call cut short by a
    /// crash does): conservative, so it is not reported. The call does not
    /// wait for the removal to be durable
    /// ([`Engine::write_eventually_durable`](crate::engine::Engine::write_eventually_durable)).
    async fn release_call(&self, call: CallRefs) {
        let removals = call.digests.iter().map(|digest| {
            let key = keys::blob_ref_call(digest, call.run, call.token);
            let removal = self.0.engine.write_eventually_durable(
                blob_scope(digest),
                Box::new(move |txn| txn.delete(Table::BlobRefs, key.clone())),
            );
            async move { self.watch(removal.await) }
        });
        // Every removal is tried, whichever fails.
        join_all(removals).await;
    }

    /// Ends `call` after its write answered `outcome`: its entries are
    /// removed unless the outcome is unknown (the write may still land and
    /// then needs them, as after a crash).
    pub(in crate::engine::store) async fn settle_call<T>(
        &self,
        call: CallRefs,
        outcome: Result<T>,
    ) -> Result<T> {
        match &outcome {
            Err(e) if e.kind() == ErrorKind::OutcomeUnknown => {}
            _ => self.release_call(call).await,
        }
        outcome
    }

    /// Writes each `(digest, key)` reference entry as of now, each in a job
    /// in the blob's scope. Every job runs to its end, so on an error some
    /// entries may be written.
    async fn record_refs(
        &self,
        entries: impl IntoIterator<Item = (Digest, Vec<u8>)>,
    ) -> Result<()> {
        let written = join_all(entries.into_iter().map(|(digest, key)| {
            self.write(blob_scope(&digest), move |shared, txn| {
                let now = shared.now().as_millis().to_be_bytes().to_vec();
                txn.put(Table::BlobRefs, key.clone(), now)
            })
        }))
        .await;
        written.into_iter().collect()
    }

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
