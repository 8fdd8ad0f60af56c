//! Append throughput of the Redis backend from 50 concurrent clients,
//! compared in the same run with `redis-benchmark` running `EVALSHA` of a
//! trivial one-key script at the same concurrency against the same server.
//!
//! `cargo bench -p stowage-backends --features redis --bench redis_append`
//! (uses `STOWAGE_TEST_REDIS_URL`'s server when set, else a private one).
//! Prints both throughputs and their ratio; the issue asks for ≥ 0.5.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use stowage_core::{Digest, NewEvent, RunMetadata};

const CLIENTS: usize = 50;
const PER_CLIENT: usize = 600;

fn redis_benchmark(host: &str, port: u16) -> f64 {
    let load = Command::new("redis-cli")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "SCRIPT",
            "LOAD",
            "return 1",
        ])
        .output()
        .expect("redis-cli");
    let sha = String::from_utf8_lossy(&load.stdout).trim().to_owned();
    let n = (CLIENTS * PER_CLIENT * 4).to_string();
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-c",
            "50",
            "-n",
            &n,
            "--csv",
        ])
        .args(["EVALSHA", &sha, "1", "bench:key", "arg"])
        .output()
        .expect("redis-benchmark (install redis-tools / redis-server)");
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: "test","rps",… then one row per test.
    text.lines()
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|f| f.trim_matches('"').parse::<f64>().ok())
        .next()
        .unwrap_or_else(|| panic!("cannot parse redis-benchmark output: {text}"))
}

async fn stowage_appends(url: &str) -> f64 {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(stowage_backends::open(url).await.expect("open"));
    }
    let mut runs = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let run = c
            .runs
            .create_run(Digest::of(&i.to_be_bytes()), RunMetadata::new("bench"))
            .await
            .expect("create run");
        runs.push(run);
    }
    let start = Instant::now();
    let tasks = clients.into_iter().zip(runs).map(|(c, run)| {
        tokio::spawn(async move {
            for j in 0..PER_CLIENT {
                c.runs
                    .append_event(run, NewEvent::new("tool_call", json!({"step": j})))
                    .await
                    .expect("append");
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.expect("task");
    }
    (CLIENTS * PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let base = redis_server::base_url();
    let parsed = url::Url::parse(&base).expect("server URL");
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed.port().unwrap_or(6379);
    let url = redis_server::with_params(
        &base,
        &format!("prefix={}", redis_server::unique_prefix("bench")),
    );
    // One client process with a single-threaded runtime, like
    // redis-benchmark's single event loop; STOWAGE_BENCH_THREADS=N uses a
    // multi-thread runtime with N workers instead.
    let threads: usize = std::env::var("STOWAGE_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    // Warm up once, then alternate the two sides and compare the medians.
    rt.block_on(stowage_appends(&url));
    let mut ours = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..3 {
        baseline.push(redis_benchmark(&host, port));
        ours.push(rt.block_on(stowage_appends(&url)));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, o) = (median(&mut baseline), median(&mut ours));
    println!(
        "runtime: {}",
        if threads == 0 {
            "current_thread".to_owned()
        } else {
            format!("multi_thread({threads})")
        }
    );
    println!("redis-benchmark EVALSHA (trivial script), 50 clients: {baseline:.0?} -> median {b:.0} ops/s");
    println!(
        "stowage append_event, 50 clients (one run each):     {ours:.0?} -> median {o:.0} ops/s"
    );
    println!("ratio of medians: {:.2} (target >= 0.50)", o / b);
}
