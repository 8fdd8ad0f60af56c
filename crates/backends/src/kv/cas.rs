//! `CasStore` over the seam: blobs stored in chunks.
//!
//! A blob is a header `[0x00] digest → {size, body id, chunk count}` plus
//! chunks `[0x01] body id, index(u32) → crc32c(u32) ++ bytes` of
//! [`CHUNK_BYTES`] each (all in `Blobs`). `put` writes chunks and header in
//! one atomic batch. `put_stream` cannot know the digest until the end, so
//! it writes each chunk as it arrives under a fresh random body id, with a
//! pending-upload marker in `Meta` in the same batch as the first chunk,
//! then commits the header and removes the marker in one batch. Chunks of
//! an upload interrupted by a crash are removed (via their marker) before
//! the first streamed upload after reopening; an upload whose future is
//! dropped removes its own chunks. Reads check each chunk's CRC32C and the
//! total size; `verify` re-hashes everything. Neither streaming call holds
//! more than one chunk in memory.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use stowage_core::cas::{reader_failed, too_large};
use stowage_core::encoding::encode_record;
use stowage_core::validate::page_limit;
use stowage_core::{
    BlobReader, BlobStat, BlobStream, CasStore, Digest, DigestWriter, Error, Result,
};
use tokio::io::AsyncReadExt;

use super::keys::{self, BodyId};
use super::seam::{Batch, Direction, Table};
use super::{Kv, KvStore};

/// Size of one stored chunk.
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;

/// What a blob's header records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct BlobHeader {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Where its chunks are.
    pub(crate) body: BodyId,
    /// Number of chunks.
    pub(crate) chunks: u32,
}

