//! Append throughput of the PostgreSQL backend from 64 concurrent
//! appenders (one store, `pool_size=64`, each appender on its own run),
//! compared in the same run with a bare `BEGIN; INSERT …; COMMIT` per
//! append (a prepared `INSERT` of a 160-byte value into a `(key bytea
//! PRIMARY KEY, value bytea)` table) from 64 threads, each with its own
//! connection of the same driver (`tokio-postgres` 0.7, through `postgres`
//! 0.19: the sync wrapper the store's own `client.rs` mirrors), against the same
//! server, plain TCP on both sides (`sslmode=disable`; the default
//! `prefer` would encrypt where the server offers TLS).
//!
//! `cargo bench -p stowage-backends --features postgres --bench postgres_append`
//! (uses `STOWAGE_TEST_POSTGRES_URL`'s server when set, else a private one
//! with `fsync=off`). Prints both throughputs and their ratio; the issue
//! asks for ≥ 0.7. `POSTGRES_APPEND_PER=N` sets the appends per appender
//! (default 200), `POSTGRES_APPEND_APPENDERS=N` the appenders (default 64); `POSTGRES_APPEND_OPTIONS=&readable_columns=false` adds
//! URL options to the store's; `POSTGRES_APPEND_ONLY=stowage|bare` runs
//! one side (for profiles). Also prints the CPU time per append of the
//! client and of the server processes of each side's connections (from
//! `/proc`, so the load of other processes does not count; 0 when the
//! server runs on another host), and its ratio.

#[path = "../tests/support/postgres_server.rs"]
mod postgres_server;

use std::sync::Barrier;
use std::time::Instant;

use serde_json::json;
use stowage_core::{Digest, NewEvent, RunMetadata};

