//! Every key encoding of the KV layer, in one place.
//!
//! Rules (see `docs/kv.md`):
//! * integers (seqs, timestamps, chunk indexes) are fixed-width big-endian,
//!   so keys sort numerically;
//! * an identifier that is followed by more key components is
//!   length-prefixed (`u16` big-endian length, then its bytes), so `a` and
//!   `a:b` never collide and a scan of one never sees the other;
//! * an identifier that *is* the whole rest of the key is stored raw, so
//!   the table sorts by its UTF-8 bytes (session ids, release-name heads);
//! * digests, run ids and agent keys are fixed width;
//! * no key is ever parsed by searching for a separator: the only decoding
//!   reads fields at fixed offsets.

use crate::lifecycle::Referrer;
use crate::{AgentKey, Digest, Error, Result, RunId, Supersession, SupersessionCursor};

/// Tag byte of a blob header key in [`Table::Blobs`](super::Table::Blobs).
const BLOB_HEADER: u8 = 0x00;
/// Tag byte of a blob chunk key in the same table.
const BLOB_CHUNK: u8 = 0x01;
/// Tag byte of a release head key (`name → current seq`).
const RELEASE_HEAD: u8 = 0x00;
/// Tag byte of a release record key (`(name, seq) → record`).
const RELEASE_RECORD: u8 = 0x01;
/// Tag byte of a pending (not yet committed) streamed upload in `Meta`.
const META_PENDING_UPLOAD: u8 = 0x01;
/// Key in `Meta` whose presence says the blob reference index is complete.
const META_REFS_INDEXED: u8 = 0x02;

/// The id under which a blob's chunks are stored.
pub(crate) type BodyId = [u8; 16];

/// Appends `id` prefixed with its length as a big-endian `u16`.
fn push_lp(out: &mut Vec<u8>, id: &str) {
    // Identifiers are validated to at most 256 bytes before any key is built.
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id.as_bytes()[..usize::from(len)]);
}

fn lp(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + id.len());
    push_lp(&mut out, id);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The smallest key strictly greater than `key` (for exclusive cursors).
pub(crate) fn successor(key: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    out.push(0);
    out
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when `prefix` is all `0xFF` (no upper bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// Reads a big-endian `u64` stored as a whole value.
///
/// # Errors
/// `Corrupted` naming `what` when the value is not 8 bytes.
pub(crate) fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupted(format!("{what} is not an 8-byte number")))?;
    Ok(u64::from_be_bytes(array))
}

// ---- blobs ---------------------------------------------------------------

/// Header of a blob: `[0x00] digest(32)`.
pub(crate) fn blob_header(digest: &Digest) -> Vec<u8> {
    cat(&[&[BLOB_HEADER], digest.as_bytes()])
}

/// Range of every blob header strictly after `after`.
pub(crate) fn blob_headers_after(after: Option<&Digest>) -> (Vec<u8>, Vec<u8>) {
    let start = after.map_or_else(|| vec![BLOB_HEADER], |d| successor(&blob_header(d)));
    (start, vec![BLOB_HEADER + 1])
}

/// The digest of a blob header key (fixed offsets).
///
/// # Errors
/// `Corrupted` when the key is not a header key.
pub(crate) fn digest_of_blob_header(key: &[u8]) -> Result<Digest> {
    match key.split_first() {
        Some((&BLOB_HEADER, rest)) => Digest::from_slice(rest)
            .map_err(|_| Error::corrupted("a blob header key has the wrong length")),
        _ => Err(Error::corrupted("a blob header key has the wrong tag")),
    }
}

/// Range of every blob chunk (of every body).
pub(crate) fn all_blob_chunks() -> (Vec<u8>, Vec<u8>) {
    (vec![BLOB_CHUNK], vec![BLOB_CHUNK + 1])
}

/// Chunk `index` of body `body`: `[0x01] body(16) index(u32)`.
pub(crate) fn blob_chunk(body: &BodyId, index: u32) -> Vec<u8> {
    cat(&[&[BLOB_CHUNK], body, &index.to_be_bytes()])
}

/// Range of every chunk of `body`.
pub(crate) fn blob_chunks(body: &BodyId) -> (Vec<u8>, Vec<u8>) {
    (blob_chunk(body, 0), cat(&[&[BLOB_CHUNK], body, &[0xFF; 5]]))
}

