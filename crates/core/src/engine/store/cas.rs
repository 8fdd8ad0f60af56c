//! `CasStore` over the seam: blobs stored in chunks.
//!
//! A blob is a header `[0x00] digest → {size, body id, chunk count}` plus
//! chunks `[0x01] body id, index(u32) → crc32c(u32) ++ bytes` of
//! [`CHUNK_BYTES`] each (all in `Blobs`). `put` hashes and checksums off
//! the engine's write path, then writes chunks and header in one job.
//! `put_stream` cannot know the digest until the end, so it writes each
//! chunk as it arrives under a fresh random body id with a pending-upload
//! marker, then commits the header (`upload.rs`). Reads check
//! each chunk's CRC32C (or leave it to an engine that checks every value
//! it returns, [`Reader::checks_values`]) and the total size; `verify`
//! re-hashes everything.
//! Neither streaming call holds more than one chunk in memory.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;

pub(crate) use super::blob_header::BlobHeader;
use super::upload::Upload;
use super::{EngineStore, Owned};
use crate::cas::{reader_failed, too_large};
use crate::engine::keys::{self, BodyId};
use crate::engine::{Direction, Reader, Scope, Table, Txn};
use crate::validate::page_limit;
use crate::{
    BlobReader, BlobStat, BlobStream, CasStore, Digest, DigestWriter, Error, ErrorKind, Result,
    Timestamp,
};

/// Size of one stored chunk.
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;
/// The most a multi-chunk `get` reserves up front; larger blobs grow.
const RESERVE_AT_MOST: u64 = 64 << 20;

/// Blobs at least this large are hashed on the blocking pool.
const HASH_OFF_RUNTIME: usize = 64 * 1024;

/// `crc32c ++ bytes`, the stored form of a chunk.
pub(crate) fn encode_chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&crc32c::crc32c(bytes).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

fn new_body() -> BodyId {
    rand::random()
}

fn chunk_count(size: usize) -> Result<u32> {
    u32::try_from(size.div_ceil(CHUNK_BYTES))
        .map_err(|_| Error::invalid_input("blob has too many chunks"))
}

pub(super) fn scope(digest: &Digest) -> Scope {
    Scope::entity(Table::Blobs, keys::blob_header(digest))
}

/// Runs `f` on the blocking pool when there is one and `heavy`, else here.
pub(super) async fn off_runtime<T: Send + 'static>(
    heavy: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if heavy => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| Error::internal(format!("hashing a blob failed: {e}"))),
        _ => Ok(f()),
    }
}

pub(crate) fn blob_header(reader: &dyn Reader, digest: &Digest) -> Result<Option<BlobHeader>> {
    reader
        .get(Table::Blobs, &keys::blob_header(digest))?
        .map(|bytes| BlobHeader::decode(&bytes))
        .transpose()
}

fn header_or_not_found(reader: &dyn Reader, digest: &Digest) -> Result<BlobHeader> {
    blob_header(reader, digest)?
        .ok_or_else(|| Error::not_found(format!("blob {} does not exist", digest.short())))
}

/// Chunk `index` of a blob, CRC-checked.
fn read_chunk(
    reader: &dyn Reader,
    digest: &Digest,
    header: &BlobHeader,
    index: u32,
) -> Result<Bytes> {
    let key = keys::blob_chunk(&header.body, index);
    let Some(stored) = reader.get_bytes(Table::Blobs, &key)? else {
        // A stream reads its chunks in separate jobs: the blob may have
        // been deleted since (and maybe put again, under a new body).
        let now = blob_header(reader, digest)?;
        if now.is_none_or(|now| now.body != header.body) {
            return Err(Error::not_found(format!(
                "blob {} was deleted while being read",
                digest.short()
            )));
        }
        return Err(Error::corrupted(format!(
            "blob {}: chunk {index} is missing",
            digest.short()
        )));
    };
    let damaged = || Error::corrupted(format!("blob {}: chunk {index} is damaged", digest.short()));
    let (crc, bytes) = stored.split_at_checked(4).ok_or_else(damaged)?;
    // An engine that checked the whole stored value against its own
    // checksum already vouched for these bytes: one pass, not two.
    if !reader.checks_values() {
        let crc: [u8; 4] = crc.try_into().map_err(|_| damaged())?;
        if u32::from_be_bytes(crc) != crc32c::crc32c(bytes) {
            return Err(damaged());
        }
    }
    // The engine's buffer becomes the chunk: no copy.
    Ok(stored.slice(4..))
}

/// Visits every chunk of the blob `header` describes in order, then checks
/// the total size.
fn for_each_chunk(
    reader: &dyn Reader,
    digest: &Digest,
    header: &BlobHeader,
    mut f: impl FnMut(&[u8]),
) -> Result<()> {
    let mut total = 0u64;
    for index in 0..header.chunks {
        let chunk = read_chunk(reader, digest, header, index)?;
        total += chunk.len() as u64;
        f(&chunk);
    }
    check_size(digest, header, total)
}

