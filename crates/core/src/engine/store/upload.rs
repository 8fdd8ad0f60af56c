//! Streamed uploads (`put_stream`): chunks written as they arrive under a
//! fresh random body id, then a header committing them under the digest.
//!
//! Each upload keeps a marker `Meta: pending_upload(body) → state u8 ‖
//! time u64 BE`: `UPLOADING` with the time of its latest chunk, then
//! `COMMITTING` once its last chunk is written. Every job that touches a
//! marker runs in the upload's own scope, so an upload and whoever
//! reclaims it are ordered. Chunks are left behind three ways, and each is
//! cleaned up:
//! - an upload whose future is dropped removes its own chunks;
//! - after a crash, the first streamed upload of a reopened engine that no
//!   other process writes to removes every marker's chunks (once per
//!   engine and process);
//! - on any engine, `gc_blobs` reclaims uploads idle for longer than its
//!   grace period (and commits begun over an hour before that, which only
//!   a crash leaves). An upload reclaimed while it was still running fails
//!   with `Unavailable` at its next chunk or its commit, never storing a
//!   blob whose chunks are gone.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::OnceCell;

use super::cas::{
    checked_body, delete_body, encode_chunk, existing, off_runtime, scope, BlobHeader, Existing,
};
use super::{EngineStore, Owned};
use crate::engine::keys::{self, BodyId};
use crate::engine::{Direction, Engine, Scope, Table, Txn};
use crate::{Digest, DigestWriter, Error, ErrorKind, Result, Timestamp};

/// Marker state: chunks are still arriving.
const UPLOADING: u8 = 0;
/// Marker state: the last chunk is written; the header is being committed.
const COMMITTING: u8 = 1;
/// How much longer than the grace period a commit may take before `gc`
/// takes it for one a crash interrupted.
const COMMIT_PATIENCE_MS: u64 = 60 * 60 * 1000;
/// Markers read per scan.
const MARKER_PAGE: usize = 256;

fn marker(state: u8, at: Timestamp) -> Vec<u8> {
    let mut value = vec![state];
    value.extend_from_slice(&at.as_millis().to_be_bytes());
    value
}

/// A marker's state and time; a marker of an older layout (empty) reads
/// as an upload idle since the epoch.
fn read_marker(value: &[u8]) -> (u8, u64) {
    match value.split_first() {
        Some((&state, time)) => {
            let at = <[u8; 8]>::try_from(time).map_or(0, u64::from_be_bytes);
            (state, at)
        }
        None => (UPLOADING, 0),
    }
}

/// Whether an upload whose marker says `(state, at)` is abandoned, for a
/// collection whose grace period began at `cutoff` (ms).
fn abandoned((state, at): (u8, u64), cutoff: u64) -> bool {
    match state {
        COMMITTING => at < cutoff.saturating_sub(COMMIT_PATIENCE_MS),
        _ => at < cutoff,
    }
}

fn upload_scope(body: &BodyId) -> Scope {
    Scope::entity(Table::Meta, keys::pending_upload(body))
}

fn reclaimed() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "this streamed upload was idle for longer than the blob collection's grace period, \
         which reclaimed its chunks; nothing was stored: upload it again",
    )
}

/// Sets the marker of upload `body` to `state`, now; unless it is the
/// upload's first write, the marker must still be there.
///
/// # Errors
/// `Unavailable` when `gc_blobs` reclaimed the upload meanwhile.
fn mark(txn: &mut dyn Txn, body: &BodyId, state: u8, now: Timestamp, first: bool) -> Result<()> {
    let key = keys::pending_upload(body);
    if !first && txn.get(Table::Meta, &key)?.is_none() {
        return Err(reclaimed());
    }
    txn.put(Table::Meta, key, marker(state, now))
}

/// Removes upload `body`'s chunks and marker.
fn remove_upload(txn: &mut dyn Txn, body: &BodyId) -> Result<()> {
    delete_body(txn, body)?;
    txn.delete(Table::Meta, keys::pending_upload(body))
}

