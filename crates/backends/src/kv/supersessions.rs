//! `SupersessionStore` over the seam.
//!
//! Tables: `Supersessions` (target → record) and `SupersessionsByAgent`
//! (`agent(32)` + the record's fixed-width `SupersessionCursor` bytes →
//! empty, sorting like `Supersession::order_key`). `by_agent` scans an
//! agent's entries in reverse below the cursor, filters the window on the
//! key alone and loads only the records it returns; `list` scans
//! `Supersessions` forward. `put` holds one store-wide lock across the
//! append-only check, the replacement-chain walk and the atomic batch, so a
//! cycle can never be committed by two racing puts.

use async_trait::async_trait;
use stowage_core::encoding::encode_record;
use stowage_core::validate::page_limit;
use stowage_core::{
    AgentKey, Digest, PutOutcome, Result, Supersession, SupersessionCursor, SupersessionStore,
    Timestamp,
};

use super::keys;
use super::seam::{Batch, Direction, Table};
use super::{Kv, KvStore};

/// How many index entries `by_agent` reads per scan while filtering.
const SCAN_PAGE: usize = 256;

impl Kv {
    fn load_supersession(&self, target: &Digest) -> Result<Option<Supersession>> {
        self.get_record(
            Table::Supersessions,
            &keys::supersession(target),
            "supersession record",
        )
    }

    fn put_supersession_locked(&self, record: &Supersession) -> Result<PutOutcome> {
        let existing = self.load_supersession(&record.target)?;
        let outcome = record.decide_put(existing.as_ref())?;
        if outcome == PutOutcome::AlreadyPresent {
            return Ok(outcome);
        }
        record.check_no_cycle(|hash| Ok(self.load_supersession(hash)?.map(|s| s.replacement)))?;
        let mut batch = Batch::default();
        batch.put(
            Table::Supersessions,
            keys::supersession(&record.target),
            encode_record(record)?,
        );
        batch.put(
            Table::SupersessionsByAgent,
            keys::supersession_by_agent(record),
            Vec::new(),
        );
        self.write(batch)?;
        Ok(outcome)
    }

    fn by_agent_blocking(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<SupersessionCursor>,
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let (start, mut end) = keys::by_agent_range(agent, after.as_ref());
        let mut out = Vec::new();
        while out.len() < limit {
            let page = self.engine.scan(
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
                let Some(record) = self.load_supersession(&position.target)? else {
                    return Err(stowage_core::Error::corrupted(format!(
                        "the by-agent index names supersession {}, which is missing",
                        position.target.short()
                    )));
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

    fn list_supersessions(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let start = after.map_or_else(Vec::new, |d| keys::successor(&keys::supersession(&d)));
        self.scan_records(
            Table::Supersessions,
            &start,
            None,
            Direction::Forward,
            limit,
            "supersession record",
        )
    }
}

#[async_trait]
impl SupersessionStore for KvStore {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        record.validate()?;
        self.mutate(move |kv| {
            let _guard = kv.supersession_lock.lock();
            kv.put_supersession_locked(&record)
        })
        .await
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        let target = *target;
        self.blocking(move |kv| kv.load_supersession(&target)).await
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        let key = keys::supersession(target);
        self.blocking(move |kv| Ok(kv.engine.get(Table::Supersessions, &key)?.is_some()))
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
        self.blocking(move |kv| kv.by_agent_blocking(&agent, from, to, after, limit))
            .await
    }

    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let limit = page_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.blocking(move |kv| kv.list_supersessions(after, limit))
            .await
    }
}
