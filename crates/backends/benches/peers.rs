//! stowage's file backend against what its users would pick instead, in one
//! process, on the same disk (a temp dir under `$STOWAGE_BENCH_DIR`,
//! default the system temp dir): `std::fs` (one file per blob),
//! `object_store`'s `LocalFileSystem`, and SQLite (`rusqlite`, WAL,
//! `synchronous=FULL`).
//!
//! Every case runs `STOWAGE_BENCH_ROUNDS` (default 5) interleaved rounds —
//! stowage, then the peer, on fresh data each — and prints every round's
//! ratio and the median. Ratios are stowage ÷ peer in operations per
//! second, so > 1 means stowage is faster; for disk and memory the ratio
//! is stowage's bytes ÷ the peer's, so < 1 means stowage is smaller.
//! `STOWAGE_BENCH_CASES` (comma-separated case names) picks cases;
//! `STOWAGE_BENCH_SCALE` (default 1) multiplies the operation counts.
//!
//! `cargo bench -p stowage-backends --features file --bench peers`
//!
//! Results and their history: `docs/benchmarks-peers.md`.

mod peers_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, NewEvent, RunId, RunMetadata, Stores};

use peers_support::{
    child_rss, env_usize, file_url, median, run_parallel, sqlite_ledger, SqliteLedger,
};

/// A case: its name, a one-line description, and the function measuring
/// one round (stowage's rate or bytes, the peer's).
type Case = (&'static str, &'static str, fn(&Path, usize) -> (f64, f64));

