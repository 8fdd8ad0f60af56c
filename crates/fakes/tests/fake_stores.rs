//! FakeStores: determinism, snapshot/fork independence, tamper hooks.

use bytes::Bytes;
use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunFilter, RunId,
    RunMetadata, Stores, Timestamp,
};
use stowage_fakes::{FakeClock, FakeStores, SequentialIds};

async fn new_run(stores: &Stores) -> RunId {
    stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await
        .unwrap()
}

async fn script(fakes: &FakeStores) -> Vec<String> {
    let s = fakes.stores();
    let mut out = Vec::new();
    for i in 0..5 {
        let run = new_run(&s).await;
        let e = s
            .runs
            .append_event(run, NewEvent::new("step", json!(i)))
            .await
            .unwrap();
        out.push(format!("{run} {} {}", e.timestamp.as_millis(), e.hash));
        fakes.clock().advance_ms(1);
    }
    out
}

#[tokio::test]
async fn two_fakes_running_the_same_script_agree() {
    assert_eq!(
        script(&FakeStores::new()).await,
        script(&FakeStores::new()).await
    );
}

#[tokio::test]
async fn stores_read_the_fake_clock_and_ids() {
    let fakes = FakeStores::new();
    let s = fakes.stores();
    let a = new_run(&s).await;
    let b = new_run(&s).await;
    assert!(a < b, "frozen clock, still increasing ids");
    assert_eq!(a, RunId::new_v7(FakeClock::DEFAULT_START, 0));
    assert_eq!(fakes.ids().issued(), 2);

    fakes.clock().set(Timestamp::from_millis(5_000_000));
    let c = new_run(&s).await;
    let run = s.runs.get_run(c).await.unwrap();
    assert_eq!(run.created_at, Timestamp::from_millis(5_000_000));
    assert_eq!(
        c.timestamp(),
        Timestamp::from_millis(5_000_000).max(a.timestamp())
    );

    let listed = s
        .runs
        .list_runs(&RunFilter::default(), None, 10)
        .await
        .unwrap();
    let ids: Vec<RunId> = listed.iter().map(|r| r.id).collect();
    assert_eq!(ids, [c, b, a], "newest first, deterministically");
}

#[tokio::test]
async fn with_uses_the_given_clock_and_ids() {
    let clock = FakeClock::at(Timestamp::from_millis(42)).with_auto_advance_ms(1);
    let ids = SequentialIds::new();
    let fakes = FakeStores::with(clock.clone(), ids.clone());
    let run = new_run(&fakes.stores()).await;
    assert_eq!(ids.issued(), 1);
    assert!(
        clock.peek() > Timestamp::from_millis(42),
        "the store read the clock"
    );
    assert!(run.timestamp() >= Timestamp::from_millis(42));
}

