//! Races across two independent PostgreSQL engines (separate pools, as two
//! processes would have) on one schema, migrations racing and refusing,
//! the readable columns, and what an unreachable server means.
//!
//! Uses `STOWAGE_TEST_POSTGRES_URL` when set, else a private server (see
//! `support/postgres_server.rs`). Each test drops only its own schema.
#![cfg(feature = "postgres")]

#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use stowage_backends::postgres::SCHEMA_VERSION;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, RunMetadata, RunStatus, RunSummary, Stores,
};

const TASKS: usize = 32;
const PER_TASK: usize = 50;
const RACE_RUNS: usize = 8;

/// A schema dropped when the guard goes away.
struct Schema(String);

impl Schema {
    fn new(tag: &str) -> Schema {
        Schema(postgres_server::unique_schema(tag))
    }

    fn url(&self, extra: &str) -> String {
        postgres_server::url(&self.0, extra)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        postgres_server::drop_schema(&self.0);
    }
}

async fn open(url: &str) -> Stores {
    stowage_backends::open(url).await.expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_from_two_engines_are_gap_free() {
    let schema = Schema::new("appends");
    let a = open(&schema.url("&pool_size=8")).await;
    let b = open(&schema.url("&pool_size=8")).await;
    let run = a
        .runs
        .create_run(Digest::of(b"race"), RunMetadata::new("race"))
        .await
        .expect("run");
    let session = "race:session";
    a.sessions
        .create_session(session, json!({}))
        .await
        .expect("session");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let stores = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..PER_TASK {
                let key = format!("t{task}-{i}");
                let mut event = NewEvent::new("tick", json!({"task": task, "i": i}));
                event.idempotency_key = Some(key.clone());
                let e = stores.runs.append_event(run, event).await.expect("append");
                let mut entry = NewLogEntry::new(LogKind::Incoming, "racer", "msg", key.clone());
                entry.idempotency_key = Some(key.clone());
                let l = stores
                    .sessions
                    .append_log(session, entry)
                    .await
                    .expect("append_log");
                answers.push((key, e.seq, l.seq));
            }
            answers
        }));
    }
    let mut given: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for task in tasks {
        for (key, e, l) in task.await.expect("task") {
            assert!(given.insert(key, (e, l)).is_none());
        }
    }
    let total = TASKS * PER_TASK;
    let report = b.runs.verify_run(run).await.expect("verify_run");
    assert_eq!(report.len as usize, total);
    let report = a.sessions.verify_log(session).await.expect("verify_log");
    assert_eq!(report.len as usize, total);
    let mut after = None;
    let mut seen = BTreeSet::new();
    let mut next = 0;
    loop {
        let page = b.runs.read_events(run, after, 500).await.expect("read");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for e in page {
            assert_eq!(e.seq, next, "gap-free");
            next += 1;
            let key = e.idempotency_key.expect("key");
            assert_eq!(given[&key].0, e.seq, "the seq the caller was given");
            assert!(seen.insert(key));
        }
    }
    assert_eq!(seen.len(), total);
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_terminal_transitions_have_one_winner() {
    let schema = Schema::new("terminal");
    let a = open(&schema.url("&pool_size=8")).await;
    let b = open(&schema.url("&pool_size=8")).await;
    let mut runs = Vec::new();
    for _ in 0..RACE_RUNS {
        runs.push(
            a.runs
                .create_run(Digest::of(b"t"), RunMetadata::new("racer"))
                .await
                .expect("run"),
        );
    }
    let mut tasks = Vec::new();
    for racer in 0..8 {
        let stores = if racer % 2 == 0 { a.clone() } else { b.clone() };
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for (i, run) in runs.iter().enumerate() {
                let status = match (racer + i) % 3 {
                    0 => RunStatus::Completed,
                    1 => RunStatus::Failed,
                    _ => RunStatus::Cancelled,
                };
                let summary = RunSummary::new(format!("racer {racer}"));
                match stores.runs.finish_run(*run, status, summary).await {
                    Ok(r) => won.push((*run, r.status)),
                    Err(e) if e.kind() == ErrorKind::Conflict => {}
                    Err(e) => panic!("finish_run: {e:?}"),
                }
            }
            won
        }));
    }
    let mut winners: BTreeMap<_, Vec<RunStatus>> = BTreeMap::new();
    for task in tasks {
        for (run, status) in task.await.expect("task") {
            winners.entry(run).or_default().push(status);
        }
    }
    for run in &runs {
        let won = winners.get(run).cloned().unwrap_or_default();
        assert_eq!(won.len(), 1, "run {run}: winners {won:?}");
        assert_eq!(b.runs.get_run(*run).await.expect("get").status, won[0]);
    }
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn engines_opening_a_fresh_schema_at_once_all_succeed() {
    let schema = Schema::new("fresh");
    let url = schema.url("&pool_size=2");
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { stowage_backends::open(&url).await })
        })
        .collect();
    let mut all = Vec::new();
    for (n, open) in opens.into_iter().enumerate() {
        let stores = open.await.expect("task").expect("open");
        let id = format!("first:{n}");
        stores
            .sessions
            .create_session(&id, json!({"n": n}))
            .await
            .expect("session");
        all.push(stores);
    }
    let version =
        postgres_server::query_text(&format!("SELECT version FROM {}.schema_version", schema.0))
            .expect("version");
    assert_eq!(version, Some(SCHEMA_VERSION.to_string()));
    for stores in all {
        stores.close().await.expect("close");
    }
}