const CASES: &[Case] = &[
    ("blob_put_4k_1", "4 KiB blob put, 1 caller, vs std::fs write + sync_all", |d, s| blob_put(d, 1, 4096, 200 * s, true)),
    ("blob_put_4k_16", "4 KiB blob put, 16 callers, vs std::fs write + sync_all", |d, s| blob_put(d, 16, 4096, 1600 * s, true)),
    ("blob_put_1m_16", "1 MiB durable blob put, 16 callers, vs std::fs write + sync_all", |d, s| blob_put(d, 16, 1 << 20, 128 * s, true)),
    ("blob_put_1m_16_buffered", "1 MiB buffered blob put, 16 callers, vs std::fs write without sync", |d, s| blob_put(d, 16, 1 << 20, 128 * s, false)),
    ("blob_get_4k_1", "4 KiB blob get, 1 caller, vs std::fs::read", |d, s| blob_get_fs(d, 1, 4096, 2000 * s)),
    ("blob_get_4k_16", "4 KiB blob get, 16 callers, vs std::fs::read", |d, s| blob_get_fs(d, 16, 4096, 4000 * s)),
    ("blob_get_1m_1", "1 MiB blob get, 1 caller, vs object_store LocalFileSystem", |d, s| blob_get_object_store(d, 1, 200 * s)),
    ("blob_get_1m_16", "1 MiB blob get, 16 callers, vs object_store LocalFileSystem", |d, s| blob_get_object_store(d, 16, 400 * s)),
    ("append_1", "run-event append, 1 caller, vs SQLite WAL synchronous=FULL", |d, s| append(d, 1, 300 * s)),
    ("append_64", "run-event append, 64 callers, vs SQLite WAL synchronous=FULL (one Mutex<Connection>, a transaction per append)", |d, s| append(d, 64, 3200 * s)),
    ("read_events", "reading 10 000 events in pages of 1 000 vs SQLite + serde_json, right after writing them", |d, s| read_events(d, 10_000 * s, false, false)),
    ("read_events_reopened", "reading 10 000 events in pages of 1 000 vs SQLite + serde_json, both reopened first (no cache in the process)", |d, s| read_events(d, 10_000 * s, true, false)),
    ("read_events_packed", "reading 10 000 events in pages of 1 000 vs SQLite + serde_json, both reopened first, stowage compacted (events read from a pack)", |d, s| read_events(d, 10_000 * s, true, true)),
    ("disk_per_event", "bytes on disk after 100 000 events vs SQLite (ratio of bytes: < 1 is smaller)", |d, s| disk(d, 100_000 * s, false)),
    ("disk_per_event_compacted", "bytes on disk after 100 000 events and lifecycle.compact() vs SQLite after its WAL checkpoint (ratio of bytes: < 1 is smaller)", |d, s| disk(d, 100_000 * s, true)),
    ("rss_reopen_1e4", "resident memory of a process that reopened 10^4 events vs SQLite (ratio of bytes)", |d, _| rss(d, 10_000)),
    ("rss_reopen_1e5", "resident memory of a process that reopened 10^5 events vs SQLite (ratio of bytes)", |d, _| rss(d, 100_000)),
    ("rss_reopen_1e6", "resident memory of a process that reopened 10^6 events vs SQLite (ratio of bytes; bar: <= 48 MiB)", |d, _| rss(d, 1_000_000)),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(dir: &Path, query: &str) -> (tokio::runtime::Runtime, Stores) {
    let rt = runtime();
    let stores = rt
        .block_on(stowage_backends::open(&file_url(dir, query)))
        .expect("open the file store");
    (rt, stores)
}

/// `size` incompressible bytes, distinct for each `(salt, i)`: a store
/// that compressed its values would gain nothing a real blob would not
/// give it (splitmix64, the same on both sides of every comparison).
fn blob(size: usize, salt: u64, i: usize) -> Bytes {
    let mut state = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
    let mut b = Vec::with_capacity(size + 8);
    while b.len() < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        b.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    b.truncate(size);
    Bytes::from(b)
}

fn blob_put(dir: &Path, callers: usize, size: usize, count: usize, durable: bool) -> (f64, f64) {
    let query = if durable {
        "durability=sync"
    } else {
        "durability=buffered"
    };
    let (rt, stores) = open(&dir.join("stowage"), query);
    let ours = rt.block_on(run_parallel(callers, count, move |i| {
        let stores = stores.clone();
        async move {
            stores.cas.put(blob(size, 1, i)).await.expect("put");
        }
    }));
    let files = Arc::new(dir.join("fs"));
    std::fs::create_dir_all(&*files).expect("peer dir");
    let peer = rt.block_on(run_parallel(callers, count, move |i| {
        let files = files.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let bytes = blob(size, 2, i);
                let path = files.join(Digest::of(&bytes).to_string());
                let mut f = std::fs::File::create(path).expect("create");
                f.write_all(&bytes).expect("write");
                if durable {
                    f.sync_all().expect("sync_all");
                }
            })
            .await
            .expect("peer task");
        }
    }));
    (ours, peer)
}

/// Stores `count` blobs in both, returns their digests / paths.
fn blob_get_fs(dir: &Path, callers: usize, size: usize, count: usize) -> (f64, f64) {
    let (rt, stores) = open(&dir.join("stowage"), "durability=buffered");
    let files = dir.join("fs");
    std::fs::create_dir_all(&files).expect("peer dir");
    let mut digests = Vec::with_capacity(count);
    for i in 0..count {
        let bytes = blob(size, 3, i);
        digests.push(rt.block_on(stores.cas.put(bytes.clone())).expect("put"));
        std::fs::write(files.join(i.to_string()), &bytes).expect("peer write");
    }
    let digests = Arc::new(digests);
    let ours = rt.block_on(run_parallel(callers, count, move |i| {
        let (stores, digests) = (stores.clone(), digests.clone());
        async move {
            let got = stores.cas.get(&digests[i]).await.expect("get");
            assert_eq!(got.len(), size);
        }
    }));
    let files = Arc::new(files);
    let peer = rt.block_on(run_parallel(callers, count, move |i| {
        let files = files.clone();
        async move {
            let got = tokio::task::spawn_blocking(move || std::fs::read(files.join(i.to_string())))
                .await
                .expect("peer task")
                .expect("read");
            assert_eq!(got.len(), size);
        }
    }));
    (ours, peer)
}

