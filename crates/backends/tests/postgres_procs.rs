//! Races across separate OS processes on one PostgreSQL schema: each
//! child process opens its own store (its own pool and connections) and,
//! from several tasks, appends keyed events to one run, promotes one
//! release name, and races terminal transitions on shared runs. The
//! parent then checks: 32 × 50 appends gap-free with every key stored
//! once at the seq its caller was given, every promote kept (gap-free
//! history, each one at its acknowledged seq), exactly one winner per
//! racing terminal transition.
//!
//! First, every child opens (creates and migrates) a fresh schema at the
//! same moment; all of them succeed.
//!
//! A `harness = false` test: `main` is the parent; the same binary
//! re-executed with `STOWAGE_PG_RACE_CHILD=<url>` is a child. Uses
//! `STOWAGE_TEST_POSTGRES_URL` when set, else a private server that the
//! parent starts and the children share (see `support/postgres_server.rs`).

#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, NewEvent, ReleaseMetadata, RunId, RunMetadata, RunStatus, RunSummary, Stores,
};

const CHILD_ENV: &str = "STOWAGE_PG_RACE_CHILD";
const CHILDREN: usize = 4;
/// CHILDREN × TASKS = 32 appenders.
const TASKS: usize = 8;
const PER_TASK: usize = 50;
const PROMOTES: usize = 5;
const RACE_RUNS: usize = 8;
const RELEASE: &str = "race/planner";

fn main() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        match std::env::var("RACE_MODE").as_deref() {
            Ok("first_open") => first_open_child(&url),
            _ => child(&url),
        }
        return;
    }
    let fresh = postgres_server::unique_schema("procs_fresh");
    let schema = postgres_server::unique_schema("procs");
    let result = std::panic::catch_unwind(|| {
        first_opens(&postgres_server::url(&fresh, "&pool_size=2"));
        races(&postgres_server::url(&schema, "&pool_size=8"));
    });
    postgres_server::drop_schema(&fresh);
    postgres_server::drop_schema(&schema);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn spawn_children(url: &str, envs: &[(&str, String)], mode: &str) -> Vec<String> {
    let exe = std::env::current_exe().expect("own executable");
    let start_at = now_ms() + 1_500;
    let children: Vec<_> = (0..CHILDREN)
        .map(|n| {
            Command::new(&exe)
                .env(CHILD_ENV, url)
                .env("RACE_MODE", mode)
                .env("RACE_CHILD", n.to_string())
                .env("RACE_START_AT", start_at.to_string())
                .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut lines = Vec::new();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("child output");
        assert!(
            out.status.success(),
            "{mode} child {n} failed: {:?}",
            out.status
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

fn wait_for_start() {
    let start_at: u64 = std::env::var("RACE_START_AT")
        .expect("start")
        .parse()
        .expect("start");
    std::thread::sleep(Duration::from_millis(start_at.saturating_sub(now_ms())));
}

fn me() -> usize {
    std::env::var("RACE_CHILD")
        .expect("child")
        .parse()
        .expect("child")
}

/// Every child opens (creates and migrates) a fresh schema at once.
fn first_opens(url: &str) {
    spawn_children(url, &[], "first_open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stores = stowage_backends::open(url).await.expect("open");
        for n in 0..CHILDREN {
            let id = format!("first:{n}");
            let session = stores.sessions.load_session(&id).await.expect("load");
            assert!(session.is_some(), "child {n}'s session");
        }
        stores.close().await.expect("close");
    });
    println!("postgres_procs: {CHILDREN} processes opened a fresh schema at once");
}

fn first_open_child(url: &str) {
    let me = me();
    wait_for_start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stores = stowage_backends::open(url)
            .await
            .unwrap_or_else(|e| panic!("child {me} opening a fresh schema: {e:?}"));
        stores
            .sessions
            .create_session(&format!("first:{me}"), json!({"child": me}))
            .await
            .expect("session");
        stores.close().await.expect("close");
    });
}

fn races(url: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (run, racers) = runtime.block_on(async {
        let stores = stowage_backends::open(url).await.expect("open");
        let spec = Digest::of(b"race");
        let run = stores
            .runs
            .create_run(spec, RunMetadata::new("race"))
            .await
            .expect("run");
        let mut racers = Vec::new();
        for _ in 0..RACE_RUNS {
            racers.push(
                stores
                    .runs
                    .create_run(spec, RunMetadata::new("racer"))
                    .await
                    .expect("racer"),
            );
        }
        stores.close().await.expect("close");
        (run, racers)
    });
    let racer_list: Vec<String> = racers.iter().map(ToString::to_string).collect();
    let lines = spawn_children(
        url,
        &[
            ("RACE_RUN", run.to_string()),
            ("RACE_RACERS", racer_list.join(",")),
        ],
        "race",
    );
    runtime.block_on(check(url, run, &racers, &lines));
}

async fn check(url: &str, run: RunId, racers: &[RunId], lines: &[String]) {
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    let mut promotes: BTreeMap<u64, String> = BTreeMap::new();
    let mut winners: BTreeMap<RunId, Vec<String>> = BTreeMap::new();
    for line in lines {
        match line.split(' ').collect::<Vec<_>>().as_slice() {
            ["event", key, seq] => {
                let seq = seq.parse().expect("seq");
                assert!(events.insert((*key).to_owned(), seq).is_none(), "{key}");
            }
            ["promote", label, seq] => {
                let seq = seq.parse().expect("seq");
                let prev = promotes.insert(seq, (*label).to_owned());
                assert!(prev.is_none(), "release seq {seq} given twice");
            }
            ["won", racer, status] => winners
                .entry(racer.parse().expect("run id"))
                .or_default()
                .push((*status).to_owned()),
            ["lost", _] => {}
            _ => panic!("unexpected child output {line:?}"),
        }
    }
    let stores = stowage_backends::open(url).await.expect("reopen");
    let total = CHILDREN * TASKS * PER_TASK;
    assert_eq!(events.len(), total, "appends acknowledged");
    let report = stores.runs.verify_run(run).await.expect("verify_run");
    assert_eq!(report.len as usize, total, "events stored");
    let mut after = None;
    let mut seen = BTreeSet::new();
    let mut owners = Vec::new();
    loop {
        let page = stores
            .runs
            .read_events(run, after, 1000)
            .await
            .expect("read_events");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for e in page {
            assert_eq!(e.seq as usize, seen.len(), "gap-free");
            let key = e.idempotency_key.expect("keyed");
            assert_eq!(
                events.get(&key),
                Some(&e.seq),
                "{key}: the seq its caller got"
            );
            owners.push(key.split('-').next().unwrap_or_default().to_owned());
            assert!(seen.insert(key));
        }
    }
    assert_eq!(seen.len(), total);
    // The processes really raced: their appends interleave.
    let switches = owners.windows(2).filter(|w| w[0] != w[1]).count();
    println!("postgres_procs: the run's events switch process {switches} times");
    assert!(switches > CHILDREN, "the children did not interleave");

    let promoted = CHILDREN * TASKS * PROMOTES;
    assert_eq!(promotes.len(), promoted, "promotes acknowledged");
    let history = stores
        .releases
        .history(RELEASE, None, promoted + 10)
        .await
        .expect("history");
    assert_eq!(history.len(), promoted, "every promote kept");
    for record in &history {
        assert_eq!(
            promotes.get(&record.seq),
            Some(&record.metadata.version_label),
            "release seq {}",
            record.seq
        );
    }
    let seqs: BTreeSet<u64> = history.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..promoted as u64).collect(), "gap-free history");

    for racer in racers {
        let won = winners.get(racer).cloned().unwrap_or_default();
        assert_eq!(won.len(), 1, "run {racer}: winners {won:?}");
        let status = stores.runs.get_run(*racer).await.expect("racer").status;
        assert_eq!(format!("{status:?}"), won[0], "run {racer}");
    }
    stores.close().await.expect("close");
    println!(
        "postgres_procs: {CHILDREN} processes × {TASKS} tasks: {total} appends, {promoted} \
         promotes, {RACE_RUNS} terminal races checked"
    );
}

