//! `RunLedger` over an interposed layer, in the shape described in [`super`].

use crate::{
    ChainReport, Digest, NewEvent, Result, Run, RunEvent, RunFilter, RunId, RunLedger, RunMetadata,
    RunStatus, RunSummary,
};
use async_trait::async_trait;

use super::{id, opt_u64};
use crate::layer::{Entity, Interposed, Operation as Op, Reuse};

#[async_trait]
impl RunLedger for Interposed {
    async fn create_run(&self, spec_digest: Digest, metadata: RunMetadata) -> Result<RunId> {
        let call = self.call(Op::RunsCreateRun, None, || {
            format!(
                "spec {}, agent {}",
                spec_digest.short(),
                id(&metadata.agent_name)
            )
        });
        let mut metadata = Reuse::new(metadata);
        self.run(call, move |last| {
            (metadata.take(last)).map(|m| self.inner.runs.create_run(spec_digest, m))
        })
        .await
    }

    async fn append_event(&self, run: RunId, event: NewEvent) -> Result<RunEvent> {
        let call = self
            .call(Op::RunsAppendEvent, Some(Entity::Run(run)), || {
                format!("run {run}, kind {}", id(&event.kind))
            })
            .seq(event.expected_seq)
            .keyed(event.idempotency_key.is_some());
        let mut event = Reuse::new(event);
        self.run(call, move |last| {
            (event.take(last)).map(|e| self.inner.runs.append_event(run, e))
        })
        .await
    }

    async fn complete_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsCompleteRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.complete_run(run, s))
        })
        .await
    }

    async fn fail_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsFailRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.fail_run(run, s))
        })
        .await
    }

    async fn cancel_run(&self, run: RunId, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsCancelRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.cancel_run(run, s))
        })
        .await
    }

    async fn finish_run(&self, run: RunId, status: RunStatus, summary: RunSummary) -> Result<Run> {
        let call = self.call(Op::RunsFinishRun, Some(Entity::Run(run)), || {
            format!("run {run}, status {status}")
        });
        let mut summary = Reuse::new(summary);
        self.run(call, move |last| {
            (summary.take(last)).map(|s| self.inner.runs.finish_run(run, status, s))
        })
        .await
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        let call = self.call(Op::RunsGetRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        self.run(call, move |_| Some(self.inner.runs.get_run(run)))
            .await
    }

    async fn read_events(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunEvent>> {
        let call = self.call(Op::RunsReadEvents, Some(Entity::Run(run)), || {
            format!("run {run}, after {}, limit {limit}", opt_u64(after_seq))
        });
        self.run(call, move |_| {
            Some(self.inner.runs.read_events(run, after_seq, limit))
        })
        .await
    }

    async fn list_runs(
        &self,
        filter: &RunFilter,
        after: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        let call = self.call(Op::RunsListRuns, None, || {
            let after_text = after.map_or_else(|| "none".to_owned(), |r| r.to_string());
            format!("{filter:?}, after {after_text}, limit {limit}")
        });
        self.run(call, move |_| {
            Some(self.inner.runs.list_runs(filter, after, limit))
        })
        .await
    }

    async fn verify_run(&self, run: RunId) -> Result<ChainReport> {
        let call = self.call(Op::RunsVerifyRun, Some(Entity::Run(run)), || {
            format!("run {run}")
        });
        self.run(call, move |_| Some(self.inner.runs.verify_run(run)))
            .await
    }
}
