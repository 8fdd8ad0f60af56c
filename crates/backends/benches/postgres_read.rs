//! Read throughput of the PostgreSQL backend: one run of 10 000 events
//! read in pages of 1 000 (`read_events(run, after, 1000)`, which returns
//! `RunEvent`s with their JSON payloads parsed), compared in the same run
//! with two plain `… WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT
//! 1000` through the same driver (`tokio-postgres` 0.7 via `postgres` 0.19, one connection,
//! prepared), over tables with `PRIMARY KEY (run_id, seq)` holding the
//! same events (copied from the store's `run_events`), same server, plain
//! TCP on both sides (`sslmode=disable`):
//!
//! * **typed**: `SELECT seq, kind, ts_ms, payload::text, hash` from
//!   columns `(bigint, text, bigint, jsonb, bytea)`, each payload parsed
//!   into a `serde_json::Value`: what an application reading events with
//!   SQL gets, the same information `read_events` hands back;
//! * **bytes**: `SELECT seq, value` of the stored event bytes, not
//!   decoded: the driver's floor.
//!
//! `cargo bench -p stowage-backends --features postgres --bench postgres_read`
//! (uses `STOWAGE_TEST_POSTGRES_URL`'s server when set, else a private one).
//! Alternates rounds and compares medians; the issue asks for ≥ 0.8.
//! `POSTGRES_READ_REPEAT=N` sets the full reads per round (default 10);
//! `POSTGRES_READ_KEEP=1` keeps the schema (to look at the plans).

#[path = "../tests/support/postgres_server.rs"]
mod postgres_server;

use std::time::Instant;

use serde_json::json;
use stowage_core::{Digest, NewEvent, RunId, RunMetadata, Stores};

const EVENTS: usize = 10_000;
const PAGE: usize = 1_000;
const ROUNDS: usize = 5;

/// Fills one run with EVENTS events (16 appenders on 16 runs would be
/// quicker, but the read is of one run).
async fn fill(stores: &Stores) -> RunId {
    let run = stores
        .runs
        .create_run(Digest::of(b"read bench"), RunMetadata::new("bench"))
        .await
        .expect("create run");
    for j in 0..EVENTS {
        let payload =
            json!({"step": j, "tool": "search", "args": {"q": "weather in Paris", "n": 5}});
        stores
            .runs
            .append_event(run, NewEvent::new("tool_call", payload))
            .await
            .expect("append");
    }
    run
}

/// Events per second reading the whole run `repeat` times through stowage.
async fn stowage_reads(stores: &Stores, run: RunId, repeat: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..repeat {
        let mut after = None;
        let mut n = 0;
        loop {
            let page = stores
                .runs
                .read_events(run, after, PAGE)
                .await
                .expect("read_events");
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            n += page.len();
        }
        assert_eq!(n, EVENTS);
    }
    (EVENTS * repeat) as f64 / start.elapsed().as_secs_f64()
}

/// The same through a plain prepared `SELECT … ORDER BY seq LIMIT 1000`
/// of typed columns, each payload parsed as JSON.
fn typed_reads(client: &mut postgres::Client, schema: &str, run: RunId, repeat: usize) -> f64 {
    let select = client
        .prepare(&format!(
            "SELECT seq, kind, ts_ms, payload::text, hash FROM {schema}.bare_typed \
             WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT {PAGE}"
        ))
        .expect("prepare");
    type Event = (i64, String, i64, serde_json::Value, Vec<u8>);
    let run = run.to_string();
    let start = Instant::now();
    for _ in 0..repeat {
        let mut after = -1i64;
        let mut n = 0;
        loop {
            let rows = client.query(&select, &[&run, &after]).expect("select");
            let page: Vec<Event> = rows
                .iter()
                .map(|r| {
                    let payload: &str = r.get(3);
                    let payload = serde_json::from_str(payload).expect("json");
                    (r.get(0), r.get(1), r.get(2), payload, r.get(4))
                })
                .collect();
            let Some(last) = page.last() else { break };
            after = last.0;
            n += page.len();
        }
        assert_eq!(n, EVENTS);
    }
    (EVENTS * repeat) as f64 / start.elapsed().as_secs_f64()
}

