//! The SHA-256 hash chain over run events and session log entries.
//!
//! Each entry's `hash` is the SHA-256 of a domain-tagged, length-prefixed
//! encoding of its fields including `prev_hash`, so editing, removing,
//! reordering or inserting any entry behind the SDK's back breaks a link.
//! [`ChainVerifier`] re-walks a chain one entry at a time (so backends can
//! stream pages through it) and names the first broken link.

use crate::digest::Digest;
use crate::error::{Error, Result};

/// What a successful verification saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// Number of entries walked.
    pub len: u64,
    /// Hash of the last entry, `None` for an empty chain.
    pub head: Option<Digest>,
}

/// One link as stored: what the entry claims, and what its fields hash to.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// The stored sequence number.
    pub seq: u64,
    /// The stored `prev_hash`.
    pub prev_hash: Option<Digest>,
    /// The stored `hash`.
    pub hash: Digest,
    /// The hash recomputed from the stored fields.
    pub recomputed: Digest,
}

/// Walks a chain entry by entry and reports the first broken link.
///
/// ```
/// use stowage_core::chain::{ChainVerifier, Link};
/// use stowage_core::Digest;
/// let h = Digest::of(b"e0");
/// let mut v = ChainVerifier::new("run r");
/// v.push(Link { seq: 0, prev_hash: None, hash: h, recomputed: h }).unwrap();
/// let bad = Link { seq: 1, prev_hash: Some(h), hash: h, recomputed: Digest::of(b"x") };
/// assert!(v.push(bad).is_err());
/// ```
#[derive(Debug)]
pub struct ChainVerifier {
    entity: String,
    next_seq: u64,
    head: Option<Digest>,
}

impl ChainVerifier {
    /// A verifier for the chain of `entity` (named in errors, e.g. `"run 0193…"`).
    pub fn new(entity: impl Into<String>) -> Self {
        ChainVerifier {
            entity: entity.into(),
            next_seq: 0,
            head: None,
        }
    }

    /// Checks the next link.
    ///
    /// # Errors
    /// [`Corrupted`](crate::ErrorKind::Corrupted) naming the entity and seq
    /// when the seq is out of order (gap, duplicate), `prev_hash` does not
    /// match the previous entry's hash, or the hash does not match the fields.
    pub fn push(&mut self, link: Link) -> Result<()> {
        let entity = &self.entity;
        if link.seq != self.next_seq {
            return Err(Error::corrupted(format!(
                "{entity}: hash chain broken at seq {}: expected seq {} (gap or reordering)",
                link.seq, self.next_seq
            )));
        }
        if link.prev_hash != self.head {
            return Err(Error::corrupted(format!(
                "{entity}: hash chain broken at seq {}: prev_hash does not match the previous entry",
                link.seq
            )));
        }
        if link.hash != link.recomputed {
            return Err(Error::corrupted(format!(
                "{entity}: hash chain broken at seq {}: the entry's contents do not match its hash",
                link.seq
            )));
        }
        self.head = Some(link.hash);
        self.next_seq += 1;
        Ok(())
    }

    /// The seq the next pushed link must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks that the chain ends where the owner's record says it ends:
    /// `expected_len` entries whose last hash is `expected_head` (`None`
    /// for an empty chain). The record is updated atomically with every
    /// append, so a removed tail, a removed middle and a rewrite that was
    /// re-chained over all end somewhere else.
    ///
    /// # Errors
    /// [`Corrupted`](crate::ErrorKind::Corrupted) when entries are missing at
    /// the end, or the last entry's hash is not the recorded head.
    pub fn finish(self, expected_len: u64, expected_head: Option<Digest>) -> Result<ChainReport> {
        if self.next_seq != expected_len {
            return Err(Error::corrupted(format!(
                "{}: hash chain has {} entries but the store recorded {expected_len} \
                 (entries were removed)",
                self.entity, self.next_seq
            )));
        }
        if self.head != expected_head {
            let show = |h: Option<Digest>| h.map_or_else(|| "none".to_owned(), |d| d.to_string());
            return Err(Error::corrupted(format!(
                "{}: hash chain ends at head {} but the store recorded head {} \
                 (the log was rewritten)",
                self.entity,
                show(self.head),
                show(expected_head)
            )));
        }
        Ok(ChainReport {
            len: self.next_seq,
            head: self.head,
        })
    }
}

/// Re-walks a chain whose owner records `len` entries ending at `head`:
/// `page(after)` serves entries in seq order after `after`, `link` reads
/// one's link. Afterwards an entry past the recorded length is corruption
/// (one added behind the SDK's back that reads would serve) unless
/// `end_now()` (the owner's length and head read again) shows the chain
/// changed meanwhile (a concurrent append, a replaced log).
///
/// # Errors
/// [`Corrupted`](crate::ErrorKind::Corrupted) as [`ChainVerifier`] says,
/// or for an entry past the recorded length; the errors of `page` and
/// `end_now`.
pub(crate) async fn walk<T, F, Fut, L, LFut>(
    entity: String,
    (len, head): (u64, Option<Digest>),
    link: fn(&T) -> Link,
    mut page: F,
    end_now: L,
) -> Result<ChainReport>
where
    F: FnMut(Option<u64>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
    L: FnOnce() -> LFut,
    LFut: std::future::Future<Output = Result<(u64, Option<Digest>)>>,
{
    let mut verifier = ChainVerifier::new(entity.clone());
    let (mut after, mut past_len) = (None, false);
    'pages: while verifier.next_seq() < len {
        let entries = page(after).await?;
        if entries.is_empty() {
            break;
        }
        for entry in &entries {
            if verifier.next_seq() >= len {
                past_len = true;
                break 'pages;
            }
            let link = link(entry);
            verifier.push(link)?;
            after = Some(link.seq);
        }
    }
    let report = verifier.finish(len, head)?;
    if !past_len {
        past_len = !page(after).await?.is_empty();
    }
    if past_len && end_now().await? == (len, head) {
        return Err(Error::corrupted(format!(
            "{entity}: an entry sits past the {len} the store recorded \
             (added behind the store's back)"
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn link(seq: u64, prev: Option<Digest>, n: u8) -> Link {
        let h = Digest::of(&[n]);
        Link {
            seq,
            prev_hash: prev,
            hash: h,
            recomputed: h,
        }
    }

    #[test]
    fn a_chain_must_end_at_the_recorded_length_and_head() {
        let walk = || {
            let mut v = ChainVerifier::new("run r");
            let a = link(0, None, 1);
            v.push(a).unwrap();
            v.push(link(1, Some(a.hash), 2)).unwrap();
            v
        };
        let head = Some(Digest::of(&[2]));
        assert_eq!(walk().finish(2, head).unwrap().len, 2);
        let short = walk().finish(3, head).unwrap_err();
        assert_eq!(short.kind(), ErrorKind::Corrupted);
        assert!(short.message().contains("removed"), "{short}");
        let rewritten = walk().finish(2, Some(Digest::of(b"x"))).unwrap_err();
        assert_eq!(rewritten.kind(), ErrorKind::Corrupted);
        assert!(rewritten.message().contains("rewritten"), "{rewritten}");
        assert!(ChainVerifier::new("empty").finish(0, None).is_ok());
    }
}
