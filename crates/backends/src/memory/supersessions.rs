//! Signed supersession records in memory, indexed by target and by agent.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use stowage_core::supersession::sort_newest_first;
use stowage_core::validate::page_limit;
use stowage_core::{
    AgentKey, Digest, PutOutcome, Result, Supersession, SupersessionStore, Timestamp,
};

use super::State;

/// The records and the per-agent index (agent → the targets it superseded).
#[derive(Default, Clone)]
struct Data {
    by_target: HashMap<Digest, Supersession>,
    by_agent: HashMap<AgentKey, Vec<Digest>>,
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
            .push(record.target);
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
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let to = to.unwrap_or(Timestamp::MAX);
        let mut records: Vec<Supersession> = {
            let data = self.0.supersessions.data.read();
            data.by_agent
                .get(agent)
                .map(|targets| {
                    targets
                        .iter()
                        .filter_map(|t| data.by_target.get(t))
                        .filter(|s| from <= s.timestamp && s.timestamp <= to)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        sort_newest_first(&mut records);
        records.truncate(page_limit(limit));
        Ok(records)
    }
}
