//! The file backend's two performance claims, measured in one run on the
//! same disk (a temp dir under `$STOWAGE_BENCH_DIR`, default the system
//! temp dir):
//!
//! 1. Group commit: 64 concurrent durable appenders (run events) versus
//!    one fsync per append, measured two ways: one appender through the
//!    same store, and a bare loop of a 200-byte `write` + `fdatasync` on a
//!    file in the same directory (no store at all: the disk's own rate).
//!    The issue asks for a ratio of at least 20. Also small blob puts, 64
//!    writers versus one.
//! 2. Fast reopen: opening after `STOWAGE_BENCH_HISTORY_MB` (default 1024)
//!    MiB of history with the checkpoint, versus replaying the whole log
//!    (the same directory before any checkpoint was written). The issue
//!    asks for at least 10×.
//!
//! Each group-commit comparison runs `STOWAGE_BENCH_ROUNDS` (default 3)
//! rounds of "one writer, then 64 writers" and prints every round's ratio
//! and the median, since the machine's load moves single numbers a lot.
//! `STOWAGE_BENCH_SINGLE` / `STOWAGE_BENCH_PER_TASK` change the number of
//! writes per writer (defaults 300 / 100); `STOWAGE_BENCH_HISTORY_MB=0`
//! skips the reopen measurement.
//!
//! `cargo bench -p stowage-backends --features file --bench file_engine`

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, NewEvent, RunMetadata, Stores};

const TASKS: usize = 64;
const PER_TASK: usize = 100;
const SINGLE: usize = 300;
const ROUNDS: usize = 3;