#[tokio::test]
async fn handles_and_clones_share_state() {
    let fakes = FakeStores::new();
    let twin = fakes.clone();
    let d = fakes
        .stores()
        .cas
        .put(Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(twin.stores().cas.contains(&d).await.unwrap());
    twin.clock().advance_ms(10);
    assert_eq!(
        fakes.clock().peek().as_millis(),
        FakeClock::DEFAULT_START.as_millis() + 10
    );
}

#[tokio::test]
async fn snapshot_is_frozen_and_forks_are_independent() {
    let fakes = FakeStores::new();
    let s = fakes.stores();
    let run = new_run(&s).await;
    s.runs
        .append_event(run, NewEvent::new("a", json!(0)))
        .await
        .unwrap();
    s.sessions
        .create_session("chat", json!({"v": 0}))
        .await
        .unwrap();
    let meta = ReleaseMetadata::new("v1", "ci");
    s.releases
        .promote("planner", Digest::of(b"1"), meta.clone(), None)
        .await
        .unwrap();
    let blob = s.cas.put(Bytes::from_static(b"kept")).await.unwrap();

    let snapshot = fakes.snapshot();
    assert_eq!(snapshot.time(), FakeClock::DEFAULT_START);

    // Change everything after the snapshot.
    fakes.clock().advance_ms(1_000);
    s.runs
        .append_event(run, NewEvent::new("b", json!(1)))
        .await
        .unwrap();
    s.sessions
        .save_session("chat", json!({"v": 1}), None)
        .await
        .unwrap();
    s.releases
        .promote("planner", Digest::of(b"2"), meta.clone(), None)
        .await
        .unwrap();
    s.cas.delete(&blob).await.unwrap();
    let later_run = new_run(&s).await;

    for _ in 0..2 {
        let fork = snapshot.fork();
        let f = fork.stores();
        assert_eq!(fork.clock().peek(), FakeClock::DEFAULT_START);
        assert_eq!(f.runs.read_events(run, None, 10).await.unwrap().len(), 1);
        let session = f.sessions.load_session("chat").await.unwrap().unwrap();
        assert_eq!(session.data, json!({"v": 0}));
        let current = f.releases.current("planner").await.unwrap();
        assert_eq!(current.spec_digest, Digest::of(b"1"));
        assert!(f.cas.contains(&blob).await.unwrap());
        assert_eq!(
            f.runs.get_run(later_run).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );

        // The fork continues the snapshot's id sequence: its next run gets
        // the id the original gave its second run (at the same time).
        fork.clock().advance_ms(1_000);
        let forked_run = new_run(&f).await;
        assert_eq!(forked_run, later_run);
        // Writing to the fork touches neither the original nor later forks.
        f.runs
            .append_event(run, NewEvent::new("fork", json!(2)))
            .await
            .unwrap();
        fork.clock().advance_ms(5);
    }
    assert_eq!(s.runs.read_events(run, None, 10).await.unwrap().len(), 2);
    assert_eq!(
        fakes.clock().peek().as_millis(),
        FakeClock::DEFAULT_START.as_millis() + 1_000
    );
}

#[tokio::test]
async fn fork_copies_now_and_diverges() {
    let fakes = FakeStores::new();
    let s = fakes.stores();
    s.sessions.create_session("a", json!(1)).await.unwrap();
    let fork = fakes.fork();
    fork.stores()
        .sessions
        .create_session("b", json!(2))
        .await
        .unwrap();
    s.sessions.delete_session("a").await.unwrap();

    let names =
        |list: Vec<stowage_core::Session>| list.into_iter().map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(
        names(s.sessions.list_sessions(None, 10).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            fork.stores()
                .sessions
                .list_sessions(None, 10)
                .await
                .unwrap()
        ),
        ["a", "b"]
    );

    fork.clock().advance_ms(7);
    assert_eq!(fakes.clock().peek(), FakeClock::DEFAULT_START);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_during_writes_is_consistent() {
    let fakes = FakeStores::new();
    let s = fakes.stores();
    let run = new_run(&s).await;
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    s.runs
                        .append_event(run, NewEvent::new("e", json!([t, i])))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut snapshots = Vec::new();
    for _ in 0..20 {
        snapshots.push(fakes.snapshot());
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    for snap in snapshots {
        let f = snap.fork().stores();
        let record = f.runs.get_run(run).await.unwrap();
        let events = f.runs.read_events(run, None, 1_000).await.unwrap();
        assert_eq!(events.len() as u64, record.event_count);
        f.runs.verify_run(run).await.unwrap();
    }
}

#[tokio::test]
async fn tamper_hooks_are_reported_as_corrupted() {
    let fakes = FakeStores::new();
    let s = fakes.stores();
    let blob = s.cas.put(Bytes::from_static(b"precious")).await.unwrap();
    assert!(fakes.corrupt_blob(&blob));
    assert_eq!(
        s.cas.get(&blob).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert_eq!(
        s.cas.verify(&blob).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert!(!fakes.corrupt_blob(&Digest::of(b"absent")));

    let run = new_run(&s).await;
    s.runs
        .append_event(run, NewEvent::new("a", json!(1)))
        .await
        .unwrap();
    assert!(fakes.corrupt_run_event(run, 0));
    assert_eq!(
        s.runs.verify_run(run).await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert!(!fakes.corrupt_run_event(run, 5));

    s.sessions.create_session("chat", json!({})).await.unwrap();
    let entry = NewLogEntry::new(LogKind::Incoming, "user", "text", "hi");
    s.sessions.append_log("chat", entry).await.unwrap();
    assert!(fakes.corrupt_log_entry("chat", 0));
    assert_eq!(
        s.sessions.verify_log("chat").await.unwrap_err().kind(),
        ErrorKind::Corrupted
    );
    assert!(!fakes.corrupt_log_entry("other", 0));

    // Forks taken before the damage are intact.
    let intact = FakeStores::new();
    let d = intact
        .stores()
        .cas
        .put(Bytes::from_static(b"x"))
        .await
        .unwrap();
    let fork = intact.fork();
    intact.corrupt_blob(&d);
    assert_eq!(
        fork.stores().cas.get(&d).await.unwrap(),
        Bytes::from_static(b"x")
    );
}
