//! Several processes race on one SQLite file: each child process opens
//! its own store (its own engine, writer thread and connections) and
//! appends to the same run and the same session log from several tasks,
//! with idempotency keys of its own and keys every child shares (same
//! content), retries its keyed appends, and races terminal transitions
//! on shared runs. The parent then checks: seqs gap-free, the chains
//! verify, every key stored exactly once with the seq every caller was
//! given, and exactly one winner per racing terminal transition.
//!
//! First, every child opens a file that does not exist yet at the same
//! moment (creation, WAL switch and schema creation race).
//!
//! A `harness = false` test: `main` is the parent; the same binary
//! re-executed with `STOWAGE_SQLITE_RACE_CHILD=<url>` is a child.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, RunId, RunMetadata, RunStatus, RunSummary,
    Stores,
};

const CHILD_ENV: &str = "STOWAGE_SQLITE_RACE_CHILD";
const CHILDREN: usize = 6;
const TASKS: usize = 4;
const PER_TASK: usize = 25;
/// Keys every child appends with the same content.
const SHARED_KEYS: usize = 10;
const RACE_RUNS: usize = 8;
/// Each task's pause between two keyed appends.
const PACE: Duration = Duration::from_millis(2);

fn main() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        match std::env::var("RACE_MODE").as_deref() {
            Ok("first_open") => first_open_child(&url),
            _ => child(&url),
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    first_opens(&format!("sqlite://{}/fresh.db", dir.path().display()));
    let url = format!("sqlite://{}/race.db", dir.path().display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let (run, session, racers) = runtime.block_on(setup(&url));
    // Late enough that every child has opened the store before it.
    let start_at = now_ms() + 4_000;
    let exe = std::env::current_exe().expect("own executable");
    let racer_list: Vec<String> = racers.iter().map(|r| r.to_string()).collect();
    let children: Vec<_> = (0..CHILDREN)
        .map(|n| {
            Command::new(&exe)
                .env(CHILD_ENV, &url)
                .env("RACE_CHILD", n.to_string())
                .env("RACE_RUN", run.to_string())
                .env("RACE_SESSION", &session)
                .env("RACE_RACERS", racer_list.join(","))
                .env("RACE_START_AT", start_at.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut lines = Vec::new();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("child output");
        assert!(out.status.success(), "child {n} failed: {:?}", out.status);
        let text = String::from_utf8(out.stdout).expect("utf-8");
        lines.extend(text.lines().map(str::to_owned));
    }
    runtime.block_on(check(&url, run, &session, &racers, &lines));
    println!(
        "sqlite_race: {CHILDREN} processes × {TASKS} tasks, {} answers checked ({:.1}s)",
        lines.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Every child opens a file that does not exist yet at the same moment
/// (creating it, switching it to WAL and creating the schema race), then
/// writes a session; all of them succeed and everything is there.
fn first_opens(url: &str) {
    let start_at = now_ms() + 1_000;
    let exe = std::env::current_exe().expect("own executable");
    let children: Vec<_> = (0..CHILDREN)
        .map(|n| {
            Command::new(&exe)
                .env(CHILD_ENV, url)
                .env("RACE_MODE", "first_open")
                .env("RACE_CHILD", n.to_string())
                .env("RACE_START_AT", start_at.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("child output");
        assert!(
            out.status.success(),
            "first-open child {n} failed: {:?}",
            out.status
        );
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stores = stowage_backends::open(url).await.expect("open");
        for n in 0..CHILDREN {
            let id = format!("first:{n}");
            let log = stores.sessions.read_log(&id, None, 100).await.expect("log");
            assert_eq!(log.len(), 5, "session {id}");
        }
        stores.close().await.expect("close");
    });
    println!("sqlite_race: {CHILDREN} processes opened a fresh file at once");
}

fn first_open_child(url: &str) {
    let var = |name: &str| std::env::var(name).expect(name);
    let me: usize = var("RACE_CHILD").parse().expect("child");
    let start_at: u64 = var("RACE_START_AT").parse().expect("start");
    std::thread::sleep(Duration::from_millis(start_at.saturating_sub(now_ms())));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stores = stowage_backends::open(url)
            .await
            .unwrap_or_else(|e| panic!("child {me} opening a fresh file: {e:?}"));
        let id = format!("first:{me}");
        stores
            .sessions
            .create_session(&id, json!({"child": me}))
            .await
            .expect("session");
        for i in 0..5 {
            let entry = NewLogEntry::new(LogKind::Internal, "first", "t", format!("{i}"));
            stores.sessions.append_log(&id, entry).await.expect("log");
        }
        stores.close().await.expect("close");
    });
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn setup(url: &str) -> (RunId, String, Vec<RunId>) {
    let stores = stowage_backends::open(url).await.expect("open");
    let spec = Digest::of(b"race");
    let run = stores
        .runs
        .create_run(spec, RunMetadata::new("race"))
        .await
        .expect("run");
    let session = "race:session".to_owned();
    stores
        .sessions
        .create_session(&session, json!({}))
        .await
        .expect("session");
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
    (run, session, racers)
}

/// Every key → the seqs callers were given for it.
type Answers = BTreeMap<String, BTreeSet<u64>>;

async fn check(url: &str, run: RunId, session: &str, racers: &[RunId], lines: &[String]) {
    let mut events = Answers::new();
    let mut logs = Answers::new();
    let mut winners: BTreeMap<RunId, Vec<String>> = BTreeMap::new();
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["event", key, seq] => {
                events
                    .entry((*key).to_owned())
                    .or_default()
                    .insert(seq.parse().expect("seq"));
            }
            ["log", key, seq] => {
                logs.entry((*key).to_owned())
                    .or_default()
                    .insert(seq.parse().expect("seq"));
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
    let distinct = CHILDREN * TASKS * PER_TASK + SHARED_KEYS;

    // The run: gap-free seqs, a valid chain, each key once at the seq
    // every caller (and every retry) was given.
    let report = stores.runs.verify_run(run).await.expect("verify_run");
    assert_eq!(report.len as usize, distinct, "events stored");
    let stored = read_all_events(&stores, run).await;
    check_keys("run event", &stored, &events, distinct);
    // The processes really raced: their appends interleave in the log
    // (run back to back, there would be CHILDREN - 1 switches).
    let owners: Vec<&str> = stored
        .iter()
        .filter_map(|(_, key)| key.as_deref()?.split('-').next())
        .filter(|owner| owner.starts_with('c'))
        .collect();
    let switches = owners.windows(2).filter(|w| w[0] != w[1]).count();
    println!("sqlite_race: the run's events switch process {switches} times");
    assert!(switches > CHILDREN, "the children did not interleave");

    let report = stores
        .sessions
        .verify_log(session)
        .await
        .expect("verify_log");
    assert_eq!(report.len as usize, distinct, "log entries stored");
    let mut stored = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .sessions
            .read_log(session, after, 100)
            .await
            .expect("read_log");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        stored.extend(page.into_iter().map(|e| (e.seq, e.idempotency_key)));
    }
    check_keys("log entry", &stored, &logs, distinct);

    for racer in racers {
        let won = winners.get(racer).cloned().unwrap_or_default();
        assert_eq!(won.len(), 1, "run {racer}: winners {won:?}");
        let status = stores.runs.get_run(*racer).await.expect("racer").status;
        assert_eq!(format!("{status:?}"), won[0], "run {racer}");
    }
    stores.close().await.expect("close");
}

async fn read_all_events(stores: &Stores, run: RunId) -> Vec<(u64, Option<String>)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .runs
            .read_events(run, after, 100)
            .await
            .expect("read_events");
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        out.extend(page.into_iter().map(|e| (e.seq, e.idempotency_key)));
    }
    out
}

fn check_keys(what: &str, stored: &[(u64, Option<String>)], answers: &Answers, distinct: usize) {
    assert_eq!(stored.len(), distinct, "{what}s read back");
    let mut seen = BTreeMap::new();
    for (i, (seq, key)) in stored.iter().enumerate() {
        assert_eq!(*seq, i as u64, "{what} seqs are gap-free");
        let key = key.clone().expect("every append carried a key");
        assert!(
            seen.insert(key.clone(), *seq).is_none(),
            "{what} key {key} stored twice"
        );
    }
    assert_eq!(answers.len(), distinct, "{what} keys answered");
    for (key, seqs) in answers {
        let want = seen
            .get(key)
            .unwrap_or_else(|| panic!("{what} key {key} lost"));
        assert_eq!(
            seqs,
            &BTreeSet::from([*want]),
            "{what} key {key}: every caller gets the stored seq"
        );
    }
}

/// A child: its own store on the same file.
fn child(url: &str) {
    let var = |name: &str| std::env::var(name).expect(name);
    let me: usize = var("RACE_CHILD").parse().expect("child");
    let run: RunId = var("RACE_RUN").parse().expect("run");
    let session = var("RACE_SESSION");
    let racers: Vec<RunId> = var("RACE_RACERS")
        .split(',')
        .map(|r| r.parse().expect("racer"))
        .collect();
    let start_at: u64 = var("RACE_START_AT").parse().expect("start");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let out = runtime.block_on(async move {
        let stores = stowage_backends::open(url).await.expect("child open");
        std::thread::sleep(Duration::from_millis(start_at.saturating_sub(now_ms())));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let stores = stores.clone();
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                appends(&stores, run, &session, me, task).await
            }));
        }
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

/// One task's keyed appends: its own keys, the shared ones, then every
/// one of them again (a retry must give back the original seq).
async fn appends(
    stores: &Stores,
    run: RunId,
    session: &str,
    me: usize,
    task: usize,
) -> Vec<String> {
    let mut keys: Vec<(String, serde_json::Value)> = (0..PER_TASK)
        .map(|i| {
            (
                format!("c{me}-t{task}-{i}"),
                json!({"child": me, "task": task, "i": i}),
            )
        })
        .collect();
    // Task `t` of every child appends the shared keys t, t+TASKS, …
    keys.extend(
        (task..SHARED_KEYS)
            .step_by(TASKS)
            .map(|k| (format!("shared-{k}"), json!({"shared": k}))),
    );
    let mut out = Vec::new();
    for round in 0..2 {
        for (key, payload) in &keys {
            let mut event = NewEvent::new("tick", payload.clone());
            event.idempotency_key = Some(key.clone());
            let e = stores
                .runs
                .append_event(run, event)
                .await
                .unwrap_or_else(|e| panic!("append {key} (round {round}): {e:?}"));
            out.push(format!("event {key} {}", e.seq));
            let mut entry =
                NewLogEntry::new(LogKind::Incoming, "racer", "msg", payload.to_string());
            entry.idempotency_key = Some(key.clone());
            let e = stores
                .sessions
                .append_log(session, entry)
                .await
                .unwrap_or_else(|e| panic!("append_log {key} (round {round}): {e:?}"));
            out.push(format!("log {key} {}", e.seq));
            // A pause between appends frees the write lock now and then:
            // SQLite's busy handler is unfair (a waiter sleeps up to
            // 100 ms between tries), so unpaced, one process can take
            // every group commit in turn and the others wait it out.
            tokio::time::sleep(PACE).await;
        }
    }
    out
}
