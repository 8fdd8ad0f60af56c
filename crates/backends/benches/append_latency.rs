//! Single-caller latency of the hot store paths on each embedded backend
//! (`memory`, `file`, `sled`; each only if its feature is on) and on
//! Redis (feature `redis`, when `STOWAGE_BENCH_REDIS_URL` names a server:
//! each store gets a fresh key prefix there), through
//! the public [`stowage_backends::open`] API only, so the same file builds
//! against older revisions and before/after runs compare like with like:
//!
//! - `append_1`: one task appending run events to one run, durable
//!   (`durability=sync`, the default), µs per append;
//! - `append_64`: 64 tasks appending to a run each, appends per second;
//! - `put_4k` / `get_4k`: one caller putting / getting 4 KiB blobs, µs;
//! - `read_events`: reading 10 000 events of one run in pages of 1 000,
//!   events per second;
//! - `append_log_64k`: one task appending log entries to one session
//!   whose data is 64 KiB of JSON, durable, µs per append;
//! - `read_log_64k`: reading that session's log in pages of 100, µs per
//!   page.
//!
//! Each line printed is `metric BACKEND/NAME VALUE UNIT`, so a driver
//! (`scripts/bench-compare.sh`) can alternate two builds and take medians.
//! `STOWAGE_BENCH_ROUNDS` (default 1) repeats everything;
//! `STOWAGE_BENCH_BACKENDS` (comma-separated) picks backends;
//! `STOWAGE_BENCH_ONLY` (comma-separated metric names) picks metrics;
//! `STOWAGE_BENCH_COUNT` overrides the single-caller operation counts;
//! `STOWAGE_BENCH_DIR` is the temp dir root.
//!
//! `cargo bench -p stowage-backends --features file,sled --bench append_latency`

use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, LogKind, NewEvent, NewLogEntry, RunId, RunMetadata, Stores};

/// Operation counts per backend: (append_1, append_64 per task, blobs).
fn counts(backend: &str) -> (usize, usize, usize) {
    match backend {
        "memory" => (20_000, 200, 20_000),
        "sled" => (3_000, 50, 3_000),
        "redis" => (3_000, 100, 3_000),
        _ => (400, 40, 400),
    }
}

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

fn url(backend: &str, dir: &std::path::Path, query: &str) -> String {
    if backend == "memory" {
        return "memory://".to_owned();
    }
    if backend == "redis" {
        let base = std::env::var("STOWAGE_BENCH_REDIS_URL").expect("STOWAGE_BENCH_REDIS_URL");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let sep = if base.contains('?') { '&' } else { '?' };
        return format!("{base}{sep}prefix=bench-{}-{nanos}", std::process::id());
    }
    let mut u = url::Url::from_file_path(dir).expect("absolute temp dir");
    if !query.is_empty() {
        u.set_query(Some(query));
    }
    // `file:///abs/dir?…` → `sled:///abs/dir?…` (the url crate will not
    // turn a special scheme into another).
    let u = u.to_string();
    format!("{backend}{}", u.strip_prefix("file").expect("a file URL"))
}

fn payload(i: usize) -> serde_json::Value {
    json!({ "step": i, "tool": "search", "args": { "query": "weather in Lisbon", "k": 5 }, "ok": true })
}

async fn new_runs(stores: &Stores, n: usize, salt: u64) -> Vec<RunId> {
    let mut runs = Vec::with_capacity(n);
    for i in 0..n {
        let spec = Digest::of(&[salt.to_be_bytes(), (i as u64).to_be_bytes()].concat());
        let run = stores.runs.create_run(spec, RunMetadata::new("bench"));
        runs.push(run.await.expect("create run"));
    }
    runs
}

async fn append_1(stores: &Stores, count: usize) -> f64 {
    let run = new_runs(stores, 1, 1).await[0];
    let start = Instant::now();
    for i in 0..count {
        let event = NewEvent::new("tool_call", payload(i));
        stores.runs.append_event(run, event).await.expect("append");
    }
    start.elapsed().as_secs_f64() * 1e6 / count as f64
}