/// Removes every pending upload's marker and chunks.
fn recover_uploads(txn: &mut dyn Txn) -> Result<()> {
    let (mut start, end) = keys::pending_uploads();
    loop {
        let page = txn.scan(
            Table::Meta,
            &start,
            Some(&end),
            Direction::Forward,
            MARKER_PAGE,
        )?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        start = keys::successor(last);
        for (key, _) in &page {
            remove_upload(txn, &keys::body_of_pending(key)?)?;
        }
    }
}

/// The cell that records whether this process removed `engine`'s
/// interrupted uploads: one per engine, so that a second store bundle over
/// the same engine (the memory backend hands out one per `stores()` call)
/// never takes another bundle's upload in flight for a crashed one.
pub(super) fn upload_recovery(engine: &Arc<dyn Engine>) -> Arc<OnceCell<()>> {
    type Cells = Vec<(Weak<dyn Engine>, Arc<OnceCell<()>>)>;
    static CELLS: Mutex<Cells> = Mutex::new(Vec::new());
    let mut cells = CELLS.lock().unwrap_or_else(PoisonError::into_inner);
    cells.retain(|(e, _)| e.strong_count() > 0);
    let weak = Arc::downgrade(engine);
    if let Some((_, cell)) = cells.iter().find(|(e, _)| e.ptr_eq(&weak)) {
        return Arc::clone(cell);
    }
    let cell = Arc::new(OnceCell::new());
    cells.push((weak, Arc::clone(&cell)));
    cell
}

impl EngineStore {
    /// Removes the chunks of streamed uploads interrupted by a crash, once
    /// per engine and process, before the first streamed upload writes;
    /// every upload waits until it is done. Skipped on engines where other
    /// processes may be uploading, or nothing survives a crash.
    async fn recover_uploads_once(&self) -> Result<()> {
        if let Some(cell) = &self.0.upload_recovery {
            cell.get_or_try_init(|| {
                self.write(Scope::Table(Table::Meta), |_, txn| recover_uploads(txn))
            })
            .await?;
        }
        Ok(())
    }

    /// Removes the chunks and markers of uploads abandoned before `cutoff`
    /// (ms; see [`abandoned`]), each checked again in its own scope.
    pub(super) async fn reclaim_abandoned_uploads(&self, cutoff: u64) -> Result<()> {
        let (mut start, end) = keys::pending_uploads();
        loop {
            let (from, to) = (start.clone(), end.clone());
            let page = self
                .read(move |_, reader| {
                    reader.scan(
                        Table::Meta,
                        &from,
                        Some(&to),
                        Direction::Forward,
                        MARKER_PAGE,
                    )
                })
                .await?;
            for (key, value) in &page {
                if !abandoned(read_marker(value), cutoff) {
                    continue;
                }
                let body = keys::body_of_pending(key)?;
                self.write(upload_scope(&body), move |_, txn| {
                    match txn.get(Table::Meta, &keys::pending_upload(&body))? {
                        Some(value) if abandoned(read_marker(&value), cutoff) => {
                            remove_upload(txn, &body)
                        }
                        _ => Ok(()),
                    }
                })
                .await?;
            }
            match page.last() {
                Some((last, _)) if page.len() == MARKER_PAGE => start = keys::successor(last),
                _ => return Ok(()),
            }
        }
    }
}

/// A streamed upload in progress; removes its chunks if dropped unfinished.
pub(super) struct Upload {
    store: EngineStore,
    body: BodyId,
    next_chunk: u32,
    /// Bytes written so far.
    pub(super) size: u64,
    hasher: Option<DigestWriter>,
    /// The marker says `COMMITTING`.
    committing: bool,
    finished: bool,
}

impl Upload {
    /// An upload into `store` under a fresh body id.
    pub(super) fn new(store: EngineStore, body: BodyId) -> Upload {
        Upload {
            store,
            body,
            next_chunk: 0,
            size: 0,
            hasher: Some(DigestWriter::new()),
            committing: false,
            finished: false,
        }
    }