/// Concurrent appenders on each side (`POSTGRES_APPEND_APPENDERS`,
/// default 64; 1 measures a lone appender's latency).
fn appenders() -> usize {
    std::env::var("POSTGRES_APPEND_APPENDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(64)
}
const ROUNDS: usize = 3;

fn per_appender() -> usize {
    std::env::var("POSTGRES_APPEND_PER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// CPU seconds (user + system) of the processes `pids` so far, from
/// `/proc` (0 for those it cannot read: a server on another host). The
/// sum comes from `/proc/PID/stat` (whole ticks, threads that ended
/// included) for this process and from `/proc/PID/schedstat` (nanoseconds
/// on a CPU) for the server's single-threaded processes: a server process
/// of a short round runs for a few ticks only, so whole ticks would round
/// off much of it.
fn cpu_of(pids: &[String]) -> f64 {
    pids.iter()
        .filter_map(|pid| {
            if pid != "self" {
                let sched = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
                let ns: f64 = sched.split(' ').next()?.parse().ok()?;
                return Some(ns / 1e9);
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may hold spaces).
            let rest = stat.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split(' ').collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .sum()
}

/// The load average over the last minute (what else the machine ran).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// The server processes serving `application_name = app`.
fn backends(base: &str, app: &str) -> Vec<String> {
    let sql = format!(
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = '{app}'"
    );
    postgres_server::query_text_at(base, &sql)
        .ok()
        .flatten()
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Appends/s, and CPU µs per append of the client and of its server
/// processes.
type Measured = (f64, f64, f64);

async fn stowage_appends(url: &str, base: &str, app: &str, per: usize, round: usize) -> Measured {
    let appenders = appenders();
    let stores = stowage_backends::open(url).await.expect("open");
    let mut runs = Vec::new();
    for i in 0..appenders {
        runs.push(
            stores
                .runs
                .create_run(
                    Digest::of(format!("{round}:{i}").as_bytes()),
                    RunMetadata::new("bench"),
                )
                .await
                .expect("create run"),
        );
    }
    // Warm the read pool (the writers connect when first needed).
    let warm: Vec<_> = runs
        .iter()
        .map(|run| {
            let (s, run) = (stores.clone(), *run);
            tokio::spawn(async move { s.runs.get_run(run).await.expect("get") })
        })
        .collect();
    for w in warm {
        w.await.expect("warm");
    }
    let pids = backends(base, app);
    let (client0, server0) = (cpu_of(&["self".to_owned()]), cpu_of(&pids));
    let start = Instant::now();
    let tasks: Vec<_> = runs
        .into_iter()
        .map(|run| {
            let s = stores.clone();
            tokio::spawn(async move {
                for j in 0..per {
                    s.runs
                        .append_event(run, NewEvent::new("tool_call", json!({"step": j})))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let rate = (appenders * per) as f64 / start.elapsed().as_secs_f64();
    // Writers connect when first needed: server processes that appeared
    // during the round count with all their CPU time.
    let (client1, server1) = (cpu_of(&["self".to_owned()]), cpu_of(&backends(base, app)));
    stores.close().await.expect("close");
    let n = (appenders * per) as f64 / 1e6;
    (rate, (client1 - client0) / n, (server1 - server0) / n)
}

fn bare_inserts(base: &str, schema: &str, per: usize, round: usize) -> Measured {
    let app = format!("bare:{schema}");
    let mut config: postgres::Config = base.parse().expect("base URL");
    config.application_name(&app);
    let mut setup = postgres::Client::connect(base, postgres::NoTls).expect("connect");
    setup
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.bare (key bytea PRIMARY KEY, value bytea NOT NULL)"
        ))
        .expect("create the bare table");
    let appenders = appenders();
    let barrier = Barrier::new(appenders + 1);
    let value = vec![7u8; 160];
    let config = &config;
    let (elapsed, cpu) = std::thread::scope(|scope| {
        for t in 0..appenders {
            let (barrier, value) = (&barrier, &value);
            scope.spawn(move || {
                let mut c = config.connect(postgres::NoTls).expect("connect");
                let insert = c
                    .prepare(&format!(
                        "INSERT INTO {schema}.bare (key, value) VALUES ($1, $2)"
                    ))
                    .expect("prepare");
                barrier.wait();
                for j in 0..per {
                    let key = format!("{round}:{t}:{j}").into_bytes();
                    c.batch_execute("BEGIN").expect("begin");
                    c.execute(&insert, &[&key, value]).expect("insert");
                    c.batch_execute("COMMIT").expect("commit");
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let pids = backends(base, &app);
        let (client0, server0) = (cpu_of(&["self".to_owned()]), cpu_of(&pids));
        let start = Instant::now();
        barrier.wait();
        let elapsed = start.elapsed();
        let (client1, server1) = (cpu_of(&["self".to_owned()]), cpu_of(&pids));
        (elapsed, (client1 - client0, server1 - server0))
    });
    let n = (appenders * per) as f64 / 1e6;
    (
        (appenders * per) as f64 / elapsed.as_secs_f64(),
        cpu.0 / n,
        cpu.1 / n,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too:
    // a short run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let per = if quick { 5 } else { per_appender() };
    let schema = postgres_server::unique_schema("bench");
    let base = postgres_server::base_url();
    // `POSTGRES_APPEND_OPTIONS=&readable_columns=false` adds URL options.
    let extra = std::env::var("POSTGRES_APPEND_OPTIONS").unwrap_or_default();
    let url = postgres_server::url(&schema, &format!("&pool_size=64&sslmode=disable{extra}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Alternate rounds (the machine may be shared: load drifts) and
    // compare medians.
    let mut stowage = Vec::new();
    let mut bare = Vec::new();
    // `POSTGRES_APPEND_ONLY=stowage|bare` runs one side (for profiles).
    let only = std::env::var("POSTGRES_APPEND_ONLY").unwrap_or_default();
    // The schema the bare table goes in.
    runtime
        .block_on(async { stowage_backends::open(&url).await?.close().await })
        .expect("create the schema");
    let app = format!("stowage:{schema}");
    let load_before = load();
    for round in 0..ROUNDS {
        if only != "bare" {
            stowage.push(runtime.block_on(stowage_appends(&url, &base, &app, per, round)));
        }
        if only != "stowage" {
            bare.push(bare_inserts(&base, &schema, per, round));
        }
    }
    let loads = format!("{load_before} → {}", load());
    postgres_server::drop_schema(&schema);
    let median = |v: &[Measured], pick: fn(&Measured) -> f64| {
        let mut v: Vec<f64> = v.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let [s, sc, ss] = [|m: &Measured| m.0, |m: &Measured| m.1, |m: &Measured| m.2]
        .map(|pick| median(&stowage, pick));
    let [b, bc, bs] = [|m: &Measured| m.0, |m: &Measured| m.1, |m: &Measured| m.2]
        .map(|pick| median(&bare, pick));
    let rates = |v: &[Measured]| v.iter().map(|m| m.0.round()).collect::<Vec<_>>();
    println!(
        "postgres_append: {} appenders × {per}, median of {ROUNDS} alternating rounds: \
         stowage {s:.0} appends/s, bare BEGIN+INSERT+COMMIT {b:.0}/s, ratio {:.2} \
         (target ≥ 0.7; rounds: stowage {:?}, bare {:?}; load average {loads})",
        appenders(),
        s / b,
        rates(&stowage),
        rates(&bare)
    );
    // CPU per append from /proc (the load of other processes does not
    // count): this process (client) and the server processes of each
    // side's connections (0 when the server is on another host).
    println!(
        "postgres_append: CPU µs per append: stowage client {sc:.0} + server {ss:.0} = {:.0}, \
         bare client {bc:.0} + server {bs:.0} = {:.0}, ratio {:.2}",
        sc + ss,
        bc + bs,
        (bc + bs) / (sc + ss)
    );
}
