//! Signed, append-only records saying "assertion X is superseded".

use std::cmp::Reverse;
use std::fmt;

use async_trait::async_trait;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::encoding::FieldWriter;
use crate::error::{Error, Result};
use crate::time::{Hlc, Timestamp};
use crate::validate::{self, MAX_RESOLVE_HOPS};

mod cursor;
mod signing_key;
pub use cursor::SupersessionCursor;
pub use signing_key::SigningKey;

/// Why an assertion is superseded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SupersessionKind {
    /// It was wrong and is withdrawn.
    Invalidate,
    /// It was wrong; `replacement` corrects it.
    Correction,
    /// It was right but is out of date.
    Outdated,
    /// It was merged into `replacement`.
    Merged,
}

impl SupersessionKind {
    fn tag(self) -> u8 {
        match self {
            SupersessionKind::Invalidate => 1,
            SupersessionKind::Correction => 2,
            SupersessionKind::Outdated => 3,
            SupersessionKind::Merged => 4,
        }
    }
}

/// An agent's Ed25519 public key (32 bytes; serde and display as hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentKey(pub [u8; 32]);

impl AgentKey {
    /// The public key of a signing key.
    pub fn of(key: &SigningKey) -> Self {
        key.agent_key()
    }
}

/// An Ed25519 signature (64 bytes; serde and display as hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

macro_rules! hex_newtype {
    ($ty:ident, $len:expr, $what:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        /// The type name and the whole value in hex, so failing test
        /// output can be matched against stored data.
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), hex::encode(self.0))
            }
        }
        impl std::str::FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).map_err(|e| {
                    Error::invalid_input(format!(
                        "{} must be {} hex characters: {e}",
                        $what,
                        2 * $len
                    ))
                })?;
                Ok($ty(out))
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_newtype!(AgentKey, 32, "an agent key");
hex_newtype!(Signature, 64, "a signature");

/// The fields of a supersession before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupersessionDraft {
    /// The assertion (a 32-byte hash) that is no longer valid.
    pub target: Digest,
    /// The assertion that replaces it, if any.
    pub replacement: Option<Digest>,
    /// Why.
    pub kind: SupersessionKind,
    /// Free text, at most 4 KiB.
    pub reason: String,
    /// When it was decided.
    pub timestamp: Timestamp,
    /// The deciding agent's hybrid logical clock, if it keeps one.
    pub hlc: Option<Hlc>,
}

impl SupersessionDraft {
    /// A draft superseding `target` (by `replacement`, if any) for `kind`
    /// and `reason`, decided at `timestamp`, without a hybrid logical clock.
    pub fn new(
        target: Digest,
        replacement: Option<Digest>,
        kind: SupersessionKind,
        reason: impl Into<String>,
        timestamp: Timestamp,
    ) -> Self {
        SupersessionDraft {
            target,
            replacement,
            kind,
            reason: reason.into(),
            timestamp,
            hlc: None,
        }
    }

    /// This draft, with the deciding agent's hybrid logical clock.
    pub fn with_hlc(mut self, hlc: Hlc) -> Self {
        self.hlc = Some(hlc);
        self
    }
}

/// A signed supersession record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Supersession {
    /// The assertion that is no longer valid.
    pub target: Digest,
    /// The assertion that replaces it, if any.
    pub replacement: Option<Digest>,
    /// Why.
    pub kind: SupersessionKind,
    /// Free text, at most 4 KiB.
    pub reason: String,
    /// When it was decided.
    pub timestamp: Timestamp,
    /// The deciding agent's hybrid logical clock reading.
    pub hlc: Option<Hlc>,
    /// The deciding agent's public key.
    pub agent: AgentKey,
    /// Ed25519 over [`Supersession::signing_bytes`].
    pub signature: Signature,
}

/// What [`SupersessionStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record was stored.
    Stored,
    /// The identical record was already stored; nothing changed.
    AlreadyPresent,
}

/// Where following replacements from an assertion leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// `hash` is not superseded: it is the newest valid assertion.
    Current {
        /// The newest assertion.
        hash: Digest,
        /// Replacements followed to get there.
        hops: u32,
    },
    /// The chain ends at `hash`, which was superseded with no replacement.
    Withdrawn {
        /// The last assertion in the chain.
        hash: Digest,
        /// Replacements followed to get there.
        hops: u32,
    },
}