fn check_size(digest: &Digest, header: &BlobHeader, total: u64) -> Result<()> {
    if total != header.size {
        return Err(Error::corrupted(format!(
            "blob {}: its chunks hold {total} bytes but its header says {}",
            digest.short(),
            header.size
        )));
    }
    Ok(())
}

/// What a `put`'s write job found under its digest, given what an earlier
/// read found of the stored body ([`checked_body`]).
pub(super) enum Existing {
    /// Nothing usable: write the new blob (a damaged body's removal, or a
    /// damaged header's replacement, is staged).
    Write,
    /// A stored blob, now touched: the put is done.
    Touched,
    /// A stored blob whose body is not checked yet: check it outside the
    /// write job ([`checked_body`]), then run the write job again.
    Check(BlobHeader),
}

/// A stored body's check: its id, and whether it read back whole.
pub(super) type Checked = (BodyId, bool);

/// Decides, in a `put`'s write job, what to do with the blob stored under
/// `digest`. A `put` of the same bytes over a damaged blob writes them
/// again rather than answer `Ok` for bytes `get` cannot return; so a
/// stored body is checked first ([`Existing::Check`]), by a read job of
/// its own: the write job never reads a whole blob. A header that does
/// not decode is replaced (its body, unnamed then, stays behind).
pub(super) fn existing(
    txn: &mut dyn Txn,
    digest: &Digest,
    checked: Option<Checked>,
    now: Timestamp,
) -> Result<Existing> {
    let header = match blob_header(txn, digest) {
        Ok(header) => header,
        Err(e) if e.kind() == ErrorKind::Corrupted => return Ok(Existing::Write),
        Err(e) => return Err(e),
    };
    let Some(header) = header else {
        return Ok(Existing::Write);
    };
    match checked {
        None => Ok(Existing::Check(header)),
        Some((body, false)) if body == header.body => {
            delete_body(txn, &body)?;
            Ok(Existing::Write)
        }
        // Whole, or written again by another put since the check.
        Some(_) => {
            touch(txn, digest, header, now)?;
            Ok(Existing::Touched)
        }
    }
}

/// Whether the body `header` names reads back whole (every chunk present
/// and passing its checksum, the size right), read outside any write job.
pub(super) async fn checked_body(
    store: &EngineStore,
    digest: Digest,
    header: BlobHeader,
) -> Result<Checked> {
    let body = header.body;
    store
        .read(
            move |_, reader| match for_each_chunk(reader, &digest, &header, |_| {}) {
                Ok(()) => Ok((body, true)),
                // Damaged, or replaced meanwhile: the write job looks again.
                Err(e) if matches!(e.kind(), ErrorKind::Corrupted | ErrorKind::NotFound) => {
                    Ok((body, false))
                }
                Err(e) => Err(e),
            },
        )
        .await
}

/// Records that a `put` returned the existing blob `header` describes
/// now, so garbage collection's grace period starts again.
pub(super) fn touch(
    txn: &mut dyn Txn,
    digest: &Digest,
    header: BlobHeader,
    now: Timestamp,
) -> Result<()> {
    let put_at = now.as_millis();
    if header.put_at >= put_at {
        return Ok(());
    }
    let header = BlobHeader { put_at, ..header };
    txn.put(Table::Blobs, keys::blob_header(digest), header.encode())
}

pub(crate) fn delete_body(txn: &mut dyn Txn, body: &BodyId) -> Result<()> {
    let (start, end) = keys::blob_chunks(body);
    txn.delete_range(Table::Blobs, start, end)
}