    /// Writes one chunk (hashing it on the blocking pool); `last` when no
    /// chunk follows it.
    ///
    /// # Errors
    /// `Unavailable` when `gc_blobs` reclaimed the upload meanwhile.
    pub(super) async fn write_chunk(&mut self, chunk: Vec<u8>, last: bool) -> Result<()> {
        let (body, index) = (self.body, self.next_chunk);
        let mut hasher = self.hasher.take().unwrap_or_default();
        self.next_chunk = index
            .checked_add(1)
            .ok_or_else(|| Error::invalid_input("blob has too many chunks"))?;
        let (hasher, stored) = off_runtime(true, move || {
            hasher.update(&chunk);
            (hasher, encode_chunk(&chunk))
        })
        .await?;
        if index == 0 {
            self.store.recover_uploads_once().await?;
        }
        let state = if last { COMMITTING } else { UPLOADING };
        let mut stored = Owned::new(stored);
        self.store
            .write(upload_scope(&body), move |shared, txn| {
                mark(txn, &body, state, shared.now(), index == 0)?;
                txn.put(
                    Table::Blobs,
                    keys::blob_chunk(&body, index),
                    stored.take(shared)?,
                )
            })
            .await?;
        self.committing = last;
        self.hasher = Some(hasher);
        Ok(())
    }

    /// Commits the header (or, if the blob already exists, drops the copy).
    ///
    /// # Errors
    /// `Unavailable` when `gc_blobs` reclaimed the upload meanwhile.
    pub(super) async fn commit(mut self) -> Result<Digest> {
        let (body, wrote_chunks) = (self.body, self.next_chunk > 0);
        if wrote_chunks && !self.committing {
            // The last chunk filled a whole chunk: nothing said it was last.
            self.store
                .write(upload_scope(&body), move |shared, txn| {
                    mark(txn, &body, COMMITTING, shared.now(), false)
                })
                .await?;
            self.committing = true;
        }
        let digest = self.hasher.take().unwrap_or_default().finish();
        let header = BlobHeader {
            size: self.size,
            body,
            chunks: self.next_chunk,
            put_at: 0,
        };
        self.finished = true;
        let mut checked = None;
        loop {
            let found = self
                .store
                .write(scope(&digest), move |shared, txn| {
                    let found = existing(txn, &digest, checked, shared.now())?;
                    match &found {
                        // Nothing is written before the stored body is checked.
                        Existing::Check(_) => return Ok(found),
                        Existing::Touched => delete_body(txn, &body)?,
                        Existing::Write => {
                            let header = BlobHeader {
                                put_at: shared.now().as_millis(),
                                ..header
                            };
                            txn.put(Table::Blobs, keys::blob_header(&digest), header.encode())?;
                        }
                    }
                    if wrote_chunks {
                        txn.delete(Table::Meta, keys::pending_upload(&body))?;
                    }
                    Ok(found)
                })
                .await?;
            match found {
                Existing::Check(stored) => {
                    checked = Some(checked_body(&self.store, digest, stored).await?);
                }
                Existing::Write | Existing::Touched => return Ok(digest),
            }
        }
    }
}

impl Upload {
    /// Removes what the upload wrote before the caller is answered, so a
    /// put refused midway (over the size limit, a reader that failed)
    /// changes nothing by the time it returns. If the removal fails, the
    /// marker stays for recovery; if it is cancelled, `Drop` tries again.
    pub(super) async fn abandon(mut self) {
        if self.next_chunk > 0 {
            let body = self.body;
            let removed = self
                .store
                .write(upload_scope(&body), move |_, txn| remove_upload(txn, &body))
                .await;
            if removed.is_err() {
                return;
            }
        }
        self.finished = true;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished || self.next_chunk == 0 {
            return;
        }
        let (store, body) = (self.store.clone(), self.body);
        // Best effort: if this fails, the marker stays, and the next open
        // of the store or a blob collection removes the chunks.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let abandon =
                    store.write(upload_scope(&body), move |_, txn| remove_upload(txn, &body));
                let _ = abandon.await;
            });
        }
    }
}
