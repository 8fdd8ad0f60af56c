//! Pages of recent run events answered from the stores' cache
//! (`StoreCache::events`): the same pages the engine gives, never a stale
//! one.

use std::sync::atomic::{AtomicU64, Ordering};

use super::super::heads::Log;
use super::*;
use crate::engine::StoreCache;
use crate::lifecycle::IfRunning;
use crate::{RunEvent, RunId};

async fn new_run(stores: &Stores) -> RunId {
    let spec = Digest::of(b"spec");
    stores
        .runs
        .create_run(spec, RunMetadata::new("agent"))
        .await
        .unwrap()
}

async fn append(stores: &Stores, run: RunId, i: usize) -> RunEvent {
    let payload = json!({ "i": i, "text": "x".repeat(i % 97) });
    stores
        .runs
        .append_event(run, NewEvent::new("tick", payload))
        .await
        .unwrap()
}

fn cache(engine: &MemoryEngine) -> &StoreCache {
    engine.cache().expect("the memory engine has a cache")
}

#[tokio::test]
async fn cached_pages_are_the_pages_the_engine_gives() {
    let (stores, engine) = mem_stores();
    let run = new_run(&stores).await;
    for i in 0..300 {
        append(&stores, run, i).await;
    }
    let cases = [
        (None, 1000),
        (None, 7),
        (Some(0), 50),
        (Some(150), 1000),
        (Some(298), 5),
        (Some(299), 5),
        (Some(5000), 5),
        (Some(u64::MAX), 5),
        (None, 0),
    ];
    let mut cached = Vec::new();
    for (after, limit) in cases {
        if let Some(first) = keys::first_after(after) {
            assert!(cache(&engine)
                .events(&Log::Run(run), first, limit)
                .is_some());
        }
        cached.push(stores.runs.read_events(run, after, limit).await.unwrap());
    }
    cache(&engine).clear();
    for ((after, limit), cached) in cases.into_iter().zip(cached) {
        assert!(cache(&engine).events(&Log::Run(run), 0, 1).is_none());
        let engine_page = stores.runs.read_events(run, after, limit).await.unwrap();
        assert_eq!(cached, engine_page, "after {after:?}, limit {limit}");
    }
}

#[tokio::test]
async fn a_tail_that_does_not_reach_back_sends_the_read_to_the_engine() {
    let (stores, engine) = mem_stores();
    let run = new_run(&stores).await;
    for i in 0..10 {
        append(&stores, run, i).await;
    }
    // As after a reopen: the next append starts a tail of one event.
    cache(&engine).clear();
    append(&stores, run, 10).await;
    assert!(cache(&engine).events(&Log::Run(run), 0, 100).is_none());
    assert_eq!(
        cache(&engine)
            .events(&Log::Run(run), 10, 100)
            .unwrap()
            .len(),
        1
    );
    let all = stores.runs.read_events(run, None, 100).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..11).collect::<Vec<_>>());
}