async fn append_64(stores: &Stores, per_task: usize) -> f64 {
    let runs = new_runs(stores, 64, 2).await;
    let start = Instant::now();
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|run| {
            let stores = stores.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let event = NewEvent::new("tool_call", payload(i));
                    stores.runs.append_event(run, event).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (64 * per_task) as f64 / start.elapsed().as_secs_f64()
}

fn blob(salt: u64, i: usize) -> Bytes {
    let mut b = vec![0x5a; 4096];
    b[..8].copy_from_slice(&salt.to_be_bytes());
    b[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    Bytes::from(b)
}

/// Returns (put µs, get µs) for `count` distinct 4 KiB blobs.
async fn blobs_4k(stores: &Stores, count: usize) -> (f64, f64) {
    let mut digests = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        digests.push(stores.cas.put(blob(3, i)).await.expect("put"));
    }
    let put = start.elapsed().as_secs_f64() * 1e6 / count as f64;
    let start = Instant::now();
    for d in &digests {
        let got = stores.cas.get(d).await.expect("get");
        assert_eq!(got.len(), 4096);
    }
    let get = start.elapsed().as_secs_f64() * 1e6 / count as f64;
    (put, get)
}

async fn read_events(stores: &Stores) -> f64 {
    const EVENTS: usize = 10_000;
    const PAGE: usize = 1_000;
    let run = new_runs(stores, 1, 4).await[0];
    for i in 0..EVENTS {
        let event = NewEvent::new("tool_call", payload(i));
        stores.runs.append_event(run, event).await.expect("append");
    }
    let start = Instant::now();
    let (mut after, mut read) = (None, 0);
    loop {
        let page = stores.runs.read_events(run, after, PAGE).await;
        let page = page.expect("read");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        read += page.len();
    }
    assert_eq!(read, EVENTS);
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

/// µs per `append_log` to a session holding 64 KiB of data.
async fn append_log_64k(stores: &Stores, count: usize) -> f64 {
    let data = json!({ "notes": "n".repeat(64 * 1024) });
    stores
        .sessions
        .create_session("bench", data)
        .await
        .expect("create session");
    let start = Instant::now();
    for i in 0..count {
        let entry = NewLogEntry::new(LogKind::Incoming, "user", "chat", format!("message {i}"));
        stores
            .sessions
            .append_log("bench", entry)
            .await
            .expect("append_log");
    }
    start.elapsed().as_secs_f64() * 1e6 / count as f64
}

/// µs per page of 100 entries of the log `append_log_64k` wrote, read
/// from the start again and again until `pages` pages were read.
async fn read_log_64k(stores: &Stores, pages: usize) -> f64 {
    let start = Instant::now();
    let mut after = None;
    for _ in 0..pages {
        let page = stores.sessions.read_log("bench", after, 100).await;
        let page = page.expect("read_log");
        after = page.last().map(|e| e.seq);
    }
    start.elapsed().as_secs_f64() * 1e6 / pages as f64
}

/// Whether `STOWAGE_BENCH_ONLY` (comma-separated metric names) picks `name`.
fn picked(name: &str) -> bool {
    std::env::var("STOWAGE_BENCH_ONLY")
        .map(|only| only.split(',').any(|m| m == name))
        .unwrap_or(true)
}

async fn backend_round(backend: &str) {
    let (mut n_append, per_task, mut n_blobs) = counts(backend);
    // `STOWAGE_BENCH_COUNT` overrides the single-caller counts (say, to
    // take instruction counts of N and 2N operations under callgrind).
    if let Some(n) = std::env::var("STOWAGE_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        (n_append, n_blobs) = (n, n);
    }
    let dir = temp_dir();
    // Durable stores for the write latencies.
    let stores = stowage_backends::open(&url(backend, &dir.path().join("sync"), ""))
        .await
        .expect("open");
    if picked("append_1") {
        let a1 = append_1(&stores, n_append).await;
        println!("metric {backend}/append_1 {a1:.2} us");
    }
    if picked("append_64") {
        let a64 = append_64(&stores, per_task).await;
        println!("metric {backend}/append_64 {a64:.0} per_s");
    }
    if picked("put_4k") || picked("get_4k") {
        let (put, get) = blobs_4k(&stores, n_blobs).await;
        println!("metric {backend}/put_4k {put:.2} us");
        println!("metric {backend}/get_4k {get:.2} us");
    }
    if picked("append_log_64k") {
        let us = append_log_64k(&stores, n_append).await;
        println!("metric {backend}/append_log_64k {us:.2} us");
        if picked("read_log_64k") {
            let us = read_log_64k(&stores, n_append).await;
            println!("metric {backend}/read_log_64k {us:.2} us");
        }
    }
    stores.close().await.expect("close");
    if !picked("read_events") {
        return;
    }
    // The read path on a buffered store (the fill is not measured).
    // (sled takes only `durability=sync`.)
    let query = if backend == "file" {
        "durability=buffered"
    } else {
        ""
    };
    let stores = stowage_backends::open(&url(backend, &dir.path().join("buffered"), query))
        .await
        .expect("open");
    let rate = read_events(&stores).await;
    println!("metric {backend}/read_events {rate:.0} per_s");
    stores.close().await.expect("close");
}

fn main() {
    let only = std::env::var("STOWAGE_BENCH_BACKENDS").ok();
    let compiled = [
        ("memory", cfg!(feature = "memory")),
        ("file", cfg!(feature = "file")),
        ("sled", cfg!(feature = "sled")),
        (
            "redis",
            cfg!(feature = "redis") && std::env::var_os("STOWAGE_BENCH_REDIS_URL").is_some(),
        ),
    ];
    let picked: Vec<&str> = compiled
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(b, _)| b)
        .filter(|b| only.as_ref().is_none_or(|o| o.split(',').any(|x| x == *b)))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for _ in 0..env_usize("STOWAGE_BENCH_ROUNDS", 1).max(1) {
        for backend in &picked {
            rt.block_on(backend_round(backend));
        }
    }
}
