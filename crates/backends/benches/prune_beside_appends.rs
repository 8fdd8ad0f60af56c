//! Issue 13's bar: pruning 100 000 events beside 64 live appenders slows
//! the appenders by less than 30 %.
//!
//! Each round prepares two fresh stores the same way — finished runs
//! holding `STOWAGE_BENCH_PRUNE_EVENTS` (default 100 000) events,
//! `STOWAGE_BENCH_EVENTS_PER_RUN` (default 100) per run, written with
//! `durability=buffered` and then reopened durable (the default) — and
//! measures 64 appenders (one run each, durable `append_event` in a loop)
//! on each:
//!
//! - A, alone: appends counted over `STOWAGE_BENCH_WINDOW_MS` (default
//!   1000) after a 200 ms warm-up;
//! - B, beside a prune: after the same warm-up, a spawned task calls
//!   `prune_runs(RunRetention::finished().batch(STOWAGE_BENCH_PRUNE_BATCH))`
//!   (default 64) until the cursor ends; appends are counted over the same
//!   window (or until the prune ends, if sooner: the output says so), and
//!   the prune's own duration is reported.
//!
//! The window must be shorter than the prune, so that B's appenders are
//! measured beside it the whole time, and the same for A and B, since the
//! appenders' rate drifts as their runs and the store grow.
//!
//! A and B alternate in order from round to round (A B, B A, …) so that
//! load drifting over the run falls on both. Every round prints both
//! rates, the paired ratio B / A and how long the prune took; the end
//! prints the median paired ratio and the ratio of the medians. The bar is
//! met when the median ratio is above 0.70.
//!
//! `STOWAGE_BENCH_ROUNDS` (default 5); `STOWAGE_BENCH_BACKENDS`: `file`
//! (default), `sqlite` (with the `sqlite` feature) or `file,sqlite`;
//! stores go in a temp dir under `$STOWAGE_BENCH_DIR` (default the system
//! temp dir).
//!
//! `cargo bench -p stowage-backends --features file --bench prune_beside_appends`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stowage_core::lifecycle::RunRetention;
use stowage_core::{Digest, NewEvent, RunMetadata, RunSummary, Stores};

const APPENDERS: usize = 64;
const WARM_UP: Duration = Duration::from_millis(200);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("STOWAGE_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The store URL of `backend` in `dir`, with `query`.
fn url(backend: &str, dir: &std::path::Path, query: &str) -> String {
    match backend {
        "file" => format!("file://{}?{query}", dir.join("store").display()),
        "sqlite" => format!("sqlite://{}?{query}", dir.join("store.db").display()),
        other => panic!("unknown backend {other:?} (file, sqlite)"),
    }
}

#[derive(Clone, Copy)]
struct Config {
    events: usize,
    per_run: usize,
    window: Duration,
    batch: usize,
}

/// A fresh store holding `config.events` events in finished runs, reopened
/// durable.
async fn prepared(backend: &str, dir: &std::path::Path, config: Config) -> Stores {
    let runs = config.events.div_ceil(config.per_run);
    {
        let stores = stowage_backends::open(&url(backend, dir, "durability=buffered"))
            .await
            .expect("open buffered");
        let handles: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let stores = stores.clone();
                tokio::spawn(async move {
                    for i in (t..runs).step_by(APPENDERS) {
                        let run = stores
                            .runs
                            .create_run(Digest::of(b"old spec"), RunMetadata::new("old"))
                            .await
                            .expect("create");
                        let n = config.per_run.min(config.events - i * config.per_run);
                        for k in 0..n {
                            let event = NewEvent::new("step", json!({ "i": i, "k": k }));
                            stores.runs.append_event(run, event).await.expect("fill");
                        }
                        stores
                            .runs
                            .complete_run(run, RunSummary::new("done"))
                            .await
                            .expect("complete");
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("fill task");
        }
        stores.close().await.expect("close");
    }
    stowage_backends::open(&url(backend, dir, "durability=sync"))
        .await
        .expect("open durable")
}

/// What one measurement saw.
struct Measured {
    /// Appends per second over the measured interval.
    rate: f64,
    /// How long the prune took (B only).
    prune: Option<(Duration, u64)>,
}

/// `APPENDERS` tasks appending to runs of their own until `stop`,
/// counting appends in `count`.
struct Appenders {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Appenders {
    async fn start(stores: &Stores) -> Appenders {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for a in 0..APPENDERS {
            let run = stores
                .runs
                .create_run(Digest::of(b"live spec"), RunMetadata::new("live"))
                .await
                .expect("create live run");
            let (stores, stop, count) = (stores.clone(), stop.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                let mut j = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let event = NewEvent::new("step", json!({ "a": a, "j": j }));
                    stores.runs.append_event(run, event).await.expect("append");
                    count.fetch_add(1, Ordering::Relaxed);
                    j += 1;
                }
            }));
        }
        tokio::time::sleep(WARM_UP).await;
        Appenders { stop, count, tasks }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("appender");
        }
    }
}