fn blob_get_object_store(dir: &Path, callers: usize, count: usize) -> (f64, f64) {
    use object_store::{local::LocalFileSystem, path::Path as ObjectPath, ObjectStoreExt};
    const SIZE: usize = 1 << 20;
    const DISTINCT: usize = 32;
    let (rt, stores) = open(&dir.join("stowage"), "durability=buffered");
    let root = dir.join("object_store");
    std::fs::create_dir_all(&root).expect("peer dir");
    let peer_store = Arc::new(LocalFileSystem::new_with_prefix(&root).expect("object_store"));
    let mut digests = Vec::new();
    for i in 0..DISTINCT {
        let bytes = blob(SIZE, 4, i);
        digests.push(rt.block_on(stores.cas.put(bytes.clone())).expect("put"));
        rt.block_on(peer_store.put(&ObjectPath::from(i.to_string()), bytes.into()))
            .expect("peer put");
    }
    let digests = Arc::new(digests);
    let ours = rt.block_on(run_parallel(callers, count, move |i| {
        let (stores, digests) = (stores.clone(), digests.clone());
        async move {
            let got = stores.cas.get(&digests[i % DISTINCT]).await.expect("get");
            assert_eq!(got.len(), SIZE);
        }
    }));
    let peer = rt.block_on(run_parallel(callers, count, move |i| {
        let store = peer_store.clone();
        async move {
            let path = ObjectPath::from((i % DISTINCT).to_string());
            let got = store
                .get(&path)
                .await
                .expect("peer get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(got.len(), SIZE);
        }
    }));
    (ours, peer)
}

fn event_payload(i: usize) -> serde_json::Value {
    json!({ "step": i, "tool": "search", "args": { "query": "weather in Lisbon", "k": 5 }, "ok": true })
}

async fn new_runs(stores: &Stores, n: usize) -> Vec<RunId> {
    let mut runs = Vec::with_capacity(n);
    for i in 0..n {
        let spec = Digest::of(&(i as u64).to_be_bytes());
        runs.push(
            stores
                .runs
                .create_run(spec, RunMetadata::new("bench"))
                .await
                .expect("run"),
        );
    }
    runs
}

fn append(dir: &Path, callers: usize, count: usize) -> (f64, f64) {
    let (rt, stores) = open(&dir.join("stowage"), "durability=sync");
    let runs = Arc::new(rt.block_on(new_runs(&stores, callers)));
    let ours = rt.block_on(run_parallel(callers, count, move |i| {
        let (stores, runs) = (stores.clone(), runs.clone());
        async move {
            let event = NewEvent::new("tool_call", event_payload(i));
            stores
                .runs
                .append_event(runs[i % runs.len()], event)
                .await
                .expect("append");
        }
    }));
    let ledger = Arc::new(sqlite_ledger(&dir.join("peer.sqlite")));
    let peer = rt.block_on(run_parallel(callers, count, move |i| {
        let ledger = ledger.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                ledger.append((i % callers) as u64, &event_payload(i))
            })
            .await
            .expect("peer task");
        }
    }));
    (ours, peer)
}

