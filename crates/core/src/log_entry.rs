//! Session log entries: what a caller appends ([`NewLogEntry`]), what the
//! store keeps ([`LogEntry`], hash-chained), and the content rule for a
//! reused idempotency key. Re-exported from [`session`](crate::session).

use std::collections::HashSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chain::Link;
use crate::digest::Digest;
use crate::encoding::FieldWriter;
use crate::error::{Error, Result};
use crate::time::Timestamp;
use crate::validate;

/// What a log entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LogKind {
    /// A message that arrived from outside.
    Incoming,
    /// Something the agent did or said internally.
    Internal,
    /// A compacted summary of earlier entries.
    Checkpoint,
}

impl LogKind {
    fn tag(self) -> u8 {
        match self {
            LogKind::Incoming => 1,
            LogKind::Internal => 2,
            LogKind::Checkpoint => 3,
        }
    }
}

/// An entry to append to a session log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewLogEntry {
    /// What the entry is.
    pub kind: LogKind,
    /// Who sent it (an identifier).
    pub sender: String,
    /// Application message type (an identifier).
    pub message_type: String,
    /// The message bytes, at most 1 MiB.
    pub payload: Bytes,
    /// A message id: an entry whose key is already in the log is not stored
    /// again; the original comes back.
    pub idempotency_key: Option<String>,
    /// When it happened; the store's clock when `None`.
    pub timestamp: Option<Timestamp>,
}

impl NewLogEntry {
    /// An entry with no idempotency key and the store's clock.
    pub fn new(
        kind: LogKind,
        sender: impl Into<String>,
        message_type: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        NewLogEntry {
            kind,
            sender: sender.into(),
            message_type: message_type.into(),
            payload: payload.into(),
            idempotency_key: None,
            timestamp: None,
        }
    }

    /// This entry, stored once under `key` (see
    /// [`NewLogEntry::idempotency_key`]).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// This entry, stamped `timestamp` instead of the store's clock.
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// `InvalidInput` naming the field.
    pub fn validate(&self) -> Result<()> {
        validate::identifier("log sender", &self.sender)?;
        validate::identifier("log message type", &self.message_type)?;
        validate::optional_identifier("idempotency key", self.idempotency_key.as_deref())?;
        validate::payload(
            "log payload",
            self.payload.len(),
            validate::MAX_LOG_PAYLOAD_BYTES,
        )
    }
}

/// A stored, hash-chained log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogEntry {
    /// The session it belongs to.
    pub session_id: String,
    /// Position: 0, 1, 2, … without gaps (restarts at 0 after `replace_log`).
    pub seq: u64,
    /// What the entry is.
    pub kind: LogKind,
    /// Who sent it.
    pub sender: String,
    /// Application message type.
    pub message_type: String,
    /// The message bytes.
    pub payload: Bytes,
    /// The idempotency key it was appended with.
    pub idempotency_key: Option<String>,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The previous entry's hash (`None` for seq 0).
    pub prev_hash: Option<Digest>,
    /// SHA-256 over this entry's fields and `prev_hash`.
    pub hash: Digest,
}

impl LogEntry {
    /// Builds the entry with seq `next_seq` after chain head `prev_hash`.
    ///
    /// # Errors
    /// `InvalidInput` for bad fields.
    pub fn build(
        session_id: &str,
        next_seq: u64,
        prev_hash: Option<Digest>,
        new: NewLogEntry,
        now: Timestamp,
    ) -> Result<LogEntry> {
        new.validate()?;
        let mut entry = LogEntry {
            session_id: session_id.to_owned(),
            seq: next_seq,
            kind: new.kind,
            sender: new.sender,
            message_type: new.message_type,
            payload: new.payload,
            idempotency_key: new.idempotency_key,
            timestamp: new.timestamp.unwrap_or(now),
            prev_hash,
            hash: Digest::from_array([0; 32]),
        };
        entry.hash = entry.compute_hash();
        Ok(entry)
    }