impl Supersession {
    /// Signs a draft with an agent's key.
    ///
    /// ```
    /// use stowage_core::{Digest, Supersession, SupersessionDraft, SupersessionKind, Timestamp};
    /// let key = stowage_core::SigningKey::from_bytes(&[7; 32]);
    /// let s = Supersession::sign(&key, SupersessionDraft::new(
    ///     Digest::of(b"old"), Some(Digest::of(b"new")),
    ///     SupersessionKind::Correction, "typo",
    ///     Timestamp::from_millis(1),
    /// ));
    /// assert!(s.verify().is_ok());
    /// ```
    pub fn sign(key: &SigningKey, draft: SupersessionDraft) -> Supersession {
        let mut s = Supersession {
            target: draft.target,
            replacement: draft.replacement,
            kind: draft.kind,
            reason: draft.reason,
            timestamp: draft.timestamp,
            hlc: draft.hlc,
            agent: AgentKey::of(key),
            signature: Signature([0; 64]),
        };
        s.signature = key.sign(&s.signing_bytes());
        s
    }

    /// The versioned, domain-tagged, fixed-width/length-prefixed encoding
    /// that is signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let hlc = self.hlc.map(|h| {
            let mut b = Vec::with_capacity(20);
            b.extend_from_slice(&h.physical_ms.to_be_bytes());
            b.extend_from_slice(&h.logical.to_be_bytes());
            b.extend_from_slice(&h.node.to_be_bytes());
            b
        });
        FieldWriter::new("stowage/supersession/v1")
            .bytes(self.target.as_bytes())
            .opt_fixed(self.replacement.as_ref().map(|d| &d.as_bytes()[..]))
            .u8(self.kind.tag())
            .bytes(self.reason.as_bytes())
            .u64(self.timestamp.as_millis())
            .opt_fixed(hlc.as_deref())
            .bytes(&self.agent.0)
            .finish()
    }

    /// Checks the signature with `verify_strict` (no malleable or
    /// small-order signatures).
    ///
    /// # Errors
    /// `InvalidInput` for a malformed key or a signature that does not verify.
    pub fn verify(&self) -> Result<()> {
        let key = VerifyingKey::from_bytes(&self.agent.0).map_err(|e| {
            Error::invalid_input(format!(
                "supersession of {}: agent key is not a valid Ed25519 key: {e}",
                self.target.short()
            ))
        })?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.signing_bytes(), &sig).map_err(|_| {
            Error::invalid_input(format!(
                "supersession of {}: signature does not verify for agent {}",
                self.target.short(),
                &self.agent.to_string()[..12]
            ))
        })
    }

    /// Every check `put` makes before looking at the store: reason length,
    /// `target != replacement`, and the signature.
    ///
    /// # Errors
    /// `InvalidInput` naming the rule.
    pub fn validate(&self) -> Result<()> {
        validate::text("supersession reason", &self.reason)?;
        if self.replacement == Some(self.target) {
            return Err(Error::invalid_input(format!(
                "supersession of {} names itself as its replacement",
                self.target.short()
            )));
        }
        self.verify()
    }

    /// The append-only rule, given what is stored for the same target.
    ///
    /// # Errors
    /// `Conflict` when a different record already supersedes the target.
    pub fn decide_put(&self, existing: Option<&Supersession>) -> Result<PutOutcome> {
        match existing {
            None => Ok(PutOutcome::Stored),
            Some(e) if e == self => Ok(PutOutcome::AlreadyPresent),
            Some(_) => Err(Error::conflict(format!(
                "assertion {} is already superseded by a different record",
                self.target.short()
            ))),
        }
    }

    /// Rejects a replacement chain that would lead back to the target.
    /// `replacement_of(h)` answers: `None` if `h` is not superseded, else
    /// `Some(its replacement)`. Call it under the same lock or transaction
    /// as the write.
    ///
    /// # Errors
    /// `Conflict` for a cycle or a chain longer than
    /// [`MAX_RESOLVE_HOPS`]; errors of `replacement_of`.
    pub fn check_no_cycle(
        &self,
        mut replacement_of: impl FnMut(&Digest) -> Result<Option<Option<Digest>>>,
    ) -> Result<()> {
        let Some(mut current) = self.replacement else {
            return Ok(());
        };
        for _ in 0..MAX_RESOLVE_HOPS {
            if current == self.target {
                return Err(Error::conflict(format!(
                    "superseding {} with {} would make a replacement chain that leads back to it",
                    self.target.short(),
                    self.replacement.map(|d| d.short()).unwrap_or_default()
                )));
            }
            match replacement_of(&current)? {
                Some(Some(next)) => current = next,
                _ => return Ok(()),
            }
        }
        Err(Error::conflict(format!(
            "superseding {}: the replacement chain is longer than {MAX_RESOLVE_HOPS}",
            self.target.short()
        )))
    }

    /// The ordering key of [`SupersessionStore::by_agent`] (sort
    /// descending): the record's [`SupersessionCursor`].
    pub fn order_key(&self) -> SupersessionCursor {
        SupersessionCursor::of(self)
    }
}

/// Sorts newest first by `(hlc, timestamp, target)`, as `by_agent` returns.
pub fn sort_newest_first(records: &mut [Supersession]) {
    records.sort_by_key(|s| Reverse(s.order_key()));
}

