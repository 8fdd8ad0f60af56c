//! Run events: what a caller appends ([`NewEvent`]), what the store keeps
//! ([`RunEvent`], hash-chained), and the content rule for a reused
//! idempotency key. Re-exported from [`run`](crate::run).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::Link;
use crate::digest::Digest;
use crate::encoding::{canonical_json, FieldWriter};
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::time::Timestamp;
use crate::validate;

/// An event to append to a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewEvent {
    /// What happened (an identifier, e.g. `"tool_call"`).
    pub kind: String,
    /// Details: at most 1 MiB of JSON.
    pub payload: Value,
    /// When it happened; the store's clock when `None`.
    pub timestamp: Option<Timestamp>,
    /// Makes a retried append exactly-once (an identifier).
    pub idempotency_key: Option<String>,
    /// Compare-and-append: fail with `Conflict` unless this is the next seq.
    pub expected_seq: Option<u64>,
    /// Blobs the event produced or used: recorded as references of the
    /// run before the append, they keep the blobs from garbage collection
    /// while the run exists (see [`lifecycle`](crate::lifecycle)). Not part
    /// of the stored event or its hash. At most
    /// [`MAX_SUMMARY_BLOBS`](crate::run::MAX_SUMMARY_BLOBS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Digest>,
}

impl NewEvent {
    /// An event of `kind` with `payload` and all options unset.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        NewEvent {
            kind: kind.into(),
            payload,
            timestamp: None,
            idempotency_key: None,
            expected_seq: None,
            blobs: Vec::new(),
        }
    }

    /// This event, declaring `blobs` as references of its run.
    pub fn with_blobs(mut self, blobs: impl IntoIterator<Item = Digest>) -> Self {
        self.blobs = blobs.into_iter().collect();
        self
    }

    /// This event, made exactly-once under `key` (see
    /// [`NewEvent::idempotency_key`]).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// This event, appended only if `seq` is the run's next seq.
    pub fn with_expected_seq(mut self, seq: u64) -> Self {
        self.expected_seq = Some(seq);
        self
    }

    /// This event, stamped `timestamp` instead of the store's clock.
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        self.checked_payload().map(drop)
    }

    /// Checks every field and returns the payload's canonical JSON.
    fn checked_payload(&self) -> Result<Vec<u8>> {
        validate::identifier("event kind", &self.kind)?;
        validate::optional_identifier("idempotency key", self.idempotency_key.as_deref())?;
        crate::run::check_declared_blobs("event blobs", &self.blobs)?;
        validate::json("event payload", &self.payload)
    }

    /// This event, checked once: [`RunEvent::build_checked`] reuses the
    /// canonical JSON the check produced instead of walking the payload
    /// again.
    pub(crate) fn checked(self) -> Result<CheckedEvent> {
        let payload_json = self.checked_payload()?;
        Ok(CheckedEvent {
            new: self,
            payload_json,
        })
    }
}

/// A [`NewEvent`] whose fields passed [`NewEvent::validate`], with its
/// payload's canonical JSON.
#[derive(Debug, Clone)]
pub(crate) struct CheckedEvent {
    pub(crate) new: NewEvent,
    payload_json: Vec<u8>,
}

/// A stored, hash-chained run event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunEvent {
    /// The run it belongs to.
    pub run_id: RunId,
    /// Position in the run's log: 0, 1, 2, … without gaps.
    pub seq: u64,
    /// What happened.
    pub kind: String,
    /// Details.
    pub payload: Value,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The idempotency key it was appended with.
    pub idempotency_key: Option<String>,
    /// The previous event's hash (`None` for seq 0).
    pub prev_hash: Option<Digest>,
    /// SHA-256 over this event's fields and `prev_hash`.
    pub hash: Digest,
}

impl RunEvent {
    /// Builds the event with seq `next_seq` after the chain head `prev_hash`.
    /// Does not check the run's status or idempotency (see
    /// [`Run::check_running`](crate::Run::check_running)); does check `expected_seq`.
    ///
    /// # Errors
    /// `InvalidInput` for bad fields; `Conflict` when `expected_seq` is not
    /// `next_seq`.
    pub fn build(
        run_id: RunId,
        next_seq: u64,
        prev_hash: Option<Digest>,
        new: NewEvent,
        now: Timestamp,
    ) -> Result<RunEvent> {
        RunEvent::build_checked(run_id, next_seq, prev_hash, new.checked()?, now)
    }

    /// [`RunEvent::build`] of an event already checked.
    pub(crate) fn build_checked(
        run_id: RunId,
        next_seq: u64,
        prev_hash: Option<Digest>,
        checked: CheckedEvent,
        now: Timestamp,
    ) -> Result<RunEvent> {
        let CheckedEvent { new, payload_json } = checked;
        if let Some(expected) = new.expected_seq {
            if expected != next_seq {
                return Err(Error::conflict(format!(
                    "run {run_id}: expected to append seq {expected} but the next seq is {next_seq}"
                )));
            }
        }
        let mut event = RunEvent {
            run_id,
            seq: next_seq,
            kind: new.kind,
            payload: new.payload,
            timestamp: new.timestamp.unwrap_or(now),
            idempotency_key: new.idempotency_key,
            prev_hash,
            hash: Digest::from_array([0; 32]),
        };
        event.hash = event.hash_with_payload(&payload_json);
        Ok(event)
    }

