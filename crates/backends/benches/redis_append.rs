//! Append throughput of the Redis backend from 50 concurrent clients,
//! compared in the same run with `redis-benchmark` running `EVALSHA` of a
//! trivial one-key script at the same concurrency against the same server.
//!
//! `cargo bench -p stowage-backends --features redis --bench redis_append`
//! (uses `STOWAGE_TEST_REDIS_URL`'s server when set, else a private one).
//! Prints both throughputs and their ratio; the issue asks for ≥ 0.5.
//! Also prints the CPU each side spent per operation — client (this
//! process, or `redis-benchmark`) and server (`INFO cpu`) — which moves
//! far less with the machine's load than the rates do.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::process::Command;
use std::time::Instant;

use serde_json::json;
use stowage_core::{Digest, NewEvent, RunMetadata};

const CLIENTS: usize = 50;
const PER_CLIENT: usize = 600;

/// CPU seconds (user + system) the server has used, from `INFO cpu`.
fn server_cpu(host: &str, port: u16) -> f64 {
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string(), "INFO", "cpu"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// CPU seconds from fields `at` and `at + 1` of a `/proc/<pid>/stat` line.
fn stat_cpu(stat: &str, at: usize) -> f64 {
    // Fields after the command name (which may hold spaces), 1-based.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(at) + ticks(at + 1)) / 100.0
}

/// CPU seconds this process has used.
fn own_cpu() -> f64 {
    stat_cpu(
        &std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat"),
        14,
    )
}

/// A phase's rate and CPU: (ops/s, client µs per op, server µs per op).
type Phase = (f64, f64, f64);

fn redis_benchmark(host: &str, port: u16) -> Phase {
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
    let ops = CLIENTS * PER_CLIENT * 4;
    let server_before = server_cpu(host, port);
    // Through a shell that then prints its own stat line, whose fields
    // 16-17 hold the CPU of the children it waited for.
    let script = format!(
        "redis-benchmark -h {host} -p {port} -c 50 -n {ops} --csv EVALSHA {sha} 1 bench:key arg \
         && echo && cat /proc/$$/stat"
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("redis-benchmark (install redis-tools / redis-server)");
    let server = server_cpu(host, port) - server_before;
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: "test","rps",… then one row per test.
    let rate = text
        .lines()
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|f| f.trim_matches('"').parse::<f64>().ok())
        .next()
        .unwrap_or_else(|| panic!("cannot parse redis-benchmark output: {text}"));
    let client = text.lines().last().map_or(0.0, |stat| stat_cpu(stat, 16));
    let per_op = |cpu: f64| cpu * 1e6 / ops as f64;
    (rate, per_op(client), per_op(server))
}

/// 50 appenders, each over a store of its own (its own connection, as
/// each `redis-benchmark` client has), or with `shared` all over one
/// store, as the tasks of one program would be (one multiplexed
/// connection, which pipelines their scripts).
async fn stowage_appends(url: &str, host: &str, port: u16, shared: bool) -> Phase {
    let mut clients: Vec<stowage_core::Stores> = Vec::new();
    for i in 0..CLIENTS {
        if shared && i > 0 {
            clients.push(clients[0].clone());
        } else {
            clients.push(stowage_backends::open(url).await.expect("open"));
        }
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
    let (server_before, client_before) = (server_cpu(host, port), own_cpu());
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
    let elapsed = start.elapsed().as_secs_f64();
    let (client, server) = (
        own_cpu() - client_before,
        server_cpu(host, port) - server_before,
    );
    let ops = (CLIENTS * PER_CLIENT) as f64;
    (ops / elapsed, client * 1e6 / ops, server * 1e6 / ops)
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
    rt.block_on(stowage_appends(&url, &host, port, false));
    let (mut ours, mut baseline, mut shared) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        baseline.push(redis_benchmark(&host, port));
        ours.push(rt.block_on(stowage_appends(&url, &host, port, false)));
        shared.push(rt.block_on(stowage_appends(&url, &host, port, true)));
    }
    let median = |v: &[Phase], pick: fn(&Phase) -> f64| {
        let mut v: Vec<f64> = v.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rates = |v: &[Phase]| v.iter().map(|p| p.0.round()).collect::<Vec<_>>();
    let (b, o) = (median(&baseline, |p| p.0), median(&ours, |p| p.0));
    println!(
        "runtime: {}",
        if threads == 0 {
            "current_thread".to_owned()
        } else {
            format!("multi_thread({threads})")
        }
    );
    println!(
        "redis-benchmark EVALSHA (trivial script), 50 clients: {:?} -> median {b:.0} ops/s",
        rates(&baseline)
    );
    println!(
        "stowage append_event, 50 clients (one run each):     {:?} -> median {o:.0} ops/s",
        rates(&ours)
    );
    println!("ratio of medians: {:.2} (target >= 0.50)", o / b);
    let sh = median(&shared, |p| p.0);
    println!(
        "stowage append_event, 50 tasks over one store:      {:?} -> median {sh:.0} ops/s (ratio {:.2})",
        rates(&shared),
        sh / b
    );
    let cpu = |v: &[Phase]| (median(v, |p| p.1), median(v, |p| p.2));
    let ((bc, bs), (oc, os), (shc, shs)) = (cpu(&baseline), cpu(&ours), cpu(&shared));
    println!("CPU per op, median (client + server): redis-benchmark {bc:.1} + {bs:.1} µs, stowage {oc:.1} + {os:.1} µs, one store {shc:.1} + {shs:.1} µs");
    println!(
        "ratio of CPU per op (baseline / stowage): {:.2} (client {:.2}, server {:.2})",
        (bc + bs) / (oc + os),
        bc / oc,
        bs / os
    );
}
