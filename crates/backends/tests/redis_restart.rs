//! A private Redis server (AOF, `appendfsync always`) stopped and restarted
//! on the same port under a running workload of keyed appends and blob
//! puts. Checks the error promises: `Ok` was applied exactly once,
//! `Unavailable` applied nothing, `OutcomeUnknown` may go either way and a
//! keyed retry or a re-put completes it.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{Digest, ErrorKind, NewEvent, RunMetadata, Stores};

const TASKS: usize = 4;
const CYCLES: usize = 3;

#[derive(Debug)]
enum Done {
    Append(String, ErrorKindOrOk),
    Put(Bytes, ErrorKindOrOk),
}

type ErrorKindOrOk = Option<ErrorKind>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarts_under_load_keep_the_error_promises() {
    let dir = std::env::temp_dir().join(redis_server::unique_prefix("restart"));
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.display().to_string();
    let args = [
        "--dir",
        dir_s.as_str(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ];
    let port = redis_server::any_free_port();
    let mut server = Some(redis_server::spawn_on(port, &args));
    let url = format!(
        "redis://127.0.0.1:{port}/0?prefix=restart&idempotent_retries=2&reconnect_retries=0&connect_timeout_ms=200&response_timeout_ms=2000"
    );
    let s: Stores = stowage_backends::open(&url).await.unwrap();
    let run = s
        .runs
        .create_run(Digest::of(b"restart"), RunMetadata::new("load"))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..TASKS)
        .map(|t| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("t{t}-{i}");
                    let mut e = NewEvent::new("step", json!({"k": key}));
                    e.idempotency_key = Some(key.clone());
                    let r = s.runs.append_event(run, e).await;
                    done.push(Done::Append(key, r.err().map(|e| e.kind())));
                    let data = Bytes::from(format!("blob t{t}-{i}"));
                    let r = s.cas.put(data.clone()).await;
                    done.push(Done::Put(data, r.err().map(|e| e.kind())));
                    i += 1;
                }
                done
            })
        })
        .collect();

    for _ in 0..CYCLES {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Stop it (SIGTERM) under load: it closes client connections with
        // replies of applied writes still unsent, and refuses connections
        // until the restart.
        let old = server.take();
        tokio::task::spawn_blocking(move || drop(old))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        server = Some(
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                redis_server::spawn_on(port, &args)
            })
            .await
            .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut done = Vec::new();
    for w in workers {
        done.extend(w.await.unwrap());
    }

    // Check against what the restarted server holds.
    let events = {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = s.runs.read_events(run, after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            all.extend(page);
        }
        all
    };
    let mut stored: HashMap<String, usize> = HashMap::new();
    for e in &events {
        if let Some(k) = &e.idempotency_key {
            *stored.entry(k.clone()).or_default() += 1;
        }
    }
    let listed: std::collections::HashSet<Digest> = {
        let mut all = std::collections::HashSet::new();
        let mut after = None;
        loop {
            let page = s.cas.list(after.as_ref(), 1000).await.unwrap();
            let Some(last) = page.last().copied() else {
                break;
            };
            after = Some(last);
            all.extend(page);
        }
        all
    };
    let mut failures = 0usize;
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for d in &done {
        let (what, k) = match d {
            Done::Append(_, k) => ("append", k),
            Done::Put(_, k) => ("put", k),
        };
        *kinds.entry(format!("{what} {k:?}")).or_default() += 1;
    }
    eprintln!("outcomes: {kinds:?}");
    for d in &done {
        match d {
            Done::Append(key, outcome) => {
                let n = stored.get(key).copied().unwrap_or(0);
                assert!(n <= 1, "event {key} stored {n} times");
                match outcome {
                    None => assert_eq!(n, 1, "acknowledged event {key} is stored"),
                    Some(ErrorKind::Unavailable) => {
                        assert_eq!(n, 0, "event {key} returned Unavailable but was stored")
                    }
                    Some(ErrorKind::OutcomeUnknown) => {
                        let mut e = NewEvent::new("step", json!({"k": key}));
                        e.idempotency_key = Some(key.clone());
                        let again = s.runs.append_event(run, e).await.unwrap();
                        assert_eq!(again.idempotency_key.as_deref(), Some(key.as_str()));
                        if n == 1 {
                            let original = events
                                .iter()
                                .find(|e| e.idempotency_key.as_deref() == Some(key.as_str()));
                            assert_eq!(Some(again.seq), original.map(|e| e.seq), "{key}");
                        }
                    }
                    Some(other) => panic!("append {key}: unexpected {other:?}"),
                }
                failures += usize::from(outcome.is_some());
            }
            Done::Put(data, outcome) => {
                let dg = Digest::of(data);
                let present = s.cas.contains(&dg).await.unwrap();
                match outcome {
                    None => assert!(
                        present && listed.contains(&dg),
                        "acknowledged blob {} is stored and listed",
                        dg.short()
                    ),
                    Some(ErrorKind::Unavailable) => assert!(
                        !present,
                        "blob {} returned Unavailable but was stored",
                        dg.short()
                    ),
                    Some(ErrorKind::OutcomeUnknown) => {
                        if present {
                            s.cas.put(data.clone()).await.unwrap();
                            let page = s.cas.list(None, 100_000).await.unwrap();
                            assert!(page.contains(&dg), "a re-put lists blob {}", dg.short());
                        }
                    }
                    Some(other) => panic!("put {}: unexpected {other:?}", dg.short()),
                }
                failures += usize::from(outcome.is_some());
            }
        }
    }
    assert!(failures > 0, "the restarts never interrupted the workload");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