fn url(dir: &std::path::Path, query: &str) -> String {
    let mut u = url::Url::from_file_path(dir).expect("absolute temp dir");
    u.set_query(Some(query));
    u.to_string()
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("STOWAGE_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

async fn appends(stores: &Stores, tasks: usize, per_task: usize) -> f64 {
    let mut runs = Vec::new();
    for i in 0..tasks {
        let run = stores
            .runs
            .create_run(Digest::of(&i.to_be_bytes()), RunMetadata::new("bench"))
            .await
            .expect("create run");
        runs.push(run);
    }
    let start = Instant::now();
    let handles: Vec<_> = runs
        .into_iter()
        .map(|run| {
            let stores = stores.clone();
            tokio::spawn(async move {
                for j in 0..per_task {
                    stores
                        .runs
                        .append_event(run, NewEvent::new("step", json!({ "j": j })))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

/// The disk's own rate of durable appends: one 200-byte write and one
/// `fdatasync` per append, on a file next to the store.
async fn raw_fsync_appends(dir: std::path::PathBuf, count: usize) -> f64 {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let path = dir.join("raw-fsync-baseline");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("baseline file");
        let record = [7u8; 200];
        let start = Instant::now();
        for _ in 0..count {
            file.write_all(&record).expect("write");
            file.sync_data().expect("fdatasync");
        }
        let rate = count as f64 / start.elapsed().as_secs_f64();
        drop(file);
        std::fs::remove_file(&path).expect("remove baseline file");
        rate
    })
    .await
    .expect("baseline task")
}

async fn blob_puts(stores: &Stores, tasks: usize, per_task: usize, salt: u64) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let stores = stores.clone();
            tokio::spawn(async move {
                for j in 0..per_task {
                    let mut blob = vec![0u8; 256];
                    blob[..8].copy_from_slice(&salt.to_be_bytes());
                    blob[8..16].copy_from_slice(&(t as u64).to_be_bytes());
                    blob[16..24].copy_from_slice(&(j as u64).to_be_bytes());
                    stores.cas.put(Bytes::from(blob)).await.expect("put");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

/// One measurement round: one writer, then `TASKS` writers, on the same
/// store; returns the two rates.
async fn round<F, Fut>(run: F) -> (f64, f64)
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let one = run(1, env_usize("STOWAGE_BENCH_SINGLE", SINGLE)).await;
    let many = run(TASKS, env_usize("STOWAGE_BENCH_PER_TASK", PER_TASK)).await;
    (one, many)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn group_commit() {
    let dir = temp_dir();
    let stores = stowage_backends::open(&url(&dir.path().join("gc"), "durability=sync"))
        .await
        .expect("open");
    let rounds = env_usize("STOWAGE_BENCH_ROUNDS", ROUNDS).max(1);
    let (mut ratios, mut raw_ratios) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let single = env_usize("STOWAGE_BENCH_SINGLE", SINGLE);
        let raw = raw_fsync_appends(dir.path().to_path_buf(), single).await;
        let (one, many) = round(|tasks, per_task| appends(&stores, tasks, per_task)).await;
        println!(
            "run events, round {r}: bare write+fdatasync {raw:.0}/s, 1 appender {one:.0}/s, \
             {TASKS} concurrent appenders {many:.0}/s, ratio {:.1}x vs 1 appender, \
             {:.1}x vs bare fdatasync",
            many / one,
            many / raw
        );
        ratios.push(many / one);
        raw_ratios.push(many / raw);
    }
    println!(
        "run events: median ratio {:.1}x vs 1 appender, {:.1}x vs bare fdatasync, over {rounds} \
         rounds (the issue asks for >= 20x)",
        median(ratios),
        median(raw_ratios)
    );
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let salt = (r as u64 + 1) << 32;
        let (one, many) =
            round(|tasks, per_task| blob_puts(&stores, tasks, per_task, salt | tasks as u64)).await;
        println!(
            "blob puts, round {r}: 1 writer {one:.0}/s, {TASKS} concurrent writers {many:.0}/s, \
             ratio {:.1}x",
            many / one
        );
        ratios.push(many / one);
    }
    println!(
        "blob puts: median ratio {:.1}x over {rounds} rounds",
        median(ratios)
    );
}

async fn timed_open(url: &str) -> (Stores, Duration) {
    let start = Instant::now();
    let stores = stowage_backends::open(url).await.expect("open");
    (stores, start.elapsed())
}

async fn reopen() {
    let mib: usize = std::env::var("STOWAGE_BENCH_HISTORY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    if mib == 0 {
        return;
    }
    let dir = temp_dir();
    let store = dir.path().join("history");
    // History: blobs of 1 MiB, half of them deleted again, plus 20 small
    // run events per blob, written buffered (the fill is not measured).
    // Written with checkpoints (and so compaction) off: the log is the
    // whole history, which the replay measurement needs.
    let no_checkpoints = url(&store, "durability=buffered&checkpoint_interval=0");
    {
        let stores = stowage_backends::open(&no_checkpoints).await.expect("open");
        let run = stores
            .runs
            .create_run(Digest::of(b"history"), RunMetadata::new("bench"))
            .await
            .expect("run");
        for i in 0..mib {
            let mut blob = vec![0u8; 1 << 20];
            blob[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let d = stores.cas.put(Bytes::from(blob)).await.expect("put");
            if i % 2 == 1 {
                stores.cas.delete(&d).await.expect("delete");
            }
            for k in 0..20 {
                let event = NewEvent::new("step", json!({ "i": i, "k": k }));
                stores.runs.append_event(run, event).await.expect("append");
            }
        }
    }
    // Full replay: no checkpoint exists.
    let (stores, replay) = timed_open(&no_checkpoints).await;
    drop(stores);
    // Open once more with checkpoints on; dropping it writes the checkpoint.
    let with_checkpoints = url(&store, "durability=sync");
    drop(timed_open(&with_checkpoints).await);
    let (stores, with_checkpoint) = timed_open(&with_checkpoints).await;
    drop(stores);
    println!("reopen after {mib} MiB of history: with checkpoint {with_checkpoint:?}, full replay {replay:?}");
    println!(
        "reopen: ratio {:.1}x (the issue asks for >= 10x)",
        replay.as_secs_f64() / with_checkpoint.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(group_commit());
    rt.block_on(reopen());
}