/// Marker of a streamed upload whose chunks are not yet committed.
pub(crate) fn pending_upload(body: &BodyId) -> Vec<u8> {
    cat(&[&[META_PENDING_UPLOAD], body])
}

/// The marker of a complete blob reference index (see `lifecycle::gc`).
pub(crate) fn refs_indexed() -> Vec<u8> {
    vec![META_REFS_INDEXED]
}

/// Range of every pending-upload marker.
pub(crate) fn pending_uploads() -> (Vec<u8>, Vec<u8>) {
    (vec![META_PENDING_UPLOAD], vec![META_PENDING_UPLOAD + 1])
}

/// The body id in a pending-upload marker key (fixed offsets).
///
/// # Errors
/// `Corrupted` when the key is not a marker.
pub(crate) fn body_of_pending(key: &[u8]) -> Result<BodyId> {
    match key.split_first() {
        Some((&META_PENDING_UPLOAD, rest)) => rest
            .try_into()
            .map_err(|_| Error::corrupted("a pending upload marker has the wrong length")),
        _ => Err(Error::corrupted(
            "a pending upload marker has the wrong tag",
        )),
    }
}

// ---- blob references ------------------------------------------------------

/// Tags of a referrer in a [`Table::BlobRefs`](super::Table::BlobRefs) key.
const REF_RUN: u8 = 0x01;
const REF_RELEASE: u8 = 0x02;
const REF_SUPERSESSION: u8 = 0x03;
const REF_PIN: u8 = 0x04;
/// Set on the tag of a call's entry for a referrer other than a run
/// (a run's calls keep the run's tag: see [`blob_ref_call`]).
const REF_CALL: u8 = 0x80;

/// A reference: `digest(32) tag referrer` (run id, raw release name,
/// target digest or raw pin label: the rest of the key).
pub(crate) fn blob_ref(digest: &Digest, referrer: &Referrer) -> Vec<u8> {
    let (tag, id) = tagged(referrer);
    cat(&[digest.as_bytes(), &[tag], &id])
}

/// A referrer's tag and id in a reference key.
fn tagged(referrer: &Referrer) -> (u8, Vec<u8>) {
    match referrer {
        Referrer::Run(run) => (REF_RUN, run.to_bytes().to_vec()),
        Referrer::Release(name) => (REF_RELEASE, name.as_bytes().to_vec()),
        Referrer::Supersession(target) => (REF_SUPERSESSION, target.as_bytes().to_vec()),
        Referrer::Pin(label) => (REF_PIN, label.as_bytes().to_vec()),
    }
}

/// The reference of one call still on its way, with the call's random
/// `token`, so a call that fails removes its own entry and no other; read
/// back as `referrer`, like the referrer's own entry. A run's call
/// (`append_event`, `finish_run`, `create_run`) appends the token to the
/// run's key, so a run's entries sort side by side; another referrer's
/// (`promote`, a supersession's `put`, `fork_release`), whose id runs to
/// the key's end, sets [`REF_CALL`] on the tag and puts the token before
/// the id.
pub(crate) fn blob_ref_call(digest: &Digest, referrer: &Referrer, token: u64) -> Vec<u8> {
    let (tag, id) = tagged(referrer);
    let token = token.to_be_bytes();
    match referrer {
        Referrer::Run(_) => cat(&[digest.as_bytes(), &[tag], &id, &token]),
        _ => cat(&[digest.as_bytes(), &[tag | REF_CALL], &token, &id]),
    }
}

/// Range of every reference to `digest`.
pub(crate) fn blob_refs(digest: &Digest) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = digest.as_bytes().to_vec();
    let end = prefix_end(&start);
    (start, end)
}

