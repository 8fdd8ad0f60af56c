//! Signed supersession records in memory, ordered by target and indexed
//! by agent in `by_agent` order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use stowage_core::validate::page_limit;
use stowage_core::{
    AgentKey, Digest, PutOutcome, Result, Supersession, SupersessionCursor, SupersessionStore,
    Timestamp,
};

use super::State;

/// The records (ascending by target) and the per-agent index (agent → the
/// positions of its records, in [`SupersessionCursor`] order).
#[derive(Default, Clone)]
struct Data {
    by_target: BTreeMap<Digest, Supersession>,
    by_agent: HashMap<AgentKey, BTreeSet<SupersessionCursor>>,
}

/// All supersessions. `put`s are serialised by `writer` so that the
/// append-only rule and the cycle check (which walks other targets) see
/// exactly the state the insert lands in; `data` is write-locked only for
/// the insert itself, and readers only ever read-lock it.
#[derive(Default)]
pub(crate) struct Supersessions {
    writer: Mutex<()>,
    data: RwLock<Data>,
}

impl Supersessions {
    pub(crate) fn snapshot(&self) -> Self {
        Supersessions {
            writer: Mutex::new(()),
            data: RwLock::new(self.data.read().clone()),
        }
    }
}

/// The [`SupersessionStore`] of a memory backend.
pub(crate) struct MemorySupersessions(pub(crate) Arc<State>);

#[async_trait]
impl SupersessionStore for MemorySupersessions {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        record.validate()?;
        let _w = self.0.writing();
        let store = &self.0.supersessions;
        let _writer = store.writer.lock();
        {
            let data = store.data.read();
            let outcome = record.decide_put(data.by_target.get(&record.target))?;
            if outcome == PutOutcome::AlreadyPresent {
                return Ok(outcome);
            }
            record.check_no_cycle(|h| Ok(data.by_target.get(h).map(|s| s.replacement)))?;
        }
        let mut data = store.data.write();
        data.by_agent
            .entry(record.agent)
            .or_default()
            .insert(record.order_key());
        data.by_target.insert(record.target, record);
        Ok(PutOutcome::Stored)
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        Ok(self
            .0
            .supersessions
            .data
            .read()
            .by_target
            .get(target)
            .cloned())
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        Ok(self
            .0
            .supersessions
            .data
            .read()
            .by_target
            .contains_key(target))
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
        let data = self.0.supersessions.data.read();
        let Some(positions) = data.by_agent.get(agent) else {
            return Ok(Vec::new());
        };
        let upper = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(positions
            .range((Bound::Unbounded, upper))
            .rev()
            .filter(|p| p.in_page(from, to, None))
            .filter_map(|p| data.by_target.get(&p.target))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .0
            .supersessions
            .data
            .read()
            .by_target
            .range((lower, Bound::Unbounded))
            .take(page_limit(limit))
            .map(|(_, s)| s.clone())
            .collect())
    }
}
