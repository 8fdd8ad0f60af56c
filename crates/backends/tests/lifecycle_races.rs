//! Lifecycle operations (SPEC §10) on memory, sled and SQLite under races,
//! odd input and damage.
#![cfg(any(feature = "memory", feature = "sled", feature = "sqlite"))]

#[macro_use]
#[path = "support/lifecycle_backends.rs"]
mod backends;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use stowage_core::lifecycle::{BlobGc, RunRetention, SessionRetention};
use stowage_core::{
    Digest, ErrorKind, NewEvent, RandomIds, RunMetadata, RunSummary, SessionState, StoreEnv,
    Timestamp,
};

use backends::*;

/// Blobs put and then referenced (within the grace period) by every kind
/// of write, racing two collectors while the clock runs: none is lost.
async fn gc_race_put_then_reference(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (clock, stop) = (clock.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                clock.advance(1);
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        })
    };
    let grace = BlobGc::grace(Duration::from_secs(30)).batch(3);
    let collectors: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop, grace) = (s.clone(), stop.clone(), grace.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    gc_all(&s, &grace).await;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // Old garbage, so the collectors have work.
    let long_running = s
        .runs
        .create_run(Digest::of(b"nothing"), RunMetadata::new("lr"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let key = stowage_core::SigningKey::from_bytes(&[t + 1; 32]);
                let mut kept = Vec::new();
                for i in 0..30u32 {
                    let put = |n: u32| {
                        let s = s.clone();
                        async move {
                            s.cas
                                .put(Bytes::from(format!("t{t} i{i} n{n}")))
                                .await
                                .unwrap()
                        }
                    };
                    match i % 6 {
                        0 => {
                            let d = put(0).await;
                            let r = s
                                .runs
                                .create_run(d, RunMetadata::new(format!("a{t}")))
                                .await
                                .unwrap();
                            let e = put(1).await;
                            s.runs
                                .append_event(r, NewEvent::new("k", json!(i)).with_blobs([e]))
                                .await
                                .unwrap();
                            let f = put(2).await;
                            s.runs
                                .complete_run(r, RunSummary::new("ok").with_blobs([f]))
                                .await
                                .unwrap();
                            kept.extend([d, e, f]);
                        }
                        1 => {
                            let e = put(0).await;
                            s.runs
                                .append_event(
                                    long_running,
                                    NewEvent::new("k", json!(i)).with_blobs([e]),
                                )
                                .await
                                .unwrap();
                            kept.push(e);
                        }
                        2 => {
                            let d = put(0).await;
                            s.releases
                                .promote(&format!("r{t}"), d, md("v"), None)
                                .await
                                .unwrap();
                            kept.push(d);
                        }
                        3 => {
                            let (a, b) = (put(0).await, put(1).await);
                            let sup = stowage_core::Supersession::sign(
                                &key,
                                stowage_core::SupersessionDraft::new(
                                    a,
                                    Some(b),
                                    stowage_core::SupersessionKind::Outdated,
                                    "r",
                                    Timestamp::from_millis(T0),
                                ),
                            );
                            s.supersessions.put(sup).await.unwrap();
                            kept.extend([a, b]);
                        }
                        4 => {
                            let d = put(0).await;
                            s.lifecycle.pin_blob(&d, &format!("p{t}")).await.unwrap();
                            kept.push(d);
                        }
                        _ => {
                            if i > 6 {
                                let _ = s
                                    .lifecycle
                                    .fork_release(&format!("r{t}"), &format!("f{t}-{i}"))
                                    .await
                                    .unwrap();
                            }
                        }
                    }
                }
                kept
            })
        })
        .collect();
    let mut kept = Vec::new();
    for t in tasks {
        kept.extend(t.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for c in collectors {
        c.await.unwrap();
    }
    ticker.await.unwrap();
    clock.advance(3_600_000);
    gc_all(&s, &grace).await;
    let mut lost = Vec::new();
    for d in &kept {
        if !s.cas.contains(d).await.unwrap() {
            lost.push(d.short());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} referenced blobs collected: {lost:?}",
        lost.len(),
        kept.len()
    );
}

/// expire_sessions racing appends: a session is expired only once idle for
/// longer than the policy says, judged on its last entry.
async fn expire_race_appends(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    for i in 0..6 {
        s.sessions
            .create_session(&format!("s{i}"), json!({}))
            .await
            .unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let idle = Duration::from_millis(40);
    let sweeper = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let policy = SessionRetention::idle_for(idle).batch(2);
            while !stop.load(Ordering::Relaxed) {
                sessions_sweep(&s, &policy, true).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (s, clock) = (s.clone(), clock.clone());
            tokio::spawn(async move {
                let id = format!("s{i}");
                for n in 0..200u32 {
                    clock.advance(1);
                    match s.sessions.append_log(&id, entry((n % 250) as u8)).await {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Conflict => break,
                        Err(e) => panic!("{e}"),
                    }
                    if n % 50 == 49 {
                        // Go idle for a while.
                        clock.advance(100);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    sweeper.await.unwrap();
    for i in 0..6 {
        let id = format!("s{i}");
        let sess = s.sessions.load_session(&id).await.unwrap().unwrap();
        if sess.state != SessionState::Expired {
            continue;
        }
        let log = s.sessions.read_log(&id, None, 1000).await.unwrap();
        let last = log.last().map_or(sess.created_at, |e| e.timestamp);
        let idle_ms = sess.updated_at.as_millis() - last.as_millis();
        assert!(
            idle_ms > 40,
            "{id} expired after {idle_ms} ms idle (log {})",
            log.len()
        );
        assert_eq!(
            s.sessions.verify_log(&id).await.unwrap().len,
            log.len() as u64
        );
    }
}

/// Odd policies and hostile input: clear errors of the right kind, no panic.
async fn odd_input(kind: &str) {
    let clock = Clock::at(T0);
    let (s, _dir) = open(kind, &clock).await;
    s.sessions.create_session("a", json!({})).await.unwrap();
    s.releases
        .promote("p", Digest::of(b"x"), md("v"), None)
        .await
        .unwrap();
    let long = "x".repeat(300);
    for bad in ["", long.as_str(), "a\u{0}b", "a\nb"] {
        assert_eq!(
            s.lifecycle.fork_session("a", bad).await.unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(
            s.lifecycle.fork_session(bad, "b").await.unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(
            s.lifecycle.fork_release("p", bad).await.unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(
            s.lifecycle
                .pin_blob(&Digest::of(b"x"), bad)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        assert_eq!(
            s.lifecycle
                .unpin_blob(&Digest::of(b"x"), bad)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput,
            "{bad:?}"
        );
        let e = s
            .lifecycle
            .prune_runs(&RunRetention::finished().agent(bad), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    let st = s.lifecycle.stats().await.unwrap();
    assert_eq!(
        (st.sessions, st.release_names, st.blob_references),
        (1, 1, 1),
        "{st:?}"
    );
    // Extreme policies.
    let r = s
        .runs
        .create_run(Digest::of(b"x"), RunMetadata::new("a"))
        .await
        .unwrap();
    s.runs.complete_run(r, RunSummary::new("ok")).await.unwrap();
    let sw = s
        .lifecycle
        .prune_runs(
            &RunRetention::finished()
                .keep_newest_per_agent(u64::MAX)
                .batch(usize::MAX),
            None,
        )
        .await
        .unwrap();
    assert_eq!(sw.affected, 0);
    let sw = s
        .lifecycle
        .prune_runs(
            &RunRetention::finished().finished_before(Timestamp::from_millis(0)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(sw.affected, 0);
    let sw = s
        .lifecycle
        .expire_sessions(&SessionRetention::idle_for(Duration::MAX), None)
        .await
        .unwrap();
    assert_eq!(sw.affected, 0);
    let sw = s
        .lifecycle
        .expire_sessions(&SessionRetention::idle_for(Duration::ZERO), Some(&long))
        .await
        .unwrap();
    assert_eq!(sw.examined, 0);
    let sw = s
        .lifecycle
        .gc_blobs(&BlobGc::grace(Duration::MAX), None)
        .await
        .unwrap();
    assert_eq!(sw.affected, 0);
    // A hostile id round-trips through a fork.
    let odd = "../{x}:/ \u{202e}é🙂";
    s.sessions.append_log("a", entry(1)).await.unwrap();
    let f = s.lifecycle.fork_session("a", odd).await.unwrap();
    assert_eq!(f.id, odd);
    assert_eq!(s.sessions.read_log(odd, None, 10).await.unwrap().len(), 1);
    let names: Vec<String> = s
        .sessions
        .list_sessions(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(
        names,
        vec!["../{x}:/ \u{202e}é🙂".to_owned(), "a".to_owned()]
    );
    s.lifecycle.fork_release("p", odd).await.unwrap();
    assert_eq!(s.releases.current(odd).await.unwrap().name, odd);
}

on_backends!(gc_race_put_then_reference);
on_backends!(expire_race_appends);
on_backends!(odd_input);

/// Damage stops no sweep (docs/lifecycle.md): a damaged session is kept
/// by the sweeps and refused by fork with Corrupted (nothing written); a
/// blob with a damaged header and the blobs of a damaged supersession are
/// kept by gc.
#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damage_stops_no_sweep_memory() {
    use stowage_core::engine::{tamper, MemoryEngine};
    let clock = Clock::at(T0);
    let engine = MemoryEngine::new();
    let env = StoreEnv::new(clock.clone(), Arc::new(RandomIds::default()));
    let s = stowage_core::engine::stores(Arc::new(engine.clone()), env);
    for id in ["d1", "d2", "ok"] {
        s.sessions.create_session(id, json!({})).await.unwrap();
        for i in 0..3 {
            s.sessions.append_log(id, entry(i)).await.unwrap();
        }
    }
    tamper::log_entry(&engine, "d1".into(), 1).await.unwrap();
    let kept: Vec<_> = s.sessions.read_log("d2", None, 10).await.unwrap();
    tamper::log_entries(&engine, "d2".into(), kept[..2].to_vec())
        .await
        .unwrap();
    let e = s.lifecycle.fork_session("d1", "f1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    let e = s.lifecycle.fork_session("d2", "f2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted, "{e}");
    assert!(s.sessions.load_session("f1").await.unwrap().is_none());
    assert!(s.sessions.load_session("f2").await.unwrap().is_none());

    let blobs: Vec<Digest> = {
        let mut v = Vec::new();
        for i in 0..4u8 {
            v.push(s.cas.put(Bytes::from(vec![i; 10])).await.unwrap());
        }
        v
    };
    let key = stowage_core::SigningKey::from_bytes(&[9; 32]);
    s.supersessions
        .put(stowage_core::Supersession::sign(
            &key,
            stowage_core::SupersessionDraft::new(
                blobs[0],
                Some(blobs[1]),
                stowage_core::SupersessionKind::Merged,
                "r",
                Timestamp::from_millis(T0),
            ),
        ))
        .await
        .unwrap();
    tamper::supersession(&engine, blobs[0]).await.unwrap();
    tamper::blob_header_size(&engine, blobs[2]).await.unwrap();

    clock.advance(86_400_000);
    let policy = SessionRetention::idle_for(Duration::from_secs(1)).batch(1);
    let (_, expired) = sessions_sweep(&s, &policy, true).await;
    // d2's head names an entry that is missing: kept; d1 only has a bad payload.
    let d2 = s.sessions.load_session("d2").await.unwrap().unwrap();
    assert_eq!(d2.state, SessionState::Open, "expired {expired}");
    clock.advance(86_400_000);
    sessions_sweep(&s, &policy, false).await;
    assert!(s.sessions.load_session("d2").await.unwrap().is_some());
    assert!(s.sessions.load_session("ok").await.unwrap().is_none());

    let (examined, deleted) = gc_all(&s, &BlobGc::grace(Duration::from_secs(1)).batch(1)).await;
    assert_eq!(examined, 4);
    assert_eq!(deleted, 1);
    for d in &blobs[..3] {
        let present = s.lifecycle.stats().await.unwrap();
        let _ = present;
        let listed = s.cas.list(None, 10).await.unwrap();
        assert!(listed.contains(d), "{} collected", d.short());
    }
}

/// `Sweep::examined` counts the entities a page scanned, as `gc_blobs`
/// does (a blob with a damaged header counts): a session sweep page that
/// scanned a damaged session answers `examined: 0` with a `next` cursor
/// past it, so the totals of a whole sweep undercount what it walked.
#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweep_examined_counts_damaged_entities_memory() {
    use stowage_core::engine::{tamper, MemoryEngine};
    let clock = Clock::at(T0);
    let engine = MemoryEngine::new();
    let env = StoreEnv::new(clock.clone(), Arc::new(RandomIds::default()));
    let s = stowage_core::engine::stores(Arc::new(engine.clone()), env);
    for id in ["a", "b", "c"] {
        s.sessions.create_session(id, json!({})).await.unwrap();
        s.sessions.append_log(id, entry(1)).await.unwrap();
        s.sessions.append_log(id, entry(2)).await.unwrap();
    }
    // b's head names entry 1, which is lost: the sweeps keep b.
    let first = s.sessions.read_log("b", None, 1).await.unwrap();
    tamper::log_entries(&engine, "b".into(), first)
        .await
        .unwrap();
    // The same kind of damage in gc's domain: a blob header.
    let blobs = [
        s.cas.put(Bytes::from_static(b"1")).await.unwrap(),
        s.cas.put(Bytes::from_static(b"2")).await.unwrap(),
        s.cas.put(Bytes::from_static(b"3")).await.unwrap(),
    ];
    tamper::blob_header_size(&engine, blobs[1]).await.unwrap();
    clock.advance(86_400_000);

    let gc_pages = {
        let (mut after, mut pages) = (None, Vec::new());
        loop {
            let sw = s
                .lifecycle
                .gc_blobs(
                    &BlobGc::grace(Duration::from_secs(60)).batch(1),
                    after.as_ref(),
                )
                .await
                .unwrap();
            pages.push(sw.examined);
            match sw.next {
                Some(n) => after = Some(n),
                None => break pages,
            }
        }
    };
    let policy = SessionRetention::idle_for(Duration::from_secs(60)).batch(1);
    let session_pages = {
        let (mut after, mut pages) = (None::<String>, Vec::new());
        loop {
            let sw = s
                .lifecycle
                .expire_sessions(&policy, after.as_deref())
                .await
                .unwrap();
            pages.push(sw.examined);
            match sw.next {
                Some(n) => after = Some(n),
                None => break pages,
            }
        }
    };
    assert_eq!(gc_pages.iter().sum::<u64>(), 3, "gc pages {gc_pages:?}");
    assert_eq!(
        session_pages.iter().sum::<u64>(),
        3,
        "expire_sessions scanned a, b, c one per page but reports examined per page {session_pages:?} (gc reports {gc_pages:?})"
    );
}
