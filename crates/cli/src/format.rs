//! The export format: versioned, streaming JSON Lines.
//!
//! An export file is UTF-8 text, one JSON object per line (`\n`), each
//! with a `"type"` field. Version 1:
//!
//! | line | fields |
//! |---|---|
//! | `header` (first line, exactly once) | `format: "stowage-export"`, `version: 1`, `exported_at` (ms), `source_backend`, `supersessions: "included" \| "skipped"` |
//! | `blob` | `digest` (64 hex), `size` (bytes); followed by `ceil(size / 49152)` `chunk` lines |
//! | `chunk` | `data`: standard base64 (with padding) of at most 49 152 bytes of the blob above |
//! | `blob_ref` | `digest`, `referrer`: `{"kind": "pin", "label"}` or `{"kind": "run", "run"}` — a pin, or a run that declared the blob (an event's or its summary's `blobs`); after the blob's chunks |
//! | `release` | `record`: a `ReleaseRecord`; a name's records in ascending `seq`, from 0 |
//! | `run` | `run`: a `Run` record; followed by exactly `run.event_count` `event` lines |
//! | `event` | `event`: a `RunEvent` (seq ascending from 0, with `timestamp`, `idempotency_key`, `prev_hash`, `hash`) |
//! | `session` | `session`: a `Session` record (`version` at most [`MAX_SESSION_VERSION`]), `log_len`; followed by exactly `log_len` `log` lines |
//! | `log` | `entry`: a log entry with the payload as base64 in `payload` (see [`LogLine`]) |
//! | `supersession` | `record`: a signed `Supersession` |
//! | `end` (last line, exactly once) | `counts`: [`Counts`] of everything above |
//!
//! Records (`Run`, `RunEvent`, `Session`, `ReleaseRecord`, `Supersession`)
//! are the serde JSON forms of the `stowage-core` types: digests and keys
//! as lowercase hex, run ids as UUID strings, timestamps as integer
//! milliseconds. Blobs come first, then releases, runs, sessions,
//! supersessions. Pins of blobs the store does not hold are not exported
//! (nothing lists them). A file without its `end` line is truncated: the importer
//! applies what it holds and then fails, so a re-run with the full file
//! finishes the job. A reader must reject a `version` it does not know.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stowage_core::{
    Digest, Error, LogEntry, LogKind, ReleaseRecord, Result, Run, RunEvent, RunId, Session,
    Supersession, Timestamp,
};

/// The value of the header's `format` field.
pub const FORMAT_NAME: &str = "stowage-export";
/// The version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this crate reads.
pub const OLDEST_VERSION: u32 = 1;
/// Raw blob bytes per `chunk` line (64 KiB of base64).
pub const CHUNK_BYTES: usize = 48 * 1024;
/// The longest line a reader accepts (a 1 MiB log payload is 1.4 MiB of
/// base64; run tags, summaries and event payloads are at most 1 MiB of
/// JSON each).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// The highest session `version` the importer replays. It reproduces a
/// version with one save per step (a write of the session's record each),
/// so a million is minutes on a networked backend; a damaged or hostile
/// file claiming more is refused up front instead of writing without
/// bound.
pub const MAX_SESSION_VERSION: u64 = 1_000_000;

/// One line of an export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first line.
    Header(Header),
    /// A blob's digest and size; its bytes follow as `chunk` lines.
    Blob {
        /// The blob's SHA-256.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes of the blob announced last.
    Chunk {
        /// At most [`CHUNK_BYTES`] bytes (base64 in the file).
        #[serde(with = "base64_bytes")]
        data: Bytes,
    },
    /// A reference that keeps a blob from garbage collection.
    BlobRef {
        /// The blob.
        digest: Digest,
        /// What refers to it.
        referrer: RefLine,
    },
    /// One release record.
    Release {
        /// The record.
        record: ReleaseRecord,
    },
    /// A run record; its events follow.
    Run {
        /// The record.
        run: Run,
    },
    /// One run event.
    Event {
        /// The event.
        event: RunEvent,
    },
    /// A session record; its log follows.
    Session {
        /// The record.
        session: Session,
        /// How many `log` lines follow.
        log_len: u64,
    },
    /// One session log entry.
    Log {
        /// The entry.
        entry: LogLine,
    },
    /// One supersession record.
    Supersession {
        /// The record.
        record: Supersession,
    },
    /// The last line.
    End {
        /// What the file holds.
        counts: Counts,
    },
}

/// The first line of an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] for files this crate writes.
    pub version: u32,
    /// When the export started.
    pub exported_at: Timestamp,
    /// The source backend's name.
    pub source_backend: String,
    /// Whether supersessions are in the file.
    pub supersessions: Coverage,
}

/// Whether a kind of entity was exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Every entity of this kind is in the file.
    Included,
    /// The source could not enumerate them and the caller chose to go on.
    Skipped,
}

/// A blob reference as written in a file: the kinds that replaying the
/// other records does not recreate (releases and supersessions recreate
/// theirs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefLine {
    /// A pin (`stowage pin`).
    Pin {
        /// Its label.
        label: String,
    },
    /// A run that declared the blob (an event's or its summary's `blobs`).
    Run {
        /// The run.
        run: RunId,
    },
}