/// A child: its own store, TASKS tasks appending and promoting, then the
/// terminal races.
fn child(url: &str) {
    let me = me();
    let run: RunId = std::env::var("RACE_RUN")
        .expect("run")
        .parse()
        .expect("run");
    let racers: Vec<RunId> = std::env::var("RACE_RACERS")
        .expect("racers")
        .split(',')
        .map(|r| r.parse().expect("racer"))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let out = runtime.block_on(async move {
        let stores = stowage_backends::open(url).await.expect("child open");
        wait_for_start();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let stores = stores.clone();
                tokio::spawn(async move { work(&stores, run, me, task).await })
            })
            .collect();
        let mut out = Vec::new();
        for (i, racer) in racers.iter().enumerate() {
            let status = match (me + i) % 3 {
                0 => RunStatus::Completed,
                1 => RunStatus::Failed,
                _ => RunStatus::Cancelled,
            };
            let summary = RunSummary::new(format!("child {me}"));
            match stores.runs.finish_run(*racer, status, summary).await {
                Ok(run) => out.push(format!("won {racer} {:?}", run.status)),
                Err(e) if e.kind() == ErrorKind::Conflict => out.push(format!("lost {racer}")),
                Err(e) => panic!("child {me}: finishing {racer}: {e:?}"),
            }
        }
        for task in tasks {
            out.extend(task.await.expect("task"));
        }
        stores.close().await.expect("child close");
        out
    });
    println!("{}", out.join("\n"));
}

/// One task's keyed appends, with a promote every tenth.
async fn work(stores: &Stores, run: RunId, me: usize, task: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..PER_TASK {
        let key = format!("c{me}-t{task}-{i}");
        let event = NewEvent::new("tick", json!({"child": me, "task": task, "i": i}))
            .with_idempotency_key(key.clone());
        let e = stores
            .runs
            .append_event(run, event)
            .await
            .unwrap_or_else(|e| panic!("append {key}: {e:?}"));
        out.push(format!("event {key} {}", e.seq));
        if i % (PER_TASK / PROMOTES) == 0 {
            let label = format!("c{me}-t{task}-{i}");
            let spec = Digest::of(label.as_bytes());
            let meta = ReleaseMetadata::new(label.clone(), format!("child {me}"));
            let r = stores
                .releases
                .promote(RELEASE, spec, meta, None)
                .await
                .unwrap_or_else(|e| panic!("promote {label}: {e:?}"));
            out.push(format!("promote {label} {}", r.seq));
        }
    }
    out
}