#[tokio::test]
async fn a_schema_of_a_newer_version_is_refused() {
    let schema = Schema::new("newer");
    let stores = open(&schema.url("")).await;
    stores.close().await.expect("close");
    postgres_server::exec(&format!(
        "UPDATE {}.schema_version SET version = {}",
        schema.0,
        SCHEMA_VERSION + 1
    ))
    .expect("bump the version");
    let err = stowage_backends::open(&schema.url(""))
        .await
        .expect_err("a newer schema opened");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("newer stowage"), "{err}");
}

/// A schema an older stowage wrote: no version recorded yet (version 0)
/// and a table that did not exist then. Opening upgrades it in place:
/// the version is recorded, the table created, the data kept.
#[tokio::test]
async fn a_schema_of_an_older_version_is_upgraded() {
    let schema = Schema::new("older");
    let stores = open(&schema.url("")).await;
    let run = stores
        .runs
        .create_run(Digest::of(b"old"), RunMetadata::new("old"))
        .await
        .expect("run");
    for i in 0..3 {
        stores
            .runs
            .append_event(run, NewEvent::new("tick", json!({ "i": i })))
            .await
            .expect("append");
    }
    stores.close().await.expect("close");
    postgres_server::exec(&format!(
        "DELETE FROM {s}.schema_version; DROP TABLE {s}.supersessions_by_agent",
        s = schema.0
    ))
    .expect("make the schema old");
    let version = |s: &Schema| {
        postgres_server::query_text(&format!(
            "SELECT coalesce((SELECT version FROM {}.schema_version), 0)",
            s.0
        ))
        .expect("version")
    };
    assert_eq!(version(&schema).as_deref(), Some("0"));
    let stores = open(&schema.url("")).await;
    assert_eq!(version(&schema), Some(SCHEMA_VERSION.to_string()));
    let table = postgres_server::query_text(&format!(
        "SELECT to_regclass('{}.supersessions_by_agent') IS NOT NULL",
        schema.0
    ))
    .expect("table");
    assert_eq!(table.as_deref(), Some("t"), "the missing table was created");
    assert_eq!(stores.runs.verify_run(run).await.expect("verify").len, 3);
    let e = stores
        .runs
        .append_event(run, NewEvent::new("tick", json!({ "i": 3 })))
        .await
        .expect("append after the upgrade");
    assert_eq!(e.seq, 3);
    stores.close().await.expect("close");
}

/// A version-1 schema (before session heads): migration 2 adds the
/// table, and its sessions go on from what their records say.
#[tokio::test]
async fn a_version_1_schema_gets_session_heads() {
    let schema = Schema::new("v1");
    let stores = open(&schema.url("")).await;
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .expect("session");
    stores.close().await.expect("close");
    postgres_server::exec(&format!(
        "UPDATE {s}.schema_version SET version = 1; DROP TABLE {s}.session_heads",
        s = schema.0
    ))
    .expect("make the schema version 1");
    let stores = open(&schema.url("")).await;
    let version =
        postgres_server::query_text(&format!("SELECT version FROM {}.schema_version", schema.0))
            .expect("version");
    assert_eq!(version, Some(SCHEMA_VERSION.to_string()));
    for n in 0..2u64 {
        let entry = stores
            .sessions
            .append_log("s", NewLogEntry::new(LogKind::Incoming, "u", "t", "m"))
            .await
            .expect("append after the upgrade");
        assert_eq!(entry.seq, n);
    }
    assert_eq!(
        stores.sessions.verify_log("s").await.expect("verify").len,
        2
    );
    stores.close().await.expect("close");
}

