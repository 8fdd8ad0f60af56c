//! Canonical encodings, written once so that backends cannot drift.
//!
//! * [`canonical_json`]: compact JSON with object keys sorted bytewise, the
//!   form that is hashed and size-checked.
//! * [`FieldWriter`]: an unambiguous binary encoding (domain tag, fixed-width
//!   big-endian integers, length-prefixed byte strings) for hashes and
//!   signatures. Never `format!("{a}:{b}")`.
//! * [`encode_record`] / [`decode_record`]: the versioned binary form (CBOR)
//!   in which durable backends store records; undecodable bytes are
//!   [`Corrupted`](crate::ErrorKind::Corrupted), never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ids::RunId;
use crate::run::RunEvent;
use crate::session::LogEntry;
use crate::time::Timestamp;

/// Serialises JSON canonically: no whitespace, object keys sorted by their
/// UTF-8 bytes, strings escaped as `serde_json` does.
///
/// ```
/// use stowage_core::encoding::canonical_json;
/// let v = serde_json::json!({"b": 1, "a": [true, null]});
/// assert_eq!(canonical_json(&v), br#"{"a":[true,null],"b":1}"#);
/// ```
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        scalar => write_json(scalar, out),
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    write_json(s, out);
}

/// `value` as serde_json writes it (the same bytes as its `to_string`),
/// straight into `out`, with no string in between.
fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into a Vec cannot fail: no
    // I/O, and no map with non-string keys.
    let _ = serde_json::to_writer(out, value);
}

/// An unambiguous binary encoding for hashing and signing: a domain tag
/// first, then fields that are either fixed width or length-prefixed.
///
/// ```
/// use stowage_core::encoding::FieldWriter;
/// let a = FieldWriter::new("t").bytes(b"ab").bytes(b"c").finish();
/// let b = FieldWriter::new("t").bytes(b"a").bytes(b"bc").finish();
/// assert_ne!(a, b);
/// ```
#[derive(Debug, Clone)]
pub struct FieldWriter {
    buf: Vec<u8>,
}

impl FieldWriter {
    /// Starts an encoding with a domain tag (e.g. `"stowage/run-event/v1"`).
    pub fn new(domain: &str) -> Self {
        // Room for a typical record (a run event's fields and a small
        // payload): growing from empty reallocated it about six times,
        // once per hash of every append and every checked read.
        let mut w = FieldWriter {
            buf: Vec::with_capacity(256),
        };
        w = w.bytes(domain.as_bytes());
        w
    }

    /// One byte.
    #[must_use]
    pub fn u8(mut self, v: u8) -> Self {
        self.buf.push(v);
        self
    }

    /// A big-endian `u32`.
    #[must_use]
    pub fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A big-endian `u64`.
    #[must_use]
    pub fn u64(mut self, v: u64) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A byte string prefixed with its length as a big-endian `u64`.
    #[must_use]
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
        self.buf.extend_from_slice(v);
        self
    }

    /// An optional fixed-width value: a presence byte, then the bytes.
    #[must_use]
    pub fn opt_fixed(mut self, v: Option<&[u8]>) -> Self {
        match v {
            None => self.buf.push(0),
            Some(bytes) => {
                self.buf.push(1);
                self.buf.extend_from_slice(bytes);
            }
        }
        self
    }

    /// An optional byte string: a presence byte, then a length-prefixed value.
    #[must_use]
    pub fn opt_bytes(mut self, v: Option<&[u8]>) -> Self {
        match v {
            None => {
                self.buf.push(0);
                self
            }
            Some(bytes) => {
                self.buf.push(1);
                self.bytes(bytes)
            }
        }
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The version byte in front of every stored record.
///
/// Version 2 (run records carry their chain head, session records their
/// log length and head) replaced version 1 before any release; records of
/// version 1 are refused as `Corrupted` with a message saying so.
const RECORD_VERSION: u8 = 2;

/// Encodes a record for storage: a version byte, then CBOR.
///
/// # Errors
/// [`Internal`](crate::ErrorKind::Internal) if the value cannot be encoded
/// (a bug: every stowage record can be).
pub fn encode_record<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Most records (events, run and session records) fit; one allocation
    // instead of a chain of doublings from one byte.
    let mut out = Vec::with_capacity(512);
    out.push(RECORD_VERSION);
    ciborium::into_writer(value, &mut out)
        .map_err(|e| Error::internal(format!("cannot encode record: {e}")))?;
    Ok(out)
}

/// Decodes a record written by [`encode_record`]. `what` names the record in
/// the error.
///
/// # Errors
/// [`Corrupted`](crate::ErrorKind::Corrupted) for an unknown version or
/// undecodable bytes.
pub fn decode_record<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => ciborium::from_reader(body)
            .map_err(|e| Error::corrupted(format!("{what} cannot be decoded: {e}"))),
        Some((1, _)) => Err(Error::corrupted(format!(
            "{what} has record version 1, written by a pre-release stowage; this \
             version reads only version {RECORD_VERSION} (recreate the store)"
        ))),
        Some((v, _)) => Err(Error::corrupted(format!(
            "{what} has unknown record version {v}"
        ))),
        None => Err(Error::corrupted(format!("{what} is empty"))),
    }
}