/// The referrer of a reference key to `digest` (fixed offsets).
///
/// # Errors
/// `Corrupted` for a key of another digest or a malformed referrer.
pub(crate) fn referrer_of(digest: &Digest, key: &[u8]) -> Result<Referrer> {
    let damaged = |what: &str| Error::corrupted(format!("a blob reference key {what}"));
    let rest = key
        .strip_prefix(digest.as_bytes().as_slice())
        .ok_or_else(|| damaged("names another blob"))?;
    let (&tag, id) = rest.split_first().ok_or_else(|| damaged("is too short"))?;
    if tag & REF_CALL != 0 && tag != REF_CALL | REF_RUN {
        // A call's entry: the token, then the referrer's own id.
        let id = id.get(8..).ok_or_else(|| damaged("is too short"))?;
        return referrer_of(digest, &cat(&[digest.as_bytes(), &[tag & !REF_CALL], id]));
    }
    let text = || String::from_utf8(id.to_vec()).map_err(|_| damaged("is not UTF-8"));
    match tag {
        // The run's entry, or one of its calls' (id ++ token).
        REF_RUN => match id.len() {
            16 | 24 => id.get(..16).and_then(|id| <[u8; 16]>::try_from(id).ok()),
            _ => None,
        }
        .and_then(|id| RunId::from_bytes(id).ok())
        .map(Referrer::Run)
        .ok_or_else(|| damaged("has a bad run id")),
        REF_RELEASE => text().map(Referrer::Release),
        REF_SUPERSESSION => Digest::from_slice(id)
            .map(Referrer::Supersession)
            .map_err(|_| damaged("has a bad target")),
        REF_PIN => text().map(Referrer::Pin),
        _ => Err(damaged("has an unknown tag")),
    }
}

// ---- runs ----------------------------------------------------------------

/// A run record: `run_id(16)`.
pub(crate) fn run(id: RunId) -> Vec<u8> {
    id.to_bytes().to_vec()
}

/// Every run key strictly after `after` (pruning walks oldest first).
pub(crate) fn runs_after(after: Option<RunId>) -> Vec<u8> {
    after.map_or_else(Vec::new, |id| successor(&run(id)))
}

/// Every run key strictly before `before` (runs are listed newest first).
pub(crate) fn runs_before(before: Option<RunId>) -> (Vec<u8>, Option<Vec<u8>>) {
    (Vec::new(), before.map(run))
}

/// Event `seq` of a run: `run_id(16) seq(u64)`.
pub(crate) fn run_event(id: RunId, seq: u64) -> Vec<u8> {
    cat(&[&id.to_bytes(), &seq.to_be_bytes()])
}

/// The first seq strictly after `after` (0 when `None`); `None` when
/// nothing can follow (`after == u64::MAX`).
pub(crate) fn first_after(after: Option<u64>) -> Option<u64> {
    match after {
        None => Some(0),
        Some(seq) => seq.checked_add(1),
    }
}

/// Events of a run with seq strictly after `after` (all when `None`).
/// `None` when nothing can follow (`after == u64::MAX`).
pub(crate) fn run_events_after(id: RunId, after: Option<u64>) -> Option<(Vec<u8>, Vec<u8>)> {
    let first = first_after(after)?;
    let end = cat(&[&id.to_bytes(), &[0xFF; 9]]);
    Some((run_event(id, first), end))
}

/// Every key of one run in a table keyed by run id first (its events,
/// its idempotency keys).
pub(crate) fn run_keys(id: RunId) -> (Vec<u8>, Vec<u8>) {
    let start = run(id);
    // Suffixes are at most 2 + 256 bytes and start below 0xFF.
    let end = prefix_end(&start).unwrap_or_else(|| cat(&[&start, &[0xFF; 260]]));
    (start, end)
}

/// Idempotency key of a run event: `run_id(16) lp(key)`.
pub(crate) fn run_idempotency(id: RunId, key: &str) -> Vec<u8> {
    cat(&[&id.to_bytes(), &lp(key)])
}

/// Index entry of a run by spec: `digest(32) run_id(16)`.
pub(crate) fn run_by_spec(spec: &Digest, id: RunId) -> Vec<u8> {
    cat(&[spec.as_bytes(), &id.to_bytes()])
}

/// Index entry of a run by agent: `lp(agent) run_id(16)`.
pub(crate) fn run_by_agent(agent: &str, id: RunId) -> Vec<u8> {
    cat(&[&lp(agent), &id.to_bytes()])
}

/// Range of index entries under `prefix` (a spec digest or `lp(agent)`)
/// whose run id is strictly before `before`.
pub(crate) fn index_before(prefix: &[u8], before: Option<RunId>) -> (Vec<u8>, Vec<u8>) {
    let end = match before {
        Some(id) => cat(&[prefix, &id.to_bytes()]),
        None => cat(&[prefix, &[0xFF; 17]]),
    };
    (prefix.to_vec(), end)
}