/// `crc32c ++ bytes`, the stored form of a chunk.
fn encode_chunk(bytes: &[u8]) -> Vec<u8> {
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

impl Kv {
    fn blob_header(&self, digest: &Digest) -> Result<Option<BlobHeader>> {
        self.get_record(Table::Blobs, &keys::blob_header(digest), "blob header")
    }

    fn header_or_not_found(&self, digest: &Digest) -> Result<BlobHeader> {
        self.blob_header(digest)?
            .ok_or_else(|| Error::not_found(format!("blob {} does not exist", digest.short())))
    }

    /// Chunk `index` of a blob, CRC-checked.
    fn read_chunk(&self, digest: &Digest, header: &BlobHeader, index: u32) -> Result<Bytes> {
        let Some(stored) = self
            .engine
            .get(Table::Blobs, &keys::blob_chunk(&header.body, index))?
        else {
            if self.blob_header(digest)?.is_none() {
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
        let damaged =
            || Error::corrupted(format!("blob {}: chunk {index} is damaged", digest.short()));
        let (crc, bytes) = stored.split_at_checked(4).ok_or_else(damaged)?;
        let crc: [u8; 4] = crc.try_into().map_err(|_| damaged())?;
        if u32::from_be_bytes(crc) != crc32c::crc32c(bytes) {
            return Err(damaged());
        }
        // The engine's buffer becomes the chunk: no copy.
        Ok(Bytes::from(stored).slice(4..))
    }

    /// Visits every chunk of the blob `header` describes in order, then
    /// checks the total size.
    fn for_each_chunk(
        &self,
        digest: &Digest,
        header: &BlobHeader,
        mut f: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut total = 0u64;
        for index in 0..header.chunks {
            let chunk = self.read_chunk(digest, header, index)?;
            total += chunk.len() as u64;
            f(&chunk);
        }
        check_size(digest, header, total)
    }

    fn delete_body(batch: &mut Batch, body: &BodyId) {
        let (start, end) = keys::blob_chunks(body);
        batch.delete_range(Table::Blobs, start, end);
    }

    /// Removes the chunks of streamed uploads interrupted by a crash. Runs
    /// once per open store, before its first streamed upload writes.
    fn recover_uploads(&self) -> Result<()> {
        let mut done = self.uploads_recovered.lock();
        if *done {
            return Ok(());
        }
        let (start, end) = keys::pending_uploads();
        loop {
            let page =
                self.engine
                    .scan(Table::Meta, &start, Some(&end), Direction::Forward, 256)?;
            if page.is_empty() {
                break;
            }
            let mut batch = Batch::default();
            for (key, _) in &page {
                let body = keys::body_of_pending(key)?;
                Kv::delete_body(&mut batch, &body);
                batch.delete(Table::Meta, key.clone());
            }
            self.write(batch)?;
        }
        *done = true;
        Ok(())
    }

    fn abandon_upload(&self, body: &BodyId) -> Result<()> {
        let mut batch = Batch::default();
        Kv::delete_body(&mut batch, body);
        batch.delete(Table::Meta, keys::pending_upload(body));
        self.write(batch)
    }
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

/// A streamed upload in progress; removes its chunks if dropped unfinished.
struct Upload {
    store: KvStore,
    body: BodyId,
    next_chunk: u32,
    size: u64,
    hasher: Option<DigestWriter>,
    finished: bool,
}

impl Upload {
    /// Writes one chunk (hashing it on the blocking pool too).
    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        let (body, index) = (self.body, self.next_chunk);
        let mut hasher = self.hasher.take().unwrap_or_default();
        self.next_chunk = index
            .checked_add(1)
            .ok_or_else(|| Error::invalid_input("blob has too many chunks"))?;
        // On the blocking pool, not the writer thread: hashing 1 MiB is
        // slow, and a chunk of a fresh body needs no ordering with others.
        let hasher = self
            .store
            .blocking(move |kv| {
                hasher.update(&chunk);
                let mut batch = Batch::default();
                if index == 0 {
                    kv.recover_uploads()?;
                    batch.put(Table::Meta, keys::pending_upload(&body), Vec::new());
                }
                batch.put(
                    Table::Blobs,
                    keys::blob_chunk(&body, index),
                    encode_chunk(&chunk),
                );
                kv.write(batch)?;
                Ok(hasher)
            })
            .await?;
        self.hasher = Some(hasher);
        Ok(())
    }

    /// Commits the header (or, if the blob already exists, drops the copy).
    async fn commit(mut self) -> Result<Digest> {
        let digest = self.hasher.take().unwrap_or_default().finish();
        let header = BlobHeader {
            size: self.size,
            body: self.body,
            chunks: self.next_chunk,
        };
        let wrote_chunks = self.next_chunk > 0;
        self.finished = true;
        self.store
            .mutate(move |kv| {
                let _guard = kv.locks.lock(Table::Blobs, digest.as_bytes());
                let mut batch = Batch::default();
                if wrote_chunks {
                    batch.delete(Table::Meta, keys::pending_upload(&header.body));
                }
                if kv.blob_header(&digest)?.is_some() {
                    Kv::delete_body(&mut batch, &header.body);
                } else {
                    batch.put(
                        Table::Blobs,
                        keys::blob_header(&digest),
                        encode_record(&header)?,
                    );
                }
                kv.write(batch)?;
                Ok(digest)
            })
            .await
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.finished || self.next_chunk == 0 {
            return;
        }
        let body = self.body;
        let kv = std::sync::Arc::clone(&self.store.0);
        // Best effort: if this fails, the marker stays and the next open
        // of the store removes the chunks.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || kv.abandon_upload(&body));
        }
    }
}

#[async_trait]
impl CasStore for KvStore {
    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        too_large(bytes.len() as u64, self.0.max_blob_size)?;
        let chunks = chunk_count(bytes.len())?;
        self.mutate(move |kv| {
            let digest = Digest::of(&bytes);
            let _guard = kv.locks.lock(Table::Blobs, digest.as_bytes());
            if kv.blob_header(&digest)?.is_some() {
                return Ok(digest);
            }
            let header = BlobHeader {
                size: bytes.len() as u64,
                body: new_body(),
                chunks,
            };
            let mut batch = Batch::default();
            for (index, chunk) in (0u32..).zip(bytes.chunks(CHUNK_BYTES)) {
                batch.put(
                    Table::Blobs,
                    keys::blob_chunk(&header.body, index),
                    encode_chunk(chunk),
                );
            }
            batch.put(
                Table::Blobs,
                keys::blob_header(&digest),
                encode_record(&header)?,
            );
            kv.write(batch)?;
            Ok(digest)
        })
        .await
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        let digest = *digest;
        self.blocking(move |kv| {
            let header = kv.header_or_not_found(&digest)?;
            if header.chunks == 1 {
                // Most blobs are one chunk: hand out its buffer as is.
                let chunk = kv.read_chunk(&digest, &header, 0)?;
                check_size(&digest, &header, chunk.len() as u64)?;
                return Ok(chunk);
            }
            let capacity = usize::try_from(header.size).unwrap_or(0);
            let mut out = Vec::with_capacity(capacity);
            kv.for_each_chunk(&digest, &header, |chunk| out.extend_from_slice(chunk))?;
            Ok(Bytes::from(out))
        })
        .await
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let key = keys::blob_header(digest);
        self.blocking(move |kv| Ok(kv.engine.get(Table::Blobs, &key)?.is_some()))
            .await
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let digest = *digest;
        self.blocking(move |kv| {
            let header = kv.header_or_not_found(&digest)?;
            Ok(BlobStat { size: header.size })
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let digest = *digest;
        self.mutate(move |kv| {
            let _guard = kv.locks.lock(Table::Blobs, digest.as_bytes());
            let Some(header) = kv.blob_header(&digest)? else {
                return Ok(false);
            };
            let mut batch = Batch::default();
            batch.delete(Table::Blobs, keys::blob_header(&digest));
            Kv::delete_body(&mut batch, &header.body);
            kv.write(batch)?;
            Ok(true)
        })
        .await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let limit = page_limit(limit);
        let (start, end) = keys::blob_headers_after(after);
        self.blocking(move |kv| {
            kv.engine
                .scan(Table::Blobs, &start, Some(&end), Direction::Forward, limit)?
                .iter()
                .map(|(key, _)| keys::digest_of_blob_header(key))
                .collect()
        })
        .await
    }

    async fn verify(&self, digest: &Digest) -> Result<()> {
        let digest = *digest;
        self.blocking(move |kv| {
            let header = kv.header_or_not_found(&digest)?;
            let mut hasher = DigestWriter::new();
            kv.for_each_chunk(&digest, &header, |chunk| hasher.update(chunk))?;
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
        let mut upload = Upload {
            store: self.clone(),
            body: new_body(),
            next_chunk: 0,
            size: 0,
            hasher: Some(DigestWriter::new()),
            finished: false,
        };
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
                upload.write_chunk(chunk).await?;
            }
            if read < CHUNK_BYTES {
                break;
            }
        }
        upload.commit().await
    }

    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        let digest = *digest;
        let header = self
            .blocking(move |kv| kv.header_or_not_found(&digest))
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
                .blocking(move |kv| kv.read_chunk(&digest, &header, index))
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
