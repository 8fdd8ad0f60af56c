//! Damage stored records behind the stores' back, through any [`Engine`],
//! so that integrity tests can prove the damage is reported as
//! `Corrupted` (the conformance suite's `tamper` hook). Test support: a
//! program never calls these on a store it cares about.

use serde_json::json;

use super::keys;
use super::store::cas::{blob_header, encode_chunk};
use super::store::run_head::RunHead;
use super::store::session_head::SessionHead;
use super::{Engine, Scope, Table, Txn};
use crate::encoding::{decode_event, decode_record, encode_event, encode_record};
use crate::{Digest, Error, LogEntry, Result, Run, RunEvent, RunId};

async fn damage(
    engine: &dyn Engine,
    job: impl FnMut(&mut dyn Txn) -> Result<()> + Send + 'static,
) -> Result<()> {
    let done = engine
        .write(Scope::Unshared, Box::new(job))
        .await?
        .wait()
        .await;
    // The records changed behind the stores' back: drop what they cached.
    if let Some(cache) = engine.cache() {
        cache.clear();
    }
    done
}

fn flip_first_byte(bytes: &mut [u8]) {
    if let Some(b) = bytes.first_mut() {
        *b ^= 0x55;
    }
}

/// Flips a byte of the first chunk of blob `digest` (keeping its length
/// and stored checksum), or for the empty blob adds a stray byte.
///
/// # Errors
/// `NotFound` when there is no such blob.
pub async fn blob(engine: &dyn Engine, digest: Digest) -> Result<()> {
    damage(engine, move |txn| {
        let mut header = blob_header(txn, &digest)?
            .ok_or_else(|| Error::not_found("no such blob to tamper with"))?;
        if header.chunks == 0 {
            header.chunks = 1;
            let mut chunk = encode_chunk(b"x");
            chunk.truncate(4);
            chunk.push(b'x');
            txn.put(Table::Blobs, keys::blob_chunk(&header.body, 0), chunk)?;
            return txn.put(Table::Blobs, keys::blob_header(&digest), header.encode());
        }
        let key = keys::blob_chunk(&header.body, 0);
        let mut chunk = txn
            .get(Table::Blobs, &key)?
            .ok_or_else(|| Error::not_found("blob chunk missing"))?;
        if let Some(data) = chunk.get_mut(4..) {
            flip_first_byte(data);
        }
        txn.put(Table::Blobs, key, chunk)
    })
    .await
}

/// Rewrites the payload of event `seq` of `run`, leaving its stored hash.
///
/// # Errors
/// `NotFound` when there is no such event.
pub async fn run_event(engine: &dyn Engine, run: RunId, seq: u64) -> Result<()> {
    damage(engine, move |txn| {
        let key = keys::run_event(run, seq);
        let bytes = txn
            .get(Table::RunEvents, &key)?
            .ok_or_else(|| Error::not_found("no such event to tamper with"))?;
        let mut event: RunEvent = decode_event("run event", &bytes)?;
        event.payload = json!({ "tampered": event.payload });
        txn.put(Table::RunEvents, key, encode_event(&event)?)
    })
    .await
}

/// Replaces every stored event of `run` with `events`, leaving the record.
///
/// # Errors
/// `NotFound` when there is no such run.
pub async fn run_events(engine: &dyn Engine, run: RunId, events: Vec<RunEvent>) -> Result<()> {
    damage(engine, move |txn| {
        if txn.get(Table::Runs, &keys::run(run))?.is_none() {
            return Err(Error::not_found("no such run to tamper with"));
        }
        let (start, end) = keys::run_events_after(run, None)
            .ok_or_else(|| Error::internal("a run's whole event range is never empty"))?;
        txn.delete_range(Table::RunEvents, start, end)?;
        for event in &events {
            txn.put(
                Table::RunEvents,
                keys::run_event(run, event.seq),
                encode_event(event)?,
            )?;
        }
        Ok(())
    })
    .await
}