/// Entity counts (of a file, a store or an import).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Blobs.
    pub blobs: u64,
    /// Bytes of all blobs.
    pub blob_bytes: u64,
    /// Release names.
    pub release_names: u64,
    /// Release records (all names).
    pub releases: u64,
    /// Runs.
    pub runs: u64,
    /// Run events (all runs).
    pub events: u64,
    /// Sessions.
    pub sessions: u64,
    /// Log entries (all sessions).
    pub log_entries: u64,
    /// Supersession records.
    pub supersessions: u64,
    /// Blob references (`blob_ref` lines; none in version 1 files).
    #[serde(default)]
    pub blob_refs: u64,
}

/// A session log entry as written in a file: [`LogEntry`] with the payload
/// as standard base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The session it belongs to.
    pub session_id: String,
    /// Its seq.
    pub seq: u64,
    /// Its kind.
    pub kind: LogKind,
    /// Who sent it.
    pub sender: String,
    /// Application message type.
    pub message_type: String,
    /// The payload bytes (base64 in the file).
    #[serde(with = "base64_bytes")]
    pub payload: Bytes,
    /// Its idempotency key.
    pub idempotency_key: Option<String>,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The previous entry's hash.
    pub prev_hash: Option<Digest>,
    /// Its hash.
    pub hash: Digest,
}

impl From<&LogEntry> for LogLine {
    fn from(e: &LogEntry) -> Self {
        LogLine {
            session_id: e.session_id.clone(),
            seq: e.seq,
            kind: e.kind,
            sender: e.sender.clone(),
            message_type: e.message_type.clone(),
            payload: e.payload.clone(),
            idempotency_key: e.idempotency_key.clone(),
            timestamp: e.timestamp,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

impl TryFrom<LogLine> for LogEntry {
    type Error = stowage_core::Error;

    /// The entry the line describes. Records are built by core, so this
    /// goes through the entry's serde form (the payload as bytes).
    fn try_from(l: LogLine) -> stowage_core::Result<Self> {
        let payload = l.payload.to_vec();
        let mut value = serde_json::to_value(&l)
            .map_err(|e| stowage_core::Error::internal(format!("re-encoding a log line: {e}")))?;
        value["payload"] = serde_json::json!(payload);
        serde_json::from_value(value).map_err(|e| {
            stowage_core::Error::invalid_input(format!("a log line is not a log entry: {e}"))
        })
    }
}

impl Record {
    /// The record as one line of JSON (without the newline).
    ///
    /// # Errors
    /// `Internal` if serialisation fails (it does not for these types).
    pub fn to_line(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::internal(format!("encoding an export record: {e}")))
    }

    /// Parses line `number` (1-based, for messages) of a file.
    ///
    /// # Errors
    /// `InvalidInput` naming the line for anything that is not a record.
    pub fn from_line(line: &[u8], number: u64) -> Result<Record> {
        serde_json::from_slice(line).map_err(|e| {
            Error::invalid_input(format!(
                "export file line {number} is not a valid record: {e}"
            ))
        })
    }
}

impl Header {
    /// The header for an export made now from `backend`.
    pub fn new(backend: &str, supersessions: Coverage) -> Self {
        Header {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            exported_at: Timestamp::now(),
            source_backend: backend.to_owned(),
            supersessions,
        }
    }

    /// Checks the format name and version.
    ///
    /// # Errors
    /// `InvalidInput` for another format or an unknown version.
    pub fn check(&self) -> Result<()> {
        if self.format != FORMAT_NAME {
            return Err(Error::invalid_input(format!(
                "not a stowage export: format is {:?}, expected {FORMAT_NAME:?}",
                self.format
            )));
        }
        if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&self.version) {
            return Err(Error::invalid_input(format!(
                "export format version {} is not supported (this stowage reads versions \
                 {OLDEST_VERSION} to {FORMAT_VERSION})",
                self.version
            )));
        }
        Ok(())
    }
}

/// Serde for bytes as standard base64 with padding.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_lines() {
        let chunk = Record::Chunk {
            data: Bytes::from_static(b"\x00\xffhello"),
        };
        let line = chunk.to_line().unwrap();
        assert_eq!(line, r#"{"type":"chunk","data":"AP9oZWxsbw=="}"#);
        assert_eq!(Record::from_line(line.as_bytes(), 1).unwrap(), chunk);
        let header = Record::Header(Header::new("file", Coverage::Skipped));
        let back = Record::from_line(header.to_line().unwrap().as_bytes(), 1).unwrap();
        assert_eq!(back, header);
    }

    #[test]
    fn garbage_and_unknown_versions_are_invalid_input() {
        let err = Record::from_line(b"{\"type\":\"nope\"}", 7).unwrap_err();
        assert_eq!(err.kind(), stowage_core::ErrorKind::InvalidInput);
        assert!(err.message().contains("line 7"), "{}", err.message());
        let mut h = Header::new("file", Coverage::Included);
        for known in [OLDEST_VERSION, FORMAT_VERSION] {
            h.version = known;
            h.check().unwrap();
        }
        for unknown in [0, FORMAT_VERSION + 1] {
            h.version = unknown;
            assert_eq!(
                h.check().unwrap_err().kind(),
                stowage_core::ErrorKind::InvalidInput
            );
        }
    }
}
