//! Reads racing deletes (SPEC §2: every call is linearizable per entity):
//! a read sees the entity whole, as it was before the delete, or not at
//! all — never a record without its events or log, which no moment held.

use std::sync::Arc;

use serde_json::json;
use stowage_core::lifecycle::IfRunning;
use stowage_core::{ErrorKind, Result, RunId, Stores};

use crate::harness::Harness;
use crate::util::{entry, event, meta, ok, open, race, spec};

const RUNS: usize = 12;
const EVENTS: u64 = 12;
const SESSIONS: usize = 12;
const ENTRIES: u64 = 30;

/// `Ok(v)` passes `whole(v)`, or the call is `NotFound`.
fn whole_or_gone<T>(what: &str, result: Result<T>, whole: impl Fn(&T) -> bool) -> Option<String> {
    match result {
        Ok(v) if whole(&v) => None,
        Ok(_) => Some(format!(
            "{what}: a part of the entity, as no moment held it"
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => Some(format!("{what}: {e}")),
    }
}

async fn read_run(s: &Stores, run: RunId) -> Vec<String> {
    let got = whole_or_gone("get_run", s.runs.get_run(run).await, |r| {
        r.event_count == EVENTS && r.head.is_some()
    });
    let page = s.runs.read_events(run, None, 100).await;
    let read = whole_or_gone("read_events", page, |p| p.len() as u64 == EVENTS);
    got.into_iter().chain(read).collect()
}

async fn read_session(s: &Stores, id: &str, fork_to: &str) -> Vec<String> {
    let loaded = s
        .sessions
        .load_session(id)
        .await
        .and_then(|found| found.ok_or_else(|| stowage_core::Error::not_found("gone")));
    let mut failures: Vec<String> = whole_or_gone("load_session", loaded, |x| x.log_len == ENTRIES)
        .into_iter()
        .collect();
    let log = s.sessions.read_log(id, None, 100).await;
    failures.extend(whole_or_gone("read_log", log, |l| {
        l.len() as u64 == ENTRIES
    }));
    let forked = s.lifecycle.fork_session(id, fork_to).await;
    failures.extend(whole_or_gone("fork_session", forked, |f| {
        f.log_len == ENTRIES
    }));
    failures
}

/// Reads of runs and sessions (`get_run`, `read_events`, `load_session`,
/// `read_log`, `fork_session`) racing their deletes: each sees the whole
/// entity or `NotFound`, never a record whose head, events or log the
/// delete already took.
pub async fn reads_beside_deletes(h: &dyn Harness) {
    let s = open(h).await;
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
        for i in 0..EVENTS {
            ok(s.runs.append_event(run, event("step", i)).await, "append");
        }
        runs.push(run);
    }
    for i in 0..SESSIONS {
        let id = format!("doomed-{i}");
        ok(s.sessions.create_session(&id, json!({})).await, "create");
        for n in 0..ENTRIES {
            ok(
                s.sessions.append_log(&id, entry(format!("m{n}"))).await,
                "append_log",
            );
        }
    }
    let runs = Arc::new(runs);
    let stores = s.clone();
    let failures = race(6, move |t| {
        let (s, runs) = (stores.clone(), Arc::clone(&runs));
        async move {
            let mut failures = Vec::new();
            match t {
                0 => {
                    for run in runs.iter() {
                        if let Err(e) = s.lifecycle.delete_run(*run, IfRunning::Delete).await {
                            failures.push(format!("delete_run: {e}"));
                        }
                        tokio::task::yield_now().await;
                    }
                }
                1 => {
                    for i in 0..SESSIONS {
                        let id = format!("doomed-{i}");
                        if let Err(e) = s.sessions.delete_session(&id).await {
                            failures.push(format!("delete_session: {e}"));
                        }
                        tokio::task::yield_now().await;
                    }
                }
                _ => {
                    for round in 0..3 {
                        for run in runs.iter() {
                            failures.extend(read_run(&s, *run).await);
                        }
                        for i in 0..SESSIONS {
                            let id = format!("doomed-{i}");
                            let to = format!("fork-{t}-{round}-{i}");
                            failures.extend(read_session(&s, &id, &to).await);
                        }
                    }
                }
            }
            failures
        }
    })
    .await;
    let failures: Vec<String> = failures.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "reads beside deletes saw what never was: {failures:?}"
    );
}