/// The version byte of [`encode_event`]'s compact layout: distinct from
/// every [`encode_record`] version, so one byte tells the layouts apart.
const EVENT_VERSION: u8 = 0xE1;

/// Encodes a run event for storage in a compact layout that decodes
/// without a generic codec: a version byte, the run id (16 bytes), seq
/// and timestamp (big-endian `u64`), the hash and the optional previous
/// hash as raw 32 bytes, the kind and the optional idempotency key
/// length-prefixed, then the payload as JSON. Reading an event costs one
/// `serde_json` parse of its payload, no hex and no CBOR.
///
/// # Errors
/// [`Internal`](crate::ErrorKind::Internal) if the payload cannot be
/// serialised (a bug: validated payloads always can).
pub fn encode_event(event: &RunEvent) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(&event.payload)
        .map_err(|e| Error::internal(format!("cannot encode run event payload: {e}")))?;
    let idem = event.idempotency_key.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(128 + event.kind.len() + idem.len() + payload.len());
    out.push(EVENT_VERSION);
    out.extend_from_slice(&event.run_id.to_bytes());
    out.extend_from_slice(&event.seq.to_be_bytes());
    out.extend_from_slice(&event.timestamp.as_millis().to_be_bytes());
    out.extend_from_slice(event.hash.as_bytes());
    match &event.prev_hash {
        Some(prev) => {
            out.push(1);
            out.extend_from_slice(prev.as_bytes());
        }
        None => out.push(0),
    }
    put_text(&mut out, &event.kind);
    out.push(u8::from(event.idempotency_key.is_some()));
    put_text(&mut out, idem);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A `u32` big-endian length, then the bytes. Fields are bounded by
/// validation (≤ 256 bytes), far below `u32::MAX`.
fn put_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Decodes a run event written by [`encode_event`], or by
/// [`encode_record`] (the Redis backend's layout).
///
/// # Errors
/// [`Corrupted`](crate::ErrorKind::Corrupted) for bytes that are not such
/// an event.
pub fn decode_event(what: &str, bytes: &[u8]) -> Result<RunEvent> {
    decode_event_parts(what, bytes).map(|(event, _)| event)
}

/// [`decode_event`], then checks the event's hash against its content:
/// an event edited behind the store's back (or damaged where the engine
/// keeps no checksum) is `Corrupted`, never returned. Cheap for events
/// this code wrote (the hash is taken over the stored payload bytes,
/// canonical JSON already); others re-encode the payload first.
///
/// # Errors
/// `Corrupted` when the bytes do not decode or the hash does not match.
pub fn decode_checked_event(what: &str, bytes: &[u8]) -> Result<RunEvent> {
    let (event, payload) = decode_event_parts(what, bytes)?;
    let matches = payload.is_some_and(|p| event.hash_with_payload(p) == event.hash)
        || event.compute_hash() == event.hash;
    if !matches {
        return Err(Error::corrupted(format!(
            "run {}: the {what} at seq {} does not match its hash {} (edited or damaged)",
            event.run_id,
            event.seq,
            event.hash.short()
        )));
    }
    Ok(event)
}

/// A stored session log entry, its hash checked against its content (as
/// [`decode_checked_event`]; the hash is taken over the payload bytes as
/// they are, so nothing is re-encoded).
///
/// # Errors
/// `Corrupted` when the bytes do not decode or the hash does not match.
pub fn decode_checked_log_entry(what: &str, bytes: &[u8]) -> Result<LogEntry> {
    let entry: LogEntry = decode_record(what, bytes)?;
    if entry.compute_hash() != entry.hash {
        return Err(Error::corrupted(format!(
            "session {}: the {what} at seq {} does not match its hash {} (edited or damaged)",
            entry.session_id,
            entry.seq,
            entry.hash.short()
        )));
    }
    Ok(entry)
}

