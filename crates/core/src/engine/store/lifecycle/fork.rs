//! Forking a session or a release name over the seam: the source is read
//! in one consistent view (a session's chain verified there), the copy
//! written in one job in the new entity's scope, which must not exist.

use super::super::releases;
use super::super::sessions::{self, put_entry};
use super::super::{decode_keyed, EngineStore, Keyed, Owned};
use crate::chain::ChainVerifier;
use crate::encoding::encode_record;
use crate::engine::keys;
use crate::engine::{Direction, Reader, Table};
use crate::lifecycle::Referrer;
use crate::validate::{self, preview};
use crate::{Error, LogEntry, ReleaseRecord, Result, Session};

/// Entries read per scan while copying.
const COPY_PAGE: usize = 1024;

/// Every record in `start..end` of `table`, decoded, each checked to sit
/// under its own key (a copy must not rehome another entity's record).
fn read_all<T: serde::de::DeserializeOwned + Keyed>(
    reader: &dyn Reader,
    table: Table,
    (mut start, end): (Vec<u8>, Vec<u8>),
    what: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    loop {
        let page = reader.scan(table, &start, Some(&end), Direction::Forward, COPY_PAGE)?;
        for (key, value) in &page {
            out.push(decode_keyed(what, key, value)?);
        }
        match page.last() {
            Some((last, _)) if page.len() == COPY_PAGE => start = keys::successor(last),
            _ => return Ok(out),
        }
    }
}

impl EngineStore {
    pub(super) async fn fork_session_now(&self, from: &str, to: &str) -> Result<Session> {
        validate::identifier("session id", from)?;
        validate::identifier("session id", to)?;
        let from = from.to_owned();
        let (source, log) = self
            .read(move |_, reader| {
                let session = sessions::load_or_not_found(reader, &from)?;
                let mut log: Vec<LogEntry> = read_all(
                    reader,
                    Table::SessionLog,
                    keys::whole_log(&from),
                    "session log entry",
                )?;
                // Entries past the head read above were appended since (an
                // engine without snapshot reads shows them): not ours.
                log.truncate(usize::try_from(session.log_len).unwrap_or(usize::MAX));
                let mut verifier = ChainVerifier::new(format!("session {:?}", preview(&from)));
                let checked = log
                    .iter()
                    .try_for_each(|entry| verifier.push(entry.link()))
                    .and_then(|()| verifier.finish(session.log_len, session.log_head));
                if let Err(e) = checked {
                    // A delete that committed while the log was read
                    // leaves it short of its head: NotFound, not damage.
                    return Err(match sessions::load(reader, &from)? {
                        None => sessions::not_found(&from),
                        Some(_) => e,
                    });
                }
                Ok((session, log))
            })
            .await?;
        let to = to.to_owned();
        let mut prev = None;
        let copy: Vec<LogEntry> = log
            .iter()
            .map(|entry| {
                let moved = entry.rehomed(&to, prev);
                prev = Some(moved.hash);
                moved
            })
            .collect();
        let mut data = Owned::new(source.data);
        let state = source.state;
        self.write(sessions::scope(&to), move |shared, txn| {
            if sessions::load(txn, &to)?.is_some() {
                return Err(Error::already_exists(format!(
                    "session {:?} already exists",
                    preview(&to)
                )));
            }
            let mut session = Session::new(&to, data.take(shared)?, shared.now())?;
            session.state = state;
            session.record_replace(&copy);
            for entry in &copy {
                put_entry(txn, entry)?;
            }
            sessions::put(shared, txn, &session)?;
            Ok(session)
        })
        .await
    }

    pub(super) async fn fork_release_now(&self, from: &str, to: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", from)?;
        validate::identifier("release name", to)?;
        let from = from.to_owned();
        let records: Vec<ReleaseRecord> = self
            .read(move |_, reader| {
                let head = releases::head_or_not_found(reader, &from)?;
                let (start, _) = keys::release_records_before(&from, None);
                let end = keys::release_record(&from, head.seq);
                let mut records: Vec<ReleaseRecord> =
                    read_all(reader, Table::Releases, (start, end), "release record")?;
                records.push(head);
                Ok(records)
            })
            .await?;
        let to = to.to_owned();
        let referrer = Referrer::Release(to.clone());
        let call = self
            .reference_call(records.iter().map(|r| r.spec_digest), referrer)
            .await?;
        let mut records = Owned::new(records);
        let forked = self.write(releases::scope(&to), move |shared, txn| {
            if releases::head(txn, &to)?.is_some() {
                return Err(Error::already_exists(format!(
                    "release {:?} already has a history",
                    preview(&to)
                )));
            }
            let mut current = None;
            for record in records.take(shared)? {
                let copy = ReleaseRecord {
                    name: to.clone(),
                    ..record
                };
                txn.put(
                    Table::Releases,
                    keys::release_record(&to, copy.seq),
                    encode_record(&copy)?,
                )?;
                current = Some(copy);
            }
            let current =
                current.ok_or_else(|| Error::internal("a release head without records"))?;
            txn.put(
                Table::Releases,
                keys::release_head(&to),
                current.seq.to_be_bytes().to_vec(),
            )?;
            Ok(current)
        });
        self.settle_referenced(call, forked.await).await
    }
}