/// 64 appenders on `stores`, measured alone or beside a prune.
async fn measure(stores: &Stores, config: Config, with_prune: bool) -> Measured {
    let appenders = Appenders::start(stores).await;
    let count = appenders.count.clone();
    let (start, before) = (Instant::now(), count.load(Ordering::Relaxed));
    // Both variants count appends over the same interval after the
    // warm-up: the window, or B's prune if that ends first.
    let (elapsed, appended, prune) = if with_prune {
        let stores = stores.clone();
        let mut pruner = tokio::spawn(async move {
            let policy = RunRetention::finished().batch(config.batch);
            let (mut after, mut events) = (None, 0);
            loop {
                let sweep = stores
                    .lifecycle
                    .prune_runs(&policy, after)
                    .await
                    .expect("prune");
                events += sweep.removed;
                match sweep.next {
                    Some(next) => after = Some(next),
                    None => return (events, Instant::now()),
                }
            }
        });
        let early = tokio::time::timeout(config.window, &mut pruner)
            .await
            .is_ok();
        let (elapsed, appended) = (start.elapsed(), count.load(Ordering::Relaxed) - before);
        let (events, end) = pruner.await.expect("prune task");
        if early {
            println!(
                "  (the prune ended {:?} before the window did: appends counted over the prune)",
                config.window.saturating_sub(elapsed)
            );
        }
        (elapsed, appended, Some((end - start, events)))
    } else {
        tokio::time::sleep(config.window).await;
        (
            start.elapsed(),
            count.load(Ordering::Relaxed) - before,
            None,
        )
    };
    appenders.stop().await;
    if let Some((_, events)) = prune {
        assert_eq!(
            events, config.events as u64,
            "the prune removed every old event"
        );
    }
    Measured {
        rate: appended as f64 / elapsed.as_secs_f64(),
        prune,
    }
}

async fn variant(backend: &str, config: Config, with_prune: bool) -> Measured {
    let dir = temp_dir();
    let stores = prepared(backend, dir.path(), config).await;
    let measured = measure(&stores, config, with_prune).await;
    stores.close().await.expect("close");
    measured
}

async fn bench(backend: &str, rounds: usize, config: Config) {
    println!(
        "{backend}: {} events in {} finished runs, {APPENDERS} durable appenders, prune batch {}, \
         window {:?}, {rounds} rounds; load {}",
        config.events,
        config.events.div_ceil(config.per_run),
        config.batch,
        config.window,
        load()
    );
    let (mut alone, mut beside, mut ratios, mut prunes) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let (a, b) = if r % 2 == 0 {
            let a = variant(backend, config, false).await;
            (a, variant(backend, config, true).await)
        } else {
            let b = variant(backend, config, true).await;
            (variant(backend, config, false).await, b)
        };
        let (took, events) = b.prune.expect("B prunes");
        println!(
            "{backend} round {r} ({}): alone {:.0} appends/s, beside the prune {:.0} appends/s, \
             ratio {:.3}; prune of {events} events took {:.2} s ({:.0} events/s); load {}",
            if r % 2 == 0 { "A then B" } else { "B then A" },
            a.rate,
            b.rate,
            b.rate / a.rate,
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64(),
            load()
        );
        ratios.push(b.rate / a.rate);
        alone.push(a.rate);
        beside.push(b.rate);
        prunes.push(took.as_secs_f64());
    }
    let ratio = median(ratios);
    println!(
        "{backend}: median paired ratio {ratio:.3} (slowdown {:.1} %), ratio of medians {:.3} \
         ({:.0} vs {:.0} appends/s), median prune {:.2} s; bar (slowdown < 30 %, ratio > 0.70) {}",
        (1.0 - ratio) * 100.0,
        median(beside.clone()) / median(alone.clone()),
        median(beside),
        median(alone),
        median(prunes),
        if ratio > 0.70 { "met" } else { "NOT met" }
    );
}

