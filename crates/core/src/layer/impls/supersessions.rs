//! `SupersessionStore` over an interposed layer, in the shape described in [`super`].

use crate::{
    AgentKey, Digest, PutOutcome, Resolution, Result, Supersession, SupersessionCursor,
    SupersessionStore, Timestamp,
};
use async_trait::async_trait;

use super::opt_digest;
use crate::layer::{Entity, Interposed, Operation as Op, Reuse};

#[async_trait]
impl SupersessionStore for Interposed {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        let entity = Some(Entity::Assertion(record.target));
        let call = self.call(Op::SupersessionsPut, entity, || {
            format!(
                "target {}, replacement {}",
                record.target.short(),
                opt_digest(record.replacement.as_ref())
            )
        });
        let mut record = Reuse::new(record);
        self.run(call, move |last| {
            (record.take(last)).map(|r| self.inner.supersessions.put(r))
        })
        .await
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        let entity = Some(Entity::Assertion(*target));
        let call = self.call(Op::SupersessionsGet, entity, || {
            format!("target {}", target.short())
        });
        self.run(call, move |_| Some(self.inner.supersessions.get(target)))
            .await
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        let entity = Some(Entity::Assertion(*target));
        let call = self.call(Op::SupersessionsIsSuperseded, entity, || {
            format!("target {}", target.short())
        });
        self.run(call, move |_| {
            Some(self.inner.supersessions.is_superseded(target))
        })
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
        let call = self.call(
            Op::SupersessionsByAgent,
            Some(Entity::Agent(*agent)),
            || {
                let agent_text = agent.to_string();
                let to_text = to.map_or_else(|| "none".to_owned(), |t| t.to_string());
                let after_text = after.map_or_else(
                    || "none".to_owned(),
                    |c| format!("{}@{}", c.target.short(), c.timestamp),
                );
                format!(
                    "agent {}, from {from}, to {to_text}, after {after_text}, limit {limit}",
                    agent_text.get(..12).unwrap_or(&agent_text)
                )
            },
        );
        self.run(call, move |_| {
            Some(
                self.inner
                    .supersessions
                    .by_agent(agent, from, to, after, limit),
            )
        })
        .await
    }

    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let call = self.call(Op::SupersessionsList, None, || {
            format!("after {}, limit {limit}", opt_digest(after.as_ref()))
        });
        self.run(call, move |_| {
            Some(self.inner.supersessions.list(after, limit))
        })
        .await
    }

    async fn resolve(&self, hash: &Digest) -> Result<Resolution> {
        let entity = Some(Entity::Assertion(*hash));
        let call = self.call(Op::SupersessionsResolve, entity, || {
            format!("hash {}", hash.short())
        });
        self.run(call, move |_| Some(self.inner.supersessions.resolve(hash)))
            .await
    }
}
