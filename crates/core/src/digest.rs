//! SHA-256 digests: blob addresses, spec digests and supersession targets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 digest: always exactly 32 bytes.
///
/// Displays as 64 lower-case hex characters, parses upper or lower case, and
/// serialises (serde) as that hex string. Orders bytewise, which is also the
/// order of its hex form.
///
/// ```
/// use stowage_core::Digest;
/// let d = Digest::of(b"hello");
/// assert_eq!(d.to_string().len(), 64);
/// assert_eq!(d.short(), &d.to_string()[..12]);
/// assert_eq!(d.to_string().to_uppercase().parse::<Digest>().unwrap(), d);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The length of a digest in bytes.
    pub const LEN: usize = 32;

    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps 32 raw bytes.
    pub const fn from_array(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// Wraps a slice that must be exactly 32 bytes long.
    ///
    /// # Errors
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::invalid_input(format!("a digest is 32 bytes, got {} bytes", bytes.len()))
        })?;
        Ok(Digest(array))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex characters, for logs and messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

/// Streaming SHA-256, for blobs that arrive in chunks.
#[derive(Default, Clone)]
pub struct DigestWriter(Sha256);

impl DigestWriter {
    /// A hasher with nothing fed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl Digest {
    /// The 64 lower-case hex characters, without allocating (this runs
    /// for every stored record that names a digest).
    fn hex(&self) -> HexDigest {
        let mut out = [0u8; 64];
        // 32 bytes always fit 64 characters.
        let _ = hex::encode_to_slice(self.0, &mut out);
        HexDigest(out)
    }
}

/// A digest's hex form on the stack.
struct HexDigest([u8; 64]);

impl HexDigest {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for Digest {
    /// `Digest(<64 hex characters>)`: the whole value, so failing test
    /// output can be matched against stored data ([`Digest::short`] is the
    /// 12-character form for logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.hex().as_str())
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Parses 64 hex characters, upper or lower case.
    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 64 {
            return Err(Error::invalid_input(format!(
                "a digest is 64 hex characters, got {} characters",
                s.chars().count()
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| Error::invalid_input(format!("digest is not hex: {e}")))?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex().as_str())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_has_the_well_known_digest() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn wrong_lengths_are_invalid_input() {
        for bad in ["", "abc", &"a".repeat(63), &"a".repeat(65), &"g".repeat(64)] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(Digest::from_slice(&[0; 31]).is_err());
        // Multi-byte characters must not panic the length check.
        assert!("é".repeat(32).parse::<Digest>().is_err());
    }

    #[test]
    fn streaming_matches_one_shot() {
        let mut w = DigestWriter::new();
        w.update(b"hel");
        w.update(b"lo");
        assert_eq!(w.finish(), Digest::of(b"hello"));
    }

    #[test]
    fn debug_shows_the_whole_digest_and_short_stays_short() {
        let d = Digest::of(b"");
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(format!("{d:?}"), format!("Digest({hex})"));
        assert_eq!(format!("{:?}", Some(d)), format!("Some(Digest({hex}))"));
        assert_eq!(d.short(), &hex[..12]);
    }

    #[test]
    fn serde_is_hex() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
