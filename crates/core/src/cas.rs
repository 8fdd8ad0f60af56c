//! Content-addressed blobs.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// A reader of blob bytes for [`CasStore::put_stream`].
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;
/// A stream of blob chunks from [`CasStore::get_stream`].
pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// The chunk size streams use by default.
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// What [`CasStore::stat`] knows about a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlobStat {
    /// Size in bytes.
    pub size: u64,
}

impl BlobStat {
    /// What is known of a blob of `size` bytes.
    pub fn new(size: u64) -> Self {
        BlobStat { size }
    }
}

/// A store of immutable blobs addressed by their SHA-256.
///
/// Storing the same bytes twice, or concurrently, stores them once. Reads
/// are integrity-checked: damaged bytes give
/// [`Corrupted`](crate::ErrorKind::Corrupted), never wrong data.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stowage_core::{CasStore, Digest};
/// async fn demo(cas: &dyn CasStore) -> stowage_core::Result<()> {
///     let d = cas.put(bytes::Bytes::from_static(b"prompt v1")).await?;
///     assert_eq!(d, Digest::of(b"prompt v1"));
///     assert_eq!(&cas.get(&d).await?[..], b"prompt v1");
///     Ok(())
/// }
/// # });
/// ```
#[async_trait]
pub trait CasStore: Send + Sync {
    /// Stores `bytes` and returns their SHA-256. Idempotent; the empty blob
    /// is valid. Once it returns, `get` gives the bytes back: a blob
    /// already stored but damaged (a chunk fails its checksum, its header
    /// does not decode) is written again.
    ///
    /// # Errors
    /// `InvalidInput` when larger than [`CasStore::max_blob_size`];
    /// `StorageFull`, `Unavailable`, `OutcomeUnknown` from the medium.
    async fn put(&self, bytes: Bytes) -> Result<Digest>;

    /// The bytes whose SHA-256 is `digest`.
    ///
    /// # Errors
    /// `NotFound` if absent; `Corrupted` if the stored bytes are damaged.
    async fn get(&self, digest: &Digest) -> Result<Bytes>;

    /// Whether a blob is stored (no integrity check).
    async fn contains(&self, digest: &Digest) -> Result<bool>;

    /// Size of a stored blob.
    ///
    /// # Errors
    /// `NotFound` if absent.
    async fn stat(&self, digest: &Digest) -> Result<BlobStat>;

    /// Deletes a blob. Idempotent: returns whether it existed. A blob
    /// whose header is damaged is deleted too.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Digests in ascending order, strictly after `after`, at most `limit`
    /// (clamped to [`MAX_PAGE`](crate::validate::MAX_PAGE)).
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>>;

    /// Re-hashes the stored bytes fully, catching deliberate tampering that
    /// a hot-path checksum might not.
    ///
    /// # Errors
    /// `NotFound` if absent; `Corrupted` if the bytes do not hash to `digest`.
    async fn verify(&self, digest: &Digest) -> Result<()> {
        let bytes = self.get(digest).await?;
        check_digest(digest, &bytes)
    }

    /// The largest blob this store accepts, in bytes.
    fn max_blob_size(&self) -> u64;

    /// Stores a blob read from `reader`. Backends that can avoid it never
    /// hold the whole blob in memory; the default reads it into memory
    /// (bounded by [`CasStore::max_blob_size`]) and calls [`CasStore::put`].
    ///
    /// # Errors
    /// As [`CasStore::put`]; I/O errors of the reader map by kind.
    async fn put_stream(&self, reader: BlobReader) -> Result<Digest> {
        let bytes = read_bounded(reader, self.max_blob_size()).await?;
        self.put(bytes).await
    }

    /// The blob as a stream of chunks. The default fetches it whole with
    /// [`CasStore::get`] and splits it.
    ///
    /// # Errors
    /// As [`CasStore::get`], before the stream starts.
    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        Ok(chunked(self.get(digest).await?))
    }
}

/// Checks that `bytes` hash to `digest`.
///
/// # Errors
/// `Corrupted` naming the blob when they do not.
pub fn check_digest(digest: &Digest, bytes: &[u8]) -> Result<()> {
    let actual = Digest::of(bytes);
    if actual != *digest {
        return Err(Error::corrupted(format!(
            "blob {} is damaged: its bytes hash to {}",
            digest.short(),
            actual.short()
        )));
    }
    Ok(())
}

/// Splits in-memory bytes into a stream of [`STREAM_CHUNK_BYTES`] chunks
/// without copying.
pub fn chunked(bytes: Bytes) -> BlobStream {
    let chunks: Vec<Bytes> = if bytes.is_empty() {
        Vec::new()
    } else {
        (0..bytes.len())
            .step_by(STREAM_CHUNK_BYTES)
            .map(|start| bytes.slice(start..(start + STREAM_CHUNK_BYTES).min(bytes.len())))
            .collect()
    };
    stream::iter(chunks.into_iter().map(Ok)).boxed()
}

/// Reads a whole reader into memory, failing with `InvalidInput` once it
/// exceeds `limit` bytes.
///
/// # Errors
/// `InvalidInput` when over the limit or when the reader fails (the
/// caller's input could not be read; nothing is stored).
pub async fn read_bounded(reader: BlobReader, limit: u64) -> Result<Bytes> {
    let mut buf = Vec::new();
    let mut limited = reader.take(limit.saturating_add(1));
    limited.read_to_end(&mut buf).await.map_err(reader_failed)?;
    too_large(buf.len() as u64, limit)?;
    Ok(Bytes::from(buf))
}

/// The error for a caller's blob reader that failed: `InvalidInput` (the
/// input could not be read), keeping the I/O error as the source. Use it in
/// streaming puts so a client hanging up is never reported as `Corrupted`.
pub fn reader_failed(err: std::io::Error) -> Error {
    Error::invalid_input(format!("reading the blob to store failed: {err}")).with_source(err)
}

/// `InvalidInput` when a blob of `size` bytes exceeds `limit`.
///
/// # Errors
/// As described.
pub fn too_large(size: u64, limit: u64) -> Result<()> {
    if size > limit {
        return Err(Error::invalid_input(format!(
            "blob is larger than this store's limit of {limit} bytes"
        )));
    }
    Ok(())
}