    /// Builds a whole new log for `replace_log`: seqs from 0, one chain.
    ///
    /// # Errors
    /// `InvalidInput` for bad fields, more than
    /// [`MAX_REPLACE_ENTRIES`](validate::MAX_REPLACE_ENTRIES) entries, or an
    /// idempotency key used twice.
    pub fn build_log(
        session_id: &str,
        entries: Vec<NewLogEntry>,
        now: Timestamp,
    ) -> Result<Vec<LogEntry>> {
        if entries.len() > validate::MAX_REPLACE_ENTRIES {
            return Err(Error::invalid_input(format!(
                "replace_log got {} entries; the limit is {}",
                entries.len(),
                validate::MAX_REPLACE_ENTRIES
            )));
        }
        let mut keys = HashSet::new();
        let mut out: Vec<LogEntry> = Vec::with_capacity(entries.len());
        for (seq, new) in (0u64..).zip(entries) {
            if let Some(key) = &new.idempotency_key {
                if !keys.insert(key.clone()) {
                    return Err(Error::invalid_input(format!(
                        "replace_log: idempotency key {:?} appears twice",
                        validate::preview(key)
                    )));
                }
            }
            let prev = out.last().map(|e| e.hash);
            out.push(LogEntry::build(session_id, seq, prev, new, now)?);
        }
        Ok(out)
    }

    /// This entry moved to session `session_id` after chain head
    /// `prev_hash` (same seq and contents), with its hash recomputed: how a
    /// forked session's log is rebuilt.
    pub(crate) fn rehomed(&self, session_id: &str, prev_hash: Option<Digest>) -> LogEntry {
        let mut entry = LogEntry {
            session_id: session_id.to_owned(),
            prev_hash,
            ..self.clone()
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// Recomputes the hash from the fields.
    pub fn compute_hash(&self) -> Digest {
        let encoded = FieldWriter::new("stowage/session-log/v1")
            .bytes(self.session_id.as_bytes())
            .opt_fixed(self.prev_hash.as_ref().map(|d| &d.as_bytes()[..]))
            .u64(self.seq)
            .u8(self.kind.tag())
            .bytes(self.sender.as_bytes())
            .bytes(self.message_type.as_bytes())
            .u64(self.timestamp.as_millis())
            .bytes(&self.payload)
            .opt_bytes(self.idempotency_key.as_deref().map(str::as_bytes))
            .finish();
        Digest::of(&encoded)
    }

    /// Whether `new` asks for the same entry as this stored one: the same
    /// kind, sender, message type and payload. The idempotency key and the
    /// timestamp are not content (a message id names one message; its
    /// arrival time may differ between deliveries).
    pub fn same_content(&self, new: &NewLogEntry) -> bool {
        self.kind == new.kind
            && self.sender == new.sender
            && self.message_type == new.message_type
            && self.payload == new.payload
    }

    /// The answer to an append whose idempotency key found this stored
    /// entry: the entry itself when the content is the same, else
    /// `Conflict` naming the key and the session.
    ///
    /// # Errors
    /// `Corrupted` when this entry does not carry `new`'s key (the key's
    /// index names another entry: edited behind the store's back);
    /// `Conflict` when [`LogEntry::same_content`] is false.
    pub fn retried(self, new: &NewLogEntry) -> Result<LogEntry> {
        if self.idempotency_key != new.idempotency_key {
            return Err(Error::corrupted(format!(
                "session {:?}: idempotency key {:?} names entry {}, which does not carry it",
                validate::preview(&self.session_id),
                validate::preview(new.idempotency_key.as_deref().unwrap_or_default()),
                self.seq
            )));
        }
        if self.same_content(new) {
            return Ok(self);
        }
        Err(Error::conflict(format!(
            "session {:?}: idempotency key {:?} was already used for entry {} with other \
             content (kind, sender, message type or payload); use a new key for a new message",
            validate::preview(&self.session_id),
            validate::preview(self.idempotency_key.as_deref().unwrap_or_default()),
            self.seq
        )))
    }

    /// This entry as a chain link.
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
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn the_content_of_a_log_entry_is_kind_sender_type_and_payload() {
        let mut new = NewLogEntry::new(LogKind::Incoming, "user", "text", "hi");
        new.idempotency_key = Some("m1".into());
        let entry = LogEntry::build("s", 0, None, new.clone(), Timestamp::from_millis(5)).unwrap();
        let retry = |f: &dyn Fn(&mut NewLogEntry)| {
            let mut e = new.clone();
            f(&mut e);
            entry.clone().retried(&e)
        };
        assert_eq!(retry(&|_| {}).unwrap(), entry);
        assert!(retry(&|e| e.timestamp = Some(Timestamp::from_millis(9))).is_ok());
        for changed in [
            retry(&|e| e.kind = LogKind::Internal),
            retry(&|e| e.sender = "bot".into()),
            retry(&|e| e.message_type = "image".into()),
            retry(&|e| e.payload = Bytes::from_static(b"ho")),
        ] {
            let err = changed.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict);
            assert!(err.message().contains("\"m1\"") && err.message().contains("session \"s\""));
        }
    }
}
