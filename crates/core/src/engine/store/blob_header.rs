//! A blob's header record and its fixed-size encoding.
//!
//! The header is read on every `get`, `stat` and `contains`-then-write, so
//! it has its own 29-byte layout instead of the generic CBOR record codec
//! (whose decoding cost ~9 000 instructions per header):
//! `[0xB2] size(u64 BE) body id(16 bytes) chunks(u32 BE) put at(u64 BE ms)`.
//! Headers written by earlier versions — `[0xB1]` without the put time,
//! and CBOR records (`encode_record`) — are still read, as put at time 0.

use serde::{Deserialize, Serialize};

use super::cas::CHUNK_BYTES;
use crate::encoding::decode_record;
use crate::engine::keys::BodyId;
use crate::{Error, Result};

/// First byte of a fixed-layout header; distinct from the record codec's
/// version byte, so the layouts can be told apart.
const HEADER_VERSION: u8 = 0xB2;
/// First byte of the fixed layout before headers kept their put time.
const HEADER_VERSION_1: u8 = 0xB1;

/// Length of a fixed-layout header.
const HEADER_LEN: usize = 1 + 8 + 16 + 4 + 8;

/// What a blob's header records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct BlobHeader {
    /// Size in bytes.
    pub(crate) size: u64,
    /// Where its chunks are.
    pub(crate) body: BodyId,
    /// Number of chunks.
    pub(crate) chunks: u32,
    /// When a `put` last returned this blob (ms since the epoch; 0 for
    /// headers written before put times were kept). Garbage collection
    /// keeps blobs put within its grace period.
    #[serde(default)]
    pub(crate) put_at: u64,
}

impl BlobHeader {
    /// The stored form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.push(HEADER_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.chunks.to_be_bytes());
        out.extend_from_slice(&self.put_at.to_be_bytes());
        out
    }

    /// Reads a stored header, in either layout.
    ///
    /// # Errors
    /// `Corrupted` when the bytes are neither layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<BlobHeader> {
        let (with_put_at, rest) = match bytes.split_first() {
            Some((&HEADER_VERSION, rest)) => (true, rest),
            Some((&HEADER_VERSION_1, rest)) => (false, rest),
            _ => return decode_record::<BlobHeader>("blob header", bytes)?.checked(),
        };
        let damaged = || Error::corrupted("blob header has a bad length");
        let (size, rest) = rest.split_first_chunk::<8>().ok_or_else(damaged)?;
        let (body, rest) = rest.split_first_chunk::<16>().ok_or_else(damaged)?;
        let (chunks, rest) = rest.split_first_chunk::<4>().ok_or_else(damaged)?;
        let put_at = match (with_put_at, rest) {
            (false, []) => 0,
            (true, rest) => u64::from_be_bytes(rest.try_into().map_err(|_| damaged())?),
            (false, _) => return Err(damaged()),
        };
        BlobHeader {
            size: u64::from_be_bytes(*size),
            body: *body,
            chunks: u32::from_be_bytes(*chunks),
            put_at,
        }
        .checked()
    }

    /// The header if its size and chunk count agree (every chunk but the
    /// last is full), so a damaged size cannot make a read reserve memory
    /// its chunks do not hold.
    fn checked(self) -> Result<BlobHeader> {
        if self.size.div_ceil(CHUNK_BYTES as u64) == u64::from(self.chunks) {
            Ok(self)
        } else {
            Err(Error::corrupted(format!(
                "blob header says {} bytes in {} chunks",
                self.size, self.chunks
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::encode_record;

    #[test]
    fn both_layouts_decode() {
        let size = (2 << 20) + 5;
        let header = BlobHeader {
            size,
            body: [7; 16],
            chunks: 3,
            put_at: 99,
        };
        let back = BlobHeader::decode(&header.encode()).unwrap();
        assert_eq!((back.size, back.chunks, back.put_at), (size, 3, 99));
        // The layout before put times: the same bytes without the last 8.
        let mut v1 = header.encode();
        v1[0] = HEADER_VERSION_1;
        v1.truncate(HEADER_LEN - 8);
        for bytes in [v1, encode_record(&header).unwrap()] {
            let back = BlobHeader::decode(&bytes).unwrap();
            assert_eq!((back.size, back.body, back.chunks), (size, [7; 16], 3));
        }
        let mut short = header.encode();
        short.pop();
        assert!(BlobHeader::decode(&short).is_err());
        short.extend_from_slice(&[0, 0]);
        assert!(BlobHeader::decode(&short).is_err());
    }

    #[test]
    fn a_size_its_chunks_cannot_hold_is_damage() {
        let header = |size, chunks| BlobHeader {
            size,
            body: [1; 16],
            chunks,
            put_at: 0,
        };
        for (size, chunks) in [(0, 0), (1, 1), (1 << 20, 1), ((1 << 20) + 1, 2)] {
            assert!(BlobHeader::decode(&header(size, chunks).encode()).is_ok());
        }
        // A flipped top bit of the size, a chunk too many or too few.
        for (size, chunks) in [(1 << 63, 3), (5, 2), ((1 << 20) + 1, 1), (0, 1)] {
            for bytes in [
                header(size, chunks).encode(),
                encode_record(&header(size, chunks)).unwrap(),
            ] {
                let err = BlobHeader::decode(&bytes).unwrap_err();
                assert_eq!(
                    err.kind(),
                    crate::ErrorKind::Corrupted,
                    "{size} in {chunks}"
                );
            }
        }
    }
}
