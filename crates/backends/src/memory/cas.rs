//! Content-addressed blobs in memory, each with a CRC32C checked on read.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;
use stowage_core::cas::{check_digest, chunked, read_bounded, too_large};
use stowage_core::validate::page_limit;
use stowage_core::{BlobReader, BlobStat, BlobStream, CasStore, Digest, Error, Result};

use super::{State, MAX_BLOB_SIZE};

/// A stored blob: its bytes and the CRC32C they had when stored.
#[derive(Clone)]
struct Blob {
    bytes: Bytes,
    crc: u32,
}

impl Blob {
    /// The bytes, if they still match their checksum.
    fn checked(&self, digest: &Digest) -> Result<Bytes> {
        if crc32c::crc32c(&self.bytes) != self.crc {
            return Err(Error::corrupted(format!(
                "blob {} is damaged: its checksum does not match",
                digest.short()
            )));
        }
        Ok(self.bytes.clone())
    }
}

/// How many shards the blob map is split into (by the top bits of the
/// digest's first byte).
const SHARDS: usize = 16;

/// All blobs in [`SHARDS`] ordered shards. Shard `i` holds the digests whose
/// first byte is in `[16 i, 16 i + 16)`, so walking the shards in order walks
/// all digests in ascending order. A shard is write-locked only to insert or
/// remove one blob; hashing happens outside any lock.
pub(crate) struct Blobs {
    shards: [RwLock<BTreeMap<Digest, Blob>>; SHARDS],
}

impl Default for Blobs {
    fn default() -> Self {
        Blobs {
            shards: std::array::from_fn(|_| RwLock::new(BTreeMap::new())),
        }
    }
}

impl Blobs {
    pub(crate) fn snapshot(&self) -> Self {
        // Bytes are immutable, so sharing them is a deep copy in effect.
        Blobs {
            shards: std::array::from_fn(|i| {
                RwLock::new(
                    self.shards
                        .get(i)
                        .map(|s| s.read().clone())
                        .unwrap_or_default(),
                )
            }),
        }
    }

    fn shard_index(digest: &Digest) -> usize {
        usize::from(digest.as_bytes()[0] >> 4)
    }

    fn shard(&self, digest: &Digest) -> &RwLock<BTreeMap<Digest, Blob>> {
        // `shard_index` is below 16 by construction.
        &self.shards[Self::shard_index(digest)]
    }

    pub(crate) fn corrupt(&self, digest: &Digest) -> bool {
        let mut map = self.shard(digest).write();
        let Some(blob) = map.get_mut(digest) else {
            return false;
        };
        let mut damaged = blob.bytes.to_vec();
        match damaged.first_mut() {
            Some(b) => *b ^= 0xFF,
            None => damaged.extend_from_slice(b"garbage"),
        }
        blob.bytes = Bytes::from(damaged);
        true
    }

    fn get(&self, digest: &Digest) -> Result<Blob> {
        self.shard(digest)
            .read()
            .get(digest)
            .cloned()
            .ok_or_else(|| not_found(digest))
    }

    /// Stores a blob once; a damaged stored copy is replaced by the good one.
    fn insert(&self, digest: Digest, blob: Blob) {
        let mut map = self.shard(&digest).write();
        match map.get(&digest) {
            Some(existing) if crc32c::crc32c(&existing.bytes) == existing.crc => {}
            _ => {
                map.insert(digest, blob);
            }
        }
    }

    fn list(&self, after: Option<&Digest>, limit: usize) -> Vec<Digest> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let first = after.map_or(0, Self::shard_index);
        let mut out = Vec::new();
        for shard in self.shards.iter().skip(first) {
            if out.len() >= limit {
                break;
            }
            let map = shard.read();
            let room = limit - out.len();
            out.extend(
                map.range((lower, Bound::Unbounded))
                    .take(room)
                    .map(|(d, _)| *d),
            );
        }
        out
    }
}

fn not_found(digest: &Digest) -> Error {
    Error::not_found(format!("blob {} is not stored", digest.short()))
}

/// The [`CasStore`] of a memory backend.
pub(crate) struct MemoryCas(pub(crate) Arc<State>);

#[async_trait]
impl CasStore for MemoryCas {
    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        too_large(bytes.len() as u64, MAX_BLOB_SIZE)?;
        let digest = Digest::of(&bytes);
        let crc = crc32c::crc32c(&bytes);
        let _w = self.0.writing();
        self.0.blobs.insert(digest, Blob { bytes, crc });
        Ok(digest)
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        self.0.blobs.get(digest)?.checked(digest)
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.0.blobs.shard(digest).read().contains_key(digest))
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let blob = self.0.blobs.get(digest)?;
        Ok(BlobStat {
            size: blob.bytes.len() as u64,
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let _w = self.0.writing();
        Ok(self.0.blobs.shard(digest).write().remove(digest).is_some())
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        Ok(self.0.blobs.list(after, page_limit(limit)))
    }

    async fn verify(&self, digest: &Digest) -> Result<()> {
        let bytes = self.0.blobs.get(digest)?.checked(digest)?;
        check_digest(digest, &bytes)
    }

    fn max_blob_size(&self) -> u64 {
        MAX_BLOB_SIZE
    }

    async fn put_stream(&self, reader: BlobReader) -> Result<Digest> {
        // The blob is kept in memory anyway: read it (bounded) and store it.
        let bytes = read_bounded(reader, MAX_BLOB_SIZE).await?;
        self.put(bytes).await
    }

    async fn get_stream(&self, digest: &Digest) -> Result<BlobStream> {
        // Chunks are slices of the stored bytes: no copy.
        Ok(chunked(self.0.blobs.get(digest)?.checked(digest)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(bytes: &'static [u8]) -> Blob {
        Blob {
            bytes: Bytes::from_static(bytes),
            crc: crc32c::crc32c(bytes),
        }
    }

    #[test]
    fn corrupting_the_empty_blob_breaks_its_checksum() {
        let blobs = Blobs::default();
        let d = Digest::of(b"");
        blobs.insert(d, blob(b""));
        assert!(blobs.get(&d).unwrap().checked(&d).is_ok());
        assert!(blobs.corrupt(&d));
        let err = blobs.get(&d).unwrap().checked(&d).unwrap_err();
        assert_eq!(err.kind(), stowage_core::ErrorKind::Corrupted);
        assert!(!blobs.corrupt(&Digest::of(b"absent")));
        // Storing the good bytes again heals the damaged copy.
        blobs.insert(d, blob(b""));
        assert!(blobs.get(&d).unwrap().checked(&d).is_ok());
    }

    #[test]
    fn listing_walks_the_shards_in_digest_order() {
        let blobs = Blobs::default();
        let mut all: Vec<Digest> = (0..200u32)
            .map(|i| Digest::from_array([(i % 256) as u8; 32]))
            .collect();
        for d in &all {
            blobs.insert(*d, blob(b"x"));
        }
        all.sort();
        all.dedup();
        assert_eq!(blobs.list(None, 10_000), all);
        let (mut after, mut paged) = (None, Vec::new());
        loop {
            let page = blobs.list(after.as_ref(), 7);
            let Some(last) = page.last() else { break };
            after = Some(*last);
            paged.extend(page);
        }
        assert_eq!(paged, all);
        assert_eq!(blobs.list(all.get(100), 3), all[101..104].to_vec());
        assert!(blobs.list(None, 0).is_empty());
    }
}
