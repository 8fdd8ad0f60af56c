//! Races on the memory backend's subtle paths: appends against finishes,
//! compare-and-promote, log replacement against appends, session
//! create/delete/append, opposite supersessions.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appenders_and_finishers_on_one_run() {
    let stores = backend().stores();
    let run = new_run(&stores, "agent").await;
    let appenders: Vec<_> = (0..32)
        .map(|t| {
            let runs = Arc::clone(&stores.runs);
            tokio::spawn(async move {
                for i in 0..50 {
                    let e = NewEvent::new("step", json!({ "t": t, "i": i }));
                    runs.append_event(run, e).await.unwrap();
                }
            })
        })
        .collect();
    for t in appenders {
        t.await.unwrap();
    }
    let events = stores.runs.read_events(run, None, 5_000).await.unwrap();
    assert!(events.iter().map(|e| e.seq).eq(0..1_600));
    assert_eq!(stores.runs.verify_run(run).await.unwrap().len, 1_600);

    let finishers: Vec<_> = (0..16)
        .map(|_| {
            let runs = Arc::clone(&stores.runs);
            tokio::spawn(async move { runs.cancel_run(run, RunSummary::new("stop")).await })
        })
        .collect();
    let mut wins = 0;
    for f in finishers {
        match f.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict),
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_compare_and_promote_has_one_winner() {
    let reg = backend().stores().releases;
    reg.promote("r", Digest::of(b"base"), meta(), None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let reg = Arc::clone(&reg);
            let d = Digest::of(b"x");
            tokio::spawn(async move { reg.promote("r", d, meta(), Some(0)).await.is_ok() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(reg.history("r", None, 100).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replace_log_races_appends_without_mixing() {
    let s = backend().stores().sessions;
    s.create_session("s", json!({})).await.unwrap();
    let appenders: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for _ in 0..100 {
                    s.append_log("s", entry(None, b"msg")).await.unwrap();
                }
            })
        })
        .collect();
    for i in 0..50 {
        let checkpoint = NewLogEntry::new(LogKind::Checkpoint, "sys", "ckpt", "c");
        let mut keyed = checkpoint.clone();
        keyed.idempotency_key = Some(format!("ck{i}"));
        s.replace_log("s", vec![checkpoint, keyed], None)
            .await
            .unwrap();
        let log = s.read_log("s", None, 10_000).await.unwrap();
        assert!(log.iter().map(|e| e.seq).eq(0..log.len() as u64));
        assert_eq!(log.first().map(|e| e.kind), Some(LogKind::Checkpoint));
        tokio::task::yield_now().await;
    }
    for a in appenders {
        a.await.unwrap();
    }
    let len = s.read_log("s", None, 10_000).await.unwrap().len() as u64;
    assert_eq!(s.verify_log("s").await.unwrap().len, len);
    let stale = s.replace_log("s", vec![], Some(len + 1)).await;
    assert_eq!(kind(stale), ErrorKind::Conflict);
    assert!(s
        .replace_log("s", vec![], Some(len))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_deletes_and_appends_of_one_session() {
    let s = backend().stores().sessions;
    let creators: Vec<_> = (0..16)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.create_session("id", json!({})).await })
        })
        .collect();
    let mut created = 0;
    for c in creators {
        match c.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
        }
    }
    assert_eq!(created, 1);

    // Every append either fails with NotFound or lands in a log that stays
    // gap-free and verifiable.
    let appenders: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for _ in 0..100 {
                    if let Err(e) = s.append_log("id", entry(None, b"m")).await {
                        assert_eq!(e.kind(), ErrorKind::NotFound);
                    }
                }
            })
        })
        .collect();
    for _ in 0..50 {
        s.delete_session("id").await.unwrap();
        s.create_session("id", json!({})).await.unwrap();
        tokio::task::yield_now().await;
    }
    for a in appenders {
        a.await.unwrap();
    }
    let len = s.read_log("id", None, 10_000).await.unwrap().len() as u64;
    assert_eq!(s.verify_log("id").await.unwrap().len, len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_opposite_supersessions_never_make_a_cycle() {
    let store = backend().stores().supersessions;
    let key = SigningKey::from_bytes(&[3; 32]);
    for round in 0..50u32 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        let ab = superseding(&key, a.as_bytes(), Some(b.as_bytes()), 1);
        let ba = superseding(&key, b.as_bytes(), Some(a.as_bytes()), 2);
        let (x, y) = (Arc::clone(&store), Arc::clone(&store));
        let (r1, r2) = tokio::join!(
            tokio::spawn(async move { x.put(ab).await }),
            tokio::spawn(async move { y.put(ba).await })
        );
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        assert!(r1.is_ok() != r2.is_ok(), "round {round}: {r1:?} {r2:?}");
        assert_eq!(kind(if r1.is_ok() { r2 } else { r1 }), ErrorKind::Conflict);
    }
}