#[tokio::test]
async fn readable_columns_are_filled() {
    let schema = Schema::new("readable");
    let stores = open(&schema.url("")).await;
    let run = stores
        .runs
        .create_run(Digest::of(b"r"), RunMetadata::new("reader"))
        .await
        .expect("run");
    stores
        .runs
        .append_event(run, NewEvent::new("tool_call", json!({"tool": "grep"})))
        .await
        .expect("append");
    let s = &schema.0;
    let row = postgres_server::query_text(&format!(
        "SELECT run_id::text || ' ' || seq || ' ' || kind || ' ' || (payload->>'tool') \
         || ' ' || (ts IS NOT NULL) || ' ' || length(hash) FROM {s}.run_events"
    ))
    .expect("query");
    assert_eq!(row, Some(format!("{run} 0 tool_call grep true 32")));
    let agent = postgres_server::query_text(&format!(
        "SELECT record->'metadata'->>'agent_name' FROM {s}.runs WHERE record IS NOT NULL LIMIT 1"
    ))
    .expect("query");
    assert_eq!(agent.as_deref(), Some("reader"));
    stores.close().await.expect("close");

    // Turned off, they stay NULL.
    let off = Schema::new("unreadable");
    let stores = open(&off.url("&readable_columns=false")).await;
    let run = stores
        .runs
        .create_run(Digest::of(b"r"), RunMetadata::new("reader"))
        .await
        .expect("run");
    stores
        .runs
        .append_event(run, NewEvent::new("tool_call", json!({})))
        .await
        .expect("append");
    let s = &off.0;
    let nulls = postgres_server::query_text(&format!(
        "SELECT (SELECT count(*) FROM {s}.run_events WHERE kind IS NULL) || ' ' || \
         (SELECT count(*) FROM {s}.runs WHERE record IS NULL)"
    ))
    .expect("query");
    assert_eq!(nulls.as_deref(), Some("1 1"));
    stores.close().await.expect("close");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/x?connect_timeout_ms=2000");
    let err = stowage_backends::open(&url).await.expect_err("opened");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
}

#[tokio::test]
async fn connections_the_server_closed_are_replaced() {
    let schema = Schema::new("restart");
    let stores = open(&schema.url("&pool_size=1")).await;
    let run = stores
        .runs
        .create_run(Digest::of(b"r"), RunMetadata::new("restart"))
        .await
        .expect("run");
    // Only this test's connections: application_name is `stowage:SCHEMA`.
    let kill = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'stowage:{}'",
        schema.0
    );
    let killed = postgres_server::query_text(&kill).expect("terminate");
    assert_eq!(
        killed.as_deref(),
        Some("t"),
        "the pooled connection was found"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    stores
        .runs
        .get_run(run)
        .await
        .expect("a read after the kill");
    postgres_server::query_text(&kill).expect("terminate");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let e = stores
        .runs
        .append_event(run, NewEvent::new("tick", json!({})))
        .await
        .expect("an append after the kill");
    assert_eq!(e.seq, 0);
    stores.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_grouped_with_failing_ones_still_land_and_failures_apply_nothing() {
    // Many appenders on few writer connections: their jobs share
    // transactions, and appends to finished runs fail inside them.
    let schema = Schema::new("grouped");
    let stores = open(&schema.url("&pool_size=4")).await;
    let mut runs = Vec::new();
    for n in 0..16 {
        let run = stores
            .runs
            .create_run(Digest::of(b"g"), RunMetadata::new(format!("g{n}")))
            .await
            .expect("run");
        if n % 2 == 1 {
            stores
                .runs
                .finish_run(run, RunStatus::Completed, RunSummary::new("done"))
                .await
                .expect("finish");
        }
        runs.push(run);
    }
    let refused = stores
        .runs
        .append_event(runs[1], NewEvent::new("late", json!({})))
        .await
        .expect_err("finished")
        .kind();
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let (stores, run) = (stores.clone(), runs[task % runs.len()]);
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0..20 {
                    let event = NewEvent::new("tick", json!({"task": task, "i": i}));
                    results.push(stores.runs.append_event(run, event).await.map(|e| e.seq));
                }
                (task % 2 == 1, results)
            })
        })
        .collect();
    for task in tasks {
        let (finished, results) = task.await.expect("task");
        for result in results {
            match (finished, result) {
                (false, Ok(_)) => {}
                (true, Err(e)) => assert_eq!(e.kind(), refused, "{e:?}"),
                (finished, other) => panic!("finished={finished}: {other:?}"),
            }
        }
    }
    for (n, run) in runs.iter().enumerate() {
        let events = stores
            .runs
            .read_events(*run, None, 1000)
            .await
            .expect("read");
        let expected = if n % 2 == 1 { 0 } else { 4 * 20 };
        assert_eq!(events.len(), expected, "run {n}");
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.seq, i as u64, "gap-free");
        }
        stores.runs.verify_run(*run).await.expect("verify");
    }
    stores.close().await.expect("close");
}