    /// Recomputes the hash from the fields.
    pub fn compute_hash(&self) -> Digest {
        self.hash_with_payload(&canonical_json(&self.payload))
    }

    /// The hash, given the payload's canonical JSON.
    pub(crate) fn hash_with_payload(&self, payload_json: &[u8]) -> Digest {
        let encoded = FieldWriter::new("stowage/run-event/v1")
            .bytes(&self.run_id.to_bytes())
            .opt_fixed(self.prev_hash.as_ref().map(|d| &d.as_bytes()[..]))
            .u64(self.seq)
            .bytes(self.kind.as_bytes())
            .u64(self.timestamp.as_millis())
            .bytes(payload_json)
            .opt_bytes(self.idempotency_key.as_deref().map(str::as_bytes))
            .finish();
        Digest::of(&encoded)
    }

    /// Whether `new` asks for the same event as this stored one: the same
    /// kind, the same payload (compared as canonical JSON, so key order does
    /// not matter) and, if `new` gives a timestamp, the same timestamp (a
    /// retry that leaves the time to the store matches any stored time).
    /// The idempotency key and `expected_seq` are not content.
    pub fn same_content(&self, new: &NewEvent) -> bool {
        self.kind == new.kind
            && new.timestamp.is_none_or(|t| t == self.timestamp)
            // Canonical bytes, not `Value ==`: that calls `-0.0` and `0.0`
            // equal, though they are different content with different hashes.
            && canonical_json(&self.payload) == canonical_json(&new.payload)
    }

    /// The answer to an append whose idempotency key found this stored
    /// event: the event itself when the content is the same, else
    /// `Conflict` naming the key and the run.
    ///
    /// # Errors
    /// `Corrupted` when this event does not carry `new`'s key (the key's
    /// index names another event: edited behind the store's back);
    /// `Conflict` when [`RunEvent::same_content`] is false.
    pub fn retried(self, new: &NewEvent) -> Result<RunEvent> {
        if self.idempotency_key != new.idempotency_key {
            return Err(Error::corrupted(format!(
                "run {}: idempotency key {:?} names event {}, which does not carry it",
                self.run_id,
                validate::preview(new.idempotency_key.as_deref().unwrap_or_default()),
                self.seq
            )));
        }
        if self.same_content(new) {
            return Ok(self);
        }
        Err(Error::conflict(format!(
            "run {}: idempotency key {:?} was already used for event {} with other content \
             (kind, payload or timestamp); use a new key for a new event",
            self.run_id,
            validate::preview(self.idempotency_key.as_deref().unwrap_or_default()),
            self.seq
        )))
    }

    /// This event as a chain link for [`ChainVerifier`](crate::chain::ChainVerifier).
    pub fn link(&self) -> Link {
        Link {
            seq: self.seq,
            prev_hash: self.prev_hash,
            hash: self.hash,
            recomputed: self.compute_hash(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    fn stored(new: &NewEvent) -> RunEvent {
        let run = RunId::new_v7(Timestamp::from_millis(1), 1);
        RunEvent::build(run, 0, None, new.clone(), Timestamp::from_millis(500)).unwrap()
    }

    #[test]
    fn the_content_of_an_event_is_kind_canonical_payload_and_a_given_timestamp() {
        let mut new = NewEvent::new("k", json!({"a": 1, "b": [1, 2]}));
        new.idempotency_key = Some("key".into());
        let event = stored(&new);
        let same = |f: &dyn Fn(&mut NewEvent)| {
            let mut retry = new.clone();
            f(&mut retry);
            event.clone().retried(&retry)
        };
        assert!(same(&|_| {}).is_ok());
        assert!(same(&|e| e.payload = json!({"b": [1, 2], "a": 1})).is_ok());
        assert!(same(&|e| e.timestamp = Some(Timestamp::from_millis(500))).is_ok());
        assert!(same(&|e| e.expected_seq = Some(7)).is_ok());
        for changed in [
            same(&|e| e.kind = "other".into()),
            same(&|e| e.payload = json!({"a": 1, "b": [2, 1]})),
            same(&|e| e.timestamp = Some(Timestamp::from_millis(501))),
        ] {
            let err = changed.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict);
            assert!(err.message().contains("\"key\"") && err.message().contains("run "));
        }
    }

    #[test]
    fn negative_zero_is_other_content_than_zero() {
        let mut new = NewEvent::new("k", json!({"x": -0.0}));
        new.idempotency_key = Some("key".into());
        let event = stored(&new);
        assert!(event.clone().retried(&new).is_ok());
        for other in [json!({"x": 0.0}), json!({"x": 0})] {
            let retry = NewEvent {
                payload: other,
                ..new.clone()
            };
            assert_ne!(stored(&retry).hash, event.hash, "the hashes differ");
            let err = event.clone().retried(&retry).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict);
        }
    }
}
