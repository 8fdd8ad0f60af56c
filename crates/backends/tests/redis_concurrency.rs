//! SPEC §2 across processes: every race is run by several independent
//! clients (separately opened stores, so separate connections — as
//! separate processes would use), never one shared connection.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, PutOutcome, ReleaseMetadata, RunMetadata,
    RunSummary, SigningKey, Stores, Supersession, SupersessionDraft, SupersessionKind, Timestamp,
};
use tokio::sync::Barrier;

/// `n` independent clients of one store.
async fn clients(n: usize) -> Vec<Stores> {
    let url = redis_server::fresh_url("conc");
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(stowage_backends::open(&url).await.expect("open client"));
    }
    out
}

/// Runs `f(i, client)` on every client at once (released by a barrier).
async fn race<T, F, Fut>(cs: &[Stores], f: F) -> Vec<T>
where
    F: Fn(usize, Stores) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(cs.len()));
    let f = Arc::new(f);
    let tasks = cs.iter().cloned().enumerate().map(|(i, c)| {
        let (b, f) = (barrier.clone(), f.clone());
        tokio::spawn(async move {
            b.wait().await;
            f(i, c).await
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_from_32_clients_are_gap_free() {
    let cs = clients(32).await;
    let run = cs[0]
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    race(&cs, move |i, c| async move {
        for j in 0..50 {
            c.runs
                .append_event(run, NewEvent::new("k", json!([i, j])))
                .await
                .unwrap();
        }
    })
    .await;
    let events = cs[1].runs.read_events(run, None, 10_000).await.unwrap();
    assert_eq!(events.len(), 32 * 50);
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.seq, n as u64);
    }
    let payloads: HashSet<String> = events.iter().map(|e| e.payload.to_string()).collect();
    assert_eq!(payloads.len(), 32 * 50, "nothing lost, nothing doubled");
    assert_eq!(cs[2].runs.verify_run(run).await.unwrap().len, 1600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_appends_from_many_clients_store_once() {
    let cs = clients(16).await;
    let run = cs[0]
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    let got = race(&cs, move |_, c| async move {
        let mut e = NewEvent::new("k", json!(1));
        e.idempotency_key = Some("same".into());
        c.runs.append_event(run, e).await.unwrap()
    })
    .await;
    assert!(got.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(cs[0].runs.get_run(run).await.unwrap().event_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_terminal_transition_wins() {
    let cs = clients(16).await;
    let run = cs[0]
        .runs
        .create_run(Digest::of(b"s"), RunMetadata::new("a"))
        .await
        .unwrap();
    let results = race(&cs, move |i, c| async move {
        c.runs
            .complete_run(run, RunSummary::new(format!("by {i}")))
            .await
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), ErrorKind::Conflict);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_logs_and_saves_race_safely() {
    let cs = clients(16).await;
    cs[0].sessions.create_session("s", json!(0)).await.unwrap();
    race(&cs, |i, c| async move {
        for j in 0..20 {
            let e = NewLogEntry::new(LogKind::Incoming, "u", "t", format!("{i}-{j}"));
            c.sessions.append_log("s", e).await.unwrap();
        }
    })
    .await;
    assert_eq!(cs[0].sessions.verify_log("s").await.unwrap().len, 320);
    let saves = race(&cs, |i, c| async move {
        c.sessions.save_session("s", json!(i), Some(1)).await
    })
    .await;
    assert_eq!(
        saves.iter().filter(|r| r.is_ok()).count(),
        1,
        "one compare-and-set wins"
    );
    let unconditional = race(&cs, |i, c| async move {
        c.sessions
            .save_session("s", json!(i), None)
            .await
            .unwrap()
            .version
    })
    .await;
    let versions: HashSet<u64> = unconditional.into_iter().collect();
    assert_eq!(versions.len(), 16, "every save got its own version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replace_log_races_with_appends() {
    let cs = clients(8).await;
    cs[0].sessions.create_session("r", json!(0)).await.unwrap();
    race(&cs, |i, c| async move {
        for j in 0..10 {
            if i == 0 && j % 3 == 0 {
                let cp = NewLogEntry::new(LogKind::Checkpoint, "sys", "cp", "x");
                c.sessions.replace_log("r", vec![cp], None).await.unwrap();
            } else {
                let e = NewLogEntry::new(LogKind::Incoming, "u", "t", format!("{i}-{j}"));
                c.sessions.append_log("r", e).await.unwrap();
            }
        }
    })
    .await;
    let log = cs[1].sessions.read_log("r", None, 10_000).await.unwrap();
    assert_eq!(log[0].kind, LogKind::Checkpoint);
    cs[1].sessions.verify_log("r").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_promotes_are_all_kept() {
    let cs = clients(16).await;
    race(&cs, |i, c| async move {
        for j in 0..5 {
            let d = Digest::of(format!("{i}-{j}").as_bytes());
            c.releases
                .promote("p", d, ReleaseMetadata::new("v", "ci"), None)
                .await
                .unwrap();
        }
    })
    .await;
    let h = cs[0].releases.history("p", None, 1000).await.unwrap();
    assert_eq!(h.len(), 80);
    let specs: HashSet<Digest> = h.iter().map(|r| r.spec_digest).collect();
    assert_eq!(specs.len(), 80);
    let cas = race(&cs, |_, c| async move {
        c.releases
            .promote(
                "p",
                Digest::of(b"z"),
                ReleaseMetadata::new("v", "ci"),
                Some(79),
            )
            .await
    })
    .await;
    assert_eq!(cas.iter().filter(|r| r.is_ok()).count(), 1);
}

fn sup(target: &[u8], replacement: &[u8], agent: u8) -> Supersession {
    Supersession::sign(
        &SigningKey::from_bytes(&[agent; 32]),
        SupersessionDraft::new(
            Digest::of(target),
            Some(Digest::of(replacement)),
            SupersessionKind::Merged,
            String::new(),
            Timestamp::from_millis(u64::from(agent)),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn supersession_races_admit_one_record_and_no_cycle() {
    let cs = clients(16).await;
    let puts = race(&cs, |i, c| async move {
        c.supersessions
            .put(sup(b"t", format!("r{i}").as_bytes(), i as u8 + 1))
            .await
    })
    .await;
    assert_eq!(
        puts.iter()
            .filter(|r| matches!(r, Ok(PutOutcome::Stored)))
            .count(),
        1
    );
    // Clients race to close a ring x0 → x1 → … → x15 → x0: at most 15 links land.
    let ring = race(&cs, |i, c| async move {
        let from = format!("x{i}");
        let to = format!("x{}", (i + 1) % 16);
        c.supersessions
            .put(sup(from.as_bytes(), to.as_bytes(), 1))
            .await
    })
    .await;
    let stored = ring.iter().filter(|r| r.is_ok()).count();
    assert_eq!(stored, 15, "exactly the link closing the ring is refused");
    for i in 0..16 {
        cs[0]
            .supersessions
            .resolve(&Digest::of(format!("x{i}").as_bytes()))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_and_delete_keep_the_listing_exact() {
    let cs = clients(8).await;
    race(&cs, |i, c| async move {
        for j in 0..30 {
            let id = format!("s{}", (i + j) % 5);
            if (i + j) % 2 == 0 {
                let _ = c.sessions.create_session(&id, json!(null)).await;
            } else {
                c.sessions.delete_session(&id).await.unwrap();
            }
        }
    })
    .await;
    let listed: Vec<String> = cs[0]
        .sessions
        .list_sessions(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut existing = Vec::new();
    for k in 0..5 {
        let id = format!("s{k}");
        if cs[0].sessions.load_session(&id).await.unwrap().is_some() {
            existing.push(id);
        }
    }
    assert_eq!(listed, existing);
}