/// The event and, in the current layout, its stored payload bytes.
fn decode_event_parts<'a>(what: &'a str, bytes: &'a [u8]) -> Result<(RunEvent, Option<&'a [u8]>)> {
    if bytes.first() != Some(&EVENT_VERSION) {
        return decode_record(what, bytes).map(|event| (event, None));
    }
    let mut r = Reader {
        what,
        rest: &bytes[1..],
    };
    let run_id = RunId::from_bytes(r.array()?)
        .map_err(|e| Error::corrupted(format!("{what}: bad run id: {e}")))?;
    let seq = u64::from_be_bytes(r.array()?);
    let timestamp = Timestamp::from_millis(u64::from_be_bytes(r.array()?));
    let hash = Digest::from_array(r.array()?);
    let prev_hash = match r.array::<1>()? {
        [0] => None,
        [1] => Some(Digest::from_array(r.array()?)),
        _ => return Err(r.bad("previous-hash flag")),
    };
    let kind = r.text()?;
    let has_key = r.array::<1>()?;
    let idem = r.text()?;
    let idempotency_key = match has_key {
        [0] if idem.is_empty() => None,
        [1] => Some(idem),
        _ => return Err(r.bad("idempotency-key flag")),
    };
    // UTF-8 checked once for the whole payload, then parsed as text (which
    // skips checking each string again).
    let payload = std::str::from_utf8(r.rest)
        .map_err(|e| Error::corrupted(format!("{what}: payload is not UTF-8: {e}")))
        .and_then(|text| {
            serde_json::from_str(text)
                .map_err(|e| Error::corrupted(format!("{what}: payload is not JSON: {e}")))
        })?;
    let event = RunEvent {
        run_id,
        seq,
        kind,
        payload,
        timestamp,
        idempotency_key,
        prev_hash,
        hash,
    };
    Ok((event, Some(r.rest)))
}

/// Reads the fields of [`decode_event`]'s layout; every shortfall is
/// `Corrupted`.
struct Reader<'a> {
    what: &'a str,
    rest: &'a [u8],
}

impl Reader<'_> {
    fn bad(&self, field: &str) -> Error {
        Error::corrupted(format!("{}: truncated or invalid {field}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.rest.len() < n {
            return Err(self.bad("record"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn text(&mut self) -> Result<String> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.bad("text field"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_scalars_are_serde_json_s_own_text() {
        // The hash chain rests on these bytes: each scalar is written as
        // serde_json's `to_string` writes it (the code did exactly that
        // before it wrote straight into the buffer).
        let scalars = [
            json!("plain"),
            json!("quote \" backslash \\ slash / nul \u{0} bell \u{7} del \u{7f}"),
            json!("tab\tnew\nline\r é ✓ 𝄞 \u{2028}\u{2029} \u{fffe}"),
            json!(""),
            json!(0),
            json!(-3),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(1.5e300),
            json!(-0.0),
            json!(true),
            json!(null),
        ];
        for v in &scalars {
            assert_eq!(canonical_json(v), v.to_string().into_bytes(), "{v}");
            let key = v.as_str().unwrap_or("k");
            let object = json!({ key: v.clone() });
            assert_eq!(canonical_json(&object), object.to_string().into_bytes());
        }
    }

    #[test]
    fn canonical_json_sorts_nested_keys_and_escapes() {
        let v = json!({"z": {"y": 1, "x": "\"\n"}, "a": 1.5});
        assert_eq!(
            canonical_json(&v),
            br#"{"a":1.5,"z":{"x":"\"\n","y":1}}"#.to_vec()
        );
    }

    fn event(prev: Option<Digest>, idem: Option<&str>) -> RunEvent {
        RunEvent {
            run_id: RunId::from_bytes(*uuid::Uuid::now_v7().as_bytes()).unwrap(),
            seq: 7,
            kind: "tool_call ✓".into(),
            payload: json!({"f": 0.1, "big": u64::MAX, "neg": -3, "s": "x\u{0}y", "a": [null, true]}),
            timestamp: Timestamp::from_millis(1_700_000_000_123),
            idempotency_key: idem.map(str::to_owned),
            prev_hash: prev,
            hash: Digest::of(b"h"),
        }
    }

    #[test]
    fn events_round_trip_in_both_layouts() {
        for e in [
            event(None, None),
            event(Some(Digest::of(b"p")), Some("")),
            event(Some(Digest::of(b"p")), Some("key/☃")),
        ] {
            assert_eq!(decode_event("e", &encode_event(&e).unwrap()).unwrap(), e);
            assert_eq!(decode_event("e", &encode_record(&e).unwrap()).unwrap(), e);
        }
    }

    #[test]
    fn damaged_events_are_corrupted() {
        let bytes = encode_event(&event(Some(Digest::of(b"p")), Some("k"))).unwrap();
        for cut in 0..bytes.len() - 1 {
            // Every truncation fails (the payload's JSON cannot end early).
            let err = decode_event("e", &bytes[..cut]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted, "cut at {cut}");
        }
        let mut flag = bytes.clone();
        flag[1 + 16 + 8 + 8 + 32] = 9;
        assert_eq!(
            decode_event("e", &flag).unwrap_err().kind(),
            crate::ErrorKind::Corrupted
        );
    }

    #[test]
    fn records_round_trip_and_garbage_is_corrupted() {
        let v = json!({"k": [1, 2, {"n": null}]});
        let bytes = encode_record(&v).unwrap();
        assert_eq!(decode_record::<Value>("r", &bytes).unwrap(), v);
        for bad in [&[][..], &[9, 1, 2][..], &[1, 0xff, 0xff][..]] {
            let err = decode_record::<Value>("r", bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted);
        }
    }
}