/// The prefix of the spec index for `spec`.
pub(crate) fn spec_prefix(spec: &Digest) -> Vec<u8> {
    spec.as_bytes().to_vec()
}

/// The prefix of the agent index for `agent`.
pub(crate) fn agent_prefix(agent: &str) -> Vec<u8> {
    lp(agent)
}

/// The run id at the end of an index key (the last 16 bytes).
///
/// # Errors
/// `Corrupted` when the key is shorter than a run id or not a UUID v7.
pub(crate) fn run_id_suffix(key: &[u8]) -> Result<RunId> {
    let start = key
        .len()
        .checked_sub(16)
        .ok_or_else(|| Error::corrupted("a run index key is too short"))?;
    let bytes: [u8; 16] = key
        .get(start..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::corrupted("a run index key is too short"))?;
    RunId::from_bytes(bytes).map_err(|e| Error::corrupted(format!("a run index key: {e}")))
}

// ---- releases ------------------------------------------------------------

/// The head of a release name: `[0x00] name` (raw, so heads sort by name).
pub(crate) fn release_head(name: &str) -> Vec<u8> {
    cat(&[&[RELEASE_HEAD], name.as_bytes()])
}

/// Range of release heads with name strictly after `after`.
pub(crate) fn release_heads_after(after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let start = after.map_or_else(|| vec![RELEASE_HEAD], |a| successor(&release_head(a)));
    (start, vec![RELEASE_HEAD + 1])
}

/// Range of every release record (of every name).
pub(crate) fn all_release_records() -> (Vec<u8>, Vec<u8>) {
    (vec![RELEASE_RECORD], vec![RELEASE_RECORD + 1])
}

/// A release record: `[0x01] lp(name) seq(u64)`.
pub(crate) fn release_record(name: &str, seq: u64) -> Vec<u8> {
    cat(&[&[RELEASE_RECORD], &lp(name), &seq.to_be_bytes()])
}

/// Records of `name` with seq strictly before `before` (all when `None`).
pub(crate) fn release_records_before(name: &str, before: Option<u64>) -> (Vec<u8>, Vec<u8>) {
    let start = release_record(name, 0);
    let end = match before {
        Some(seq) => release_record(name, seq),
        None => cat(&[&[RELEASE_RECORD], &lp(name), &[0xFF; 9]]),
    };
    (start, end)
}

// ---- sessions ------------------------------------------------------------

/// A session record: the raw id (the whole key, so sessions sort by id).
pub(crate) fn session(id: &str) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// Sessions with id strictly after `after`.
pub(crate) fn sessions_after(after: Option<&str>) -> Vec<u8> {
    after.map_or_else(Vec::new, |a| successor(a.as_bytes()))
}

/// Log entry `seq` of a session: `lp(id) seq(u64)`.
pub(crate) fn log_entry(id: &str, seq: u64) -> Vec<u8> {
    cat(&[&lp(id), &seq.to_be_bytes()])
}

/// Entries of a session's log with seq strictly after `after`.
/// `None` when nothing can follow.
pub(crate) fn log_after(id: &str, after: Option<u64>) -> Option<(Vec<u8>, Vec<u8>)> {
    let first = first_after(after)?;
    Some((log_entry(id, first), whole_log(id).1))
}

/// Range of a session's whole log.
pub(crate) fn whole_log(id: &str) -> (Vec<u8>, Vec<u8>) {
    (log_entry(id, 0), cat(&[&lp(id), &[0xFF; 9]]))
}

/// Idempotency key of a log entry: `lp(id) lp(key)`.
pub(crate) fn log_idempotency(id: &str, key: &str) -> Vec<u8> {
    cat(&[&lp(id), &lp(key)])
}

/// Range of every idempotency key of a session.
pub(crate) fn all_log_idempotency(id: &str) -> (Vec<u8>, Vec<u8>) {
    let prefix = lp(id);
    // `lp(id)` starts with a length of at most 256, so it is never all 0xFF.
    let end = prefix_end(&prefix).unwrap_or_else(|| vec![0xFF; 3]);
    (prefix, end)
}

// ---- supersessions -------------------------------------------------------

/// Width of a by-agent index key.
const BY_AGENT_LEN: usize = 32 + SupersessionCursor::LEN;