/// Sets the chain head the record of `run` keeps.
///
/// # Errors
/// `NotFound` when there is no such run.
pub async fn run_head(engine: &dyn Engine, run: RunId, head: Option<Digest>) -> Result<()> {
    damage(engine, move |txn| {
        let key = keys::run(run);
        let bytes = txn
            .get(Table::Runs, &key)?
            .ok_or_else(|| Error::not_found("no such run to tamper with"))?;
        let mut record: Run = decode_record("run record", &bytes)?;
        record.head = head;
        txn.put(Table::Runs, key.clone(), encode_record(&record)?)?;
        // The count and chain head live in the run's head record.
        let mut stored = RunHead::load(txn, run)?;
        stored.hash = head;
        stored.put(txn)
    })
    .await
}

/// Rewrites the payload of log entry `seq` of `session`, leaving its hash.
///
/// # Errors
/// `NotFound` when there is no such entry.
pub async fn log_entry(engine: &dyn Engine, session: String, seq: u64) -> Result<()> {
    damage(engine, move |txn| {
        let key = keys::log_entry(&session, seq);
        let bytes = txn
            .get(Table::SessionLog, &key)?
            .ok_or_else(|| Error::not_found("no such log entry to tamper with"))?;
        let mut entry: LogEntry = decode_record("session log entry", &bytes)?;
        let mut payload = entry.payload.to_vec();
        payload.push(b'!');
        entry.payload = payload.into();
        txn.put(Table::SessionLog, key, encode_record(&entry)?)
    })
    .await
}

/// Replaces every stored entry of `session`'s log with `entries`, leaving
/// the record and the idempotency index.
///
/// # Errors
/// `NotFound` when there is no such session.
pub async fn log_entries(
    engine: &dyn Engine,
    session: String,
    entries: Vec<LogEntry>,
) -> Result<()> {
    damage(engine, move |txn| {
        if txn
            .get(Table::Sessions, &keys::session(&session))?
            .is_none()
        {
            return Err(Error::not_found("no such session to tamper with"));
        }
        let (start, end) = keys::whole_log(&session);
        txn.delete_range(Table::SessionLog, start, end)?;
        for entry in &entries {
            txn.put(
                Table::SessionLog,
                keys::log_entry(&session, entry.seq),
                encode_record(entry)?,
            )?;
        }
        Ok(())
    })
    .await
}

/// Sets the log head hash session `session` keeps.
///
/// # Errors
/// `NotFound` when there is no such session.
pub async fn log_head(engine: &dyn Engine, session: String, head: Option<Digest>) -> Result<()> {
    damage(engine, move |txn| {
        // The length and chain head live in the session's head record.
        let mut stored = SessionHead::load(txn, &session)?;
        stored.hash = head;
        stored.put(txn, &session)
    })
    .await
}

/// Deletes the head record of `run` (its event count and chain head),
/// leaving the run record and the events: what a lost write of the head
/// leaves.
///
/// # Errors
/// `NotFound` when `run` has no head record (no event was appended).
pub async fn run_head_lost(engine: &dyn Engine, run: RunId) -> Result<()> {
    damage(engine, move |txn| {
        let key = keys::run(run);
        if txn.get(Table::RunHeads, &key)?.is_none() {
            return Err(Error::not_found("no run head to lose"));
        }
        txn.delete(Table::RunHeads, key)
    })
    .await
}

/// Edits the reason of the stored supersession of `target`, leaving its
/// signature.
///
/// # Errors
/// `NotFound` when `target` is not superseded.
pub async fn supersession(engine: &dyn Engine, target: Digest) -> Result<()> {
    damage(engine, move |txn| {
        let key = keys::supersession(&target);
        let bytes = txn
            .get(Table::Supersessions, &key)?
            .ok_or_else(|| Error::not_found("no such supersession to tamper with"))?;
        let mut record: crate::Supersession = decode_record("supersession record", &bytes)?;
        record.reason.push('!');
        txn.put(Table::Supersessions, key, encode_record(&record)?)
    })
    .await
}

/// Rewrites the header of blob `digest` with a size its chunks cannot
/// hold.
///
/// # Errors
/// `NotFound` when there is no such blob.
pub async fn blob_header_size(engine: &dyn Engine, digest: Digest) -> Result<()> {
    damage(engine, move |txn| {
        let mut header = blob_header(txn, &digest)?
            .ok_or_else(|| Error::not_found("no such blob to tamper with"))?;
        header.size ^= 1 << 40;
        txn.put(Table::Blobs, keys::blob_header(&digest), header.encode())
    })
    .await
}