/// Signed supersession records. Per target, `put` is atomic: of racing
/// different records exactly one is stored.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use stowage_core::*;
/// async fn demo(store: &dyn SupersessionStore) -> Result<()> {
///     let key = stowage_core::SigningKey::from_bytes(&[1; 32]);
///     let s = Supersession::sign(&key, SupersessionDraft::new(
///         Digest::of(b"v1"), Some(Digest::of(b"v2")),
///         SupersessionKind::Correction, "fixed",
///         Timestamp::from_millis(10),
///     ));
///     store.put(s).await?;
///     assert!(store.is_superseded(&Digest::of(b"v1")).await?);
///     assert!(matches!(store.resolve(&Digest::of(b"v1")).await?,
///         Resolution::Current { hash, .. } if hash == Digest::of(b"v2")));
///     Ok(())
/// }
/// # });
/// ```
#[async_trait]
pub trait SupersessionStore: Send + Sync {
    /// Stores a record after [`Supersession::validate`], the append-only
    /// rule and the cycle check.
    ///
    /// # Errors
    /// `InvalidInput` (bad signature, self-replacement, long reason);
    /// `Conflict` (target already superseded differently, or a cycle).
    async fn put(&self, record: Supersession) -> Result<PutOutcome>;

    /// The record superseding `target`, if any.
    async fn get(&self, target: &Digest) -> Result<Option<Supersession>>;

    /// Whether `target` is superseded.
    async fn is_superseded(&self, target: &Digest) -> Result<bool>;

    /// Records by `agent` with `from <= timestamp <= to` (both inclusive; no
    /// upper bound when `to` is `None`), newest first by
    /// [`SupersessionCursor`] order `(hlc, timestamp, target)` — records
    /// without an [`Hlc`] order before (older than) every record with one —
    /// strictly after (older than) the cursor `after`, the `limit` newest
    /// of those (clamped to [`MAX_PAGE`](crate::validate::MAX_PAGE)).
    ///
    /// Page with `after = Some(SupersessionCursor::of(last record))`; paging
    /// is exact while the agent keeps writing: every record present for the
    /// whole walk is returned exactly once. Two records of one agent at the
    /// same timestamp are both kept (the target breaks the tie). See
    /// [`SupersessionCursor`] for a cursor outside the window or from
    /// another agent's record.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use stowage_core::*;
    /// async fn all_of(store: &dyn SupersessionStore, agent: &AgentKey)
    ///     -> Result<Vec<Supersession>> {
    ///     let mut out = Vec::new();
    ///     let mut after = None;
    ///     loop {
    ///         let page = store.by_agent(agent, Timestamp::ZERO, None, after, 100).await?;
    ///         let Some(last) = page.last() else { return Ok(out) };
    ///         after = Some(SupersessionCursor::of(last));
    ///         out.extend(page);
    ///     }
    /// }
    /// # });
    /// ```
    async fn by_agent(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<SupersessionCursor>,
        limit: usize,
    ) -> Result<Vec<Supersession>>;

    /// Every supersession (of every agent), ascending by target digest
    /// bytes, strictly after the target `after`, at most `limit` (clamped
    /// to [`MAX_PAGE`](crate::validate::MAX_PAGE)). Records are
    /// append-only, so paging by the last target is exact while others
    /// write: a record stored before the walk starts is returned exactly
    /// once.
    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>>;

    /// Follows replacements from `hash` to the newest assertion that is not
    /// superseded.
    ///
    /// # Errors
    /// `Corrupted` for a cycle (which `put` never lets in); `Conflict` for a
    /// chain longer than [`MAX_RESOLVE_HOPS`].
    async fn resolve(&self, hash: &Digest) -> Result<Resolution> {
        let mut current = *hash;
        let mut seen = std::collections::HashSet::new();
        for hops in 0..=MAX_RESOLVE_HOPS {
            if !seen.insert(current) {
                return Err(Error::corrupted(format!(
                    "supersession chain from {} loops back to {}",
                    hash.short(),
                    current.short()
                )));
            }
            match self.get(&current).await? {
                None => {
                    return Ok(Resolution::Current {
                        hash: current,
                        hops,
                    })
                }
                Some(s) => match s.replacement {
                    None => {
                        return Ok(Resolution::Withdrawn {
                            hash: current,
                            hops,
                        })
                    }
                    Some(next) => current = next,
                },
            }
        }
        Err(Error::conflict(format!(
            "supersession chain from {} is longer than {MAX_RESOLVE_HOPS}",
            hash.short()
        )))
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_shows_whole_agent_keys_and_signatures() {
        let key = AgentKey([0xab; 32]);
        assert_eq!(format!("{key:?}"), format!("AgentKey({})", "ab".repeat(32)));
        let sig = Signature([0x01; 64]);
        assert_eq!(
            format!("{sig:?}"),
            format!("Signature({})", "01".repeat(64))
        );
    }
}
