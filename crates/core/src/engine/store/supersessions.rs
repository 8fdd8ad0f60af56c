//! `SupersessionStore` over the seam.
//!
//! Tables: `Supersessions` (target → record) and `SupersessionsByAgent`
//! (`agent(32)` + the record's fixed-width `SupersessionCursor` bytes →
//! empty, sorting like `Supersession::order_key`). `by_agent` scans an
//! agent's entries in reverse below the cursor, filters the window on the
//! key alone and loads only the records it returns; `list` scans
//! `Supersessions` forward. Every record read is checked (stored under
//! its own target, signature verifies): damage is `Corrupted`. `put` is
//! one write job scoped to the whole `Supersessions` table across the
//! append-only check, the
//! replacement-chain walk and the insert, so a cycle can never be
//! committed by two racing puts.

use async_trait::async_trait;

use crate::lifecycle::Referrer;

use super::{decode_keyed, get_record, EngineStore};
use crate::encoding::encode_record;
use crate::engine::keys;
use crate::engine::{Direction, Reader, Scope, Table};
use crate::validate::page_limit;
use crate::{
    AgentKey, Digest, Error, PutOutcome, Result, Supersession, SupersessionCursor,
    SupersessionStore, Timestamp,
};

/// How many by-agent index entries one scan reads while filtering.
const SCAN_PAGE: usize = 256;

pub(super) fn load(reader: &dyn Reader, target: &Digest) -> Result<Option<Supersession>> {
    let record: Option<Supersession> = get_record(
        reader,
        Table::Supersessions,
        &keys::supersession(target),
        "supersession record",
    )?;
    record.map(verified).transpose()
}

/// A stored record as read (already checked to sit under its own target,
/// [`decode_keyed`]): its signature must verify, so that a record edited
/// in storage (its reason, replacement or kind) is reported, not followed.
///
/// # Errors
/// `Corrupted` when the signature does not verify.
fn verified(record: Supersession) -> Result<Supersession> {
    record.verify().map_err(|e| {
        Error::corrupted(format!(
            "stored supersession of {} fails its signature check ({})",
            record.target.short(),
            e.message()
        ))
    })?;
    Ok(record)
}

fn by_agent(
    reader: &dyn Reader,
    agent: &AgentKey,
    (from, to): (Timestamp, Option<Timestamp>),
    after: Option<SupersessionCursor>,
    limit: usize,
) -> Result<Vec<Supersession>> {
    let (start, mut end) = keys::by_agent_range(agent, after.as_ref());
    let mut out = Vec::new();
    while out.len() < limit {
        let page = reader.scan(
            Table::SupersessionsByAgent,
            &start,
            Some(&end),
            Direction::Reverse,
            SCAN_PAGE,
        )?;
        let exhausted = page.len() < SCAN_PAGE;
        for (key, _) in &page {
            end.clone_from(key);
            let position = keys::cursor_of_by_agent(key)?;
            if !position.in_page(from, to, None) {
                continue;
            }
            let record = match load(reader, &position.target)? {
                Some(record) if record.agent == *agent => record,
                _ => {
                    return Err(Error::corrupted(format!(
                        "the by-agent index names supersession {}, which is missing or by another agent",
                        position.target.short()
                    )))
                }
            };
            out.push(record);
            if out.len() == limit {
                break;
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(out)
}

#[async_trait]
impl SupersessionStore for EngineStore {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        record.validate()?;
        let digests = [Some(record.target), record.replacement];
        let referrer = Referrer::Supersession(record.target);
        let call = self
            .reference_call(digests.into_iter().flatten(), referrer)
            .await?;
        let put = self
            .write(Scope::Table(Table::Supersessions), move |_, txn| {
                let existing = load(txn, &record.target)?;
                let outcome = record.decide_put(existing.as_ref())?;
                if outcome == PutOutcome::AlreadyPresent {
                    // Its entries were written with it.
                    return Ok(outcome);
                }
                record.check_no_cycle(|hash| Ok(load(txn, hash)?.map(|s| s.replacement)))?;
                txn.put(
                    Table::Supersessions,
                    keys::supersession(&record.target),
                    encode_record(&record)?,
                )?;
                txn.put(
                    Table::SupersessionsByAgent,
                    keys::supersession_by_agent(&record),
                    Vec::new(),
                )?;
                Ok(outcome)
            })
            .await;
        self.settle_referenced(call, put).await
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        let target = *target;
        self.read(move |_, reader| load(reader, &target)).await
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        let key = keys::supersession(target);
        self.read(move |_, reader| Ok(reader.get(Table::Supersessions, &key)?.is_some()))
            .await
    }

    async fn by_agent(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<SupersessionCursor>,
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let limit = page_limit(limit);
        if limit == 0 || to.is_some_and(|to| to < from) {
            return Ok(Vec::new());
        }
        let agent = *agent;
        self.read(move |_, reader| by_agent(reader, &agent, (from, to), after, limit))
            .await
    }

    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let limit = page_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = after.map_or_else(Vec::new, |d| keys::successor(&keys::supersession(&d)));
        self.read(move |_, reader| {
            let mut out = Vec::with_capacity(limit.min(SCAN_PAGE));
            let mut each = |key: &[u8], value: &[u8]| {
                out.push(verified(decode_keyed("supersession record", key, value)?)?);
                Ok(())
            };
            reader.scan_each(
                Table::Supersessions,
                &start,
                None,
                Direction::Forward,
                limit,
                &mut each,
            )?;
            Ok(out)
        })
        .await
    }
}