/// Rates of one store's appenders while a prune batch runs and while it
/// pauses, and the prune's working time.
struct Phased {
    on: f64,
    off: f64,
    working: Duration,
}

/// One fresh store; 64 appenders run throughout while the prune
/// alternates: a pause, a batch, a pause as long as that batch, the next
/// batch, … and a last pause. Appends are counted per phase.
async fn phased(backend: &str, config: Config) -> Phased {
    let dir = temp_dir();
    let stores = prepared(backend, dir.path(), config).await;
    let appenders = Appenders::start(&stores).await;
    let policy = RunRetention::finished().batch(config.batch);
    let (mut on, mut off) = ((Duration::ZERO, 0u64), (Duration::ZERO, 0u64));
    let (mut after, mut events, mut done) = (None, 0, false);
    let mut pause = Duration::from_millis(100);
    loop {
        let (t0, c0) = (Instant::now(), appenders.count());
        tokio::time::sleep(pause).await;
        let (t1, c1) = (Instant::now(), appenders.count());
        off = (off.0 + (t1 - t0), off.1 + (c1 - c0));
        if done {
            break;
        }
        // A task like any other on the runtime, as an application's would be.
        let (lifecycle, policy) = (stores.lifecycle.clone(), policy.clone());
        let sweep = tokio::spawn(async move { lifecycle.prune_runs(&policy, after).await })
            .await
            .expect("prune task")
            .expect("prune");
        let (t2, c2) = (Instant::now(), appenders.count());
        on = (on.0 + (t2 - t1), on.1 + (c2 - c1));
        pause = t2 - t1;
        events += sweep.removed;
        after = sweep.next;
        done = after.is_none();
    }
    appenders.stop().await;
    stores.close().await.expect("close");
    assert_eq!(
        events, config.events as u64,
        "the prune removed every old event"
    );
    Phased {
        on: on.1 as f64 / on.0.as_secs_f64(),
        off: off.1 as f64 / off.0.as_secs_f64(),
        working: on.0,
    }
}

async fn bench_phased(backend: &str, rounds: usize, config: Config) {
    println!(
        "{backend} (phases): {} events in {} finished runs, {APPENDERS} durable appenders, \
         prune batch {}, {rounds} rounds; load {}",
        config.events,
        config.events.div_ceil(config.per_run),
        config.batch,
        load()
    );
    let (mut ratios, mut working) = (vec![], vec![]);
    for r in 0..rounds {
        let p = phased(backend, config).await;
        println!(
            "{backend} phases round {r}: pausing {:.0} appends/s, pruning {:.0} appends/s, \
             ratio {:.3}; the prune worked {:.2} s; load {}",
            p.off,
            p.on,
            p.on / p.off,
            p.working.as_secs_f64(),
            load()
        );
        ratios.push(p.on / p.off);
        working.push(p.working.as_secs_f64());
    }
    let ratio = median(ratios);
    println!(
        "{backend} (phases): median ratio {ratio:.3} (slowdown {:.1} %), median prune working \
         time {:.2} s; bar (slowdown < 30 %) {}",
        (1.0 - ratio) * 100.0,
        median(working),
        if ratio > 0.70 { "met" } else { "NOT met" }
    );
}

fn main() {
    let config = Config {
        events: env_usize("STOWAGE_BENCH_PRUNE_EVENTS", 100_000),
        per_run: env_usize("STOWAGE_BENCH_EVENTS_PER_RUN", 100).max(1),
        window: Duration::from_millis(env_usize("STOWAGE_BENCH_WINDOW_MS", 1000) as u64),
        batch: env_usize("STOWAGE_BENCH_PRUNE_BATCH", 64),
    };
    let rounds = env_usize("STOWAGE_BENCH_ROUNDS", 5).max(1);
    let backends = std::env::var("STOWAGE_BENCH_BACKENDS").unwrap_or_else(|_| "file".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for backend in backends.split(',').map(str::trim) {
        if backend == "sqlite" && !cfg!(feature = "sqlite") {
            println!("sqlite: skipped (build with --features file,sqlite)");
            continue;
        }
        let mode = std::env::var("STOWAGE_BENCH_MODE").unwrap_or_else(|_| "both".into());
        if mode != "stores" {
            rt.block_on(bench_phased(backend, rounds, config));
        }
        if mode != "phases" {
            rt.block_on(bench(backend, rounds, config));
        }
    }
}