/// The same through a plain prepared `SELECT seq, value … ORDER BY seq
/// LIMIT 1000` of the stored bytes, not decoded.
fn bytes_reads(client: &mut postgres::Client, schema: &str, run: RunId, repeat: usize) -> f64 {
    let select = client
        .prepare(&format!(
            "SELECT seq, value FROM {schema}.bare_bytes WHERE run_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT {PAGE}"
        ))
        .expect("prepare");
    let run = run.to_string();
    let start = Instant::now();
    for _ in 0..repeat {
        let mut after = -1i64;
        let mut n = 0;
        loop {
            let rows = client.query(&select, &[&run, &after]).expect("select");
            let page: Vec<(i64, Vec<u8>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let Some(last) = page.last() else { break };
            after = last.0;
            n += page.len();
        }
        assert_eq!(n, EVENTS);
    }
    (EVENTS * repeat) as f64 / start.elapsed().as_secs_f64()
}

/// The load average over the last minute (what else the machine ran).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too:
    // a short run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let repeat = if quick {
        1
    } else {
        std::env::var("POSTGRES_READ_REPEAT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
    };
    let schema = postgres_server::unique_schema("rbench");
    let base = postgres_server::base_url();
    let url = postgres_server::url(&schema, "&pool_size=4&sslmode=disable");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stores = runtime
        .block_on(stowage_backends::open(&url))
        .expect("open");
    let run = runtime.block_on(fill(&stores));
    postgres_server::exec(&format!(
        "CREATE TABLE {schema}.bare_bytes (run_id text, seq bigint, value bytea NOT NULL, \
         PRIMARY KEY (run_id, seq)); \
         INSERT INTO {schema}.bare_bytes SELECT run_id::text, seq, value FROM {schema}.run_events \
         WHERE run_id IS NOT NULL; \
         CREATE TABLE {schema}.bare_typed (run_id text, seq bigint, kind text NOT NULL, \
         ts_ms bigint NOT NULL, payload jsonb NOT NULL, hash bytea NOT NULL, \
         PRIMARY KEY (run_id, seq)); \
         INSERT INTO {schema}.bare_typed SELECT run_id::text, seq, kind, \
         (extract(epoch FROM ts) * 1000)::bigint, payload, hash FROM {schema}.run_events \
         WHERE run_id IS NOT NULL; \
         ANALYZE {schema}.bare_bytes; ANALYZE {schema}.bare_typed; ANALYZE {schema}.run_events"
    ))
    .expect("bare table");
    let mut client = postgres::Client::connect(&base, postgres::NoTls).expect("connect");
    let mut stowage = Vec::new();
    let mut typed = Vec::new();
    let mut bytes = Vec::new();
    // Alternate rounds (the machine may be shared: load drifts) and
    // compare medians; one warm-up read of each first.
    runtime.block_on(stowage_reads(&stores, run, 1));
    typed_reads(&mut client, &schema, run, 1);
    bytes_reads(&mut client, &schema, run, 1);
    let load_before = load();
    for _ in 0..ROUNDS {
        stowage.push(runtime.block_on(stowage_reads(&stores, run, repeat)));
        typed.push(typed_reads(&mut client, &schema, run, repeat));
        bytes.push(bytes_reads(&mut client, &schema, run, repeat));
    }
    let loads = format!("{load_before} → {}", load());
    runtime.block_on(stores.close()).expect("close");
    drop(client);
    if std::env::var_os("POSTGRES_READ_KEEP").is_some() {
        println!("postgres_read: kept schema {schema}");
    } else {
        postgres_server::drop_schema(&schema);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, t, b) = (median(&mut stowage), median(&mut typed), median(&mut bytes));
    println!(
        "postgres_read: {EVENTS} events in pages of {PAGE}, × {repeat}, median of {ROUNDS} \
         alternating rounds: stowage {s:.0} events/s, typed SELECT {t:.0}/s (ratio {:.2}), \
         bytes SELECT {b:.0}/s (ratio {:.2}); target ≥ 0.8 (rounds: stowage {stowage:.0?}, \
         typed {typed:.0?}, bytes {bytes:.0?}; load average {loads})",
        s / t,
        s / b
    );
}