/// A supersession: `target(32)`.
pub(crate) fn supersession(target: &Digest) -> Vec<u8> {
    target.as_bytes().to_vec()
}

/// Index entry of a supersession by agent: `agent(32)` then the record's
/// [`SupersessionCursor::to_bytes`], so the entries of one agent sort like
/// [`Supersession::order_key`].
pub(crate) fn supersession_by_agent(s: &Supersession) -> Vec<u8> {
    cat(&[&s.agent.0, &s.order_key().to_bytes()])
}

/// Range of the index entries of `agent` strictly before `after` in
/// `by_agent` order (all of them without a cursor); the end is exclusive.
pub(crate) fn by_agent_range(
    agent: &AgentKey,
    after: Option<&SupersessionCursor>,
) -> (Vec<u8>, Vec<u8>) {
    let end = match after {
        Some(c) => cat(&[&agent.0, &c.to_bytes()]),
        None => cat(&[&agent.0, &[0xFF; BY_AGENT_LEN]]),
    };
    (agent.0.to_vec(), end)
}

/// The position encoded after the agent in a by-agent index key (fixed
/// offsets).
///
/// # Errors
/// `Corrupted` when the key has the wrong width or a malformed position.
pub(crate) fn cursor_of_by_agent(key: &[u8]) -> Result<SupersessionCursor> {
    if key.len() != BY_AGENT_LEN {
        return Err(Error::corrupted(
            "a supersession index key has the wrong length",
        ));
    }
    key.get(32..)
        .ok_or_else(|| Error::corrupted("a supersession index key is too short"))
        .and_then(SupersessionCursor::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_keep_prefix_ids_apart() {
        let (start, end) = whole_log("a");
        let other = log_entry("a:b", 0);
        assert!(!(start <= other && other < end), "a's log must not see a:b");
        assert_ne!(log_idempotency("a", ":b"), log_idempotency("a:", "b"));
        assert_ne!(
            run_by_agent("a", RunId::new_v7(crate::Timestamp::ZERO, 0)),
            { run_by_agent("a\u{0}", RunId::new_v7(crate::Timestamp::ZERO, 0)) }
        );
    }

    #[test]
    fn seqs_sort_numerically() {
        assert!(log_entry("s", 9) < log_entry("s", 10));
        assert!(log_entry("s", 255) < log_entry("s", 256));
        assert!(release_record("r", u64::MAX) < release_records_before("r", None).1);
    }

    #[test]
    fn a_run_calls_reference_reads_as_the_run_and_sorts_beside_it() {
        let digest = Digest::of(b"blob");
        let run = RunId::new_v7(crate::Timestamp::ZERO, 7);
        let own = blob_ref(&digest, &Referrer::Run(run));
        let call = blob_ref_call(&digest, &Referrer::Run(run), u64::MAX);
        assert_eq!(referrer_of(&digest, &call).unwrap(), Referrer::Run(run));
        assert_eq!(referrer_of(&digest, &own).unwrap(), Referrer::Run(run));
        assert!(call.starts_with(&own), "a run's entries sort side by side");
        for bad in [&call[..call.len() - 1], &own[..own.len() - 1]] {
            let err = referrer_of(&digest, bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted);
        }
    }

    #[test]
    fn another_referrers_call_reads_as_the_referrer() {
        let digest = Digest::of(b"blob");
        for referrer in [
            Referrer::Release("planner".into()),
            Referrer::Supersession(Digest::of(b"target")),
        ] {
            let call = blob_ref_call(&digest, &referrer, 7);
            assert_eq!(referrer_of(&digest, &call).unwrap(), referrer);
            assert_ne!(call, blob_ref(&digest, &referrer));
            let cut = &call[..33 + 4];
            let err = referrer_of(&digest, cut).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted);
        }
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(successor(b"a"), b"a\0".to_vec());
    }

    #[test]
    fn fixed_offset_decoders_reject_bad_keys() {
        assert!(digest_of_blob_header(&[0; 5]).is_err());
        assert!(digest_of_blob_header(&blob_chunk(&[0; 16], 0)).is_err());
        assert!(body_of_pending(&[1, 2]).is_err());
        assert!(run_id_suffix(&[0; 3]).is_err());
        assert!(cursor_of_by_agent(&[0; 10]).is_err());
        assert!(decode_u64("x", &[0; 7]).is_err());
    }
}