/// Reads `events` events written just before, from stowage and SQLite;
/// with `reopen`, both are reopened first, so neither process holds them
/// in a cache of its own (the OS's page cache still does).
fn read_events(dir: &Path, events: usize, reopen: bool, compact: bool) -> (f64, f64) {
    const PAGE: usize = 1000;
    const READ_PASSES: usize = 9;
    let (mut rt, mut stores) = open(&dir.join("stowage"), "durability=buffered");
    let run = rt.block_on(new_runs(&stores, 1))[0];
    let mut ledger = sqlite_ledger(&dir.join("peer.sqlite"));
    ledger.fill(0, events, event_payload);
    for i in 0..events {
        let event = NewEvent::new("tool_call", event_payload(i));
        rt.block_on(stores.runs.append_event(run, event))
            .expect("append");
    }
    if compact {
        rt.block_on(stores.lifecycle.compact()).expect("compact");
    }
    if reopen {
        rt.block_on(stores.close()).expect("close");
        (rt, stores) = open(&dir.join("stowage"), "durability=buffered");
        drop(ledger);
        ledger = sqlite_ledger(&dir.join("peer.sqlite"));
    }
    // Alternating passes, the median of each side: one pass takes
    // milliseconds, so a single one is at the mercy of the machine's load.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..READ_PASSES {
        let start = Instant::now();
        let mut after = None;
        let mut read = 0;
        loop {
            let page = rt
                .block_on(stores.runs.read_events(run, after, PAGE))
                .expect("read");
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            read += page.len();
        }
        assert_eq!(read, events);
        ours.push(events as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        assert_eq!(ledger.read_all(0, PAGE), events);
        peer.push(events as f64 / start.elapsed().as_secs_f64());
    }
    let (ours, peer) = (median(ours), median(peer));
    (ours, peer)
}

fn fill_both(dir: &Path, events: usize, compact: bool) -> (PathBuf, SqliteLedger) {
    let store = dir.join("stowage");
    let (rt, stores) = open(&store, "durability=buffered");
    let runs = rt.block_on(new_runs(&stores, 100));
    for i in 0..events {
        let event = NewEvent::new("tool_call", event_payload(i));
        rt.block_on(stores.runs.append_event(runs[i % runs.len()], event))
            .expect("append");
    }
    if compact {
        let start = Instant::now();
        rt.block_on(stores.lifecycle.compact()).expect("compact");
        println!("    compact: {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    }
    rt.block_on(stores.close()).expect("close");
    let ledger = sqlite_ledger(&dir.join("peer.sqlite"));
    for run in 0..100u64 {
        ledger.fill(run, events / 100, event_payload);
    }
    ledger.checkpoint();
    (store, ledger)
}

fn dir_bytes(path: &Path) -> u64 {
    let meta = std::fs::metadata(path).expect("metadata");
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .expect("read_dir")
        .map(|e| dir_bytes(&e.expect("dir entry").path()))
        .sum()
}

fn disk(dir: &Path, events: usize, compact: bool) -> (f64, f64) {
    let (store, ledger) = fill_both(dir, events, compact);
    let ours = dir_bytes(&store) as f64;
    let peer = ledger.bytes() as f64;
    println!(
        "    {events} events: stowage {:.0} bytes/event, SQLite {:.0} bytes/event",
        ours / events as f64,
        peer / events as f64
    );
    (ours, peer)
}

fn rss(dir: &Path, events: usize) -> (f64, f64) {
    let (store, ledger) = fill_both(dir, events, false);
    let ours = child_rss("stowage", &file_url(&store, "")) as f64;
    let peer = child_rss("sqlite", &ledger.path().display().to_string()) as f64;
    println!(
        "    {events} events: stowage {:.1} MiB, SQLite {:.1} MiB resident after reopening",
        ours / 1048576.0,
        peer / 1048576.0
    );
    (ours, peer)
}

fn main() {
    if peers_support::run_child_if_asked() {
        return;
    }
    let rounds = env_usize("STOWAGE_BENCH_ROUNDS", 5).max(1);
    let scale = env_usize("STOWAGE_BENCH_SCALE", 1).max(1);
    let only = std::env::var("STOWAGE_BENCH_CASES").ok();
    for (name, what, measure) in CASES {
        if let Some(only) = &only {
            if !only.split(',').any(|c| c == *name) {
                continue;
            }
        }
        println!("{name}: {what}");
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let dir = peers_support::temp_dir();
            let (ours, peer) = measure(dir.path(), scale);
            let ratio = ours / peer;
            println!("  round {round}: stowage {ours:.0}, peer {peer:.0}, ratio {ratio:.2}");
            ratios.push(ratio);
        }
        println!(
            "  {name}: median ratio {:.2} over {rounds} rounds",
            median(ratios)
        );
    }
}
