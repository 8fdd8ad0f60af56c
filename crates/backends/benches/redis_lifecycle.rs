//! Pruning 100 000 events beside 64 live appenders on Redis (issue 13's
//! bar: the appenders slow down by less than 30 %), in one run: the
//! appenders' throughput while `prune_runs` deletes 1 000 finished runs of
//! 100 events each, against their throughput just before and just after
//! (the same appenders, the same server, the same time window length).
//!
//! `cargo bench -p stowage-backends --features redis --bench redis_lifecycle`
//! (uses `STOWAGE_TEST_REDIS_URL`'s server when set, else a private one).

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stowage_core::lifecycle::RunRetention;
use stowage_core::{Digest, NewEvent, RunMetadata, RunStatus, RunSummary, Stores};

const APPENDERS: usize = 64;
const OLD_RUNS: usize = 1_000;
const EVENTS_PER_OLD_RUN: usize = 100;

/// Fills the store with the runs to prune (finished, agent `old`).
async fn fill(s: &Stores) {
    let tasks = (0..32).map(|w| {
        let s = s.clone();
        tokio::spawn(async move {
            for _ in (w..OLD_RUNS).step_by(32) {
                let run = s
                    .runs
                    .create_run(Digest::of(b"old"), RunMetadata::new("old"))
                    .await
                    .expect("create");
                for j in 0..EVENTS_PER_OLD_RUN {
                    let e = NewEvent::new("tool_call", json!({"step": j}));
                    s.runs.append_event(run, e).await.expect("append");
                }
                s.runs
                    .finish_run(run, RunStatus::Completed, RunSummary::new("done"))
                    .await
                    .expect("finish");
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.expect("fill task");
    }
}

/// Appenders that run until `stop`, counting their appends in `count`.
fn start_appenders(
    clients: &[Stores],
    runs: &[stowage_core::RunId],
    stop: &Arc<AtomicBool>,
    count: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    clients
        .iter()
        .zip(runs)
        .map(|(c, run)| {
            let (c, run, stop, count) = (c.clone(), *run, stop.clone(), count.clone());
            tokio::spawn(async move {
                let mut j = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let e = NewEvent::new("tool_call", json!({"step": j}));
                    c.runs.append_event(run, e).await.expect("live append");
                    count.fetch_add(1, Ordering::Relaxed);
                    j += 1;
                }
            })
        })
        .collect()
}

/// Appends per second over `window`.
async fn rate_over(count: &AtomicU64, window: Duration) -> f64 {
    let before = count.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(window).await;
    (count.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64()
}

async fn bench(url: &str) {
    let setup = stowage_backends::open(url).await.expect("open");
    fill(&setup).await;
    let before = setup.lifecycle.stats().await.expect("stats");
    assert_eq!(before.run_events, (OLD_RUNS * EVENTS_PER_OLD_RUN) as u64);
    let mut clients = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..APPENDERS {
        let c = stowage_backends::open(url).await.expect("open");
        let run = c
            .runs
            .create_run(Digest::of(b"live"), RunMetadata::new("live"))
            .await
            .expect("create live run");
        clients.push(c);
        runs.push(run);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let appenders = start_appenders(&clients, &runs, &stop, &count);
    tokio::time::sleep(Duration::from_millis(500)).await; // warm up

    // Prune while the appenders run, and time it.
    let pruning = {
        let (s, count) = (setup.clone(), count.clone());
        tokio::spawn(async move {
            let policy = RunRetention::finished().agent("old");
            let start = Instant::now();
            let at_start = count.load(Ordering::Relaxed);
            let (mut after, mut events) = (None, 0);
            loop {
                let sweep = s.lifecycle.prune_runs(&policy, after).await.expect("prune");
                events += sweep.removed;
                match sweep.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let took = start.elapsed();
            let appended = count.load(Ordering::Relaxed) - at_start;
            (events, took, appended as f64 / took.as_secs_f64())
        })
    };
    let (events, took, during) = pruning.await.expect("prune task");
    // The same window length right after, and once more, without pruning.
    let window = took.max(Duration::from_millis(200));
    let after_1 = rate_over(&count, window).await;
    let after_2 = rate_over(&count, window).await;
    stop.store(true, Ordering::Relaxed);
    for a in appenders {
        a.await.expect("appender");
    }
    let alone = (after_1 + after_2) / 2.0;
    println!("pruned {events} events (1 000 runs) in {took:.2?} beside {APPENDERS} appenders");
    println!("appends/s while pruning: {during:.0}; alone (same window, twice): {after_1:.0}, {after_2:.0}");
    println!(
        "ratio while pruning / alone: {:.2} (slowdown {:.0} %; the bar is < 30 %)",
        during / alone,
        (1.0 - during / alone) * 100.0
    );
    let after = setup.lifecycle.stats().await.expect("stats");
    println!(
        "stats after: {} runs, {} events",
        after.runs, after.run_events
    );
}

fn main() {
    let base = redis_server::base_url();
    let url = redis_server::with_params(
        &base,
        &format!("prefix={}", redis_server::unique_prefix("prune-bench")),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench(&url));
}