#[async_trait]
impl CasStore for EngineStore {
    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        too_large(bytes.len() as u64, self.0.max_blob_size)?;
        let count = chunk_count(bytes.len())?;
        let size = bytes.len() as u64;
        let (digest, chunks) = off_runtime(bytes.len() >= HASH_OFF_RUNTIME, move || {
            let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK_BYTES).map(encode_chunk).collect();
            (Digest::of(&bytes), chunks)
        })
        .await?;
        let body = new_body();
        // Shared by the (at most two) write jobs: only one writes.
        let chunks = Arc::new(Mutex::new(Owned::new(chunks)));
        let mut checked = None;
        loop {
            let chunks = Arc::clone(&chunks);
            let found = self
                .write(scope(&digest), move |shared, txn| {
                    let found = existing(txn, &digest, checked, shared.now())?;
                    if let Existing::Write = found {
                        let header = BlobHeader {
                            size,
                            body,
                            chunks: count,
                            put_at: shared.now().as_millis(),
                        };
                        let taken = chunks
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take(shared)?;
                        for (index, chunk) in (0u32..).zip(taken) {
                            txn.put(Table::Blobs, keys::blob_chunk(&header.body, index), chunk)?;
                        }
                        txn.put(Table::Blobs, keys::blob_header(&digest), header.encode())?;
                    }
                    Ok(found)
                })
                .await?;
            match found {
                Existing::Check(header) => {
                    checked = Some(checked_body(self, digest, header).await?)
                }
                Existing::Write | Existing::Touched => return Ok(digest),
            }
        }
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        let digest = *digest;
        self.read(move |_, reader| {
            let header = header_or_not_found(reader, &digest)?;
            if header.chunks == 1 {
                // Most blobs are one chunk: hand out its buffer as is.
                let chunk = read_chunk(reader, &digest, &header, 0)?;
                check_size(&digest, &header, chunk.len() as u64)?;
                return Ok(chunk);
            }
            // The header's size agrees with its chunk count (checked when
            // decoded); the cap keeps a damaged pair from reserving more
            // than the chunks read so far can justify.
            let capacity = usize::try_from(header.size.min(RESERVE_AT_MOST)).unwrap_or(0);
            let mut out = Vec::with_capacity(capacity);
            for_each_chunk(reader, &digest, &header, |chunk| {
                out.extend_from_slice(chunk);
            })?;
            Ok(Bytes::from(out))
        })
        .await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let key = keys::blob_header(digest);
        self.read(move |_, reader| Ok(reader.get(Table::Blobs, &key)?.is_some()))
            .await
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let digest = *digest;
        self.read(move |_, reader| {
            let header = header_or_not_found(reader, &digest)?;
            Ok(BlobStat { size: header.size })
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let digest = *digest;
        self.write(scope(&digest), move |_, txn| {
            let header = match blob_header(txn, &digest) {
                Ok(None) => return Ok(false),
                Ok(Some(header)) => Some(header),
                // A damaged header goes; its body, unnamed, stays behind.
                Err(e) if e.kind() == ErrorKind::Corrupted => None,
                Err(e) => return Err(e),
            };
            txn.delete(Table::Blobs, keys::blob_header(&digest))?;
            if let Some(header) = header {
                delete_body(txn, &header.body)?;
            }
            Ok(true)
        })
        .await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let limit = page_limit(limit);
        let (start, end) = keys::blob_headers_after(after);
        self.read(move |_, reader| {
            reader
                .scan(Table::Blobs, &start, Some(&end), Direction::Forward, limit)?
                .iter()
                .map(|(key, _)| keys::digest_of_blob_header(key))
                .collect()
        })
        .await
    }

    async fn verify(&self, digest: &Digest) -> Result<()> {
        let digest = *digest;
        self.read(move |_, reader| {
            let header = header_or_not_found(reader, &digest)?;
            let mut hasher = DigestWriter::new();
            for_each_chunk(reader, &digest, &header, |chunk| hasher.update(chunk))?;
            let actual = hasher.finish();
            if actual != digest {
                return Err(Error::corrupted(format!(
                    "blob {} is damaged: its bytes hash to {}",
                    digest.short(),
                    actual.short()
                )));
            }
            Ok(())
        })
        .await
    }

    fn max_blob_size(&self) -> u64 {
        self.0.max_blob_size
    }

    async fn put_stream(&self, mut reader: BlobReader) -> Result<Digest> {
        let limit = self.0.max_blob_size;
        let mut upload = Upload::new(self.clone(), new_body());
        let written: Result<()> = async {
            loop {
                let mut chunk = Vec::with_capacity(CHUNK_BYTES);
                let read = (&mut reader)
                    .take(CHUNK_BYTES as u64)
                    .read_to_end(&mut chunk)
                    .await
                    .map_err(reader_failed)?;
                upload.size += read as u64;
                too_large(upload.size, limit)?;
                if read > 0 {
                    upload.write_chunk(chunk, read < CHUNK_BYTES).await?;
                }
                if read < CHUNK_BYTES {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = written {
            // Refused input changes nothing: the chunks go before the answer.
            upload.abandon().await;
            return Err(e);
        }
        upload.commit().await
    }

    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        let digest = *digest;
        let header = self
            .read(move |_, reader| header_or_not_found(reader, &digest))
            .await?;
        let state = (self.clone(), 0u32, 0u64, false);
        let stream = stream::unfold(state, move |(store, index, total, done)| async move {
            if done {
                return None;
            }
            if index == header.chunks {
                return match check_size(&digest, &header, total) {
                    Ok(()) => None,
                    Err(e) => Some((Err(e), (store, index, total, true))),
                };
            }
            let read = store
                .read(move |_, reader| read_chunk(reader, &digest, &header, index))
                .await;
            match read {
                Ok(chunk) => {
                    let total = total + chunk.len() as u64;
                    Some((Ok(chunk), (store, index + 1, total, false)))
                }
                Err(e) => Some((Err(e), (store, index, total, true))),
            }
        });
        Ok(stream.boxed())
    }
}