#[tokio::test]
async fn deleted_runs_are_read_from_the_engine_and_finished_ones_stay_cached() {
    let (stores, engine) = mem_stores();
    let run = new_run(&stores).await;
    let other = new_run(&stores).await;
    for i in 0..5 {
        append(&stores, run, i).await;
        append(&stores, other, i).await;
    }
    let deleted = stores.lifecycle.delete_run(run, IfRunning::Delete).await;
    assert!(deleted.unwrap());
    let err = stores.runs.read_events(run, None, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(cache(&engine).events(&Log::Run(run), 0, 10).is_none());
    let summary = RunSummary::new("done");
    stores
        .runs
        .finish_run(other, RunStatus::Completed, summary)
        .await
        .unwrap();
    // A just-finished run is read back from its cached tail, as the
    // engine would give it.
    let cached = cache(&engine).events(&Log::Run(other), 0, 10);
    assert_eq!(cached.map(|page| page.len()), Some(5));
    let page = stores.runs.read_events(other, None, 10).await.unwrap();
    cache(&engine).clear();
    assert_eq!(
        page,
        stores.runs.read_events(other, None, 10).await.unwrap()
    );
    // And it still takes no appends, cached or not.
    let finished = new_run(&stores).await;
    append(&stores, finished, 0).await;
    let summary = RunSummary::new("done");
    stores
        .runs
        .finish_run(finished, RunStatus::Failed, summary)
        .await
        .unwrap();
    for _ in 0..2 {
        let event = NewEvent::new("late", json!(1));
        let err = stores.runs.append_event(finished, event).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    }
    assert_eq!(stores.runs.verify_run(finished).await.unwrap().len, 1);
}

#[tokio::test]
async fn reads_after_close_are_refused_even_when_cached() {
    let (stores, _) = mem_stores();
    let run = new_run(&stores).await;
    append(&stores, run, 0).await;
    let runs = Arc::clone(&stores.runs);
    assert_eq!(runs.read_events(run, None, 10).await.unwrap().len(), 1);
    stores.close().await.unwrap();
    let err = runs.read_events(run, None, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

/// Appenders and readers race on one run: every read sees every event
/// acknowledged before it started, as one gap-free, linked chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_readers_see_every_acknowledged_event() {
    let (stores, _) = mem_stores();
    let run = new_run(&stores).await;
    let acked = Arc::new(AtomicU64::new(0));
    let appenders: Vec<_> = (0..8)
        .map(|t| {
            let (stores, acked) = (stores.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                for i in 0..100 {
                    let event = append(&stores, run, t * 1000 + i).await;
                    acked.fetch_max(event.seq + 1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (stores, acked) = (stores.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                let page = 1 + r * 37;
                for _ in 0..200 {
                    let floor = acked.load(Ordering::SeqCst);
                    let mut events: Vec<RunEvent> = Vec::new();
                    loop {
                        let after = events.last().map(|e| e.seq);
                        let got = stores.runs.read_events(run, after, page).await.unwrap();
                        if got.is_empty() {
                            break;
                        }
                        events.extend(got);
                    }
                    assert!(
                        events.len() as u64 >= floor,
                        "a read missed an acknowledged event"
                    );
                    for (n, pair) in events.windows(2).enumerate() {
                        assert_eq!(pair[0].seq, n as u64);
                        assert_eq!(pair[1].seq, n as u64 + 1);
                        assert_eq!(pair[1].prev_hash, Some(pair[0].hash));
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in appenders.into_iter().chain(readers) {
        task.await.unwrap();
    }
    let report = stores.runs.verify_run(run).await.unwrap();
    assert_eq!(report.len, 800);
}

/// A memory engine that, once `broken`, fails every call as a poisoned
/// engine does (writes applied but not made durable, reads refused).
#[derive(Clone)]
struct Breakable {
    inner: MemoryEngine,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl Breakable {
    fn check(&self) -> crate::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(crate::Error::internal("poisoned: reopen the store"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Engine for Breakable {
    fn capabilities(&self) -> crate::Capabilities {
        self.inner.capabilities()
    }

    async fn read(&self, job: crate::engine::ReadJob) -> crate::Result<()> {
        self.check()?;
        self.inner.read(job).await
    }

    async fn write(
        &self,
        scope: Scope,
        job: crate::engine::WriteJob,
    ) -> crate::Result<crate::engine::Durable> {
        let durable = self.inner.write(scope, job).await?;
        let this = self.clone();
        Ok(crate::engine::Durable::new(async move {
            durable.wait().await?;
            this.check().map_err(|e| {
                crate::Error::new(ErrorKind::OutcomeUnknown, "the sync failed").with_source(e)
            })
        }))
    }

    fn cache(&self) -> Option<&StoreCache> {
        self.inner.cache()
    }
}

/// Once a write reports the engine broken, no read is answered from the
/// cache: the engine is asked, and refuses, as it would without a cache.
#[tokio::test]
async fn a_broken_engine_is_asked_not_the_cache() {
    let engine = Breakable {
        inner: MemoryEngine::new(),
        broken: Arc::default(),
    };
    let stores = stores(Arc::new(engine.clone()), crate::StoreEnv::default());
    let (run, other) = (new_run(&stores).await, new_run(&stores).await);
    for i in 0..3 {
        append(&stores, run, i).await;
        append(&stores, other, i).await;
    }
    engine.broken.store(true, Ordering::SeqCst);
    let event = NewEvent::new("tick", json!(3));
    let err = stores.runs.append_event(run, event).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown);
    for id in [run, other] {
        let err = stores.runs.read_events(id, None, 10).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    }
}

/// Damage written behind the stores' back, while they cache the run's
/// tail: `verify_run` reads the engine and reports it.
#[tokio::test]
async fn verification_reads_the_engine_not_the_cache() {
    let (stores, engine) = mem_stores();
    let run = new_run(&stores).await;
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(append(&stores, run, i).await);
    }
    let mut damaged = events[2].clone();
    damaged.payload = json!({ "edited": true });
    let value = crate::encoding::encode_event(&damaged).unwrap();
    put_raw(
        &engine,
        vec![(Table::RunEvents, keys::run_event(run, 2), value)],
    )
    .await;
    assert!(
        cache(&engine).events(&Log::Run(run), 0, 10).is_some(),
        "still cached"
    );
    let err = stores.runs.verify_run(run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.message().contains("seq 2"), "{err}");
}

/// A memory engine that says it may call jobs again, and offers its cache.
struct Rerunning(MemoryEngine);

#[async_trait::async_trait]
impl Engine for Rerunning {
    fn capabilities(&self) -> crate::Capabilities {
        self.0.capabilities()
    }

    async fn read(&self, job: crate::engine::ReadJob) -> crate::Result<()> {
        self.0.read(job).await
    }

    async fn write(
        &self,
        scope: Scope,
        job: crate::engine::WriteJob,
    ) -> crate::Result<crate::engine::Durable> {
        self.0.write(scope, job).await
    }

    fn reruns_jobs(&self) -> bool {
        true
    }

    fn cache(&self) -> Option<&StoreCache> {
        self.0.cache()
    }
}

/// The stores ignore the cache of an engine that calls jobs again: an
/// append answered from it reads nothing, so such an engine could not see
/// it conflict with a concurrent delete or state change.
#[tokio::test]
async fn an_engine_that_reruns_jobs_gets_no_cache() {
    let engine = Arc::new(Rerunning(MemoryEngine::new()));
    let stores = stores(engine.clone(), crate::StoreEnv::default());
    let run = new_run(&stores).await;
    for i in 0..3 {
        append(&stores, run, i).await;
    }
    assert_eq!(
        stores.runs.read_events(run, None, 10).await.unwrap().len(),
        3
    );
    let cache = engine.cache().expect("the memory engine has a cache");
    assert!(cache.take(&Log::Run(run)).is_none(), "a head was cached");
}
