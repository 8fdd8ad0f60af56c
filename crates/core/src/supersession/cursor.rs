//! The one ordering rule of [`SupersessionStore::by_agent`](super::SupersessionStore::by_agent)
//! and its page cursor.

use serde::{Deserialize, Serialize};

use super::Supersession;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::time::{Hlc, Timestamp};

/// A position in the `by_agent` order: `(hlc, timestamp, target)`, compared
/// field by field, records without an [`Hlc`] before (older than) every
/// record with one. `by_agent` returns records in *descending* order of
/// their position; passing the position of a page's last record as `after`
/// returns the records strictly older than it, so paging stays exact while
/// the agent keeps writing (new records are newer, or at least at other
/// positions: no record is skipped or returned twice).
///
/// A cursor is only a position; it names no agent. A cursor taken from
/// another agent's record, or built by hand, is still a valid position:
/// the page holds this agent's records strictly older than it. A cursor
/// newer than the whole window leaves the window unchanged; one older than
/// the window gives an empty page.
///
/// ```
/// use stowage_core::{Digest, Supersession, SupersessionCursor, SupersessionDraft,
///     SupersessionKind, Timestamp};
/// let key = stowage_core::SigningKey::from_bytes(&[7; 32]);
/// let s = Supersession::sign(&key, SupersessionDraft::new(
///     Digest::of(b"old"), None, SupersessionKind::Outdated, "",
///     Timestamp::from_millis(5),
/// ));
/// let cursor = SupersessionCursor::of(&s);
/// assert_eq!(cursor, s.order_key());
/// let text = serde_json::to_string(&cursor).unwrap();
/// assert_eq!(serde_json::from_str::<SupersessionCursor>(&text).unwrap(), cursor);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SupersessionCursor {
    /// The record's hybrid logical clock reading (`None` sorts first).
    pub hlc: Option<Hlc>,
    /// The record's timestamp.
    pub timestamp: Timestamp,
    /// The superseded assertion (the final tie breaker: unique per record).
    pub target: Digest,
}

impl SupersessionCursor {
    /// Width of [`SupersessionCursor::to_bytes`]: presence (1), hlc
    /// (8 + 4 + 8), timestamp (8), target (32).
    pub const LEN: usize = 1 + 20 + 8 + 32;

    /// The position of a record: the cursor for the page after it.
    pub fn of(record: &Supersession) -> Self {
        SupersessionCursor {
            hlc: record.hlc,
            timestamp: record.timestamp,
            target: record.target,
        }
    }

    /// A fixed-width, big-endian encoding that sorts bytewise exactly as
    /// the cursor's [`Ord`]: `0x00` and 20 zero bytes without an hlc, else
    /// `0x01`, physical, logical, node; then the timestamp and the target.
    /// Ordered stores keep this as their index key.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        if let Some(h) = self.hlc {
            out[0] = 1;
            out[1..9].copy_from_slice(&h.physical_ms.to_be_bytes());
            out[9..13].copy_from_slice(&h.logical.to_be_bytes());
            out[13..21].copy_from_slice(&h.node.to_be_bytes());
        }
        out[21..29].copy_from_slice(&self.timestamp.as_millis().to_be_bytes());
        out[29..].copy_from_slice(self.target.as_bytes());
        out
    }

    /// Reads [`SupersessionCursor::to_bytes`] back (fixed offsets).
    ///
    /// # Errors
    /// `Corrupted` for the wrong width, an unknown presence byte or a
    /// non-zero hlc without presence (stored index keys are never user
    /// input).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = |why: &str| {
            Error::corrupted(format!(
                "a supersession order key is malformed ({why}; {} bytes)",
                b.len()
            ))
        };
        let b: &[u8; Self::LEN] = b.try_into().map_err(|_| bad("wrong width"))?;
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(w)
        };
        let hlc = match b[0] {
            0 if b[1..21].iter().all(|&x| x == 0) => None,
            0 => return Err(bad("an hlc without its presence byte")),
            1 => {
                let mut l = [0u8; 4];
                l.copy_from_slice(&b[9..13]);
                Some(Hlc {
                    physical_ms: u64_at(1),
                    logical: u32::from_be_bytes(l),
                    node: u64_at(13),
                })
            }
            _ => return Err(bad("unknown presence byte")),
        };
        Ok(SupersessionCursor {
            hlc,
            timestamp: Timestamp::from_millis(u64_at(21)),
            target: Digest::from_slice(&b[29..]).map_err(|_| bad("target"))?,
        })
    }

    /// Whether a record at this position belongs to the `by_agent` window
    /// `from <= timestamp <= to` (`to = None`: no upper bound) and lies
    /// strictly before `after` in the newest-first order.
    pub fn in_page(
        &self,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<&SupersessionCursor>,
    ) -> bool {
        from <= self.timestamp
            && to.is_none_or(|to| self.timestamp <= to)
            && after.is_none_or(|a| self < a)
    }
}

impl From<&Supersession> for SupersessionCursor {
    fn from(record: &Supersession) -> Self {
        SupersessionCursor::of(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(hlc: Option<(u64, u32, u64)>, ts: u64, t: u8) -> SupersessionCursor {
        SupersessionCursor {
            hlc: hlc.map(|(p, l, n)| Hlc {
                physical_ms: p,
                logical: l,
                node: n,
            }),
            timestamp: Timestamp::from_millis(ts),
            target: Digest::of(&[t]),
        }
    }

    #[test]
    fn bytes_sort_like_ord_and_round_trip() {
        let mut all = vec![
            c(None, 0, 1),
            c(None, 0, 2),
            c(None, 1, 1),
            c(None, u64::MAX, 3),
            c(Some((0, 0, 0)), 0, 1),
            c(Some((0, 0, 1)), 0, 1),
            c(Some((0, 1, 0)), 0, 1),
            c(Some((1, 0, 0)), 0, 1),
            c(Some((1, 0, 0)), 9, 1),
            c(Some((u64::MAX, u32::MAX, u64::MAX)), u64::MAX, 4),
        ];
        all.sort();
        let mut by_bytes = all.clone();
        by_bytes.sort_by_key(SupersessionCursor::to_bytes);
        assert_eq!(all, by_bytes);
        for x in &all {
            assert_eq!(SupersessionCursor::from_bytes(&x.to_bytes()).unwrap(), *x);
        }
    }

    #[test]
    fn malformed_bytes_are_corrupted() {
        let good = c(None, 1, 1).to_bytes();
        assert!(SupersessionCursor::from_bytes(&good[1..]).is_err());
        let mut bad = good;
        bad[0] = 2;
        assert!(SupersessionCursor::from_bytes(&bad).is_err());
        let mut bad = good;
        bad[3] = 1;
        assert!(SupersessionCursor::from_bytes(&bad).is_err());
    }

    #[test]
    fn in_page_is_inclusive_window_and_exclusive_cursor() {
        let x = c(None, 10, 1);
        let ts = Timestamp::from_millis;
        assert!(x.in_page(ts(10), Some(ts(10)), None));
        assert!(!x.in_page(ts(11), None, None));
        assert!(!x.in_page(ts(0), Some(ts(9)), None));
        assert!(!x.in_page(ts(0), None, Some(&x)));
        assert!(x.in_page(ts(0), None, Some(&c(None, 10, 2).max(c(None, 11, 0)))));
    }
}
